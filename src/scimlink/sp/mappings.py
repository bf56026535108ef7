"""SCIM mappings: which users a tenant admits over SCIM, and with which inSync configuration.

Pure policy, as inSync applies it (provisioning-engines.md §5): mappings are evaluated at create
time in priority order (oldest first) and the first match assigns profile, storage and quota. The
criteria are "Allow any user" or one SCIM attribute with one or more values, compared
case-sensitively, name and value alike. A user that matches nothing, or that lacks ``userName``
or ``displayName``, is not created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from scimlink.scim.resources import ENTERPRISE_USER_SCHEMA

NO_MATCH = "None of the SCIM Mapping matched to create user"


@dataclass(frozen=True, slots=True)
class Criteria:
    """``any_user``, or ``attribute`` equal to one of ``values`` (case-sensitive)."""

    any_user: bool
    attribute: str | None = None
    values: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.any_user:
            return "Allow any user"
        return f"{self.attribute} is one of {', '.join(repr(v) for v in self.values)}"


@dataclass(frozen=True, slots=True)
class MappingRule:
    id: str
    name: str
    criteria: Criteria


@dataclass(frozen=True, slots=True)
class Step:
    mapping: str
    matched: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Which mapping places a user, and why each earlier one did not."""

    matched: MappingRule | None
    steps: list[Step] = field(default_factory=list)
    rejection: str | None = None

    def explain(self) -> str:
        lines = [
            f"{'match' if s.matched else 'no match'}: {s.mapping}: {s.reason}" for s in self.steps
        ]
        if self.matched is None:
            lines.append(f"rejected: {self.rejection}")
        return "\n".join(lines)


def parse_values(text: str) -> tuple[str, ...]:
    """Values are comma-separated, or semicolon-separated when a value contains commas."""
    separator = ";" if ";" in text else ","
    values = tuple(part.strip() for part in text.split(separator) if part.strip())
    if not values:
        raise ValueError("A SCIM mapping needs at least one value to match.")
    return values


def attribute_values(document: dict[str, Any], attribute: str) -> list[Any]:
    """The values of ``attribute`` in a SCIM user document; names are case-sensitive here.

    ``attribute`` is a core or custom name (``title``, ``company``), a dotted sub-attribute
    (``name.givenName``, ``emails.value``), or an enterprise attribute, fully qualified
    (``urn:…:enterprise:2.0:User:department``) or by its plain name when the user has no custom
    attribute of that name.
    """
    container: Any = document
    path = attribute
    prefix = ENTERPRISE_USER_SCHEMA + ":"
    if attribute.startswith(prefix):
        container, path = document.get(ENTERPRISE_USER_SCHEMA) or {}, attribute[len(prefix) :]
    head, _, sub = path.partition(".")
    if head not in container and container is document:
        container = document.get(ENTERPRISE_USER_SCHEMA) or {}
    value = container.get(head) if isinstance(container, dict) else None
    items = value if isinstance(value, list) else [value]
    if sub:
        items = [item.get(sub) for item in items if isinstance(item, dict)]
    return [item for item in items if item is not None]


def _check(rule: MappingRule, document: dict[str, Any]) -> Step:
    criteria = rule.criteria
    if criteria.any_user:
        return Step(rule.name, True, "allows any user")
    assert criteria.attribute is not None
    found = attribute_values(document, criteria.attribute)
    if not found:
        return Step(rule.name, False, f"the user has no '{criteria.attribute}' attribute")
    for value in found:
        if isinstance(value, str | int | float | bool) and str(value) in criteria.values:
            return Step(rule.name, True, f"'{criteria.attribute}' is {str(value)!r}")
    shown = ", ".join(repr(str(v)) for v in found)
    return Step(
        rule.name,
        False,
        f"'{criteria.attribute}' is {shown}, not one of {criteria.values!r} (case-sensitive)",
    )


def evaluate(rules: Sequence[MappingRule], document: dict[str, Any]) -> Evaluation:
    """Evaluate ``rules`` in priority order against a SCIM user ``document``."""
    for required in ("userName", "displayName"):
        if not document.get(required):
            return Evaluation(None, [], f"{NO_MATCH}: the user has no '{required}'")
    steps: list[Step] = []
    for rule in rules:
        step = _check(rule, document)
        steps.append(step)
        if step.matched:
            return Evaluation(rule, steps)
    reason = NO_MATCH if rules else f"{NO_MATCH}: the tenant has no SCIM mapping"
    return Evaluation(None, steps, reason)
