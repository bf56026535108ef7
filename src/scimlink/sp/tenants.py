"""Tenants and their SCIM tokens.

The token alone selects the tenant (security.md §3.3): there is no tenant in the SCIM URL to
get wrong. A tenant has at most one live token: generating a new one revokes the previous one
at once, as inSync does. Tokens are valid 365 days.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from scimlink.errors import ConflictError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.scim.errors import unauthorized
from scimlink.sp import profiles
from scimlink.sp import tokens
from scimlink.sp.models import ScimToken
from scimlink.sp.models import Tenant
from scimlink.storage.base import utcnow

TOKEN_LIFETIME = timedelta(days=365)
REGIONS = ("cloud", "govcloud")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    tenant_id: str
    expires_at: datetime


def create_tenant(session: Session, name: str, region: str = "cloud") -> Tenant:
    name = name.strip()
    if not name:
        raise InvalidInputError("A tenant needs a non-empty name.")
    if region not in REGIONS:
        raise InvalidInputError(f"Unknown region {region!r}: use one of {', '.join(REGIONS)}.")
    if session.execute(select(Tenant.id).where(Tenant.name == name)).first() is not None:
        raise ConflictError(f"A tenant named {name!r} already exists.")
    tenant = Tenant(id=str(uuid.uuid4()), name=name, region=region, created=utcnow())
    session.add(tenant)
    session.flush()
    profiles.create_profile(session, tenant.id, "Default", is_default=True)
    profiles.create_storage(session, tenant.id, "Default", region, is_default=True)
    return tenant


def find_tenant(session: Session, ref: str) -> Tenant:
    """A tenant by id or by name."""
    tenant = session.execute(
        select(Tenant).where(or_(Tenant.id == ref, Tenant.name == ref))
    ).scalar_one_or_none()
    if tenant is None:
        raise NotFoundError(f"No tenant with id or name {ref!r}.")
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.execute(select(Tenant).order_by(Tenant.created)).scalars())


def generate_token(session: Session, tenant_id: str, *, now: datetime | None = None) -> IssuedToken:
    """Issue a token, revoking the tenant's previous ones in the same transaction."""
    now = now or utcnow()
    session.execute(
        update(ScimToken)
        .where(ScimToken.tenant_id == tenant_id, ScimToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    token = tokens.new_token()
    expires_at = now + TOKEN_LIFETIME
    session.add(
        ScimToken(
            tenant_id=tenant_id,
            token_hash=tokens.token_hash(token),
            hint=tokens.hint(token),
            created=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return IssuedToken(token, tenant_id, expires_at)


def active_token(session: Session, tenant_id: str) -> ScimToken | None:
    return session.execute(
        select(ScimToken).where(ScimToken.tenant_id == tenant_id, ScimToken.revoked_at.is_(None))
    ).scalar_one_or_none()


_TOKENS: Table = ScimToken.__table__  # type: ignore[assignment]
#: Built once so every request reuses its compiled form (authentication is on every request).
_TOKEN_BY_HASH = select(
    _TOKENS.c.token_hash, _TOKENS.c.tenant_id, _TOKENS.c.expires_at, _TOKENS.c.revoked_at
).where(_TOKENS.c.token_hash == bindparam("digest"))


def authenticate(session: Session, token: str, *, now: datetime | None = None) -> str:
    """Return the tenant id a bearer token belongs to, or raise a 401 SCIM error.

    Unknown, expired and revoked tokens get the same answer (no oracle). Malformed tokens are
    refused before any database query.
    """
    if not tokens.well_formed(token):
        raise unauthorized()
    digest = tokens.token_hash(token)
    row = session.connection().execute(_TOKEN_BY_HASH, {"digest": digest}).one_or_none()
    now = now or utcnow()
    if (
        row is None
        or not hmac.compare_digest(row.token_hash, digest)
        or row.revoked_at is not None
        or row.expires_at <= now
    ):
        raise unauthorized()
    return str(row.tenant_id)
