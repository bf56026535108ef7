"""User lifecycle: Active/Preserved state, who preserved, and IdP deletion.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 13:20:00
"""

import sqlalchemy as sa
from alembic import op

import scimlink.storage.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sp_users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state", sa.String(length=16), server_default="active", nullable=False)
        )
        batch_op.add_column(sa.Column("preserved_by", sa.String(length=8), nullable=True))
        batch_op.add_column(
            sa.Column(
                "preserved_at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("scim_deleted", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    # Users the IdP had deactivated are preserved by the IdP.
    op.execute("UPDATE sp_users SET state = 'preserved', preserved_by = 'idp' WHERE active = false")


def downgrade() -> None:
    with op.batch_alter_table("sp_users", schema=None) as batch_op:
        batch_op.drop_column("scim_deleted")
        batch_op.drop_column("preserved_at")
        batch_op.drop_column("preserved_by")
        batch_op.drop_column("state")
