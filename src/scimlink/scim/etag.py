"""Weak ETags from resource versions and the preconditions of RFC 7644 §3.14 (RFC 7232)."""

from __future__ import annotations


def etag(version: int) -> str:
    return f'W/"{version}"'


def _tags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def matches(header: str, version: int) -> bool:
    """Weak comparison (RFC 7232 §2.3.2): ``*`` or any listed tag with the same opaque value."""
    tags = _tags(header)
    return "*" in tags or f'"{version}"' in tags
