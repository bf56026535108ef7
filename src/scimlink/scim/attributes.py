"""Attribute definitions of the User schemas, for resolving filter and sort paths.

Derived once from the published schema documents (so discovery and filtering cannot disagree),
plus the common attributes of RFC 7643 §3.1 (``id``, ``externalId``, ``meta``). Names resolve
case-insensitively (RFC 7643 §2.1); a plain name no schema declares is a custom attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from functools import cache
from typing import Any

from scimlink.scim.discovery import schema_bodies
from scimlink.scim.errors import ScimError
from scimlink.scim.errors import invalid_filter
from scimlink.scim.filter import AttrPath
from scimlink.scim.resources import CORE_USER_SCHEMA
from scimlink.scim.resources import ENTERPRISE_USER_SCHEMA


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    type: str = "string"
    multi_valued: bool = False
    case_exact: bool = False
    sub_attributes: dict[str, Attribute] = field(default_factory=dict)

    def sub(self, name: str) -> Attribute | None:
        return self.sub_attributes.get(name.lower())


@dataclass(frozen=True, slots=True)
class Resolved:
    """A resolved path: ``schema`` is None for core and custom attributes."""

    schema: str | None
    attribute: Attribute
    sub: Attribute | None = None
    custom: bool = False


def _from_body(body: dict[str, Any]) -> Attribute:
    subs = {s["name"].lower(): _from_body(s) for s in body.get("subAttributes", [])}
    return Attribute(
        name=body["name"],
        type=body.get("type", "string"),
        multi_valued=bool(body.get("multiValued")),
        case_exact=bool(body.get("caseExact")),
        sub_attributes=subs,
    )


_COMMON = (
    Attribute("id", case_exact=True),
    Attribute("externalId", case_exact=True),
    Attribute(
        "meta",
        type="complex",
        sub_attributes={
            "resourcetype": Attribute("resourceType", case_exact=True),
            "created": Attribute("created", type="dateTime"),
            "lastmodified": Attribute("lastModified", type="dateTime"),
            "version": Attribute("version", case_exact=True),
            "location": Attribute("location", type="reference", case_exact=True),
        },
    ),
)


@cache
def schema_attributes() -> dict[str, dict[str, Attribute]]:
    """Per schema URN (lower-cased), its attributes by lower-cased name."""
    result: dict[str, dict[str, Attribute]] = {}
    for body in schema_bodies():
        result[body["id"].lower()] = {a["name"].lower(): _from_body(a) for a in body["attributes"]}
    result[CORE_USER_SCHEMA.lower()].update({a.name.lower(): a for a in _COMMON})
    return result


_SENSITIVE = frozenset({"password"})


def resolve(path: AttrPath, *, parent: Attribute | None = None) -> Resolved:
    """Resolve a filter or sort path; unknown schema attributes are ``invalidFilter``."""
    if parent is not None:
        sub = parent.sub(path.attr)
        if sub is None:
            raise invalid_filter(f"'{parent.name}' has no sub-attribute '{path.attr}'.")
        return Resolved(None, parent, sub)
    schemas = schema_attributes()
    schema = path.urn.lower() if path.urn else CORE_USER_SCHEMA.lower()
    attributes = schemas.get(schema)
    if attributes is None:
        raise invalid_filter(f"Unknown schema '{path.urn}'.")
    attribute = attributes.get(path.attr.lower())
    if attribute is None:
        if path.urn is None and path.sub_attr is None:
            return Resolved(None, Attribute(path.attr), custom=True)
        raise invalid_filter(f"Unknown attribute '{path.attr}'.")
    if attribute.name.lower() in _SENSITIVE:
        raise ScimError(
            400, "The password attribute cannot be filtered or sorted on.", "invalidFilter"
        )
    sub_attribute: Attribute | None = None
    if path.sub_attr is not None:
        sub_attribute = attribute.sub(path.sub_attr)
        if sub_attribute is None:
            raise invalid_filter(f"'{attribute.name}' has no sub-attribute '{path.sub_attr}'.")
    urn = None if schema == CORE_USER_SCHEMA.lower() else ENTERPRISE_USER_SCHEMA
    return Resolved(urn, attribute, sub_attribute)
