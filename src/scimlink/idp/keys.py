"""The directory's admin API keys: high-entropy, prefixed, checksummed; stored as SHA-256 only.

Format: ``scimlink_idp_`` + 32 base62 characters (190 bits) + 6 base62 characters of CRC32, the
app half's token format under the directory's own prefix (the halves share no code, so it is
written out again here). The prefix lets secret scanners find a leaked key and keeps an app-half
key from passing for a directory key; the checksum rejects typos and garbage before any database
lookup. A key is shown once, when it is created: only its hash and a hint are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.idp.models import ApiKey
from scimlink.storage.base import utcnow

PREFIX = "scimlink_idp_"
_ALPHABET = string.digits + string.ascii_letters
_BODY_LENGTH = 32
_CRC_LENGTH = 6
_NAME_LENGTH = 200


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CRC_LENGTH)


def new_secret() -> str:
    """A fresh key (shown once, never stored)."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    return f"{PREFIX}{body}{_checksum(body)}"


def well_formed(secret: str) -> bool:
    """Cheap offline check: prefix, length, alphabet and CRC (no database, constant work)."""
    if len(secret) != len(PREFIX) + _BODY_LENGTH + _CRC_LENGTH or not secret.startswith(PREFIX):
        return False
    body = secret[len(PREFIX) : len(PREFIX) + _BODY_LENGTH]
    crc = secret[len(PREFIX) + _BODY_LENGTH :]
    if any(c not in _ALPHABET for c in body):
        return False
    return hmac.compare_digest(_checksum(body), crc)


def key_hash(secret: str) -> str:
    """SHA-256 suits a 190-bit random secret; a slow hash would add cost, not safety."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def hint(secret: str) -> str:
    """What an administrator may see of a key later: its prefix and last four characters."""
    return f"{PREFIX}…{secret[-4:]}"


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
    digest = key_hash(secret)
    key = session.execute(select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one_or_none()
    if key is None or not hmac.compare_digest(key.key_hash, digest) or key.revoked_at is not None:
        return None
    return key
