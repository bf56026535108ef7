"""Bulk-seed users straight into the app half's database, row for row as ``UserService.create``.

Going through HTTP would take hours at a million users. Documents come from
``scimlink.sp.users._document_from`` run once on a template payload whose only varying part is a
seven-digit number; every row substitutes its own number. A sample of rows is checked against a
real ``_document_from`` call, so a change in the product's document shape fails the seeding
instead of silently benchmarking different rows. Indexed columns and e-mail rows come from the
product's own ``_indexed`` and ``_email_rows``; the tenant's ``user_count`` (kept by create and
delete since migration 0002) grows in the same transaction as the rows.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import Dialect
from workload import PLACEHOLDER
from workload import number
from workload import payload

from scimlink.config import normalise_database_url
from scimlink.sp.models import SpUser
from scimlink.sp.models import SpUserEmail
from scimlink.sp.users import _document_from
from scimlink.sp.users import _email_rows
from scimlink.sp.users import _indexed
from scimlink.storage.db import make_engine

_BATCH = 50_000
_CHECKED_SAMPLES = 200

USER_COLUMNS = (
    "pk",
    "id",
    "tenant_id",
    "user_name",
    "user_name_key",
    "external_id",
    "display_name_key",
    "active",
    "created",
    "last_modified",
    "version",
    "document",
)
EMAIL_COLUMNS = ("pk", "user_pk", "tenant_id", "value_key", "type_key", "primary")


@dataclass(frozen=True, slots=True)
class SeededUsers:
    """What the load needs to know about the seeded population."""

    ids: list[str]
    seconds: float


class _Rows:
    """Yields (user row, e-mail rows) in batches, as plain Python values."""

    def __init__(
        self, tenant_id: str, dialect: Dialect, first_user_pk: int, first_email_pk: int
    ) -> None:
        self.tenant_id = tenant_id
        self.dialect = dialect
        self.first_user_pk = first_user_pk
        self.first_email_pk = first_email_pk
        # The JSON text the product's engine binds (its serializer), or plain JSON for jsonb.
        self.document_processor = SpUser.document.type.dialect_impl(dialect).bind_processor(dialect)
        self.template = self.serialize(_document_from(payload(0), replacement=False))
        if self.template.count(PLACEHOLDER) == 0:
            raise RuntimeError("the template document does not contain the placeholder")
        # UserService stores times at the millisecond precision meta shows.
        start = datetime.now(UTC) - timedelta(days=30)
        self.start = start.replace(microsecond=start.microsecond // 1000 * 1000)

    def serialize(self, document: dict[str, Any]) -> str:
        bound = self.document_processor(document) if self.document_processor else None
        return bound if isinstance(bound, str) else json.dumps(document)

    def document_text(self, index: int) -> str:
        return self.template.replace(PLACEHOLDER, number(index))

    def check(self, count: int) -> None:
        """Compare sampled rows with what the product itself makes of the same payload."""
        rng = random.Random(7)
        samples = {0, count - 1, *(rng.randrange(count) for _ in range(_CHECKED_SAMPLES))}
        for index in samples:
            expected = _document_from(payload(index), replacement=False)
            text = self.document_text(index)
            if json.loads(text) != expected or self.serialize(expected) != text:
                raise RuntimeError(f"seeded document {index} differs from UserService.create's")

    def batches(self, count: int) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
        users: list[tuple[Any, ...]] = []
        emails: list[tuple[Any, ...]] = []
        email_pk = self.first_email_pk
        for index in range(count):
            pk = self.first_user_pk + index
            text = self.document_text(index)
            document = json.loads(text)
            columns = _indexed(document)
            moment = self.start + timedelta(milliseconds=index)
            users.append(
                (
                    pk,
                    str(uuid.uuid4()),
                    self.tenant_id,
                    columns["user_name"],
                    columns["user_name_key"],
                    columns["external_id"],
                    columns["display_name_key"],
                    columns["active"],
                    moment,
                    moment,
                    1,
                    text,
                )
            )
            for row in _email_rows(self.tenant_id, pk, document):
                emails.append((email_pk, *(row[c] for c in EMAIL_COLUMNS[1:])))
                email_pk += 1
            if len(users) == _BATCH:
                yield users, emails
                users, emails = [], []
        if users:
            yield users, emails


def _processors(dialect: Dialect, table: Any, columns: tuple[str, ...]) -> list[Any]:
    return [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]


def _processed(
    rows: list[tuple[Any, ...]], processors: list[Any], skip: set[int]
) -> list[tuple[Any, ...]]:
    active = [(i, p) for i, p in enumerate(processors) if p is not None and i not in skip]
    out = []
    for row in rows:
        values = list(row)
        for i, process in active:
            values[i] = process(values[i])
        out.append(tuple(values))
    return out


def seed_sqlite(path: str, tenant_id: str, count: int) -> SeededUsers:
    """Insert ``count`` users in large transactions (the server is not running yet)."""
    began = time.perf_counter()
    dialect = _product_dialect(f"sqlite:///{path}")
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-1048576")
        connection.execute("PRAGMA temp_store=MEMORY")
        user_pk = connection.execute("SELECT coalesce(max(pk), 0) + 1 FROM sp_users").fetchone()
        email_pk = connection.execute(
            "SELECT coalesce(max(pk), 0) + 1 FROM sp_user_emails"
        ).fetchone()
        rows = _Rows(tenant_id, dialect, user_pk[0], email_pk[0])
        rows.check(count)
        user_processors = _processors(dialect, SpUser.__table__, USER_COLUMNS)
        email_processors = _processors(dialect, SpUserEmail.__table__, EMAIL_COLUMNS)
        insert_users = _insert_sql("sp_users", USER_COLUMNS, "?")
        insert_emails = _insert_sql("sp_user_emails", EMAIL_COLUMNS, "?")
        ids: list[str] = []
        for users, emails in rows.batches(count):
            ids.extend(row[1] for row in users)
            connection.execute("BEGIN")
            # The document is already the JSON text the JSON type would bind (checked above).
            connection.executemany(
                insert_users,
                _processed(users, user_processors, skip={USER_COLUMNS.index("document")}),
            )
            connection.executemany(insert_emails, _processed(emails, email_processors, set()))
            if _has_user_count(connection.execute("PRAGMA table_info(sp_tenants)").fetchall()):
                connection.execute(_ADD_TO_COUNT.replace("%s", "?"), (len(users), tenant_id))
            connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return SeededUsers(ids, time.perf_counter() - began)


def seed_postgresql(conninfo: str, tenant_id: str, count: int) -> SeededUsers:
    """COPY ``count`` users in, fix the sequences, then VACUUM ANALYZE as autovacuum would."""
    began = time.perf_counter()
    dialect = _product_dialect(conninfo)
    ids: list[str] = []
    with psycopg.connect(conninfo) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(pk), 0) + 1 FROM sp_users")
            user_pk = _scalar(cursor.fetchone())
            cursor.execute("SELECT coalesce(max(pk), 0) + 1 FROM sp_user_emails")
            email_pk = _scalar(cursor.fetchone())
        rows = _Rows(tenant_id, dialect, user_pk, email_pk)
        rows.check(count)
        with connection.cursor() as cursor:
            for users, emails in rows.batches(count):
                ids.extend(row[1] for row in users)
                with cursor.copy(_copy_sql("sp_users", USER_COLUMNS)) as copy:
                    for row in users:
                        copy.write_row(row)
                with cursor.copy(_copy_sql("sp_user_emails", EMAIL_COLUMNS)) as copy:
                    for row in emails:
                        copy.write_row(row)
                cursor.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'sp_tenants'"
                )
                if _has_user_count(cursor.fetchall()):
                    cursor.execute(_ADD_TO_COUNT, (len(users), tenant_id))
            for table in ("sp_users", "sp_user_emails"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'pk'), "  # noqa: S608
                    f"(SELECT max(pk) FROM {table}))"
                )
        connection.commit()
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE sp_users")
        connection.execute("VACUUM ANALYZE sp_user_emails")
    return SeededUsers(ids, time.perf_counter() - began)


#: Kept by UserService.create and .delete since migration 0002 (unfiltered totalResults).
_ADD_TO_COUNT = "UPDATE sp_tenants SET user_count = user_count + %s WHERE id = %s"


def _has_user_count(columns: list[tuple[Any, ...]]) -> bool:
    """Whether ``sp_tenants`` has the counter (PRAGMA table_info or information_schema rows)."""
    return any("user_count" in row for row in columns)


def _product_dialect(url: str) -> Dialect:
    """The dialect of the engine the product would build for ``url`` (its JSON serializer)."""
    engine = make_engine(normalise_database_url(url))
    dialect = engine.dialect
    engine.dispose()
    return dialect


def _scalar(row: tuple[Any, ...] | None) -> int:
    assert row is not None
    return int(row[0])


def _quoted(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in columns)


def _insert_sql(table: str, columns: tuple[str, ...], mark: str) -> str:
    marks = ", ".join(mark for _ in columns)
    return f"INSERT INTO {table} ({_quoted(columns)}) VALUES ({marks})"  # noqa: S608


def _copy_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"COPY {table} ({_quoted(columns)}) FROM STDIN"
