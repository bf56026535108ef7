"""SQLite writers of one process queue on a lock of their own, not in SQLite's busy handler.

The busy timeout is set to zero here, so a writer that met SQLite's lock would fail at once
with "database is locked": these tests pass only because ``write_session`` queues writers.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import text

from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import write_session


@pytest.fixture
def impatient(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'writers.db'}")

    @event.listens_for(engine, "connect")
    def no_busy_wait(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        connection.execute(text("INSERT INTO counter VALUES (0)"))
    return engine


def test_a_second_writer_waits_for_the_first_to_commit(impatient: Engine) -> None:
    sessions = make_sessionmaker(impatient)
    order: list[str] = []
    first_inside, second_waiting = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with write_session(sessions) as session:
            session.execute(text("UPDATE counter SET n = n + 1"))
            order.append("first in")
            first_inside.set()
            assert second_waiting.wait(5)
            # The second writer has asked for the database; holding on shows it waits.
            threading.Event().wait(0.2)
            order.append("first out")

    def second() -> None:
        try:
            assert first_inside.wait(5)
            order.append("second asks")
            second_waiting.set()
            with write_session(sessions) as session:
                order.append("second in")
                session.execute(text("UPDATE counter SET n = n + 1"))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert order == ["first in", "second asks", "first out", "second in"]
    with impatient.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 2


def test_many_concurrent_writers_lose_nothing_and_a_failed_one_releases_the_queue(
    impatient: Engine,
) -> None:
    sessions = make_sessionmaker(impatient)

    def fails() -> None:
        with write_session(sessions) as session:
            session.execute(text("UPDATE counter SET n = n + 100"))
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        fails()
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(25):
                with write_session(sessions) as session:
                    session.execute(text("UPDATE counter SET n = n + 1"))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with impatient.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 100
