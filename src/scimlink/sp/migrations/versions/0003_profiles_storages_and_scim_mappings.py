"""profiles, storages and SCIM mappings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:58:03.971886
"""

import uuid
from datetime import UTC
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import scimlink.storage.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sp_profiles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("max_users", sa.Integer(), nullable=True),
        sa.Column("preserved_auto_delete_days", sa.Integer(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_profiles_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sp_profiles")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_sp_profiles_tenant_name"),
    )
    with op.batch_alter_table("sp_profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sp_profiles_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "sp_storages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_storages_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sp_storages")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_sp_storages_tenant_name"),
    )
    with op.batch_alter_table("sp_storages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sp_storages_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "sp_scim_mappings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("any_user", sa.Boolean(), nullable=False),
        sa.Column("attribute", sa.String(length=512), nullable=True),
        sa.Column(
            "values",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("storage_id", sa.String(length=36), nullable=False),
        sa.Column("quota_gb", sa.Integer(), nullable=True),
        sa.Column("send_activation_email", sa.Boolean(), nullable=False),
        sa.Column("created", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["sp_profiles.id"],
            name=op.f("fk_sp_scim_mappings_profile_id_sp_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["storage_id"],
            ["sp_storages.id"],
            name=op.f("fk_sp_scim_mappings_storage_id_sp_storages"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["sp_tenants.id"],
            name=op.f("fk_sp_scim_mappings_tenant_id_sp_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sp_scim_mappings")),
    )
    with op.batch_alter_table("sp_scim_mappings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sp_scim_mappings_tenant_position", ["tenant_id", "position"], unique=False
        )

    with op.batch_alter_table("sp_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mapping_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("profile_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("storage_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("quota_gb", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_sp_users_profile_id"), ["profile_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_sp_users_mapping_id_sp_scim_mappings"),
            "sp_scim_mappings",
            ["mapping_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_sp_users_storage_id_sp_storages"), "sp_storages", ["storage_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_sp_users_profile_id_sp_profiles"), "sp_profiles", ["profile_id"], ["id"]
        )
    _backfill_defaults()


def _backfill_defaults() -> None:
    """Tenants that existed before SCIM mappings keep provisioning as they did: each gets the
    default profile and storage a new tenant gets, plus an "Allow any user" mapping."""
    connection = op.get_bind()
    tenants = connection.execute(sa.text("SELECT id, region FROM sp_tenants")).all()
    now = datetime.now(UTC)
    for tenant_id, region in tenants:
        profile, storage, mapping = (str(uuid.uuid4()) for _ in range(3))
        connection.execute(
            sa.text(
                "INSERT INTO sp_profiles (id, tenant_id, name, is_default, created)"
                " VALUES (:id, :tenant, 'Default', true, :now)"
            ),
            {"id": profile, "tenant": tenant_id, "now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO sp_storages (id, tenant_id, name, region, healthy, is_default, created)"
                " VALUES (:id, :tenant, 'Default', :region, true, true, :now)"
            ),
            {"id": storage, "tenant": tenant_id, "region": region, "now": now},
        )
        connection.execute(
            sa.text(
                'INSERT INTO sp_scim_mappings (id, tenant_id, name, position, any_user, "values",'
                " profile_id, storage_id, send_activation_email, created) VALUES (:id, :tenant,"
                " 'Default (allow any user)', 1, true, '[]', :profile, :storage, false, :now)"
            ),
            {
                "id": mapping,
                "tenant": tenant_id,
                "profile": profile,
                "storage": storage,
                "now": now,
            },
        )
        connection.execute(
            sa.text(
                "UPDATE sp_users SET profile_id = :profile, storage_id = :storage"
                " WHERE tenant_id = :tenant"
            ),
            {"profile": profile, "storage": storage, "tenant": tenant_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("sp_users", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_sp_users_profile_id_sp_profiles"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_sp_users_storage_id_sp_storages"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_sp_users_mapping_id_sp_scim_mappings"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_sp_users_profile_id"))
        batch_op.drop_column("quota_gb")
        batch_op.drop_column("storage_id")
        batch_op.drop_column("profile_id")
        batch_op.drop_column("mapping_id")

    with op.batch_alter_table("sp_scim_mappings", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_scim_mappings_tenant_position")

    op.drop_table("sp_scim_mappings")
    with op.batch_alter_table("sp_storages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sp_storages_tenant_id"))

    op.drop_table("sp_storages")
    with op.batch_alter_table("sp_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sp_profiles_tenant_id"))

    op.drop_table("sp_profiles")
