"""``INSERT … ON CONFLICT DO UPDATE`` for the two databases we run on, many rows per statement."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

#: Builds the ``SET`` clause from the statement's ``excluded`` namespace (the proposed row).
SetClause = Callable[[Any], dict[str, ColumnElement[Any] | Any]]

_CHUNK = 500


def upsert(
    session: Session,
    model: type[Any],
    rows: Sequence[dict[str, Any]],
    *,
    keys: list[str],
    set_: SetClause | None = None,
) -> None:
    """Insert ``rows``, or update the row with the same ``keys``.

    By default every other given column takes the proposed value; ``set_`` decides otherwise.
    Both dialects share the syntax (PostgreSQL ≥ 9.5, SQLite ≥ 3.24).
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    # On the table, not the mapped class: a Core executemany, without the ORM's bulk path.
    statement: Any = (pg_insert if dialect == "postgresql" else sqlite_insert)(model.__table__)
    excluded = statement.excluded
    values = (
        set_(excluded)
        if set_ is not None
        else {name: excluded[name] for name in rows[0] if name not in keys}
    )
    statement = statement.on_conflict_do_update(index_elements=keys, set_=values)
    for start in range(0, len(rows), _CHUNK):
        session.connection().execute(statement, list(rows[start : start + _CHUNK]))
