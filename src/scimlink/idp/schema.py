"""Migrating the directory half's database with Alembic (on ``idp serve``, ``idp worker`` and ``idp db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import Engine

from scimlink.storage.migrate import History

HISTORY = History(Path(__file__).with_name("migrations"), "idp_alembic_version")

#: Tables an import, a bound group or an initial sync makes grow fast: their planner
#: statistics are kept current (:class:`scimlink.storage.planner.StatsKeeper`, beside the
#: provisioning engine).
GROWING = ("idp_users", "idp_group_members", "idp_outbox", "idp_links")


def alembic_config(engine: Engine) -> Config:
    return HISTORY.config(engine)


def upgrade(engine: Engine, revision: str = "head") -> None:
    HISTORY.upgrade(engine, revision)


def downgrade(engine: Engine, revision: str) -> None:
    HISTORY.downgrade(engine, revision)
