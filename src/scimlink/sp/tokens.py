"""SCIM bearer tokens and admin API keys of the app half (format: :mod:`scimlink.secret_tokens`)."""

from __future__ import annotations

from scimlink.secret_tokens import TokenFormat
from scimlink.secret_tokens import digest

PREFIX = "scimlink_"
#: Admin API keys share the format under their own prefix, so neither passes for the other.
ADMIN_KEY_PREFIX = "scimlink_admin_"


def new_token(prefix: str = PREFIX) -> str:
    """A fresh token (shown once to the administrator, never stored)."""
    return TokenFormat(prefix).new()


def well_formed(token: str, prefix: str = PREFIX) -> bool:
    return TokenFormat(prefix).well_formed(token)


def token_hash(token: str) -> str:
    return digest(token)


def hint(token: str, prefix: str = PREFIX) -> str:
    return TokenFormat(prefix).hint(token)
