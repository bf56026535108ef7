"""What administrators do to accounts in the management console: preserve, activate, delete.

An account an administrator preserves cannot be reactivated from the IdP (the spec's rule);
only an administrator activates it again. Deleting removes the account and its data for good.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from scimlink.errors import ConflictError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.scim.resources import CORE_USER_SCHEMA
from scimlink.scim.text import fold
from scimlink.sp import profiles
from scimlink.sp.accounts import account_email
from scimlink.sp.models import Profile
from scimlink.sp.models import SpUser
from scimlink.sp.models import Storage
from scimlink.sp.models import Tenant
from scimlink.sp.scim_mappings import placement_in
from scimlink.sp.scim_mappings import refusal
from scimlink.storage.base import utcnow


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    user_name: str
    display_name: str | None
    email: str | None
    managed_by: str
    state: str
    preserved_by: str | None
    preserved_at: datetime | None
    deleted_in_idp: bool
    profile: str | None
    storage: str | None
    quota_gb: int | None

    def audit_view(self) -> dict[str, Any]:
        return {
            "userName": self.user_name,
            "displayName": self.display_name,
            "email": self.email,
            "state": self.state,
            "preservedBy": self.preserved_by,
            "managedBy": self.managed_by,
            "profile": self.profile,
        }


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
    storage = session.get(Storage, user.storage_id) if user.storage_id else None
    display = user.document.get("displayName")
    return Account(
        user.id,
        user.user_name,
        display if isinstance(display, str) else None,
        account_email(user.document),
        user.managed_by,
        user.state,
        user.preserved_by,
        user.preserved_at,
        user.scim_deleted and user.managed_by == "scim",
        profile.name if profile else None,
        storage.name if storage else None,
        user.quota_gb,
    )


def find_account(session: Session, tenant_id: str, ref: str) -> Account:
    return _account(session, _find(session, tenant_id, ref))


def add_account(
    session: Session,
    tenant_id: str,
    email: str,
    name: str,
    *,
    profile: str | None = None,
    storage: str | None = None,
    quota_gb: int | None = None,
    managed_by: str = "manual",
) -> Account:
    """Add an account by hand (or, modelled, from AD/LDAP). SCIM does not see it until the IdP
    provisions a user with the same userName or e-mail, which adopts it."""
    email = email.strip()
    if "@" not in email or len(email) > 320:
        raise InvalidInputError(f"{email!r} is not an e-mail address.")
    name = name.strip()
    if not name:
        raise InvalidInputError("An account needs a display name.")
    tenant = session.get(Tenant, tenant_id)
    assert tenant is not None
    if managed_by == "ldap" and tenant.provisioning != "ldap":
        raise ConflictError(f"Tenant {tenant.name!r} does not use AD/LDAP.")
    key = fold(email)
    if session.execute(
        select(SpUser.id).where(
            SpUser.tenant_id == tenant_id,
            or_(SpUser.email_key == key, SpUser.user_name_key == key),
        )
    ).first():
        raise ConflictError(f"A user with the e-mail address {email} already exists.")
    chosen_profile = profiles.find_profile(session, tenant_id, profile)
    chosen_storage = profiles.find_storage(session, tenant_id, storage)
    refused = refusal(session, placement_in(chosen_profile, chosen_storage, quota_gb))
    if refused is not None:
        raise ConflictError(refused[1])
    now = utcnow()
    user = SpUser(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        user_name=email,
        user_name_key=key,
        external_id=None,
        display_name_key=fold(name),
        active=True,
        created=now,
        last_modified=now,
        version=1,
        document={
            "schemas": [CORE_USER_SCHEMA],
            "userName": email,
            "displayName": name,
            "emails": [{"value": email, "primary": True}],
            "active": True,
        },
        profile_id=chosen_profile.id,
        storage_id=chosen_storage.id,
        quota_gb=quota_gb,
        state="active",
        scim_deleted=True,
        managed_by=managed_by,
        email_key=key,
    )
    session.add(user)
    session.flush()
    return _account(session, user)


def _touch(user: SpUser, *, active: bool) -> None:
    document = dict(user.document)
    document["active"] = active
    user.document = document
    user.active = active
    user.version += 1
    user.last_modified = utcnow()


def list_accounts(
    session: Session,
    tenant_id: str,
    *,
    state: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> list[Account]:
    """Accounts in creation order; ``after`` (the last id seen) pages by an index seek."""
    query = select(SpUser).where(SpUser.tenant_id == tenant_id)
    if state is not None:
        query = query.where(SpUser.state == state)
    if after is not None:
        query = query.where(SpUser.pk > _find(session, tenant_id, after).pk)
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
