"""Claims are per application: the claim's index leads with ``app_id``.

With one index over every application's rows in ``due_at`` order, a claim walked past the rows
of paused, deactivated or quarantined applications (30 ms a claim on SQLite behind 100 000 such
rows, and as much again for the burst count), and one application's backlog came before
every change queued after it for the others. A worker now picks an open application with due
rows and reads that application's first rows through ``(app_id, held, due_at, pk)``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 02:45:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_idp_outbox_due", table_name="idp_outbox")
    op.create_index(
        "ix_idp_outbox_app_due", "idp_outbox", ["app_id", "held", "due_at", "pk"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_idp_outbox_app_due", table_name="idp_outbox")
    op.create_index("ix_idp_outbox_due", "idp_outbox", ["held", "due_at", "pk"], unique=False)
