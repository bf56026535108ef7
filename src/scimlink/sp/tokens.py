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
_ALPHABET = string.digits + string.ascii_letters
_BODY_LENGTH = 32
_CRC_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + _BODY_LENGTH + _CRC_LENGTH


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CRC_LENGTH)


def new_token() -> str:
    """A fresh token (shown once to the administrator, never stored)."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    return f"{PREFIX}{body}{_checksum(body)}"


def well_formed(token: str) -> bool:
    """Cheap offline check: prefix, length, alphabet and CRC (no database, constant work)."""
    if len(token) != TOKEN_LENGTH or not token.startswith(PREFIX):
        return False
    body = token[len(PREFIX) : len(PREFIX) + _BODY_LENGTH]
    crc = token[len(PREFIX) + _BODY_LENGTH :]
    if any(c not in _ALPHABET for c in body):
        return False
    return hmac.compare_digest(_checksum(body), crc)


def token_hash(token: str) -> str:
    """SHA-256 is right for 190-bit random secrets; slow hashes add cost, not safety."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def hint(token: str) -> str:
    """What an admin may see of a token later: its prefix and last four characters."""
    return f"{PREFIX}…{token[-4:]}"
