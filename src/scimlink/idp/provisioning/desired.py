"""What an application should hold for a user: the SCIM representation built from the
application's attribute mapping, and whether the user is in scope (pure; no I/O).

A target path is a core attribute (``userName``, ``displayName``, ``externalId``, ``active``),
a sub-attribute (``name.givenName``), ``emails`` (the work e-mail, primary), an enterprise
extension attribute (``urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department``)
or a custom top-level attribute (``department``, as Druva's mappings filter on).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)?")

#: Directory properties a mapping can read (JumpCloud's names), plus ``attributes.<name>``.
SOURCES = (
    "username",
    "email",
    "firstname",
    "lastname",
    "displayname",
    "employeeIdentifier",
    "department",
    "jobTitle",
    "company",
    "location",
    "costCenter",
    "active",
)


def check_mapping(source: str, target: str) -> None:
    """Refuse a mapping that could never produce a valid SCIM attribute."""
    if source not in SOURCES and not (
        source.startswith("attributes.") and len(source) > len("attributes.")
    ):
        raise ValueError(
            f"Unknown source {source!r}: use one of {', '.join(SOURCES)} or attributes.<name>."
        )
    path = target.removeprefix(f"{ENTERPRISE}:")
    if target == "emails" or _ATTRIBUTE.fullmatch(path):
        return
    raise ValueError(f"Target {target!r} is not a SCIM attribute path.")


@dataclass(frozen=True, slots=True)
class Desired:
    in_scope: bool
    resource: dict[str, Any]

    @property
    def digest(self) -> str:
        """A stable hash of what the application should hold (compared with the last accepted)."""
        canonical = json.dumps(self.resource, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _source_value(user: dict[str, Any], source: str, in_scope: bool) -> Any:
    if source == "active":
        return in_scope
    if source.startswith("attributes."):
        return (user.get("attributes") or {}).get(source.removeprefix("attributes."))
    return user.get(source)


def _put(resource: dict[str, Any], target: str, value: Any) -> None:
    if target == "emails":
        resource["emails"] = [{"value": value, "type": "work", "primary": True}]
        return
    if target.startswith(f"{ENTERPRISE}:"):
        extension = resource.setdefault(ENTERPRISE, {})
        resource["schemas"] = [CORE, ENTERPRISE]
        _put(extension, target.removeprefix(f"{ENTERPRISE}:"), value)
        return
    head, _, tail = target.partition(".")
    if tail:
        resource.setdefault(head, {})[tail] = value
    else:
        resource[head] = value


def desired(user: dict[str, Any] | None, bound: bool, mapping: list[dict[str, str]]) -> Desired:
    """The resource for ``user`` (JumpCloud property names) under ``mapping``.

    In scope means the user exists, is activated (not suspended or staged) and is a member of a
    group bound to the application. A user out of scope is still described (``active`` false),
    so that deactivation carries the same identity; a deleted user has no description.
    """
    if user is None:
        return Desired(False, {"schemas": [CORE], "active": False})
    in_scope = bound and user.get("state") == "activated"
    resource: dict[str, Any] = {"schemas": [CORE]}
    for rule in mapping:
        value = _source_value(user, rule["source"], in_scope)
        if value is None or value == "":
            continue
        _put(resource, rule["target"], value)
    resource["active"] = in_scope
    return Desired(in_scope, resource)
