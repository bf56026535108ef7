"""PATCH on a stored user document (RFC 7644 §3.5.2), custom attributes included.

scim2-models applies operations on schema attributes. Custom top-level attributes that IdPs send
(``company``, ``department``, …) are kept by our policy but have no field to write to, so the
operations that target them are applied here on the plain document, in the same all-or-nothing
call.
"""

from __future__ import annotations

import copy
from typing import Any

from scimlink.scim.compat import normalise_patch
from scimlink.scim.errors import invalid_value
from scimlink.scim.resources import ENTERPRISE_USER_SCHEMA
from scimlink.scim.resources import UserModel
from scimlink.scim.resources import apply_patch
from scimlink.scim.resources import dump_user
from scimlink.scim.resources import load_user


def _schema_names() -> frozenset[str]:
    names = {"schemas", "id", "meta", ENTERPRISE_USER_SCHEMA.lower()}
    for name, field in UserModel.model_fields.items():
        names.add((field.serialization_alias or field.alias or name).lower())
    return frozenset(names)


SCHEMA_NAMES = _schema_names()


def is_custom(name: str) -> bool:
    """A plain top-level name that no schema declares (custom attributes are kept as sent)."""
    return not any(c in name for c in ".[:") and name.lower() not in SCHEMA_NAMES


def custom_attributes(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if is_custom(key)}


def _apply_custom(custom: dict[str, Any], op: str, name: str, value: Any) -> bool:
    """Names compare case-insensitively (RFC 7643 §2.1): ``Department`` updates a stored
    ``department`` in place and keeps its spelling, so filters on it keep finding it."""
    existing = next((key for key in custom if key.lower() == name.lower()), name)
    if op == "remove" or value is None or value == "":
        return custom.pop(existing, None) is not None
    changed: bool = custom.get(existing) != value
    custom[existing] = value
    return changed


def patch_document(
    document: dict[str, Any], payload: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Return the patched copy of ``document`` and whether anything changed."""
    payload = normalise_patch(copy.deepcopy(payload))
    operations = payload.get("Operations")
    if not isinstance(operations, list) or not operations:
        raise invalid_value("PATCH needs a non-empty 'Operations' list (RFC 7644 §3.5.2).")
    custom = custom_attributes(document)
    standard: list[Any] = []
    changed = False
    for operation in operations:
        if not isinstance(operation, dict):
            standard.append(operation)
            continue
        op, path, value = operation.get("op"), operation.get("path"), operation.get("value")
        if isinstance(path, str) and is_custom(path) and op in {"add", "replace", "remove"}:
            changed |= _apply_custom(custom, str(op), path, value)
        elif path is None and op in {"add", "replace"} and isinstance(value, dict):
            rest = {}
            for key, item in value.items():
                if is_custom(key):
                    changed |= _apply_custom(custom, str(op), key, item)
                else:
                    rest[key] = item
            if rest:
                standard.append({**operation, "value": rest})
        else:
            standard.append(operation)
    user = load_user(document)
    if standard:
        changed |= apply_patch(user, {**payload, "Operations": standard})
    result = {key: value for key, value in dump_user(user).items() if not is_custom(key)}
    result.update(custom)
    return result, changed
