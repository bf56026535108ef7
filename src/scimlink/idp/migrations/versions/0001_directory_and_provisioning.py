"""Directory (users, groups), applications and bindings, provisioning outbox, links and log.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 14:51:49.986955
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import scimlink.storage.base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idp_api_keys",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=40), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_idp_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_idp_api_keys_key_hash")),
    )
    op.create_table(
        "idp_applications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("label_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("show_in_portal", sa.Boolean(), nullable=False),
        sa.Column("logo_url", sa.String(length=1000), nullable=True),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("base_url", sa.String(length=1000), nullable=True),
        sa.Column("token_encrypted", sa.Text(), nullable=True),
        sa.Column("token_hint", sa.String(length=64), nullable=True),
        sa.Column(
            "token_expires_at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("idm_state", sa.String(length=16), nullable=False),
        sa.Column("idm_detail", sa.String(length=1000), nullable=True),
        sa.Column("update_method", sa.String(length=8), nullable=False),
        sa.Column("deprovision", sa.String(length=16), nullable=False),
        sa.Column(
            "attribute_map",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("mass_deactivation_threshold", sa.Integer(), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("rate_per_second", sa.Float(), nullable=False),
        sa.Column(
            "quarantined_until", scimlink.storage.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("quarantine_reason", sa.String(length=1000), nullable=True),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idp_applications")),
        sa.UniqueConstraint("label_key", name=op.f("uq_idp_applications_label_key")),
    )
    op.create_table(
        "idp_groups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("name_key", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idp_groups")),
        sa.UniqueConstraint("name_key", name=op.f("uq_idp_groups_name_key")),
    )
    op.create_table(
        "idp_users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("username_key", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("firstname", sa.String(length=255), nullable=True),
        sa.Column("lastname", sa.String(length=255), nullable=True),
        sa.Column("displayname", sa.String(length=255), nullable=True),
        sa.Column("employee_identifier", sa.String(length=255), nullable=True),
        sa.Column("department", sa.String(length=255), nullable=True),
        sa.Column("job_title", sa.String(length=255), nullable=True),
        sa.Column("company", sa.String(length=255), nullable=True),
        sa.Column("location", sa.String(length=255), nullable=True),
        sa.Column("cost_center", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idp_users")),
        sa.UniqueConstraint("email_key", name=op.f("uq_idp_users_email_key")),
        sa.UniqueConstraint("username_key", name=op.f("uq_idp_users_username_key")),
    )
    op.create_table(
        "idp_bindings",
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["idp_applications.id"],
            name=op.f("fk_idp_bindings_app_id_idp_applications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["idp_groups.id"],
            name=op.f("fk_idp_bindings_group_id_idp_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("app_id", "group_id", name=op.f("pk_idp_bindings")),
    )
    with op.batch_alter_table("idp_bindings", schema=None) as batch_op:
        batch_op.create_index("ix_idp_bindings_group", ["group_id"], unique=False)

    op.create_table(
        "idp_group_members",
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["idp_groups.id"],
            name=op.f("fk_idp_group_members_group_id_idp_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["idp_users.id"],
            name=op.f("fk_idp_group_members_user_id_idp_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_idp_group_members")),
    )
    with op.batch_alter_table("idp_group_members", schema=None) as batch_op:
        batch_op.create_index("ix_idp_group_members_user", ["user_id"], unique=False)

    op.create_table(
        "idp_links",
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("remote_id", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("accepted_hash", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=2000), nullable=True),
        sa.Column("updated", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["idp_applications.id"],
            name=op.f("fk_idp_links_app_id_idp_applications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("app_id", "user_id", name=op.f("pk_idp_links")),
    )
    op.create_table(
        "idp_outbox",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("cause", sa.String(length=255), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("due_at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("claimed_until", scimlink.storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["idp_applications.id"],
            name=op.f("fk_idp_outbox_app_id_idp_applications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_idp_outbox")),
        sa.UniqueConstraint("app_id", "user_id", name="uq_idp_outbox_pair"),
    )
    with op.batch_alter_table("idp_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_idp_outbox_due", ["held", "due_at"], unique=False)

    op.create_table(
        "idp_provisioning_log",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cause", sa.String(length=255), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column(
            "request",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column(
            "response",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("decision", sa.String(length=2000), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["idp_applications.id"],
            name=op.f("fk_idp_provisioning_log_app_id_idp_applications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_idp_provisioning_log")),
    )
    with op.batch_alter_table("idp_provisioning_log", schema=None) as batch_op:
        batch_op.create_index("ix_idp_log_app_pk", ["app_id", "pk"], unique=False)
        batch_op.create_index("ix_idp_log_app_user_pk", ["app_id", "user_id", "pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idp_provisioning_log", schema=None) as batch_op:
        batch_op.drop_index("ix_idp_log_app_user_pk")
        batch_op.drop_index("ix_idp_log_app_pk")

    op.drop_table("idp_provisioning_log")
    with op.batch_alter_table("idp_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_idp_outbox_due")

    op.drop_table("idp_outbox")
    op.drop_table("idp_links")
    with op.batch_alter_table("idp_group_members", schema=None) as batch_op:
        batch_op.drop_index("ix_idp_group_members_user")

    op.drop_table("idp_group_members")
    with op.batch_alter_table("idp_bindings", schema=None) as batch_op:
        batch_op.drop_index("ix_idp_bindings_group")

    op.drop_table("idp_bindings")
    op.drop_table("idp_users")
    op.drop_table("idp_groups")
    op.drop_table("idp_applications")
    op.drop_table("idp_api_keys")
