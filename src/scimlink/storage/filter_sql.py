"""Compile a SCIM filter tree into a SQLAlchemy boolean expression (RFC 7644 §3.4.2.2).

The compiler is generic: a :class:`Scope` says what each attribute path is in SQL (an indexed
column, a JSON expression, or a set of elements reached through ``EXISTS``). Only paths a scope
resolves are accepted — a whitelist — and every value is a bound parameter, never SQL text.
``co``/``sw``/``ew`` escape ``%``, ``_`` and the escape character so they match literally.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import Protocol
from typing import cast

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import false
from sqlalchemy import func
from sqlalchemy import not_
from sqlalchemy import or_
from sqlalchemy import true
from sqlalchemy.orm import QueryableAttribute

from scimlink.scim.errors import invalid_filter
from scimlink.scim.filter import And
from scimlink.scim.filter import AttrPath
from scimlink.scim.filter import Compare
from scimlink.scim.filter import Node
from scimlink.scim.filter import Not
from scimlink.scim.filter import Or
from scimlink.scim.filter import Present
from scimlink.scim.filter import Value
from scimlink.scim.filter import ValuePath
from scimlink.scim.filter import equality_list
from scimlink.scim.text import fold

Condition = ColumnElement[bool]
#: A column, a mapped attribute or any SQL expression.
SqlExpression = ColumnElement[Any] | QueryableAttribute[Any]
_STRING_TYPES = frozenset({"string", "reference", "binary"})
_ORDERED = frozenset({"gt", "ge", "lt", "le"})


@dataclass(frozen=True, slots=True)
class Scalar:
    """A single-valued attribute in SQL.

    ``folded`` means ``expr`` already holds lower-cased values (an indexed ``*_key`` column), so a
    case-insensitive comparison lowers only the parameter and keeps the index usable. For
    ``boolean`` attributes ``expr`` is a SQL boolean expression.
    """

    expr: SqlExpression
    type: str = "string"
    case_exact: bool = False
    folded: bool = False


Wrap = Callable[[Condition | None], Condition]


class Scope(Protocol):
    """What attribute paths mean in SQL for one resource table (the whitelist)."""

    dialect: str

    def is_multi_valued(self, path: AttrPath) -> bool: ...

    def scalar(self, path: AttrPath) -> Scalar: ...

    def elements(self, path: AttrPath) -> tuple[Scope, Wrap]: ...


def compile_filter(node: Node, scope: Scope) -> Condition:
    """Translate ``node`` into a WHERE clause for ``scope``'s table."""
    if isinstance(node, And):
        return and_(compile_filter(node.left, scope), compile_filter(node.right, scope))
    if isinstance(node, Or):
        any_of = _any_of(node, scope)
        if any_of is not None:
            return any_of
        return or_(compile_filter(node.left, scope), compile_filter(node.right, scope))
    if isinstance(node, Not):
        # An unassigned attribute makes the inner test NULL, and NOT NULL is NULL: such
        # resources must match "not (...)" (RFC 7644 §3.4.2.2), so read NULL as false first.
        return not_(func.coalesce(compile_filter(node.expr, scope), false()))
    if isinstance(node, ValuePath):
        inner, wrap = scope.elements(node.path)
        return wrap(compile_filter(node.filter, inner))
    if scope.is_multi_valued(node.path):
        # "emails.value eq x" and "emails eq x" mean: some element matches (RFC 7644 §3.4.2.2).
        inner, wrap = scope.elements(AttrPath(node.path.attr, None, node.path.urn))
        if node.path.sub_attr is None and isinstance(node, Present):
            return wrap(None)
        relative = AttrPath(node.path.sub_attr or "value")
        rewritten = (
            Present(relative)
            if isinstance(node, Present)
            else Compare(relative, node.op, node.value)
        )
        return wrap(compile_filter(rewritten, inner))
    scalar = scope.scalar(node.path)
    if isinstance(node, Present):
        return _present(scalar)
    return _compare(scalar, node.op, node.value, scope.dialect, node.path)


def _any_of(node: Or, scope: Scope) -> Condition | None:
    """``a eq "x" or a eq "y" …`` on one single-valued string attribute as ``a IN (…)``.

    The same rows (``eq`` with a non-null value never matches NULL), one expression instead of
    one per operand: an IdP looking many users up at once (``userName eq … or …``) costs one
    index probe per name either way, but building and caching the statement no longer grows
    with the names.
    """
    listed = equality_list(node)
    if listed is None or scope.is_multi_valued(listed[0]):
        return None
    path, values = listed
    scalar = scope.scalar(path)
    if scalar.type not in _STRING_TYPES:
        return None
    expr: SqlExpression = scalar.expr
    for value in values:
        _check_control(value, path)
    if scalar.folded:
        values = [fold(value) for value in values]
    elif not scalar.case_exact:
        values = [value.lower() for value in values]
        expr = func.lower(expr)
    return expr.in_(values)


