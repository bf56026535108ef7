"""SCIM bearer tokens: high-entropy, prefixed, checksummed; stored as SHA-256 only (security.md §3.2).

Format: ``scimlink_`` + 32 base62 characters (190 bits) + 6 base62 characters of CRC32. The prefix
lets secret scanners find leaked tokens; the checksum rejects typos and garbage before any
database lookup, which also gives no timing oracle on stored tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib

PREFIX = "scimlink_"
#: Admin API keys share the format under their own prefix, so neither passes for the other.
ADMIN_KEY_PREFIX = "scimlink_admin_"
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


def new_token(prefix: str = PREFIX) -> str:
    """A fresh token (shown once to the administrator, never stored)."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    return f"{prefix}{body}{_checksum(body)}"


def well_formed(token: str, prefix: str = PREFIX) -> bool:
    """Cheap offline check: prefix, length, alphabet and CRC (no database, constant work)."""
    if len(token) != len(prefix) + _BODY_LENGTH + _CRC_LENGTH or not token.startswith(prefix):
        return False
    body = token[len(prefix) : len(prefix) + _BODY_LENGTH]
    crc = token[len(prefix) + _BODY_LENGTH :]
    if any(c not in _ALPHABET for c in body):
        return False
    return hmac.compare_digest(_checksum(body), crc)


def token_hash(token: str) -> str:
    """SHA-256 is right for 190-bit random secrets; slow hashes add cost, not safety."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def hint(token: str, prefix: str = PREFIX) -> str:
    """What an admin may see of a token later: its prefix and last four characters."""
    return f"{prefix}…{token[-4:]}"
