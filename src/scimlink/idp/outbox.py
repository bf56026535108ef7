"""The transactional outbox: one row per (application, user) pair that needs attention.

Writers enqueue in their own transaction; workers claim due rows with a lease (PostgreSQL:
``FOR UPDATE SKIP LOCKED``, so any number of workers share the queue; SQLite: one writer at a
time). A pair has at most one row: a new cause bumps its ``generation`` and makes it due now, so
bursts of changes coalesce into one pass over the latest state.

A single administrator action that would deactivate more of an application's users than its
threshold holds those rows for approval (``idp app approve`` / ``reject``).

Claims are per application: a worker picks one of the open applications with due rows at
random, then takes that application's rows in ``due_at`` order through the index
``(app_id, held, due_at, pk)``. So one application's backlog (a 100 000-user initial sync at
20 pairs a second) never delays another's changes, and the rows of a paused, deactivated or
quarantined application are never read by a claim, however many wait.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import Table
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm import Session

from scimlink.idp.models import Application
from scimlink.idp.models import Binding
from scimlink.idp.models import DirectoryUser
from scimlink.idp.models import Link
from scimlink.idp.models import Membership
from scimlink.idp.models import OutboxRow
from scimlink.storage.base import utcnow
from scimlink.storage.upsert import upsert

_CHUNK = 500
_LINKS: Table = Link.__table__  # type: ignore[assignment]


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def in_scope(session: Session, app_id: str, user_ids: list[str]) -> set[str]:
    """Which of ``user_ids`` the application should hold as active: activated members of a
    group bound to it (users are implicitly denied otherwise)."""
    found: set[str] = set()
    for chunk in _chunks(user_ids):
        found.update(
            session.execute(
                select(Membership.user_id)
                .join(Binding, Binding.group_id == Membership.group_id)
                .join(DirectoryUser, DirectoryUser.id == Membership.user_id)
                .where(
                    Binding.app_id == app_id,
                    DirectoryUser.state == "activated",
                    Membership.user_id.in_(chunk),
                )
            ).scalars()
        )
    return found


def _which(
    session: Session, column: InstrumentedAttribute[str], user_ids: list[str], *where: Any
) -> set[str]:
    """Which of ``user_ids`` (in ``column``) meet ``where``, a chunk of ids per query."""
    found: set[str] = set()
    for chunk in _chunks(user_ids):
        found.update(session.execute(select(column).where(*where, column.in_(chunk))).scalars())
    return found


def _active_links(session: Session, app_id: str, user_ids: list[str]) -> set[str]:
    return _which(session, Link.user_id, user_ids, Link.app_id == app_id, Link.state == "active")


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    upsert(
        session,
        OutboxRow,
        rows,
        keys=["app_id", "user_id"],
        set_=lambda excluded: {
            "generation": OutboxRow.generation + 1,
            "cause": excluded.cause,
            "due_at": excluded.due_at,
            "attempts": 0,
            # A row an administrator already let through stays released until processed.
            "held": excluded.held & ~OutboxRow.approved,
            "last_error": None,
        },
    )


def _held(session: Session, app_id: str, user_ids: list[str]) -> set[str]:
    return _which(
        session, OutboxRow.user_id, user_ids, OutboxRow.app_id == app_id, OutboxRow.held.is_(True)
    )


def enqueue(session: Session, app_id: str, user_ids: Iterable[str], cause: str) -> int:
    """Make the pairs due now; hold a mass deactivation. Returns how many rows are held.

    Every user a mass action deactivates is held, including one whose row was already due
    for another cause; a held user stays held through later causes for as long as the pair
    would still deactivate it (coming back into scope releases it).
    """
    users = sorted(set(user_ids))
    if not users:
        return 0
    app = session.get(Application, app_id)
    assert app is not None
    leaving = _active_links(session, app_id, users) - in_scope(session, app_id, users)
    mass = len(leaving) > app.mass_deactivation_threshold
    hold = leaving if mass else leaving & _held(session, app_id, sorted(leaving))
    now = utcnow()
    _upsert(
        session,
        [
            {
                "app_id": app_id,
                "user_id": user_id,
                "cause": cause[:255],
                "due_at": now,
                "held": user_id in hold,
                "generation": 1,
                "attempts": 0,
                "created": now,
            }
            for user_id in users
        ],
    )
    # Approved rows among them stayed released.
    return len(_held(session, app_id, sorted(hold))) if hold else 0


def enqueue_users(session: Session, user_ids: list[str], cause: str) -> None:
    """Every application that may hold these users: bound through a group, or already linked."""
    pairs: dict[str, set[str]] = {}
    for chunk in _chunks(user_ids):
        bound = session.execute(
            select(Binding.app_id, Membership.user_id)
            .join(Membership, Membership.group_id == Binding.group_id)
            .where(Membership.user_id.in_(chunk))
        ).all()
        linked = session.execute(
            select(Link.app_id, Link.user_id).where(Link.user_id.in_(chunk))
        ).all()
        for app_id, user_id in [*bound, *linked]:
            pairs.setdefault(app_id, set()).add(user_id)
    for app_id, users in pairs.items():
        enqueue(session, app_id, users, cause)


def enqueue_after_scope_change(
    session: Session, group_id: str, user_ids: list[str], cause: str
) -> None:
    """A group's membership changed: the applications bound to it re-check those users."""
    if not user_ids:
        return
    apps = session.execute(select(Binding.app_id).where(Binding.group_id == group_id)).scalars()
    for app_id in list(apps):
        enqueue(session, app_id, user_ids, cause)


