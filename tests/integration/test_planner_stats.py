"""SQLite plans the IdPs' lookups through the key's index, with or without statistics.

``ORDER BY pk`` invites a planner to walk the tenant's ``(tenant_id, pk)`` index in order and
test each user, instead of probing the unique ``(tenant_id, user_name_key)`` index and sorting
the few rows found: a cost that grows with the tenant. SQLite does so without statistics, and
with its sampled ones too (``analysis_limit``: they never count a tenant larger than the
sample) once a lookup lists many names. Key lookups therefore order by ``pk + 0``, which no
index provides, and e-mail lookups select from the ``(tenant_id, value_key)`` index.
``StatsKeeper`` still gives SQLite statistics as the users table grows, for every other query.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Column
from sqlalchemy import Engine
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text

from scimlink.scim.filter.parser import parse_filter
from scimlink.scim.query import ListQuery
from scimlink.sp import schema
from scimlink.sp import tenants
from scimlink.sp.models import SpUser
from scimlink.sp.models import SpUserEmail
from scimlink.sp.users import UserService
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from scimlink.storage.planner import StatsKeeper

#: More users a tenant than SQLite's analysis samples (``planner.ANALYSIS_LIMIT``).
PER_TENANT = 3000
#: Names of the first tenant looked up at once, as the directory's engine does (100 at most).
MANY = [3, *range(700, 797), 1499, 2999]


@pytest.fixture
def populated(tmp_path: Path) -> tuple[Engine, list[str]]:
    """Two tenants of 3 000 users with an e-mail each, bulk-inserted (the planner cares about
    shape only)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'sp.db'}")
    schema.upgrade(engine)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    ids = []
    with write_session(sessions) as session:
        for name in ("first", "second"):
            tenant_id = tenants.create_tenant(session, name).id
            ids.append(tenant_id)
            session.execute(
                insert(SpUser),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "tenant_id": tenant_id,
                        "user_name": f"user{i}@example.com",
                        "user_name_key": f"user{i}@example.com",
                        "created": now,
                        "last_modified": now,
                        "document": {"userName": f"user{i}@example.com"},
                    }
                    for i in range(PER_TENANT)
                ],
            )
            users = session.execute(
                select(SpUser.pk, SpUser.user_name).where(SpUser.tenant_id == tenant_id)
            )
            session.execute(
                insert(SpUserEmail),
                [
                    {
                        "user_pk": pk,
                        "tenant_id": tenant_id,
                        "value_key": name,
                        "type_key": "work",
                        "primary": True,
                    }
                    for pk, name in users
                ],
            )
    return engine, ids


def page_plan(engine: Engine, tenant_id: str, wanted: str, found: int) -> str:
    """SQLite's plan for the page query of ``wanted``, as ``UserService`` runs it."""
    statements: list[tuple[str, object]] = []
    sessions = make_sessionmaker(engine)
    with read_session(sessions) as session:
        service = UserService(session, tenant_id)
        connection = service.connection

        def capture(
            _conn: object, _cursor: object, statement: str, params: object, *_: object
        ) -> None:
            if statement.upper().startswith("SELECT SP_USERS.PK \nFROM"):
                statements.append((statement, params))

        event.listen(connection, "before_cursor_execute", capture)
        total, users = service.search(
            ListQuery(filter=parse_filter(wanted, max_values=100), count=100)
        )
        event.remove(connection, "before_cursor_execute", capture)
        assert total == found
        assert len(users) == found
        assert len(statements) == 1
        statement, params = statements[0]
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
        return " | ".join(str(row[-1]) for row in rows)


def names(numbers: list[int], attribute: str = "userName") -> str:
    return " or ".join(f'{attribute} eq "user{i}@example.com"' for i in numbers)


def analysed(engine: Engine) -> None:
    keeper = StatsKeeper(make_sessionmaker(engine), schema.GROWING)
    assert set(keeper.check()) == {"sp_users", "sp_user_emails"}


@pytest.mark.parametrize("statistics", [False, True], ids=["no statistics", "sampled"])
@pytest.mark.parametrize("numbers", [[3, 700, 1499], MANY, [42]], ids=["3", "100", "1"])
def test_a_user_name_lookup_probes_the_unique_index(
    populated: tuple[Engine, list[str]], statistics: bool, numbers: list[int]
) -> None:
    engine, (tenant_id, _) = populated
    if statistics:
        analysed(engine)
    plan = page_plan(engine, tenant_id, names(numbers), len(numbers))
    assert "user_name_key=?" in plan
    assert "ix_sp_users_tenant_pk (tenant_id=?)" not in plan  # a walk of the tenant


