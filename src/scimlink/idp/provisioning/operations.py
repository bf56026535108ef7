"""What administrators run on an application's provisioning: plan and sync, provision one user
now, reconcile against what the application really holds, and read the provisioning log.

Plans, syncs and reconciles walk users in keyed batches (never the whole directory in memory).
A reconcile reads the application page by page and enqueues only the pairs that differ, so an
unchanged application costs reads and no write call.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from scimlink.errors import ConflictError
from scimlink.errors import NotFoundError
from scimlink.idp import applications
from scimlink.idp import directory
from scimlink.idp import outbox
from scimlink.idp.models import Application
from scimlink.idp.models import Link
from scimlink.idp.models import LogEntry
from scimlink.idp.models import OutboxRow
from scimlink.idp.provisioning.desired import ENTERPRISE
from scimlink.idp.provisioning.engine import Engine
from scimlink.idp.provisioning.engine import Outcome
from scimlink.idp.provisioning.engine import load_pairs
from scimlink.idp.provisioning.engine import unchanged
from scimlink.storage.base import utcnow
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session

_BATCH = 500


def _user_ids(session: Session, app_id: str) -> Iterator[list[str]]:
    """Everyone the application may have to hear about: bound members and linked users."""
    wanted = set(applications.bound_user_ids(session, app_id))
    wanted.update(session.execute(select(Link.user_id).where(Link.app_id == app_id)).scalars())
    ordered = sorted(wanted)
    for start in range(0, len(ordered), _BATCH):
        yield ordered[start : start + _BATCH]


@dataclass(slots=True)
class Plan:
    create: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    deactivate: list[str] = field(default_factory=list)
    retry_failed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def to_dict(self, sample: int = 20) -> dict[str, Any]:
        return {
            "create": len(self.create),
            "update": len(self.update),
            "deactivate": len(self.deactivate),
            "retry_failed": len(self.retry_failed),
            "unchanged": self.unchanged,
            "examples": {
                "create": self.create[:sample],
                "update": self.update[:sample],
                "deactivate": self.deactivate[:sample],
                "retry_failed": self.retry_failed[:sample],
            },
        }


def plan(engine: Engine, app_ref: str) -> Plan:
    """What a sync would do, from the directory's side (no call to the application)."""
    result = Plan()
    with read_session(engine.sessions) as session:
        app = applications.find_app(session, app_ref)
        app_id = app.id
        batches = list(_user_ids(session, app_id))
    for batch in batches:
        with read_session(engine.sessions) as session:
            pairs = load_pairs(session, app_id, batch)
            for pair in pairs.values():
                link = pair.link
                if link is not None and link.state == "failed":
                    result.retry_failed.append(pair.username)
                elif unchanged(pair):
                    result.unchanged += 1
                elif not pair.desired.in_scope:
                    result.deactivate.append(pair.username)
                elif link is None or link.remote_id is None:
                    result.create.append(pair.username)
                else:
                    result.update.append(pair.username)
    return result


def enqueue_all(engine: Engine, app_ref: str, cause: str) -> int:
    """Make every pair of the application due (a full sync)."""
    with write_session(engine.sessions) as session:
        app = applications.find_app(session, app_ref)
        count = 0
        for batch in _user_ids(session, app.id):
            outbox.enqueue(session, app.id, batch, cause)
            count += len(batch)
        return count


