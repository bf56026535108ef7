"""The audit trail: every change by an administrator, the IdP or a scheduled job.

An entry is written in the same transaction as the change it records, so there is no change
without its entry and no entry for a change that rolled back. A refused change (an IdP trying to
reactivate an account an administrator preserved) is recorded in a transaction of its own,
after the request's transaction rolled back.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.scim.errors import ScimError
from scimlink.sp.models import AuditEntry
from scimlink.storage.base import utcnow

_AUDIT: Table = AuditEntry.__table__  # type: ignore[assignment]
_INSERT = insert(_AUDIT)
_CORRELATION = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_correlation_id(offered: str | None = None) -> str:
    """The caller's correlation id when it is a sane token, else a fresh one."""
    if offered and _CORRELATION.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: ``admin:<email>``, ``scim:<token hint>``, ``cli:<os user>`` or ``system:<job>``."""

    name: str
    role: str
    correlation_id: str = field(default_factory=new_correlation_id)


@dataclass(frozen=True, slots=True)
class Change:
    action: str
    target_type: str
    target_id: str | None
    target: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    outcome: str = "done"
    detail: str | None = None


def record(session: Session, tenant_id: str, actor: Actor, change: Change) -> None:
    session.connection().execute(
        _INSERT,
        {
            "tenant_id": tenant_id,
            "at": utcnow(),
            "actor": actor.name[:400],
            "action": change.action,
            "target_type": change.target_type,
            "target_id": change.target_id,
            "target": change.target[:512],
            "before": change.before,
            "after": change.after,
            "outcome": change.outcome,
            "detail": change.detail[:1000] if change.detail else None,
            "correlation_id": actor.correlation_id,
        },
    )


class RefusedChange(ScimError):
    """A SCIM error whose refusal itself belongs in the audit trail."""

    def __init__(self, error: ScimError, change: Change) -> None:
        super().__init__(error.status, error.detail, error.scim_type)
        self.change = change


@dataclass(frozen=True, slots=True)
class EntryView:
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    outcome: str
    detail: str | None
    correlation_id: str


def entries(
    session: Session,
    tenant_id: str,
    *,
    actor: str | None = None,
    action: str | None = None,
    target_id: str | None = None,
    correlation_id: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[EntryView]:
    """Newest first; page with ``before_id`` (the last id seen), an index seek at any depth."""
    query = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if target_id is not None:
        query = query.where(AuditEntry.target_id == target_id)
    if correlation_id is not None:
        query = query.where(AuditEntry.correlation_id == correlation_id)
    if before_id is not None:
        query = query.where(AuditEntry.pk < before_id)
    rows = session.execute(query.order_by(AuditEntry.pk.desc()).limit(limit)).scalars()
    return [
        EntryView(
            row.pk,
            row.at,
            row.actor,
            row.action,
            row.target_type,
            row.target_id,
            row.target,
            row.before,
            row.after,
            row.outcome,
            row.detail,
            row.correlation_id,
        )
        for row in rows
    ]
