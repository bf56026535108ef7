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


def or_operands(node: Node) -> list[Node]:
    """The operands of a chain of ``or``, left to right (iteratively: a long chain is deep)."""
    operands: list[Node] = []
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, Or):
            pending.extend((item.right, item.left))
        else:
            operands.append(item)
    return operands


def equality_list(node: Node) -> tuple[AttrPath, list[str]] | None:
    """``a eq "x" or a eq "y" …``: one attribute compared with several strings, as a directory
    looking many users up at once sends it; ``None`` for any other shape."""
    if not isinstance(node, Or):
        return None
    operands = or_operands(node)
    first = operands[0]
    if not isinstance(first, Compare):
        return None
    values: list[str] = []
    for operand in operands:
        if not (
            isinstance(operand, Compare)
            and operand.op == "eq"
            and operand.path == first.path
            and isinstance(operand.value, str)
        ):
            return None
        values.append(operand.value)
    return first.path, values
