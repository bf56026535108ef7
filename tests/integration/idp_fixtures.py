"""Directory-half databases for tests: a fresh, migrated database on SQLite or PostgreSQL.

A helper rather than a fixture, so that test modules can build their own fixtures (scope,
parameters) on it without importing fixtures by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import delete
from sqlalchemy import text

from scimlink.idp import schema
from scimlink.idp.models import IdpBase
from scimlink.storage.db import make_engine
from tests.conftest import POSTGRES_URL

DIALECTS = ("sqlite", "postgresql")


@contextmanager
def directory_database(dialect: str, directory: Path) -> Iterator[Engine]:
    """A new directory database, upgraded to head; PostgreSQL's is dropped afterwards."""
    if dialect == "sqlite":
        engine = make_engine(f"sqlite:///{directory / 'directory.db'}")
        try:
            schema.upgrade(engine)
            yield engine
        finally:
            engine.dispose()
        return
    head, _, _ = POSTGRES_URL.rpartition("/")
    name = f"scimlink_idp_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{head}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(f"{head}/{name}")
    try:
        schema.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wipe(engine: Engine) -> None:
    """Delete every directory row (children first), so tests sharing a database start empty."""
    with engine.begin() as connection:
        for table in reversed(IdpBase.metadata.sorted_tables):
            connection.execute(delete(table))
