"""The directory's admin API keys: high-entropy, prefixed, checksummed; stored as SHA-256 only.

Format: :mod:`scimlink.secret_tokens` under the directory's own prefix ``scimlink_idp_``, so an
app-half key never passes for a directory key. A key is shown once, when it is created: only its
hash and a hint are kept.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.idp.models import ApiKey
from scimlink.secret_tokens import TokenFormat
from scimlink.secret_tokens import digest
from scimlink.storage.base import utcnow

PREFIX = "scimlink_idp_"
FORMAT = TokenFormat(PREFIX)
_NAME_LENGTH = 200


def new_secret() -> str:
    """A fresh key (shown once, never stored)."""
    return FORMAT.new()


def well_formed(secret: str) -> bool:
    return FORMAT.well_formed(secret)


def key_hash(secret: str) -> str:
    return digest(secret)


def hint(secret: str) -> str:
    return FORMAT.hint(secret)


@dataclass(frozen=True, slots=True)
class KeyView:
    id: int
    name: str
    hint: str
    created: str
    revoked_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "hint": self.hint,
            "created": self.created,
            "revoked_at": self.revoked_at,
            "active": self.revoked_at is None,
        }


def key_view(key: ApiKey) -> KeyView:
    return KeyView(
        key.pk,
        key.name,
        key.hint,
        key.created.isoformat(),
        key.revoked_at.isoformat() if key.revoked_at else None,
    )


def create_key(session: Session, name: str = "API key") -> tuple[str, KeyView]:
    """A new key: the secret (shown once) and what is kept of it."""
    name = name.strip() or "API key"
    if len(name) > _NAME_LENGTH:
        raise InvalidInputError(f"A key's name has at most {_NAME_LENGTH} characters.")
    secret = new_secret()
    key = ApiKey(name=name, key_hash=key_hash(secret), hint=hint(secret), created=utcnow())
    session.add(key)
    session.flush()
    return secret, key_view(key)


def list_keys(session: Session) -> list[KeyView]:
    """Every key, revoked ones included (oldest first)."""
    return [key_view(k) for k in session.execute(select(ApiKey).order_by(ApiKey.pk)).scalars()]


def find_key(session: Session, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFoundError(f"No API key {key_id}.")
    return key


def revoke_key(session: Session, key_id: int) -> KeyView:
    """Revoke a key (idempotent: a revoked key keeps its first revocation time)."""
    key = find_key(session, key_id)
    key.revoked_at = key.revoked_at or utcnow()
    session.flush()
    return key_view(key)


def authenticate(session: Session, secret: str) -> ApiKey | None:
    """The key ``secret`` is, or ``None`` for a malformed, unknown or revoked one."""
    if not well_formed(secret):
        return None
    hashed = key_hash(secret)
    key = session.execute(select(ApiKey).where(ApiKey.key_hash == hashed)).scalar_one_or_none()
    if key is None or not hmac.compare_digest(key.key_hash, hashed) or key.revoked_at is not None:
        return None
    return key
