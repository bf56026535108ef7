"""Outbox rows remember an administrator's approval, so a mass deactivation can hold a row
that was already due without ever holding again one that was let through.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 17:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idp_outbox") as batch:
        batch.add_column(
            sa.Column("approved", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Rows released before this revision were approved or never held: keep them released.
    op.execute("UPDATE idp_outbox SET approved = (NOT held)")


def downgrade() -> None:
    with op.batch_alter_table("idp_outbox") as batch:
        batch.drop_column("approved")
