"""Syntax tree for SCIM filters (RFC 7644 §3.4.2.2).

The nodes are frozen and slotted so a parsed filter can be hashed, compared in tests and shared
between threads. They carry the attribute names exactly as the client wrote them: resolving them
against a schema (case-insensitively) is the caller's job, not the parser's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

#: The comparison operators of RFC 7644 §3.4.2.2, lower-cased. ``pr`` is unary: see :class:`Present`.
COMPARE_OPS: frozenset[str] = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})


@dataclass(frozen=True, slots=True)
class AttrPath:
    """An attribute path: ``[urn ":"] attr ["." sub_attr]``.

    ``urn`` is the schema URN of a fully qualified path, i.e. everything before the last ``:``
    (URNs contain dots, as in ``2.0``, so only the part after that colon is split on ``.``).
    """

    attr: str
    sub_attr: str | None = None
    urn: str | None = None


Value: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Compare:
    """``path op value``; ``op`` is one of :data:`COMPARE_OPS`."""

    path: AttrPath
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class Present:
    """``path pr``: the attribute has a non-empty value."""

    path: AttrPath


@dataclass(frozen=True, slots=True)
class And:
    """``left and right``."""

    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or:
    """``left or right``."""

    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Not:
    """``not (expr)``."""

    expr: Node


@dataclass(frozen=True, slots=True)
class ValuePath:
    """``path[filter]``: some value of a multi-valued complex attribute matches ``filter``.

    ``path.sub_attr`` is ``None``; the paths inside ``filter`` name sub-attributes of ``path`` and
    are relative (``AttrPath(attr=<sub-attribute>)``).
    """

    path: AttrPath
    filter: Node


Node: TypeAlias = Compare | Present | And | Or | Not | ValuePath
