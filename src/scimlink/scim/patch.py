"""PATCH on a stored user document (RFC 7644 §3.5.2), custom attributes included.

scim2-models applies operations on schema attributes. Custom top-level attributes that IdPs send
(``company``, ``department``, …) have no field in the model, so the operations that target them
are applied here on the plain document, in the same all-or-nothing call. Every path is checked
against the schemas first: a path to an attribute nobody declares is ``invalidPath``, never a
silent no-op.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from scimlink.scim.attributes import Attribute
from scimlink.scim.attributes import resolve
from scimlink.scim.compat import normalise_patch
from scimlink.scim.compat import normalise_resource
from scimlink.scim.errors import ScimError
from scimlink.scim.errors import invalid_path
from scimlink.scim.errors import invalid_value
from scimlink.scim.filter import And
from scimlink.scim.filter import Compare
from scimlink.scim.filter import FilterError
from scimlink.scim.filter import Node
from scimlink.scim.filter import Not
from scimlink.scim.filter import Or
from scimlink.scim.filter import Present
from scimlink.scim.filter import ValuePath
from scimlink.scim.filter import parse_filter
from scimlink.scim.resources import ENTERPRISE_USER_SCHEMA
from scimlink.scim.resources import UserModel
from scimlink.scim.resources import apply_patch
from scimlink.scim.resources import check_patch_schemas
from scimlink.scim.resources import check_schemas
from scimlink.scim.resources import dump_user
from scimlink.scim.resources import load_user
from scimlink.scim.resources import validate_user

#: ATTRNAME of RFC 7643 §2.1: ALPHA *(nameChar).
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


def _schema_names() -> frozenset[str]:
    names = {"schemas", "id", "meta", ENTERPRISE_USER_SCHEMA.lower()}
    for name, field in UserModel.model_fields.items():
        names.add((field.serialization_alias or field.alias or name).lower())
    return frozenset(names)


SCHEMA_NAMES = _schema_names()


def is_custom(name: str) -> bool:
    """A valid attribute name (RFC 7643 §2.1) that no schema declares: kept as sent."""
    return bool(_ATTRIBUTE_NAME.match(name)) and name.lower() not in SCHEMA_NAMES


def custom_attributes(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if is_custom(key)}


def _check_filter_names(node: Node, parent: Attribute) -> None:
    if isinstance(node, And | Or):
        _check_filter_names(node.left, parent)
        _check_filter_names(node.right, parent)
    elif isinstance(node, Not):
        _check_filter_names(node.expr, parent)
    elif isinstance(node, Compare | Present):
        resolve(node.path, parent=parent)


def check_path(path: str) -> None:
    """Refuse PATCH paths that are not attribute paths of our schemas (400 ``invalidPath``)."""
    lowered = path.lower()
    # "schemas", "password" (write-only, accepted and dropped), a whole extension, a custom name
    if lowered in {"schemas", "password", ENTERPRISE_USER_SCHEMA.lower()} or is_custom(path):
        return
    try:
        node = parse_filter(path if path.rstrip().endswith("]") else f"{path} pr")
    except FilterError as exc:
        raise invalid_path(f"{path!r} is not an attribute path: {exc}") from None
    try:
        if isinstance(node, ValuePath):
            resolved = resolve(node.path)
            if not resolved.attribute.sub_attributes:
                raise invalid_path(
                    f"'{resolved.attribute.name}' has no sub-attributes to filter on."
                )
            _check_filter_names(node.filter, resolved.attribute)
        elif isinstance(node, Present):
            if resolve(node.path).custom:
                raise invalid_path(f"{path!r} is not an attribute this service knows.")
        else:
            raise invalid_path(f"{path!r} is not an attribute path.")
    except ScimError as exc:
        if exc.scim_type == "invalidPath":
            raise
        raise invalid_path(exc.detail) from None


def _apply_custom(custom: dict[str, Any], op: str, name: str, value: Any) -> bool:
    """Names compare case-insensitively (RFC 7643 §2.1): ``Department`` updates a stored
    ``department`` in place and keeps its spelling, so filters on it keep finding it."""
    existing = next((key for key in custom if key.lower() == name.lower()), name)
    if op == "remove" or value is None or value == "":
        return custom.pop(existing, None) is not None
    changed: bool = custom.get(existing) != value
    custom[existing] = value
    return changed


def _split_value(operation: dict[str, Any], custom: dict[str, Any]) -> dict[str, Any] | None:
    """Apply the custom keys of a path-less add/replace; return what is left for the model."""
    rest = {}
    for key, item in operation["value"].items():
        if is_custom(key):
            _apply_custom(custom, operation["op"], key, item)
        elif key.lower() in SCHEMA_NAMES or ":" in key or "." in key:
            rest[key] = item
        else:
            raise invalid_path(f"{key!r} is not an attribute name (RFC 7643 §2.1).")
    return {**operation, "value": rest} if rest else None


def patch_document(
    document: dict[str, Any], payload: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Return the patched copy of ``document`` and whether anything stored changed."""
    check_patch_schemas(payload)
    payload = normalise_patch(copy.deepcopy(payload))
    operations = payload.get("Operations")
    if not isinstance(operations, list) or not operations:
        raise invalid_value("PATCH needs a non-empty 'Operations' list (RFC 7644 §3.5.2).")
    custom = custom_attributes(document)
    standard: list[Any] = []
    for operation in operations:
        if not isinstance(operation, dict):
            standard.append(operation)
            continue
        op, path = operation.get("op"), operation.get("path")
        if op in {"add", "replace"} and "value" not in operation:
            raise invalid_value(f"A PATCH '{op}' needs a 'value' (RFC 7644 §3.5.2).")
        if isinstance(path, str):
            check_path(path)
        if isinstance(path, str) and is_custom(path) and op in {"add", "replace", "remove"}:
            _apply_custom(custom, str(op), path, operation.get("value"))
        elif path is None and op in {"add", "replace"} and isinstance(operation["value"], dict):
            rest = _split_value(operation, custom)
            if rest is not None:
                standard.append(rest)
        else:
            standard.append(operation)
    user = load_user(document)
    if standard:
        apply_patch(user, {**payload, "Operations": standard})
    result = {key: value for key, value in dump_user(user).items() if not is_custom(key)}
    check_schemas(result.get("schemas"))
    result.update(custom)
    return result, result != document


def document_from_payload(payload: dict[str, Any], *, replacement: bool = False) -> dict[str, Any]:
    """The canonical stored document of a POST (or PUT) body: normalised, validated, custom
    attributes kept beside the schema ones."""
    payload = normalise_resource(dict(payload))
    document = dump_user(validate_user(payload, replacement=replacement))
    document.update(custom_attributes(payload))
    return document
