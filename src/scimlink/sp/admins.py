"""Administrator accounts (argon2-hashed passwords) and their admin API keys (SHA-256 only).

An API key acts as its administrator, with that administrator's role and tenant: the key alone
selects the tenant, as a SCIM token does, so there is no tenant in an admin API URL to get wrong.
"""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.errors import ConflictError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.sp import tokens
from scimlink.sp.models import Admin
from scimlink.sp.models import ApiKey
from scimlink.sp.models import Tenant
from scimlink.sp.roles import check_role
from scimlink.storage.base import utcnow

_HASHER = PasswordHasher()
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
MIN_PASSWORD_LENGTH = 12


@dataclass(frozen=True, slots=True)
class AdminView:
    id: str
    email: str
    role: str
    has_password: bool
    created: datetime


@dataclass(frozen=True, slots=True)
class KeyView:
    id: int
    admin: str
    name: str
    hint: str
    created: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: str
    view: KeyView


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who an admin API key acts as."""

    tenant_id: str
    admin_id: str
    email: str
    role: str


def _view(admin: Admin) -> AdminView:
    return AdminView(
        admin.id, admin.email, admin.role, admin.password_hash is not None, admin.created
    )


def check_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.fullmatch(email) or len(email) > 320:
        raise InvalidInputError(f"{email!r} is not an e-mail address.")
    return email


def _hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    return _HASHER.hash(password)


def find_admin(session: Session, tenant_id: str, ref: str) -> Admin:
    """An administrator of the tenant by id or e-mail (case-insensitive)."""
    admin = session.execute(
        select(Admin).where(
            Admin.tenant_id == tenant_id,
            (Admin.id == ref) | (func.lower(Admin.email) == ref.strip().lower()),
        )
    ).scalar_one_or_none()
    if admin is None:
        raise NotFoundError(f"No administrator {ref!r} in this tenant.")
    return admin


def create_admin(
    session: Session, tenant_id: str, email: str, role: str, password: str | None = None
) -> AdminView:
    email = check_email(email)
    check_role(role)
    taken = session.execute(
        select(Admin.id).where(
            Admin.tenant_id == tenant_id, func.lower(Admin.email) == email.lower()
        )
    ).first()
    if taken is not None:
        raise ConflictError(f"An administrator {email!r} already exists in this tenant.")
    admin = Admin(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        email=email,
        role=role,
        password_hash=_hash_password(password) if password is not None else None,
        created=utcnow(),
    )
    session.add(admin)
    session.flush()
    return _view(admin)


def list_admins(session: Session, tenant_id: str) -> list[AdminView]:
    rows = session.execute(
        select(Admin).where(Admin.tenant_id == tenant_id).order_by(Admin.created, Admin.email)
    ).scalars()
    return [_view(admin) for admin in rows]


def admin_view(session: Session, tenant_id: str, ref: str) -> AdminView:
    return _view(find_admin(session, tenant_id, ref))


def set_role(session: Session, tenant_id: str, ref: str, role: str) -> AdminView:
    admin = find_admin(session, tenant_id, ref)
    admin.role = check_role(role)
    session.flush()
    return _view(admin)


def set_password(session: Session, tenant_id: str, ref: str, password: str) -> AdminView:
    admin = find_admin(session, tenant_id, ref)
    admin.password_hash = _hash_password(password)
    session.flush()
    return _view(admin)


def verify_password(
    session: Session, tenant_id: str, email: str, password: str
) -> AdminView | None:
    """The administrator these credentials name, or ``None`` (same answer for every failure)."""
    admin = session.execute(
        select(Admin).where(
            Admin.tenant_id == tenant_id, func.lower(Admin.email) == email.strip().lower()
        )
    ).scalar_one_or_none()
    if admin is None or admin.password_hash is None:
        _HASHER.hash(password)  # spend the same time as a real check
        return None
    try:
        _HASHER.verify(admin.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _HASHER.check_needs_rehash(admin.password_hash):
        admin.password_hash = _HASHER.hash(password)
    return _view(admin)


def delete_admin(session: Session, tenant_id: str, ref: str) -> AdminView:
    admin = find_admin(session, tenant_id, ref)
    view = _view(admin)
    session.delete(admin)
    session.flush()
    return view


def _key_view(key: ApiKey, email: str) -> KeyView:
    return KeyView(key.pk, email, key.name, key.hint, key.created, key.revoked_at)


def create_key(session: Session, tenant_id: str, admin_ref: str, name: str) -> IssuedKey:
    """A new key for the administrator, shown once: only its hash is kept."""
    admin = find_admin(session, tenant_id, admin_ref)
    name = name.strip() or "API key"
    secret = tokens.new_token(tokens.ADMIN_KEY_PREFIX)
    key = ApiKey(
        admin_id=admin.id,
        key_hash=tokens.token_hash(secret),
        hint=tokens.hint(secret, tokens.ADMIN_KEY_PREFIX),
        name=name[:200],
        created=utcnow(),
    )
    session.add(key)
    session.flush()
    return IssuedKey(secret, _key_view(key, admin.email))


def list_keys(session: Session, tenant_id: str, admin_ref: str | None = None) -> list[KeyView]:
    query = select(ApiKey, Admin.email).join(Admin).where(Admin.tenant_id == tenant_id)
    if admin_ref is not None:
        query = query.where(ApiKey.admin_id == find_admin(session, tenant_id, admin_ref).id)
    rows = session.execute(query.order_by(ApiKey.pk)).all()
    return [_key_view(key, email) for key, email in rows]


def find_key(session: Session, tenant_id: str, key_id: int) -> tuple[ApiKey, Admin]:
    row = session.execute(
        select(ApiKey, Admin).join(Admin).where(Admin.tenant_id == tenant_id, ApiKey.pk == key_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"No API key {key_id} in this tenant.")
    return row[0], row[1]


def revoke_key(session: Session, tenant_id: str, key_id: int) -> KeyView:
    key, admin = find_key(session, tenant_id, key_id)
    key.revoked_at = key.revoked_at or utcnow()
    session.flush()
    return _key_view(key, admin.email)


def authenticate_key(session: Session, secret: str) -> KeyIdentity | None:
    """The administrator an API key acts as; ``None`` for a malformed, unknown or revoked key."""
    if not tokens.well_formed(secret, tokens.ADMIN_KEY_PREFIX):
        return None
    digest = tokens.token_hash(secret)
    row = session.execute(
        select(
            ApiKey.key_hash, ApiKey.revoked_at, Admin.id, Admin.tenant_id, Admin.email, Admin.role
        )
        .join(Admin)
        .join(Tenant, Tenant.id == Admin.tenant_id)
        .where(ApiKey.key_hash == digest)
    ).one_or_none()
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        return None
    return KeyIdentity(row.tenant_id, row.id, row.email, row.role)
