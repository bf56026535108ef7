"""Comparison keys for case-insensitive SCIM strings (RFC 7643 §2.2, RFC 7644 §7.8)."""

from __future__ import annotations

import unicodedata


def fold(value: str) -> str:
    """NFKC + casefold: ``Admin``, ``ADMIN`` and fullwidth ``\uff41dmin`` share one key.

    Used for uniqueness and for indexed case-insensitive lookups; the original string is kept
    for display.
    """
    return unicodedata.normalize("NFKC", value).casefold()
