"""users, tenants and SCIM tokens

Revision ID: 0001
Revises:
Create Date: 2026-11-28 11:41:13.291573
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import scimlink.storage.base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sp_tenants",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sp_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_sp_tenants_name")),
    )
    op.create_table(
        "sp_scim_tokens",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=32), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_scim_tokens_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sp_scim_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_sp_scim_tokens_token_hash")),
    )
    with op.batch_alter_table("sp_scim_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sp_scim_tokens_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "sp_users",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("user_name", sa.String(length=512), nullable=False),
        sa.Column("user_name_key", sa.String(length=512), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=True),
        sa.Column("display_name_key", sa.String(length=512), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_modified", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_users_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sp_users")),
        sa.UniqueConstraint("id", name=op.f("uq_sp_users_id")),
        sa.UniqueConstraint("tenant_id", "user_name_key", name="uq_sp_users_tenant_user_name"),
    )
    with op.batch_alter_table("sp_users", schema=None) as batch_op:
        batch_op.create_index("ix_sp_users_tenant_active", ["tenant_id", "active"], unique=False)
        batch_op.create_index("ix_sp_users_tenant_created", ["tenant_id", "created"], unique=False)
        batch_op.create_index(
            "ix_sp_users_tenant_display_name", ["tenant_id", "display_name_key"], unique=False
        )
        batch_op.create_index(
            "ix_sp_users_tenant_external_id", ["tenant_id", "external_id"], unique=False
        )
        batch_op.create_index(
            "ix_sp_users_tenant_last_modified", ["tenant_id", "last_modified"], unique=False
        )
        batch_op.create_index("ix_sp_users_tenant_pk", ["tenant_id", "pk"], unique=False)

    op.create_table(
        "sp_user_emails",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("value_key", sa.String(length=512), nullable=False),
        sa.Column("type_key", sa.String(length=64), nullable=True),
        sa.Column("primary", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_pk"],
            ["sp_users.pk"],
            name=op.f("fk_sp_user_emails_user_pk_sp_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sp_user_emails")),
    )
    with op.batch_alter_table("sp_user_emails", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sp_user_emails_tenant_value", ["tenant_id", "value_key"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sp_user_emails_user_pk"), ["user_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sp_user_emails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sp_user_emails_user_pk"))
        batch_op.drop_index("ix_sp_user_emails_tenant_value")

    op.drop_table("sp_user_emails")
    with op.batch_alter_table("sp_users", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_users_tenant_pk")
        batch_op.drop_index("ix_sp_users_tenant_last_modified")
        batch_op.drop_index("ix_sp_users_tenant_external_id")
        batch_op.drop_index("ix_sp_users_tenant_display_name")
        batch_op.drop_index("ix_sp_users_tenant_created")
        batch_op.drop_index("ix_sp_users_tenant_active")

    op.drop_table("sp_users")
    with op.batch_alter_table("sp_scim_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sp_scim_tokens_tenant_id"))

    op.drop_table("sp_scim_tokens")
    op.drop_table("sp_tenants")
