"""The format of every bearer secret scimlink issues (SCIM tokens, admin API keys).

``PREFIX`` + 32 base62 characters (190 bits) + 6 base62 characters of CRC32. The prefix lets
secret scanners find a leaked secret and keeps one kind from passing for another; the checksum
rejects typos and garbage before any database lookup, which also gives no timing oracle on
stored secrets. Only the SHA-256 is ever stored (security.md §3.2).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from dataclasses import dataclass

_ALPHABET = string.digits + string.ascii_letters
_BODY_LENGTH = 32
_CRC_LENGTH = 6


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CRC_LENGTH)


def digest(secret: str) -> str:
    """SHA-256 suits 190-bit random secrets; a slow hash would add cost, not safety."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenFormat:
    prefix: str

    @property
    def length(self) -> int:
        return len(self.prefix) + _BODY_LENGTH + _CRC_LENGTH

    def new(self) -> str:
        """A fresh secret (shown once, never stored)."""
        body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
        return f"{self.prefix}{body}{_checksum(body)}"

    def well_formed(self, secret: str) -> bool:
        """Cheap offline check: prefix, length, alphabet and CRC (no database, constant work)."""
        if len(secret) != self.length or not secret.startswith(self.prefix):
            return False
        body = secret[len(self.prefix) : len(self.prefix) + _BODY_LENGTH]
        crc = secret[len(self.prefix) + _BODY_LENGTH :]
        if any(c not in _ALPHABET for c in body):
            return False
        return hmac.compare_digest(_checksum(body), crc)

    def hint(self, secret: str) -> str:
        """What an administrator may see of a secret later: its prefix and last 4 characters."""
        return f"{self.prefix}…{secret[-4:]}"
