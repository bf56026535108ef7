"""Outbox rows remember an administrator's approval, so a mass deactivation can hold a row
that was already due without ever holding again one that was let through; running engines
register, so that they share each application's limits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 17:50:00
"""

import sqlalchemy as sa
from alembic import op

import scimlink.storage.base

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
    op.create_table(
        "idp_workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", scimlink.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idp_workers")),
    )
    op.create_index(op.f("ix_idp_workers_seen_at"), "idp_workers", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_idp_workers_seen_at"), table_name="idp_workers")
    op.drop_table("idp_workers")
    with op.batch_alter_table("idp_outbox") as batch:
        batch.drop_column("approved")
