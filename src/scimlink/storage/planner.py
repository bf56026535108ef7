"""Query-planner statistics, refreshed as soon as a table has grown a lot.

Both databases plan from statistics, and both have stale ones right after a bulk change: an
import of 10 000 users, a group bound, an initial sync. SQLite without statistics assumes that
an equality on an index's first column narrows the rows a lot, so with ``tenant_id`` first it
answers ``userName eq "a" or userName eq "b"`` (ordered by ``pk``) by walking the tenant's whole
``(tenant_id, pk)`` index instead of probing the unique ``(tenant_id, user_name_key)`` index.
PostgreSQL's statistics trail its auto-analyze by up to a minute (``autovacuum_naptime``);
until then a table that grew from nothing still looks tiny, and it reads a whole bound group's
memberships, or scans them, for a batch of 20 users.

:class:`StatsKeeper` runs ``ANALYZE`` on a watched table once it has doubled since the last
run (PostgreSQL: once the rows changed since its last analysis match those it had), from 500 rows
up. SQLite's analysis samples (``analysis_limit``), so its cost stays bounded however large a
table grows (https://sqlite.org/lang_analyze.html); PostgreSQL's always samples.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sqlalchemy import Integer
from sqlalchemy import func
from sqlalchemy import literal_column
from sqlalchemy import select
from sqlalchemy import table as table_clause
from sqlalchemy import text
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.storage.db import read_session
from scimlink.storage.db import write_session

log = logging.getLogger("scimlink.storage.planner")

#: Rows SQLite's ANALYZE samples per index: enough for the planner, cheap on any table.
ANALYSIS_LIMIT = 1000


def analyze(sessions: sessionmaker[Session], tables: Sequence[str]) -> None:
    """Refresh the statistics of ``tables`` (names from our own schema, never user input)."""
    with write_session(sessions) as session:
        quote = session.get_bind().dialect.identifier_preparer.quote
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}"))
        for table in tables:
            session.execute(text(f"ANALYZE {quote(table)}"))


class StatsKeeper:
    """Analyses each of ``tables`` when it has grown ``growth`` times since its last analysis
    and holds at least ``minimum`` rows: a bulk change is planned from the right statistics
    within seconds, and a steady database is left alone."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        tables: Sequence[str],
        *,
        minimum: int = 500,
        growth: float = 2.0,
    ) -> None:
        with sessions() as session:
            self.dialect = session.get_bind().dialect.name
        self.enabled = self.dialect in ("sqlite", "postgresql")
        self.sessions = sessions
        self.tables = list(tables)
        self.minimum = minimum
        self.growth = growth
        #: SQLite: each table's size at its last analysis by this keeper.
        self.analysed_at: dict[str, int] = {}

    def _due_sqlite(self, session: Session, table: str) -> int | None:
        # The largest rowid: read from the end of the table's b-tree, no scan.
        largest = select(func.max(literal_column("rowid", Integer))).select_from(
            table_clause(table)
        )
        rows = int(session.execute(largest).scalar_one() or 0)
        threshold = max(self.minimum, self.analysed_at.get(table, 0) * self.growth)
        return rows if rows >= threshold else None

    def _due_postgresql(self, session: Session, table: str) -> int | None:
        found = session.execute(
            text(
                "SELECT n_live_tup, n_mod_since_analyze FROM pg_stat_user_tables"
                " WHERE relid = to_regclass(:table)"
            ),
            {"table": table},
        ).one_or_none()
        if found is None:
            return None
        live, changed = int(found[0]), int(found[1])
        # Doubled: the rows changed since the last analysis are at least those it saw.
        before = max(live - changed, 0)
        grown = changed >= self.minimum and changed >= before * (self.growth - 1)
        return live if grown else None

    def check(self) -> list[str]:
        """Analyse the tables that have grown enough; returns their names."""
        if not self.enabled:
            return []
        due: dict[str, int] = {}
        with read_session(self.sessions) as session:
            for table in self.tables:
                if self.dialect == "sqlite":
                    rows = self._due_sqlite(session, table)
                else:
                    rows = self._due_postgresql(session, table)
                if rows is not None:
                    due[table] = rows
        if due:
            analyze(self.sessions, list(due))
            self.analysed_at.update(due)
            log.info("planner statistics refreshed: %s", due)
        return list(due)

    def run(self, stop: threading.Event, every: float = 5.0) -> None:
        """Check every ``every`` seconds until ``stop`` is set; a failed check is logged."""
        while True:
            try:
                self.check()
            except Exception:
                log.exception("could not refresh the planner statistics; trying again later")
            if stop.wait(every):
                return

    def start(self, stop: threading.Event, every: float = 5.0) -> threading.Thread | None:
        """Run in a daemon thread until ``stop`` is set (nothing to do on other databases)."""
        if not self.enabled:
            return None
        thread = threading.Thread(
            target=self.run, args=(stop, every), name="scimlink-planner-stats", daemon=True
        )
        thread.start()
        return thread