def _present(scalar: Scalar) -> Condition:
    if scalar.type in _STRING_TYPES:
        return and_(scalar.expr.is_not(None), scalar.expr != "")
    return scalar.expr.is_not(None)


def _name(path: AttrPath) -> str:
    return f"{path.attr}.{path.sub_attr}" if path.sub_attr else path.attr


def _check_control(value: str, path: AttrPath) -> None:
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        # Stored strings never hold control characters (writes refuse them), and PostgreSQL
        # cannot even bind a NUL: refuse the filter instead of failing in the database.
        raise invalid_filter(
            f"The value compared with '{_name(path)}' contains control characters."
        )


def _compare(scalar: Scalar, op: str, value: Value, dialect: str, path: AttrPath) -> Condition:
    if isinstance(value, str):
        _check_control(value, path)
    if value is None:
        if op == "eq":
            return scalar.expr.is_(None)
        if op == "ne":
            return scalar.expr.is_not(None)
        raise invalid_filter(f"'{op}' cannot compare '{_name(path)}' with null.")
    if scalar.type == "boolean":
        return _compare_boolean(scalar, op, value, path)
    if scalar.type == "dateTime":
        return _compare_ordered(scalar.expr, op, _datetime(value, path), path)
    if scalar.type in {"integer", "decimal"}:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise invalid_filter(f"'{_name(path)}' is a number; compare it with a number.")
        return _compare_ordered(scalar.expr, op, value, path)
    return _compare_string(
        scalar, op, str(value).lower() if isinstance(value, bool) else str(value), dialect
    )


def _compare_boolean(scalar: Scalar, op: str, value: Value, path: AttrPath) -> Condition:
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise invalid_filter(f"'{_name(path)}' is a boolean; compare it with true or false.")
    if op not in {"eq", "ne"}:
        raise invalid_filter(f"'{op}' is not defined for the boolean '{_name(path)}'.")
    matches = scalar.expr == (true() if value else false())
    return matches if op == "eq" else or_(not_(matches), scalar.expr.is_(None))


def _compare_ordered(expr: SqlExpression, op: str, value: Any, path: AttrPath) -> Condition:
    if op == "eq":
        return cast(Condition, expr == value)
    if op == "ne":
        return or_(expr != value, expr.is_(None))
    if op == "gt":
        return cast(Condition, expr > value)
    if op == "ge":
        return cast(Condition, expr >= value)
    if op == "lt":
        return cast(Condition, expr < value)
    if op == "le":
        return cast(Condition, expr <= value)
    raise invalid_filter(f"'{op}' is only defined for strings, not for '{_name(path)}'.")


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _datetime(value: Value, path: AttrPath) -> datetime:
    """Parse an RFC 3339 date-time (Entra sends 7 fractional digits and, unquoted, E13)."""
    if not isinstance(value, str):
        raise invalid_filter(f"'{_name(path)}' is a date-time; compare it with an RFC 3339 string.")
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: beyond year 1..9999 once in UTC
        raise invalid_filter(f"{value!r} is not an RFC 3339 date-time.") from None


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _compare_string(scalar: Scalar, op: str, value: str, dialect: str) -> Condition:
    expr: SqlExpression = scalar.expr
    if scalar.folded:
        value = fold(value)
    elif not scalar.case_exact:
        value = value.lower()
        expr = func.lower(expr)
    if op == "eq":
        return expr == value
    if op == "ne":
        return or_(expr != value, expr.is_(None))
    if op in _ORDERED:
        return _compare_ordered(expr, op, value, AttrPath("value"))
    if scalar.case_exact and dialect == "sqlite":
        # SQLite's LIKE ignores ASCII case; exact substring tests keep caseExact (RFC 7643 §2.2).
        if op == "sw":
            return func.substr(expr, 1, len(value)) == value
        if op == "ew":
            return func.substr(expr, -len(value)) == value if value else expr.is_not(None)
        return func.instr(expr, value) > 0
    pattern = _like_escape(value)
    if op == "sw":
        pattern = f"{pattern}%"
    elif op == "ew":
        pattern = f"%{pattern}"
    else:
        pattern = f"%{pattern}%"
    return expr.like(pattern, escape="\\")