def test_the_old_order_walked_the_tenant_with_sampled_statistics(
    populated: tuple[Engine, list[str]],
) -> None:
    """What ``pk + 0`` prevents: the same query ordered by ``pk`` walks the whole tenant."""
    engine, (tenant_id, _) = populated
    analysed(engine)
    query = (
        select(SpUser.pk)
        .where(
            SpUser.tenant_id == tenant_id,
            SpUser.scim_deleted.is_(False),
            SpUser.user_name_key.in_([f"user{i}@example.com" for i in MANY]),
        )
        .order_by(SpUser.pk)
        .limit(100)
    )
    statement = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}")
        assert "ix_sp_users_tenant_pk" in " | ".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize("statistics", [False, True], ids=["no statistics", "sampled"])
@pytest.mark.parametrize(
    "wanted",
    [
        'emails.value eq "user1234@example.com"',
        'emails[type eq "work" and value eq "user1234@example.com"]',
        'emails[type eq "work"].value eq "USER1234@example.com"',
    ],
)
def test_an_email_lookup_reads_the_tenant_value_index(
    populated: tuple[Engine, list[str]], statistics: bool, wanted: str
) -> None:
    engine, (tenant_id, _) = populated
    if statistics:
        analysed(engine)
    plan = page_plan(engine, tenant_id, wanted, 1)
    assert "ix_sp_user_emails_tenant_value (tenant_id=? AND value_key=?)" in plan
    assert "ix_sp_users_tenant_pk (tenant_id=?)" not in plan  # a walk of the tenant


def test_the_keeper_analyses_when_the_table_has_grown(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'grow.db'}")
    items = Table(
        "items",
        MetaData(),
        Column("pk", Integer, primary_key=True),
        Column("kind", String(8), index=True),
    )
    items.metadata.create_all(engine)
    keeper = StatsKeeper(make_sessionmaker(engine), ["items"], minimum=100, growth=2.0)

    def add(count: int) -> None:
        with engine.begin() as connection:
            connection.execute(insert(items), [{"kind": "k"} for _ in range(count)])

    def stats() -> int:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
                ).scalar_one()
            )

    add(99)
    assert keeper.check() == []  # too small to matter
    assert stats() == 0
    add(1)
    assert keeper.check() == ["items"]
    assert keeper.analysed_at == {"items": 100}
    assert stats() == 1
    add(99)
    assert keeper.check() == []  # 199 rows: not yet twice the size
    add(1)
    assert keeper.check() == ["items"]
    assert keeper.analysed_at == {"items": 200}


def test_postgresql_tables_are_analysed_once_they_have_doubled(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    table = f"planner_{uuid.uuid4().hex[:8]}"
    items = Table(table, MetaData(), Column("pk", Integer, primary_key=True))
    items.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    keeper = StatsKeeper(sessions, [table, "no_such_table"], minimum=100)

    def add(count: int) -> None:
        with engine.begin() as connection:
            connection.execute(insert(items), [{} for _ in range(count)])
            # Counters reach pg_stat_user_tables when a backend flushes them; force it.
            connection.execute(text("SELECT pg_stat_force_next_flush()"))

    def analysed() -> bool:
        with engine.connect() as connection:
            return bool(
                connection.execute(
                    text(
                        "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables"
                        " WHERE relname = :t"
                    ),
                    {"t": table},
                ).scalar_one()
            )

    try:
        add(99)
        assert keeper.check() == []
        add(1)
        assert eventually(lambda: keeper.check() == [table])
        assert analysed()
        add(60)  # 160 rows, 60 changed since: not doubled
        assert keeper.check() == []
    finally:
        items.drop(engine)
        engine.dispose()


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """PostgreSQL's statistics views trail the writes by a moment."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_other_databases_have_nothing_to_keep() -> None:
    engine = create_engine("sqlite://")
    keeper = StatsKeeper(make_sessionmaker(engine), ["anything"])
    keeper.dialect, keeper.enabled = "mysql", False
    assert keeper.check() == []
    assert keeper.start(threading.Event()) is None


def test_a_failed_check_is_logged_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    keeper = StatsKeeper(make_sessionmaker(engine), ["missing"])
    stop = threading.Event()
    calls: list[int] = []
    original = keeper.check

    def counted() -> list[str]:
        calls.append(1)
        if len(calls) == 2:
            stop.set()
        return original()

    keeper.check = counted  # type: ignore[method-assign]
    thread = keeper.start(stop, every=0.01)
    assert thread is not None
    thread.join(5)
    assert len(calls) == 2
    assert "could not refresh the planner statistics" in caplog.text
