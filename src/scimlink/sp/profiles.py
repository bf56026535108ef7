"""Profiles and storages of a tenant. A new tenant gets a default of each (as inSync does)."""

from __future__ import annotations

import uuid

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


def create_profile(
    session: Session,
    tenant_id: str,
    name: str,
    *,
    max_users: int | None = None,
    preserved_auto_delete_days: int | None = None,
    is_default: bool = False,
) -> Profile:
    name = name.strip()
    if not name:
        raise InvalidInputError("A profile needs a non-empty name.")
    if max_users is not None and max_users < 0:
        raise InvalidInputError("The maximum number of users cannot be negative.")
    if session.execute(
        select(Profile.id).where(Profile.tenant_id == tenant_id, Profile.name == name)
    ).first():
        raise ConflictError(f"A profile named {name!r} already exists.")
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
    name = name.strip()
    if not name:
        raise InvalidInputError("A storage needs a non-empty name.")
    if session.execute(
        select(Storage.id).where(Storage.tenant_id == tenant_id, Storage.name == name)
    ).first():
        raise ConflictError(f"A storage named {name!r} already exists.")
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


def find_profile(session: Session, tenant_id: str, ref: str | None) -> Profile:
    """A profile by id or name; ``None`` means the tenant's default profile."""
    query = select(Profile).where(Profile.tenant_id == tenant_id)
    query = (
        query.where(Profile.is_default)
        if ref is None
        else query.where(or_(Profile.id == ref, Profile.name == ref))
    )
    profile = session.execute(query).scalars().first()
    if profile is None:
        raise NotFoundError(
            f"No profile {ref!r} in this tenant." if ref else "The tenant has no default profile."
        )
    return profile


def find_storage(session: Session, tenant_id: str, ref: str | None) -> Storage:
    """A storage by id or name; ``None`` means the tenant's default storage."""
    query = select(Storage).where(Storage.tenant_id == tenant_id)
    query = (
        query.where(Storage.is_default)
        if ref is None
        else query.where(or_(Storage.id == ref, Storage.name == ref))
    )
    storage = session.execute(query).scalars().first()
    if storage is None:
        raise NotFoundError(
            f"No storage {ref!r} in this tenant." if ref else "The tenant has no default storage."
        )
    return storage


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
