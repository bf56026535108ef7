"""What administrators do to accounts in the management console: preserve, activate, delete.

An account an administrator preserves cannot be reactivated from the IdP (the spec's rule);
only an administrator activates it again. Deleting removes the account and its data for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from scimlink.errors import NotFoundError
from scimlink.scim.text import fold
from scimlink.sp.models import Profile
from scimlink.sp.models import SpUser
from scimlink.sp.models import Tenant
from scimlink.storage.base import utcnow


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    user_name: str
    state: str
    preserved_by: str | None
    preserved_at: datetime | None
    deleted_in_idp: bool
    profile: str | None


def _find(session: Session, tenant_id: str, ref: str) -> SpUser:
    user = session.execute(
        select(SpUser).where(
            SpUser.tenant_id == tenant_id, or_(SpUser.id == ref, SpUser.user_name_key == fold(ref))
        )
    ).scalar_one_or_none()
    if user is None:
        raise NotFoundError(f"No user {ref!r} in this tenant.")
    return user


def _account(session: Session, user: SpUser) -> Account:
    profile = session.get(Profile, user.profile_id) if user.profile_id else None
    return Account(
        user.id,
        user.user_name,
        user.state,
        user.preserved_by,
        user.preserved_at,
        user.scim_deleted,
        profile.name if profile else None,
    )


def _touch(user: SpUser, *, active: bool) -> None:
    document = dict(user.document)
    document["active"] = active
    user.document = document
    user.active = active
    user.version += 1
    user.last_modified = utcnow()


def list_accounts(
    session: Session, tenant_id: str, *, state: str | None = None, limit: int = 100
) -> list[Account]:
    query = select(SpUser).where(SpUser.tenant_id == tenant_id)
    if state is not None:
        query = query.where(SpUser.state == state)
    users = session.execute(query.order_by(SpUser.pk).limit(limit)).scalars()
    return [_account(session, user) for user in users]


def preserve(session: Session, tenant_id: str, ref: str) -> Account:
    """Preserve by the administrator: license released, data kept, the IdP cannot reactivate."""
    user = _find(session, tenant_id, ref)
    user.state = "preserved"
    user.preserved_by = "admin"
    user.preserved_at = user.preserved_at or utcnow()
    _touch(user, active=False)
    session.flush()
    return _account(session, user)


def activate(session: Session, tenant_id: str, ref: str) -> Account:
    """Make a preserved account Active again, whoever preserved it."""
    user = _find(session, tenant_id, ref)
    user.state = "active"
    user.preserved_by = None
    user.preserved_at = None
    _touch(user, active=True)
    session.flush()
    return _account(session, user)


def delete(session: Session, tenant_id: str, ref: str) -> None:
    """Delete the account and its data for good."""
    user = _find(session, tenant_id, ref)
    if not user.scim_deleted:
        session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(user_count=Tenant.user_count - 1)
        )
    session.delete(user)
    session.flush()


def license_counts(session: Session, tenant_id: str) -> dict[str, int]:
    """Accounts by state: Active users hold a license, preserved ones do not."""
    rows = session.execute(
        select(SpUser.state, func.count())
        .where(SpUser.tenant_id == tenant_id)
        .group_by(SpUser.state)
    ).all()
    counts = {"active": 0, "preserved": 0}
    counts.update({state: int(n) for state, n in rows})
    return counts
