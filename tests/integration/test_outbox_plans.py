"""The engine's hot queries stay index probes as the directory grows (directory migrations 0003
and 0004).

A bind or an import enqueues a whole group in one transaction, so every row shares one
``due_at``; an index without ``pk`` left the planner to read and sort the whole queue on
every claim (38 ms per claim at 100k queued rows on PostgreSQL, 0.1 ms with the index). A
directory change finds the user's applications through their links; without an index on
``user_id`` that read every link (13.6 ms a change at 100k links).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import insert
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.orm import Session

from scimlink.idp import outbox
from scimlink.idp import schema
from scimlink.idp.models import Application
from scimlink.idp.models import Link
from scimlink.idp.models import OutboxRow
from scimlink.storage.base import utcnow
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.planner import analyze
from tests.integration.idp_fixtures import DIALECTS
from tests.integration.idp_fixtures import directory_database

QUEUED = 5000
T = TypeVar("T")


@pytest.fixture(params=DIALECTS)
def queued(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An active application with a queue enqueued in one transaction and as many links,
    planner statistics current (as ``StatsKeeper`` keeps them beside the engine)."""
    with directory_database(request.param, tmp_path) as engine:
        due = utcnow() - timedelta(seconds=1)
        with Session(engine) as session:
            session.add(
                Application(id="a1", label="App", label_key="app", kind="scim", idm_state="active")
            )
            session.flush()
            session.execute(
                insert(OutboxRow),
                [
                    {"app_id": "a1", "user_id": str(uuid.uuid4()), "cause": "bind", "due_at": due}
                    for _ in range(QUEUED)
                ],
            )
            session.execute(
                insert(Link),
                [
                    {"app_id": "a1", "user_id": f"u{i}", "username": f"u{i}", "state": "active"}
                    for i in range(QUEUED)
                ],
            )
            session.commit()
        analyze(make_sessionmaker(engine), schema.GROWING)
        yield engine


def plans(engine: Engine, run: Callable[[Session], T]) -> tuple[T, dict[str, str]]:
    """What ``run`` returns, and the database's plan for each SELECT it issued, by statement."""
    statements: list[tuple[str, object]] = []

    def capture(_c: object, _cur: object, statement: str, params: object, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, params))

    with Session(engine) as session:
        event.listen(engine, "before_cursor_execute", capture)
        try:
            result = run(session)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        session.rollback()
    return result, {statement: plan(engine, statement, params) for statement, params in statements}


def plan(engine: Engine, statement: str, params: object) -> str:
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            rows = connection.exec_driver_sql(f"EXPLAIN {statement}", params)  # type: ignore[arg-type]
        else:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)  # type: ignore[arg-type]
        return " | ".join(str(row[-1]) for row in rows)


def test_a_claim_takes_the_first_rows_in_order_through_the_index(queued: Engine) -> None:
    claimed, found = plans(
        queued, lambda session: outbox.claim(session, "w1", limit=50, app_id="a1")
    )
    taken = [item.pk for item in claimed]
    (claim_plan,) = found.values()
    with queued.connect() as connection:
        first = connection.execute(text("SELECT pk FROM idp_outbox ORDER BY pk LIMIT 50"))
        assert taken == list(first.scalars())
    assert "ix_idp_outbox_app_due" in claim_plan
    assert "Sort" not in claim_plan  # PostgreSQL: an ordered index scan under the LIMIT
    assert "TEMP B-TREE" not in claim_plan  # SQLite: no sorter either


