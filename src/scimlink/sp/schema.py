"""Migrating the app half's database with Alembic (on ``sp serve`` start and ``sp db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import Engine

from scimlink.storage.migrate import History

HISTORY = History(Path(__file__).with_name("migrations"), "sp_alembic_version")

#: Tables a bulk change makes grow fast: their planner statistics are kept current
#: (:class:`scimlink.storage.planner.StatsKeeper`, in ``sp serve``).
GROWING = ("sp_users", "sp_user_emails")


def alembic_config(engine: Engine) -> Config:
    return HISTORY.config(engine)


def upgrade(engine: Engine, revision: str = "head") -> None:
    HISTORY.upgrade(engine, revision)


def downgrade(engine: Engine, revision: str) -> None:
    HISTORY.downgrade(engine, revision)
