"""Engine and session factories for SQLite (embedded default) and PostgreSQL (scale-out).

SQLite runs in WAL with ``synchronous=FULL`` so an acknowledged write survives ``kill -9``, with
foreign keys on and a busy timeout. Write transactions start with ``BEGIN IMMEDIATE`` so two
writers never deadlock on a lock upgrade; reads stay deferred and run beside the writer.

SQLite has one writer at a time, and a writer that finds the database locked sleeps in its
busy handler (1, 2, 5, 10 … ms) before it tries again: under concurrent writes those sleeps,
not the writes, set the pace. Writers of one process therefore queue on a lock of their own
first, and are woken the moment the previous unit of work commits. Other processes still meet
the busy handler.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

WRITE = {"scimlink_write": True}
_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Take transaction control from pysqlite: we emit BEGIN ourselves (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    write = connection.get_execution_options().get("scimlink_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings this project relies on for ``url``'s dialect."""
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        _WRITERS[engine] = threading.RLock()
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextmanager
def read_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for one read-only use case."""
    with factory() as session:
        yield session


@contextmanager
def write_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error."""
    with factory() as session:
        bind = session.get_bind()
        writers = _WRITERS.get(bind) if isinstance(bind, Engine) else None
        # Past the timeout, SQLite's own busy timeout decides (as for another process).
        queued = writers.acquire(timeout=30) if writers is not None else False
        try:
            session.connection(execution_options=WRITE)
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
        finally:
            if queued:
                assert writers is not None
                writers.release()
