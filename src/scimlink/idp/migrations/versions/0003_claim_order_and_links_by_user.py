"""Two indexes whose absence made costs grow with the directory.

The claim's index carries its whole sort key (held, due_at, pk), so a worker reads the first
due rows in order and stops at its batch size; without ``pk`` a queue enqueued in one
transaction (one ``due_at``) was read and sorted whole on every claim. Links are found by user
when a directory change fans out to the user's applications; without an index on ``user_id``
each change read every link (13.6 ms a change at 100 000 links on PostgreSQL).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 00:40:00
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_idp_outbox_due", table_name="idp_outbox")
    op.create_index("ix_idp_outbox_due", "idp_outbox", ["held", "due_at", "pk"], unique=False)
    op.create_index("ix_idp_links_user", "idp_links", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_idp_links_user", table_name="idp_links")
    op.drop_index("ix_idp_outbox_due", table_name="idp_outbox")
    op.create_index("ix_idp_outbox_due", "idp_outbox", ["held", "due_at"], unique=False)
