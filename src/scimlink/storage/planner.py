"""SQLite's query-planner statistics, kept current as the data grows.

Without statistics SQLite assumes that an equality on an index's first column narrows the rows
a lot. Most of our indexes start with ``tenant_id``, so for ``userName eq "a" or userName eq
"b"`` ordered by ``pk`` it walks the tenant's whole ``(tenant_id, pk)`` index to avoid sorting a
few rows, instead of probing the unique ``(tenant_id, user_name_key)`` index: every such lookup
reads every user of the tenant. ``ANALYZE`` tells the planner how the rows really spread
(https://sqlite.org/lang_analyze.html, "Approximate ANALYZE For Large Databases"); with
``analysis_limit`` it samples each index, so its cost stays bounded however large tables grow.

PostgreSQL keeps its statistics itself (autovacuum's auto-analyze): nothing to do there.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.storage.db import read_session
from scimlink.storage.db import write_session

log = logging.getLogger("scimlink.storage.planner")

#: Rows ANALYZE samples per index: enough for the planner, cheap on any table.
ANALYSIS_LIMIT = 1000


def analyze(sessions: sessionmaker[Session]) -> None:
    """Refresh the statistics of every table (SQLite; a no-op elsewhere)."""
    with write_session(sessions) as session:
        if session.get_bind().dialect.name != "sqlite":
            return
        session.execute(text(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}"))
        session.execute(text("ANALYZE"))


class StatsKeeper:
    """Runs :func:`analyze` whenever the table of ``key`` (its integer primary key) has grown
    ``growth`` times since the last run and holds at least ``minimum`` rows: a bulk load is
    planned from the right statistics within seconds, and a steady database is left alone."""

    def __init__(
        self,
        engine: Engine,
        sessions: sessionmaker[Session],
        key: ColumnElement[Any] | QueryableAttribute[Any],
        *,
        minimum: int = 500,
        growth: float = 2.0,
    ) -> None:
        self.enabled = engine.dialect.name == "sqlite"
        self.sessions = sessions
        self.key = key
        self.minimum = minimum
        self.growth = growth
        #: The table's size at the last analysis (0: not analysed by this keeper yet).
        self.analysed_at = 0

    def rows(self) -> int:
        """The table's size as its largest key: read from the index's end, no scan."""
        with read_session(self.sessions) as session:
            return int(session.execute(select(func.max(self.key))).scalar_one() or 0)

    def check(self) -> bool:
        """Analyse if the table has grown enough; True when it did."""
        if not self.enabled:
            return False
        rows = self.rows()
        if rows < max(self.minimum, self.analysed_at * self.growth):
            return False
        analyze(self.sessions)
        log.info("planner statistics refreshed at %d rows (%s)", rows, self.key)
        self.analysed_at = rows
        return True

    def run(self, stop: threading.Event, every: float = 5.0) -> None:
        """Check every ``every`` seconds until ``stop`` is set; a failed check is logged."""
        while True:
            try:
                self.check()
            except Exception:
                log.exception("could not refresh the planner statistics; trying again later")
            if stop.wait(every):
                return
