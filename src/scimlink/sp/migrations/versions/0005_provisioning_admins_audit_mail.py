"""Provisioning method, admins and API keys, AD/LDAP, audit trail, mail outbox, account e-mail.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 14:12:06.069752
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import scimlink.storage.base

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sp_admins",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_admins_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sp_admins")),
        sa.UniqueConstraint("tenant_id", "email", name="uq_sp_admins_tenant_email"),
    )
    op.create_table(
        "sp_audit",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=400), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=36), nullable=True),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column(
            "before",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "after",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=1000), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_audit_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sp_audit")),
    )
    with op.batch_alter_table("sp_audit", schema=None) as batch_op:
        batch_op.create_index("ix_sp_audit_tenant_pk", ["tenant_id", "pk"], unique=False)
        batch_op.create_index("ix_sp_audit_tenant_target", ["tenant_id", "target_id"], unique=False)

    op.create_table(
        "sp_ldap_accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_ldap_accounts_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sp_ldap_accounts")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_sp_ldap_accounts_tenant_name"),
    )
    op.create_table(
        "sp_mail_outbox",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("send_after", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_mail_outbox_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sp_mail_outbox")),
    )
    with op.batch_alter_table("sp_mail_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_sp_mail_outbox_pending", ["sent_at", "send_after"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sp_mail_outbox_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "sp_api_keys",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("admin_id", sa.String(length=36), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["admin_id"],
            ["sp_admins.id"],
            name=op.f("fk_sp_api_keys_admin_id_sp_admins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sp_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_sp_api_keys_key_hash")),
    )
    with op.batch_alter_table("sp_api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sp_api_keys_admin_id"), ["admin_id"], unique=False)

    op.create_table(
        "sp_ldap_mappings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["sp_ldap_accounts.id"],
            name=op.f("fk_sp_ldap_mappings_account_id_sp_ldap_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["sp_profiles.id"],
            name=op.f("fk_sp_ldap_mappings_profile_id_sp_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_ldap_mappings_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sp_ldap_mappings")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_sp_ldap_mappings_tenant_name"),
    )
    with op.batch_alter_table("sp_scim_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reminded_days", sa.Integer(), nullable=True))

    with op.batch_alter_table("sp_tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("provisioning", sa.String(length=8), server_default="manual", nullable=False)
        )
        batch_op.add_column(
            sa.Column("token_grace_hours", sa.Integer(), server_default="0", nullable=False)
        )

    with op.batch_alter_table("sp_users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("managed_by", sa.String(length=8), server_default="scim", nullable=False)
        )
        batch_op.add_column(sa.Column("email_key", sa.String(length=512), nullable=True))
    # Tenants that already hold a SCIM token were provisioning over SCIM.
    op.execute(
        "UPDATE sp_tenants SET provisioning = 'scim' WHERE id IN "
        "(SELECT tenant_id FROM sp_scim_tokens)"
    )
    # The account e-mail is the primary (else first) e-mail, else a userName that is one; where
    # two accounts of a tenant already share one, the older keeps it.
    op.execute(
        "UPDATE sp_users SET email_key = (SELECT e.value_key FROM sp_user_emails e "
        'WHERE e.user_pk = sp_users.pk ORDER BY e."primary" DESC, e.pk LIMIT 1)'
    )
    op.execute(
        "UPDATE sp_users SET email_key = user_name_key "
        "WHERE email_key IS NULL AND user_name_key LIKE '%@%'"
    )
    op.execute(
        "UPDATE sp_users SET email_key = NULL WHERE email_key IS NOT NULL AND pk NOT IN "
        "(SELECT MIN(pk) FROM sp_users WHERE email_key IS NOT NULL GROUP BY tenant_id, email_key)"
    )
    with op.batch_alter_table("sp_users", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sp_users_state_preserved_at", ["state", "preserved_at"], unique=False
        )
        batch_op.create_unique_constraint("uq_sp_users_tenant_email", ["tenant_id", "email_key"])


def downgrade() -> None:
    with op.batch_alter_table("sp_users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_sp_users_tenant_email", type_="unique")
        batch_op.drop_index("ix_sp_users_state_preserved_at")
        batch_op.drop_column("email_key")
        batch_op.drop_column("managed_by")

    with op.batch_alter_table("sp_tenants", schema=None) as batch_op:
        batch_op.drop_column("token_grace_hours")
        batch_op.drop_column("provisioning")

    with op.batch_alter_table("sp_scim_tokens", schema=None) as batch_op:
        batch_op.drop_column("reminded_days")

    op.drop_table("sp_ldap_mappings")
    with op.batch_alter_table("sp_api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sp_api_keys_admin_id"))

    op.drop_table("sp_api_keys")
    with op.batch_alter_table("sp_mail_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sp_mail_outbox_tenant_id"))
        batch_op.drop_index("ix_sp_mail_outbox_pending")

    op.drop_table("sp_mail_outbox")
    op.drop_table("sp_ldap_accounts")
    with op.batch_alter_table("sp_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_audit_tenant_target")
        batch_op.drop_index("ix_sp_audit_tenant_pk")

    op.drop_table("sp_audit")
    op.drop_table("sp_admins")
