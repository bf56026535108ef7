"""Named normalisers for what real IdP SCIM clients send (scim-servers.md §3).

Each quirk is one small function with the vendor case it comes from, applied to the raw JSON
before validation. Keeping them named (not scattered ``if`` branches) lets a test replay each
vendor's requests and lets us drop a quirk when the vendor fixes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scimlink.scim.attributes import schema_attributes
from scimlink.scim.errors import invalid_value
from scimlink.scim.resources import CORE_USER_SCHEMA
from scimlink.scim.resources import ENTERPRISE_USER_SCHEMA

Payload = dict[str, Any]
Normaliser = Callable[[Payload], Payload]

#: Entra's documentation sample misspells the enterprise URN (E10).
_ENTERPRISE_TYPO = "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"
_BOOLEAN_ATTRIBUTES = frozenset({"active", "primary"})


def _coerce_boolean(name: str, value: Any) -> Any:
    """E02/P7: Entra sends ``"True"``/``"False"``; any other string is refused, not guessed."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise invalid_value(f"'{name}' must be a boolean, got the number {value!r}.")
    if not isinstance(value, str):
        return value
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise invalid_value(f"'{name}' must be a boolean, got the string {value!r}.")


def _coerce_booleans_in(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _coerce_boolean(key, item)
            if key.lower() in _BOOLEAN_ATTRIBUTES
            else _coerce_booleans_in(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_coerce_booleans_in(item) for item in value]
    return value


def entra_string_booleans(payload: Payload) -> Payload:
    """E02: ``"active": "False"`` in bodies (also Entra's Postman "string True")."""
    coerced: Payload = _coerce_booleans_in(payload)
    return coerced


def entra_enterprise_urn_typo(payload: Payload) -> Payload:
    """E10: ``…:enterprise:2.0User`` in ``schemas`` and as the extension key."""
    schemas = payload.get("schemas")
    if isinstance(schemas, list) and _ENTERPRISE_TYPO in schemas:
        payload["schemas"] = [
            ENTERPRISE_USER_SCHEMA if s == _ENTERPRISE_TYPO else s for s in schemas
        ]
    if _ENTERPRISE_TYPO in payload:
        payload[ENTERPRISE_USER_SCHEMA] = payload.pop(_ENTERPRISE_TYPO)
    return payload


def entra_nulls_and_meta(payload: Payload) -> Payload:
    """E10/E12/P5: drop nulls (never provisioned) and client-sent ``id``/``meta`` (read-only)."""
    cleaned = {
        key: value
        for key, value in payload.items()
        if value is not None and key.lower() not in {"id", "meta"}
    }
    extension = cleaned.get(ENTERPRISE_USER_SCHEMA)
    if isinstance(extension, dict):
        cleaned[ENTERPRISE_USER_SCHEMA] = {k: v for k, v in extension.items() if v is not None}
    return cleaned


def manager_reference(payload: Payload) -> Payload:
    """E07: Entra's bare-string ``manager`` and ``{value}`` without ``$ref`` become a complex value."""
    extension = payload.get(ENTERPRISE_USER_SCHEMA)
    if not isinstance(extension, dict) or "manager" not in extension:
        return payload
    manager = extension["manager"]
    if isinstance(manager, str):
        manager = {"value": manager}
    if isinstance(manager, dict):
        value = manager.get("value")
        if not value:
            extension.pop("manager")
        elif "$ref" not in manager:
            extension["manager"] = {**manager, "$ref": f"../Users/{value}"}
    return payload


def entra_capitalised_op(payload: Payload) -> Payload:
    """E01/H4: ``"op": "Replace"``; RFC 7644 §3.5.2 names them in lower case."""
    operations = payload.get("Operations")
    if isinstance(operations, list):
        for operation in operations:
            if isinstance(operation, dict) and isinstance(operation.get("op"), str):
                operation["op"] = operation["op"].lower()
    return payload


def entra_patch_string_booleans(payload: Payload) -> Payload:
    """E02: ``{"op":"Replace","path":"active","value":"False"}`` and path-less ``{"active":"False"}``."""
    operations = payload.get("Operations")
    if not isinstance(operations, list):
        return payload
    for operation in operations:
        if not isinstance(operation, dict) or "value" not in operation:
            continue
        path = operation.get("path")
        leaf = path.rsplit(".", 1)[-1].rsplit(":", 1)[-1] if isinstance(path, str) else None
        if leaf is not None and leaf.lower() in _BOOLEAN_ATTRIBUTES:
            operation["value"] = _coerce_boolean(leaf, operation["value"])
        else:
            operation["value"] = _coerce_booleans_in(operation["value"])
    return payload


def _targets_whole_multi_valued(path: str) -> bool:
    """``emails`` or ``urn:…:User:emails`` (not ``emails[…]`` nor ``emails.value``)."""
    lowered = path.lower()
    for urn in (CORE_USER_SCHEMA, ENTERPRISE_USER_SCHEMA):
        if lowered.startswith(urn.lower() + ":"):
            lowered = lowered[len(urn) + 1 :]
            break
    if any(c in lowered for c in ".[:"):
        return False
    attribute = schema_attributes()[CORE_USER_SCHEMA.lower()].get(lowered)
    return attribute is not None and attribute.multi_valued


def _empty_strings_to_null(value: Any) -> Any:
    if value == "":
        return None
    if isinstance(value, dict):
        return {key: _empty_strings_to_null(item) for key, item in value.items()}
    return value


def entra_empty_string_clears(payload: Payload) -> Payload:
    """E12: the gallery's SCIM_Null_Update sets attributes to ``""`` and expects them cleared.

    ``{"op":"Replace","path":"title","value":""}`` becomes ``remove`` of ``title``; in a
    path-less (or complex) value an empty string becomes ``null``, which clears that attribute
    (RFC 7643 §2.5: unassigned and null mean the same). A whole multi-valued attribute is never
    removed this way: ``""`` is no list, so such an operation stays as sent and fails validation.
    """
    operations = payload.get("Operations")
    if not isinstance(operations, list):
        return payload
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict) or operation.get("op") not in {"add", "replace"}:
            continue
        path, value = operation.get("path"), operation.get("value")
        if value == "" and isinstance(path, str) and not _targets_whole_multi_valued(path):
            operations[index] = {"op": "remove", "path": path}
        elif isinstance(value, dict):
            operation["value"] = _empty_strings_to_null(value)
    return payload


RESOURCE_NORMALISERS: tuple[Normaliser, ...] = (
    entra_nulls_and_meta,
    entra_enterprise_urn_typo,
    entra_string_booleans,
    manager_reference,
)
PATCH_NORMALISERS: tuple[Normaliser, ...] = (
    entra_capitalised_op,
    entra_patch_string_booleans,
    entra_empty_string_clears,
)


def normalise_resource(payload: Payload) -> Payload:
    """Apply every resource-body normaliser in order."""
    for normaliser in RESOURCE_NORMALISERS:
        payload = normaliser(payload)
    return payload


def normalise_patch(payload: Payload) -> Payload:
    """Apply every PatchOp normaliser in order."""
    for normaliser in PATCH_NORMALISERS:
        payload = normaliser(payload)
    return payload