# -- workers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    pk: int
    app_id: str
    user_id: str
    generation: int
    cause: str
    attempts: int


def _claimable(now: datetime) -> list[Any]:
    """A row a worker may take now: due, not held, not leased."""
    return [
        OutboxRow.held.is_(False),
        OutboxRow.due_at <= now,
        or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now),
    ]


def _open(now: datetime) -> list[Any]:
    """An application the engine may call: IdM active and not quarantined."""
    return [
        Application.idm_state == "active",
        or_(Application.quarantined_until.is_(None), Application.quarantined_until <= now),
    ]


def _due(now: datetime, app_id: str, user_id: str | None) -> list[Any]:
    """One application's rows a worker may take now (the application open)."""
    where: list[Any] = [OutboxRow.app_id == app_id, *_claimable(now), *_open(now)]
    if user_id is not None:
        where.append(OutboxRow.user_id == user_id)
    return where


def due_apps(session: Session, *, now: datetime) -> list[str]:
    """The open applications with a row to claim now, in random order (a worker claims from
    the first, so every application waiting gets its turn, whatever its backlog).

    One probe of the claim's index per open application (the applications table is small),
    none into a closed one's rows.
    """
    waiting = exists().where(OutboxRow.app_id == Application.id, *_claimable(now))
    apps = list(session.execute(select(Application.id).where(*_open(now), waiting)).scalars())
    random.shuffle(apps)
    return apps


def due_count(session: Session, *, now: datetime, cap: int, app_id: str) -> int:
    """How many of an application's rows a worker could claim now, counted up to ``cap`` (an
    index walk of at most ``cap`` entries, whatever the backlog)."""
    due = (
        select(OutboxRow.pk)
        .join(Application, Application.id == OutboxRow.app_id)
        .where(*_due(now, app_id, None))
        .limit(cap)
        .subquery()
    )
    return int(session.execute(select(func.count()).select_from(due)).scalar_one())


def claim(
    session: Session,
    worker: str,
    *,
    now: datetime | None = None,
    limit: int = 50,
    lease: timedelta = timedelta(minutes=2),
    app_id: str,
    user_id: str | None = None,
) -> list[Claimed]:
    """Lease an open application's due rows, first due first (Core statements: a worker
    claims many times a second, and ORM objects would only be read and thrown away).

    Workers take the application from :func:`due_apps`.
    """
    now = now or utcnow()
    query = (
        select(
            OutboxRow.pk,
            OutboxRow.app_id,
            OutboxRow.user_id,
            OutboxRow.generation,
            OutboxRow.cause,
            OutboxRow.attempts,
        )
        .join(Application, Application.id == OutboxRow.app_id)
        .where(*_due(now, app_id, user_id))
        .order_by(OutboxRow.due_at, OutboxRow.pk)
        .limit(limit)
        .with_for_update(skip_locked=True, of=OutboxRow)
    )
    claimed = [Claimed(*row) for row in session.execute(query)]
    if claimed:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.pk.in_([item.pk for item in claimed]))
            .values(claimed_until=now + lease, claimed_by=worker)
            .execution_options(synchronize_session=False)
        )
    return claimed