def test_a_closed_applications_backlog_is_never_read_and_never_delays_another(
    queued: Engine,
) -> None:
    """Directory migration 0004. A paused application's rows, due before everything else,
    are not walked by the engine's queries; an application queued after a large backlog of
    another is claimed without waiting for it."""
    earlier = utcnow() - timedelta(hours=1)
    with Session(queued) as session:
        session.add_all(
            [
                Application(id="a0", label="Paused", label_key="paused", kind="scim"),
                Application(id="a2", label="Late", label_key="late", kind="scim"),
            ]
        )
        session.flush()
        session.execute(
            update(Application).where(Application.id == "a0").values(idm_state="paused")
        )
        session.execute(
            update(Application).where(Application.id == "a2").values(idm_state="active")
        )
        session.execute(
            insert(OutboxRow),
            [
                {"app_id": "a0", "user_id": str(uuid.uuid4()), "cause": "bind", "due_at": earlier}
                for _ in range(QUEUED)
            ]
            + [{"app_id": "a2", "user_id": "late-1", "cause": "changed", "due_at": utcnow()}],
        )
        session.commit()
    analyze(make_sessionmaker(queued), schema.GROWING)

    apps, found = plans(queued, lambda session: outbox.due_apps(session, now=utcnow()))
    assert sorted(apps) == ["a1", "a2"]
    (waiting_plan,) = found.values()
    assert "ix_idp_outbox_app_due" in waiting_plan or "uq_idp_outbox_pair" in waiting_plan
    assert "Seq Scan on idp_outbox" not in waiting_plan
    assert "SCAN idp_outbox" not in waiting_plan  # SQLite: "SEARCH … USING INDEX" instead

    # The late application's one row, behind a1's 5 000 and a0's 5 000 in due order.
    claimed, found = plans(
        queued, lambda session: outbox.claim(session, "w1", limit=50, app_id="a2")
    )
    assert [(c.app_id, c.user_id) for c in claimed] == [("a2", "late-1")]
    (claim_plan,) = found.values()
    assert "ix_idp_outbox_app_due" in claim_plan
    with Session(queued) as session:
        assert outbox.claim(session, "w1", limit=50, app_id="a0") == []
        assert outbox.due_count(session, now=utcnow(), cap=100, app_id="a0") == 0

    # Random order: each waiting application comes first in some of the workers' claims
    # (for one of the two never to come first in 40 tries: a chance of 2 in 10^12).
    with Session(queued) as session:
        firsts = {outbox.due_apps(session, now=utcnow())[0] for _ in range(40)}
    assert firsts == {"a1", "a2"}


def test_a_directory_change_finds_the_users_links_through_the_index(queued: Engine) -> None:
    def change(session: Session) -> list[str]:
        outbox.enqueue_users(session, ["u7"], "changed")
        return list(session.scalars(select(OutboxRow.cause).where(OutboxRow.user_id == "u7")))

    causes, found = plans(queued, change)
    assert causes == ["changed"]  # the linked application was found
    (links,) = [p for s, p in found.items() if "WHERE idp_links.user_id IN" in s]
    assert "ix_idp_links_user" in links
    assert "Seq Scan" not in links


def test_0003_and_0004_round_trip(tmp_path: Path) -> None:
    with directory_database("sqlite", tmp_path) as engine:

        def indexes() -> dict[str | None, list[str | None]]:
            found = [*inspect(engine).get_indexes("idp_outbox")]
            found += inspect(engine).get_indexes("idp_links")
            return {i["name"]: list(i["column_names"]) for i in found}

        assert indexes()["ix_idp_outbox_app_due"] == ["app_id", "held", "due_at", "pk"]
        assert "ix_idp_outbox_due" not in indexes()
        assert indexes()["ix_idp_links_user"] == ["user_id"]
        schema.downgrade(engine, "0003")
        assert indexes()["ix_idp_outbox_due"] == ["held", "due_at", "pk"]
        assert "ix_idp_outbox_app_due" not in indexes()
        schema.downgrade(engine, "0002")
        assert indexes()["ix_idp_outbox_due"] == ["held", "due_at"]
        assert "ix_idp_links_user" not in indexes()
        schema.upgrade(engine)
        assert indexes()["ix_idp_outbox_app_due"] == ["app_id", "held", "due_at", "pk"]
