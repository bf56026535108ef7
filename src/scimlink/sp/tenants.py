"""Tenants and their SCIM tokens.

The token alone selects the tenant (security.md §3.3): there is no tenant in the SCIM URL to
get wrong. Only a tenant that provisions over SCIM has tokens. A tenant has one current token:
generating a new one revokes the previous one at once, as inSync does, unless the tenant opted
in to a grace window, during which the previous one keeps working. Tokens are valid 365 days.
"""

from __future__ import annotations

import hmac
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import Table
from sqlalchemy import Update
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


MAX_GRACE_HOURS = 24 * 30


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    tenant_id: str
    expires_at: datetime
    #: Until when the previous token still works (a grace window), if there was one.
    previous_valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """What a SCIM token authenticates: its tenant, and its hint to name it in the audit trail."""

    tenant_id: str
    hint: str
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TokenView:
    hint: str
    created: datetime
    expires_at: datetime
    revoked_at: datetime | None
    current: bool

    def days_left(self, now: datetime) -> int:
        """Whole days to expiry, rounded up: 365 right after generation, 1 on the last day."""
        return max(0, math.ceil((self.expires_at - now) / timedelta(days=1)))


def scim_base_url(region: str, urls: dict[str, str]) -> str:
    """The SCIM base URL an IdP uses for a tenant of ``region`` (Cloud / GovCloud, configured)."""
    return urls.get(region) or urls["cloud"]


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
    """Issue a token, revoking the tenant's previous ones in the same transaction.

    With a grace window the previous token keeps working that many hours, so the IdP can be
    reconfigured without a gap; otherwise it stops at once (Druva's rule).
    """
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFoundError(f"No tenant {tenant_id!r}.")
    if tenant.provisioning != "scim":
        raise ConflictError(
            f"Tenant {tenant.name!r} provisions users {_METHODS[tenant.provisioning]}; SCIM "
            "tokens exist only for tenants that use SCIM (scimlink sp provisioning use-scim)."
        )
    now = now or utcnow()
    cutoff = now + timedelta(hours=tenant.token_grace_hours)
    previous = _rowcount(
        session,
        update(ScimToken)
        .where(
            ScimToken.tenant_id == tenant_id,
            or_(ScimToken.revoked_at.is_(None), ScimToken.revoked_at > cutoff),
        )
        .values(revoked_at=cutoff),
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
    grace = cutoff if previous and cutoff > now else None
    return IssuedToken(token, tenant_id, expires_at, grace)


_METHODS = {"manual": "manually", "scim": "over SCIM", "ldap": "from AD/LDAP"}


def revoke_tokens(session: Session, tenant_id: str, *, now: datetime | None = None) -> int:
    """Stop every token of the tenant at once (when it stops using SCIM)."""
    now = now or utcnow()
    return _rowcount(
        session,
        update(ScimToken)
        .where(
            ScimToken.tenant_id == tenant_id,
            or_(ScimToken.revoked_at.is_(None), ScimToken.revoked_at > now),
        )
        .values(revoked_at=now),
    )


def _rowcount(session: Session, statement: Update) -> int:
    return session.connection().execute(statement).rowcount


def set_token_grace(session: Session, tenant_id: str, hours: int) -> None:
    if not 0 <= hours <= MAX_GRACE_HOURS:
        raise InvalidInputError(f"The grace window is 0 to {MAX_GRACE_HOURS} hours.")
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFoundError(f"No tenant {tenant_id!r}.")
    tenant.token_grace_hours = hours
    session.flush()


def active_token(session: Session, tenant_id: str) -> ScimToken | None:
    """The current token (the newest one not revoked), if any."""
    return session.execute(
        select(ScimToken).where(ScimToken.tenant_id == tenant_id, ScimToken.revoked_at.is_(None))
    ).scalar_one_or_none()


def list_tokens(
    session: Session, tenant_id: str, *, now: datetime | None = None
) -> list[TokenView]:
    """Tokens that still work (the current one, and a previous one inside its grace window)."""
    now = now or utcnow()
    rows = session.execute(
        select(ScimToken)
        .where(
            ScimToken.tenant_id == tenant_id,
            ScimToken.expires_at > now,
            or_(ScimToken.revoked_at.is_(None), ScimToken.revoked_at > now),
        )
        .order_by(ScimToken.pk.desc())
    ).scalars()
    return [
        TokenView(row.hint, row.created, row.expires_at, row.revoked_at, row.revoked_at is None)
        for row in rows
    ]


_TOKENS: Table = ScimToken.__table__  # type: ignore[assignment]
#: Built once so every request reuses its compiled form (authentication is on every request).
_TOKEN_BY_HASH = select(
    _TOKENS.c.token_hash,
    _TOKENS.c.tenant_id,
    _TOKENS.c.hint,
    _TOKENS.c.expires_at,
    _TOKENS.c.revoked_at,
).where(_TOKENS.c.token_hash == bindparam("digest"))


def authenticate(session: Session, token: str, *, now: datetime | None = None) -> TokenIdentity:
    """Return what a bearer token authenticates, or raise a 401 SCIM error.

    Unknown and revoked tokens get the same answer (no oracle). An expired token gets a detail
    that says so and when, because an expired token is the documented, otherwise silent cause
    of "users are not getting provisioned" (provisioning-engines.md §5.5); only the holder of a
    real token can see it. Malformed tokens are refused before any database query.
    """
    if not tokens.well_formed(token):
        raise unauthorized()
    digest = tokens.token_hash(token)
    row = session.connection().execute(_TOKEN_BY_HASH, {"digest": digest}).one_or_none()
    now = now or utcnow()
    if (
        row is None
        or not hmac.compare_digest(row.token_hash, digest)
        or (row.revoked_at is not None and row.revoked_at <= now)
    ):
        raise unauthorized()
    if row.expires_at <= now:
        expired = row.expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        raise unauthorized(
            f"The SCIM token expired at {expired}; an inSync Cloud administrator must generate "
            "a new one and update it in the IdP."
        )
    return TokenIdentity(str(row.tenant_id), str(row.hint), row.expires_at)
