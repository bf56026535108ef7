"""Profiles and storages of a tenant. A new tenant gets a default of each (as inSync does)."""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.errors import ConflictError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.sp.models import Profile
from scimlink.sp.models import SpUser
from scimlink.sp.models import Storage
from scimlink.storage.base import utcnow

_Named = TypeVar("_Named", Profile, Storage)


def _new_name(session: Session, model: type[_Named], tenant_id: str, name: str, kind: str) -> str:
    """Names are non-empty and unique per tenant."""
    name = name.strip()
    if not name:
        raise InvalidInputError(f"A {kind} needs a non-empty name.")
    if session.execute(
        select(model.id).where(model.tenant_id == tenant_id, model.name == name)
    ).first():
        raise ConflictError(f"A {kind} named {name!r} already exists.")
    return name


def create_profile(
    session: Session,
    tenant_id: str,
    name: str,
    *,
    max_users: int | None = None,
    preserved_auto_delete_days: int | None = None,
    is_default: bool = False,
) -> Profile:
    name = _new_name(session, Profile, tenant_id, name, "profile")
    if max_users is not None and max_users < 0:
        raise InvalidInputError("The maximum number of users cannot be negative.")
    if preserved_auto_delete_days is not None and preserved_auto_delete_days < 1:
        raise InvalidInputError("The auto-delete period is at least one day.")
    profile = Profile(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        name=name,
        max_users=max_users,
        preserved_auto_delete_days=preserved_auto_delete_days,
        is_default=is_default,
        created=utcnow(),
    )
    session.add(profile)
    session.flush()
    return profile


def create_storage(
    session: Session, tenant_id: str, name: str, region: str, *, is_default: bool = False
) -> Storage:
    name = _new_name(session, Storage, tenant_id, name, "storage")
    storage = Storage(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        name=name,
        region=region,
        healthy=True,
        is_default=is_default,
        created=utcnow(),
    )
    session.add(storage)
    session.flush()
    return storage


def _by_ref(
    session: Session, model: type[_Named], tenant_id: str, ref: str | None, kind: str
) -> _Named:
    """A tenant's profile or storage by id or name; ``None`` means the tenant's default one."""
    query = select(model).where(model.tenant_id == tenant_id)
    if ref is None:
        query = query.where(model.is_default)
    else:
        query = query.where(or_(model.id == ref, model.name == ref))
    found = session.execute(query).scalars().first()
    if found is None:
        raise NotFoundError(
            f"No {kind} {ref!r} in this tenant." if ref else f"The tenant has no default {kind}."
        )
    return found


def find_profile(session: Session, tenant_id: str, ref: str | None) -> Profile:
    return _by_ref(session, Profile, tenant_id, ref, "profile")


def find_storage(session: Session, tenant_id: str, ref: str | None) -> Storage:
    return _by_ref(session, Storage, tenant_id, ref, "storage")


def list_profiles(session: Session, tenant_id: str) -> list[tuple[Profile, int]]:
    """Profiles with their licenses in use: Active users (a preserved user releases its license)."""
    counts = (
        select(SpUser.profile_id, func.count().label("users"))
        .where(SpUser.tenant_id == tenant_id, SpUser.state == "active")
        .group_by(SpUser.profile_id)
        .subquery()
    )
    rows = session.execute(
        select(Profile, func.coalesce(counts.c.users, 0))
        .outerjoin(counts, counts.c.profile_id == Profile.id)
        .where(Profile.tenant_id == tenant_id)
        .order_by(Profile.created)
    ).all()
    return [(profile, int(users)) for profile, users in rows]


def list_storages(session: Session, tenant_id: str) -> list[Storage]:
    return list(
        session.execute(
            select(Storage).where(Storage.tenant_id == tenant_id).order_by(Storage.created)
        ).scalars()
    )


def set_storage_health(session: Session, tenant_id: str, ref: str, healthy: bool) -> Storage:
    storage = find_storage(session, tenant_id, ref)
    storage.healthy = healthy
    session.flush()
    return storage


def edit_profile(
    session: Session,
    tenant_id: str,
    ref: str,
    *,
    name: str | None = None,
    max_users: int | None = None,
    preserved_auto_delete_days: int | None = None,
    clear_max_users: bool = False,
    clear_auto_delete: bool = False,
) -> Profile:
    """Change a profile's name, user limit or preserved-user auto-delete period."""
    profile = find_profile(session, tenant_id, ref)
    if name is not None and name.strip() != profile.name:
        profile.name = _new_name(session, Profile, tenant_id, name, "profile")
    if max_users is not None:
        if max_users < 0:
            raise InvalidInputError("The maximum number of users cannot be negative.")
        profile.max_users = max_users
    elif clear_max_users:
        profile.max_users = None
    if preserved_auto_delete_days is not None:
        if preserved_auto_delete_days < 1:
            raise InvalidInputError("The auto-delete period is at least one day.")
        profile.preserved_auto_delete_days = preserved_auto_delete_days
    elif clear_auto_delete:
        profile.preserved_auto_delete_days = None
    session.flush()
    return profile