def sync(
    engine: Engine, app_ref: str, *, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Run a full sync to completion in this process: everything due is processed now."""
    with read_session(engine.sessions) as session:
        app = applications.find_app(session, app_ref)
        if app.idm_state != "active":
            raise ConflictError(
                f"Identity Management of {app.label!r} is {app.idm_state}: "
                f"scimlink idp app idm activate {app.label!r} first."
            )
        app_id = app.id
    queued = enqueue_all(engine, app_ref, "sync")
    processed = engine.drain(app_id=app_id, progress=progress)
    with read_session(engine.sessions) as session:
        waiting = outbox.pending(session, app_id)
    return {"queued": queued, "processed": processed, **waiting}


def provision_one(engine: Engine, app_ref: str, user_ref: str) -> Outcome:
    """Provision one user now, in this process, and return each step."""
    with write_session(engine.sessions) as session:
        app = applications.find_app(session, app_ref)
        if app.idm_state != "active":
            raise ConflictError(
                f"Identity Management of {app.label!r} is {app.idm_state}: activate it first."
            )
        try:
            user_id = directory.find_user(session, user_ref).id
        except NotFoundError:
            link = session.execute(
                select(Link).where(Link.app_id == app.id, Link.username == user_ref)
            ).scalar_one_or_none()
            if link is None:
                raise
            user_id = link.user_id
        outbox.enqueue(session, app.id, [user_id], "provision now")
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.app_id == app.id, OutboxRow.user_id == user_id)
            .values(held=False, approved=True, due_at=utcnow())
        )
        claimed = outbox.claim(session, engine.worker, app_id=app.id, limit=1, user_id=user_id)
    if not claimed:
        raise ConflictError("Another worker is provisioning this user right now; try again.")
    return engine.process(claimed[0])


# -- reconcile -----------------------------------------------------------------------------------


def _project(resource: dict[str, Any], targets: list[str]) -> dict[str, Any]:
    """The mapped attributes of a SCIM user, comparable across directory and application."""
    view: dict[str, Any] = {}
    for target in targets:
        node: Any = resource
        path = target
        if target.startswith(f"{ENTERPRISE}:"):
            node = resource.get(ENTERPRISE) or {}
            path = target.removeprefix(f"{ENTERPRISE}:")
        if path == "emails":
            emails = node.get("emails") or []
            primary = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
            view[target] = (primary or {}).get("value")
            continue
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        view[target] = node
    return view


@dataclass(slots=True)
class Drift:
    read: int = 0
    differing: int = 0
    missing: int = 0
    examples: list[str] = field(default_factory=list)


def reconcile(engine: Engine, app_ref: str, *, page: int = 200) -> Drift:
    """Re-read the application and enqueue every pair whose remote state differs."""
    with read_session(engine.sessions) as session:
        app = applications.find_app(session, app_ref)
        session.expunge(app)
    drift = Drift()
    targets = [rule["target"] for rule in app.attribute_map]
    kept = list(dict.fromkeys([*targets, "active"]))
    # Only the mapped attributes of each remote user are kept while the directory is compared.
    remote: dict[str, dict[str, Any]] = {}
    with engine.target(app) as target:
        start = 1
        while True:
            exchange = target.list_page(start, page)
            if exchange.status != 200 or not isinstance(exchange.response, dict):
                raise ConflictError(f"Reading {app.label!r} failed: {exchange.detail}")
            resources = exchange.response.get("Resources") or []
            for resource in resources:
                remote[str(resource.get("id"))] = _project(resource, kept)
            drift.read += len(resources)
            total = int(exchange.response.get("totalResults") or 0)
            start += len(resources)
            if not resources or start > total:
                break
    stale: list[str] = []
    with read_session(engine.sessions) as session:
        batches = list(_user_ids(session, app.id))
    for batch in batches:
        with read_session(engine.sessions) as session:
            pairs = load_pairs(session, app.id, batch)
            for user_id, pair in pairs.items():
                link = pair.link
                if link is None or link.remote_id is None:
                    if pair.desired.in_scope:
                        stale.append(user_id)
                        drift.missing += 1
                    continue
                found = remote.get(link.remote_id)
                if found is None:
                    if pair.desired.in_scope:
                        stale.append(user_id)
                        drift.missing += 1
                    continue
                # A user deleted from the directory is only deactivated (its attributes are
                # gone): whether the application holds it inactive is all that can drift.
                compared = targets if pair.user is not None else ["active"]
                if {k: found[k] for k in compared} != _project(pair.desired.resource, compared):
                    stale.append(user_id)
                    drift.differing += 1
                    if len(drift.examples) < 20:
                        drift.examples.append(pair.username)
    if stale:
        with write_session(engine.sessions) as session:
            for start in range(0, len(stale), _BATCH):
                chunk = stale[start : start + _BATCH]
                # Forget what was accepted, so the worker sends the desired state again.
                session.execute(
                    update(Link)
                    .where(Link.app_id == app.id, Link.user_id.in_(chunk))
                    .values(accepted_hash=None)
                )
                outbox.enqueue(session, app.id, chunk, "reconcile: drift")
    return drift


# -- the provisioning log ------------------------------------------------------------------------


def log_entries(
    session: Session,
    app_ref: str,
    *,
    user: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    app = applications.find_app(session, app_ref)
    query = select(LogEntry).where(LogEntry.app_id == app.id)
    if user is not None:
        try:
            user_id = directory.find_user(session, user).id
            query = query.where(LogEntry.user_id == user_id)
        except NotFoundError:
            query = query.where(LogEntry.username == user)
    if before is not None:
        query = query.where(LogEntry.pk < before)
    rows = session.execute(query.order_by(LogEntry.pk.desc()).limit(limit)).scalars()
    return [
        {
            "id": row.pk,
            "at": row.at.isoformat(),
            "user": row.username,
            "cause": row.cause,
            "step": row.step,
            "request": {"method": row.method, "url": row.url, "body": row.request}
            if row.method
            else None,
            "response": {"status": row.status, "body": row.response} if row.method else None,
            "decision": row.decision,
            "duration_ms": round(row.duration_ms, 1) if row.duration_ms is not None else None,
            "correlation_id": row.correlation_id,
        }
        for row in rows
    ]


def links(
    session: Session, app_ref: str, *, state: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    app: Application = applications.find_app(session, app_ref)
    query = select(Link).where(Link.app_id == app.id)
    if state is not None:
        query = query.where(Link.state == state)
    rows = session.execute(query.order_by(Link.username).limit(limit)).scalars()
    return [
        {
            "user": row.username,
            "remote_id": row.remote_id,
            "state": row.state,
            "detail": row.detail,
            "updated": row.updated.isoformat(),
        }
        for row in rows
    ]
