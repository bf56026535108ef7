"""A per-tenant user counter for unfiltered totalResults.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sp_tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("user_count", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute(
        "UPDATE sp_tenants SET user_count = "
        "(SELECT count(*) FROM sp_users WHERE sp_users.tenant_id = sp_tenants.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("sp_tenants", schema=None) as batch_op:
        batch_op.drop_column("user_count")
