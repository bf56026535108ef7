"""Applications remember their target's bulk limits and whether creates go out in bulk.

``bulk_max_operations`` and ``bulk_max_payload`` come from the target's ServiceProviderConfig
when Identity Management is activated (0: the target offers no bulk); ``bulk_creates`` is the
administrator's choice, off by default.

Plain ``ADD COLUMN`` / ``DROP COLUMN`` (SQLite 3.35+), never a batch copy: SQLite would drop
the old table to move the copy in, and with foreign keys on, that cascades to the outbox,
links and bindings of every application.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "idp_applications",
        sa.Column("bulk_max_operations", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "idp_applications",
        sa.Column("bulk_max_payload", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "idp_applications",
        sa.Column("bulk_creates", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("idp_applications", "bulk_creates")
    op.drop_column("idp_applications", "bulk_max_payload")
    op.drop_column("idp_applications", "bulk_max_operations")
