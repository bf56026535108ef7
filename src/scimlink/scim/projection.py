"""``attributes`` / ``excludedAttributes`` on stored documents (RFC 7644 §3.4.2.5, §3.9).

Projection works on the canonical JSON document instead of re-validating models on the read
path. Attribute names compare case-insensitively (RFC 7643 §2.1); ``id`` and ``schemas`` are
always returned.
"""

from __future__ import annotations

from typing import Any

from scimlink.scim.resources import CORE_USER_SCHEMA
from scimlink.scim.resources import ENTERPRISE_USER_SCHEMA

_ALWAYS = frozenset({"id", "schemas"})


def _split(path: str) -> tuple[str | None, str, str | None]:
    """``urn:…:User:name.givenName`` → (urn, "name", "givenName"); the core URN is dropped."""
    urn: str | None = None
    lowered = path.lower()
    if lowered.startswith("urn:"):
        for schema in (CORE_USER_SCHEMA, ENTERPRISE_USER_SCHEMA):
            if lowered == schema.lower():
                return schema, "", None
            if lowered.startswith(schema.lower() + ":"):
                urn, path = schema, path[len(schema) + 1 :]
                break
        else:
            return path, "", None
    if urn == CORE_USER_SCHEMA:
        urn = None
    attr, _, sub = path.partition(".")
    return urn, attr, sub or None


def _key(container: dict[str, Any], name: str) -> str | None:
    lowered = name.lower()
    return next((key for key in container if key.lower() == lowered), None)


def parse_attribute_list(value: str | None) -> list[str]:
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def _include(source: dict[str, Any], target: dict[str, Any], path: str) -> None:
    urn, attr, sub = _split(path)
    if urn is not None:
        ext_key = _key(source, urn)
        if ext_key is None:
            return
        if not attr:
            target[ext_key] = source[ext_key]
            return
        nested = target.setdefault(ext_key, {})
        _include(source[ext_key], nested, f"{attr}.{sub}" if sub else attr)
        if not nested:
            target.pop(ext_key)
        return
    key = _key(source, attr)
    if key is None:
        return
    value = source[key]
    if sub is None:
        target[key] = value
    elif isinstance(value, list):
        picked = [
            {k: v for k, v in item.items() if k.lower() == sub.lower()}
            for item in value
            if isinstance(item, dict)
        ]
        picked = [item for item in picked if item]
        if picked:
            target[key] = picked
    elif isinstance(value, dict):
        sub_key = _key(value, sub)
        if sub_key is not None:
            target.setdefault(key, {})[sub_key] = value[sub_key]


def _exclude(target: dict[str, Any], path: str) -> None:
    urn, attr, sub = _split(path)
    if urn is not None:
        ext_key = _key(target, urn)
        if ext_key is None:
            return
        if not attr:
            target.pop(ext_key)
            return
        _exclude(target[ext_key], f"{attr}.{sub}" if sub else attr)
        return
    key = _key(target, attr)
    if key is None or key.lower() in _ALWAYS:
        return
    if sub is None:
        target.pop(key)
        return
    value = target[key]
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict) and (sub_key := _key(item, sub)) is not None:
            item.pop(sub_key)


def project(document: dict[str, Any], attributes: list[str], excluded: list[str]) -> dict[str, Any]:
    """Apply ``attributes`` (wins, per RFC 7644 §3.9) or else ``excludedAttributes``."""
    if attributes:
        result = {key: value for key, value in document.items() if key.lower() in _ALWAYS}
        for path in attributes:
            _include(document, result, path)
        return result
    if excluded:
        copied: dict[str, Any] = _deep_copy(document)
        for path in excluded:
            _exclude(copied, path)
        return copied
    return document


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value