def mark_pending(session: Session, claimed: list[Claimed]) -> None:
    """Write ahead, in the claim's transaction: a claimed pair about to be created for the
    first time gets a ``pending`` link, so that if the create's answer is lost or the worker
    dies, a later pass looks the user up instead of assuming it was never sent."""
    by_app: dict[str, list[str]] = {}
    for item in claimed:
        by_app.setdefault(item.app_id, []).append(item.user_id)
    for app_id, user_ids in by_app.items():
        linked = set(
            session.execute(
                select(Link.user_id).where(Link.app_id == app_id, Link.user_id.in_(user_ids))
            ).scalars()
        )
        new = in_scope(session, app_id, [u for u in user_ids if u not in linked])
        if not new:
            continue
        names = session.execute(
            select(DirectoryUser.id, DirectoryUser.username).where(DirectoryUser.id.in_(new))
        ).all()
        now = utcnow()
        session.connection().execute(
            insert(_LINKS),
            [
                {
                    "app_id": app_id,
                    "user_id": user_id,
                    "username": name,
                    "state": "pending",
                    "updated": now,
                }
                for user_id, name in names
            ],
        )


def complete(session: Session, claimed: Claimed) -> None:
    complete_many(session, [claimed])


def complete_many(session: Session, claimed: list[Claimed]) -> None:
    """Done with these generations; a row whose generation grew since (a newer cause) is
    released for another pass instead of deleted."""
    if not claimed:
        return
    # Core executemany on the connection: one statement for the whole batch.
    session.connection().execute(
        delete(OutboxRow).where(
            OutboxRow.pk == bindparam("done_pk"),
            OutboxRow.generation == bindparam("done_gen"),
        ),
        [{"done_pk": item.pk, "done_gen": item.generation} for item in claimed],
    )
    release_many(session, claimed)


def release(session: Session, claimed: Claimed) -> None:
    release_many(session, [claimed])


def release_many(session: Session, claimed: list[Claimed]) -> None:
    pks = [item.pk for item in claimed]
    for start in range(0, len(pks), _CHUNK):
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.pk.in_(pks[start : start + _CHUNK]))
            .values(claimed_until=None, claimed_by=None)
        )


def retry(session: Session, claimed: Claimed, due_at: datetime, error: str) -> None:
    """Try again at ``due_at`` unless a newer cause already made the row due."""
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.pk == claimed.pk, OutboxRow.generation == claimed.generation)
        .values(
            due_at=due_at,
            attempts=OutboxRow.attempts + 1,
            last_error=error[:1000],
            claimed_until=None,
            claimed_by=None,
        )
    )
    release(session, claimed)


def pending(session: Session, app_id: str) -> dict[str, int]:
    rows = session.execute(
        select(OutboxRow.held, func.count())
        .where(OutboxRow.app_id == app_id)
        .group_by(OutboxRow.held)
    ).all()
    counts = {"due": 0, "held": 0}
    for held, n in rows:
        counts["held" if held else "due"] += int(n)
    return counts


def approve(session: Session, app_id: str) -> int:
    """Release held deactivations."""
    result = session.execute(
        update(OutboxRow)
        .where(OutboxRow.app_id == app_id, OutboxRow.held.is_(True))
        .values(held=False, approved=True, due_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0))


def reject(session: Session, app_id: str) -> int:
    """Drop held deactivations (the users stay as the application has them)."""
    result = session.execute(
        delete(OutboxRow).where(and_(OutboxRow.app_id == app_id, OutboxRow.held.is_(True)))
    )
    return int(getattr(result, "rowcount", 0))
