"""Tokenizer, recursive-descent parser and formatter for SCIM filters (RFC 7644 §3.4.2.2).

Filters arrive from untrusted clients, so parsing is linear in the input (one forward scan, no
backtracking regexes) and bounded by length, node-count and depth limits that are checked while
the tree is built. Beyond the RFC grammar it accepts what real identity providers send: unquoted
values (``externalId eq jyoung``) and a sub-attribute after a value path
(``emails[type eq "work"].value eq "a@b.c"``, desugared into the bracket filter).
"""

from __future__ import annotations

import json
import math
import re
import string
from typing import NamedTuple

from scimlink.scim.filter.ast import COMPARE_OPS
from scimlink.scim.filter.ast import And
from scimlink.scim.filter.ast import AttrPath
from scimlink.scim.filter.ast import Compare
from scimlink.scim.filter.ast import Node
from scimlink.scim.filter.ast import Not
from scimlink.scim.filter.ast import Or
from scimlink.scim.filter.ast import Present
from scimlink.scim.filter.ast import Value
from scimlink.scim.filter.ast import ValuePath
from scimlink.scim.filter.ast import equality_list

__all__ = ["FilterError", "format_filter", "parse_filter"]

# Neither regex has nested quantifiers, so matching is linear; strings go to the json module.
_SPACE = re.compile(r"[ \t\r\n]*")
_WORD = re.compile(r'[^ \t\r\n()\[\]"]*')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

_NAME_START = frozenset(string.ascii_letters + "$")
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
_LITERALS: dict[str, Value] = {"true": True, "false": False, "null": None}
_OPERATORS = "eq, ne, co, sw, ew, gt, ge, lt, le or pr"


class FilterError(ValueError):
    """The filter is invalid; the message is an English sentence fit for an error ``detail``.

    ``position`` is the 0-based character offset of the problem, when there is one.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


def parse_filter(
    text: str,
    *,
    max_length: int = 4096,
    max_nodes: int = 100,
    max_depth: int = 12,
    max_values: int = 0,
) -> Node:
    """Parse a SCIM filter (RFC 7644 §3.4.2.2) into a tree, or raise :class:`FilterError`.

    Precedence is ``not`` > ``and`` > ``or``, all left-associative. Keywords and operators are
    case-insensitive; attribute names are kept as written. ``max_nodes`` counts every node of the
    tree; ``max_depth`` bounds nesting (brackets, ``not``, value paths), not the length of flat
    ``and``/``or`` chains, which ``max_nodes`` bounds. An ``or`` of ``eq`` comparisons of one
    attribute with strings (:func:`equality_list`) may instead hold up to ``max_values`` values:
    it is one lookup of a set of values, whatever their number.
    """
    if len(text) > max_length:
        raise FilterError(
            f"The filter is {len(text)} characters long, which exceeds the limit of "
            f"{max_length} characters."
        )
    parser = _Parser(text, max(max_nodes, 2 * max_values - 1), max_depth, max_nodes, max_values)
    if parser.peek().kind == "end":
        raise FilterError("The filter is empty.", 0)
    try:
        node, _ = parser.parse_or(0, inside_brackets=False)
    except RecursionError:  # only reachable when the caller raised max_depth very high
        raise FilterError("The filter is nested too deeply to be parsed.") from None
    parser.expect("end", "'and', 'or' or the end of the filter")
    if parser.nodes > max_nodes and equality_list(node) is None:
        raise parser.too_many()
    return node


def format_filter(node: Node) -> str:
    """Render ``node`` as a canonical filter: lower-case keywords, quoted strings, and only the
    parentheses the tree needs, so ``parse_filter(format_filter(n)) == n``."""
    if isinstance(node, Compare):
        return f"{_format_path(node.path)} {node.op} {_format_value(node.value)}"
    if isinstance(node, Present):
        return f"{_format_path(node.path)} pr"
    if isinstance(node, And | Or):
        level = _precedence(node)
        keyword = "and" if isinstance(node, And) else "or"
        # Left-associative: a right operand of the same precedence needs parentheses.
        return f"{_operand(node.left, level - 1)} {keyword} {_operand(node.right, level)}"
    if isinstance(node, Not):
        return f"not ({format_filter(node.expr)})"
    return f"{_format_path(node.path)}[{format_filter(node.filter)}]"


def _precedence(node: Node) -> int:
    return 1 if isinstance(node, Or) else 2 if isinstance(node, And) else 3


def _operand(node: Node, enclosing: int) -> str:
    text = format_filter(node)
    return f"({text})" if _precedence(node) <= enclosing else text


def _format_path(path: AttrPath) -> str:
    text = path.attr if path.sub_attr is None else f"{path.attr}.{path.sub_attr}"
    return text if path.urn is None else f"{path.urn}:{text}"


def _format_value(value: Value) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)  # true, false, null and numbers are already JSON


# --- tokenizer ---------------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # "word", "string", "(", ")", "[", "]" or "end"
    text: str  # the source text; for a string, its decoded value
    pos: int

    def keyword(self) -> str | None:
        """The lower-cased word, so that keywords and operators match case-insensitively."""
        return self.text.lower() if self.kind == "word" else None

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the filter"
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return json.dumps(text, ensure_ascii=False) if self.kind == "string" else f"'{text}'"


def _scan(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    assert match is not None  # both patterns match the empty string
    return match.end()


class _Lexer:
    """Splits the text into brackets, JSON strings and words (runs of anything but spaces,
    brackets and quotes) one token at a time, so that bad input fails at its first bad token."""

    _strings = json.JSONDecoder(strict=False)

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.current = self.lex()

    def peek(self) -> _Token:
        return self.current

    def advance(self) -> _Token:
        token = self.current
        if token.kind != "end":
            self.current = self.lex()
        return token

    def lex(self) -> _Token:
        text = self.text
        pos = _scan(_SPACE, text, self.pos)
        if pos == len(text):
            self.pos = pos
            return _Token("end", "", pos)
        char = text[pos]
        if char in "()[]":
            self.pos = pos + 1
            return _Token(char, char, pos)
        if char == '"':
            value, self.pos = self.decode_string(pos)
            return _Token("string", value, pos)
        self.pos = _scan(_WORD, text, pos)
        return _Token("word", text[pos : self.pos], pos)

    def decode_string(self, pos: int) -> tuple[str, int]:
        """Decode the JSON string at ``pos`` with the stdlib's linear-time scanner."""
        try:
            return self._strings.raw_decode(self.text, pos)
        except json.JSONDecodeError as exc:
            if exc.msg.startswith("Unterminated"):
                message = f"The string starting at position {pos} is not terminated."
                raise FilterError(message, pos) from None
            message = f"Invalid escape sequence in a string at position {exc.pos}."
            raise FilterError(message, exc.pos) from None


# --- parser ------------------------------------------------------------------------------------


class _Parser(_Lexer):
    """Recursive descent; every ``parse_*`` method returns ``(node, height)``. Heights are tracked
    here because the frozen nodes cannot carry them."""

    def __init__(
        self, text: str, bound: int, max_depth: int, max_nodes: int, max_values: int
    ) -> None:
        super().__init__(text)
        self.nodes = 0
        #: Nodes counted as they are built: the larger of the two limits (a value list's check
        #: comes once the tree is complete).
        self.bound = bound
        self.max_nodes = max_nodes
        self.max_values = max_values
        self.max_depth = max_depth

    def too_many(self) -> FilterError:
        lists = (
            f" (or more than {self.max_values} values of one attribute compared with 'eq' and 'or')"
            if self.max_values
            else ""
        )
        return FilterError(
            f"The filter has more than {self.max_nodes} expressions{lists}, which exceeds the "
            "limit."
        )

    def expect(self, kind: str, wanted: str) -> _Token:
        token = self.advance()
        if token.kind != kind:
            raise FilterError(
                f"Expected {wanted} at position {token.pos} but found {token.describe()}.",
                token.pos,
            )
        return token

    def build(self, node: Node, height: int) -> tuple[Node, int]:
        """Count ``node`` against the limits as soon as it exists, so oversized input fails early."""
        self.nodes += 1
        if self.nodes > self.bound:
            raise self.too_many()
        self.check_depth(height)
        return node, height

    def check_depth(self, depth: int) -> None:
        if depth > self.max_depth:
            raise FilterError(
                f"The filter is nested more than {self.max_depth} levels deep, which exceeds "
                "the limit."
            )

    def parse_or(self, level: int, *, inside_brackets: bool) -> tuple[Node, int]:
        left, height = self.parse_and(level, inside_brackets=inside_brackets)
        while self.peek().keyword() == "or":
            self.advance()
            right, right_height = self.parse_and(level, inside_brackets=inside_brackets)
            left, height = self.build(Or(left, right), max(height, right_height))
        return left, height

    def parse_and(self, level: int, *, inside_brackets: bool) -> tuple[Node, int]:
        left, height = self.parse_unary(level, inside_brackets=inside_brackets)
        while self.peek().keyword() == "and":
            self.advance()
            right, right_height = self.parse_unary(level, inside_brackets=inside_brackets)
            left, height = self.build(And(left, right), max(height, right_height))
        return left, height

    def parse_unary(self, level: int, *, inside_brackets: bool) -> tuple[Node, int]:
        token = self.peek()
        if token.kind == "(":
            return self.parse_group(level, inside_brackets=inside_brackets)
        if token.keyword() == "not":
            self.advance()
            if self.peek().kind != "(":
                self.expect("(", "'(' after 'not'")
            expr, height = self.parse_group(level, inside_brackets=inside_brackets)
            return self.build(Not(expr), height + 1)
        return self.parse_attribute_expression(level, inside_brackets=inside_brackets)

    def parse_group(self, level: int, *, inside_brackets: bool) -> tuple[Node, int]:
        self.advance()  # "("
        self.check_depth(level + 1)
        result = self.parse_or(level + 1, inside_brackets=inside_brackets)
        self.expect(")", "')'")
        return result

    def parse_attribute_expression(self, level: int, *, inside_brackets: bool) -> tuple[Node, int]:
        token = self.expect("word", "an attribute path")
        if token.keyword() in ("and", "or"):
            raise FilterError(
                f"Expected an attribute path at position {token.pos} but found {token.describe()}.",
                token.pos,
            )
        path = _attr_path(token)
        if inside_brackets and (path.urn is not None or path.sub_attr is not None):
            raise FilterError(
                f"Inside a value filter, {token.describe()} at position {token.pos} must be a "
                "plain sub-attribute name.",
                token.pos,
            )
        if self.peek().kind != "[":
            return self.parse_comparison(path)
        bracket = self.advance()
        if inside_brackets:
            raise FilterError(
                f"Nested value filters are not allowed (position {bracket.pos}).", bracket.pos
            )
        if path.sub_attr is not None:
            raise FilterError(
                f"A value filter must follow a plain attribute, not {token.describe()} "
                f"(position {bracket.pos}).",
                bracket.pos,
            )
        self.check_depth(level + 1)
        inner, height = self.parse_or(level + 1, inside_brackets=True)
        self.expect("]", "']'")
        sub_token = self.peek()
        if sub_token.kind == "word" and sub_token.text.startswith("."):
            # emails[type eq "work"].value eq "x"  ->  emails[type eq "work" and value eq "x"]
            self.advance()
            name = sub_token.text[1:]
            if not _is_attr_name(name):
                raise _invalid_path(sub_token)
            leaf, _ = self.parse_comparison(AttrPath(name))
            inner, height = self.build(And(inner, leaf), height + 1)
        return self.build(ValuePath(path, inner), height + 1)

    def parse_comparison(self, path: AttrPath) -> tuple[Node, int]:
        token = self.expect("word", "a comparison operator (" + _OPERATORS + ")")
        op = token.text.lower()
        if op == "pr":
            return self.build(Present(path), 1)
        if op not in COMPARE_OPS:
            raise FilterError(
                f"Unknown comparison operator {token.describe()} at position {token.pos}; "
                f"expected {_OPERATORS}.",
                token.pos,
            )
        return self.build(Compare(path, op, self.parse_value(token)), 1)

    def parse_value(self, op: _Token) -> Value:
        token = self.advance()
        if token.kind == "string":
            return token.text
        if token.kind != "word" or token.keyword() in ("and", "or"):
            raise FilterError(
                f"Expected a value after '{op.text}' at position {token.pos} but found "
                f"{token.describe()}.",
                token.pos,
            )
        keyword = token.text.lower()
        if keyword in _LITERALS:
            return _LITERALS[keyword]
        if _NUMBER.fullmatch(token.text):
            return _number(token)
        return token.text  # an unquoted string, as Entra ID sends them


def _number(token: _Token) -> int | float:
    try:
        if any(char in ".eE" for char in token.text):
            value = float(token.text)
            if math.isfinite(value):
                return value
        else:
            return int(token.text)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        pass
    raise FilterError(f"The number at position {token.pos} is out of range.", token.pos)


def _attr_path(token: _Token) -> AttrPath:
    """Split ``[urn ":"] attr ["." sub_attr]``; URNs contain dots ("2.0"), so cut at the last colon."""
    text, urn = token.text, None
    if text[:4].lower() == "urn:":
        cut = text.rfind(":")
        if cut <= 4:
            raise _invalid_path(token)
        urn, text = text[:cut], text[cut + 1 :]
    attr, dot, sub_attr = text.partition(".")
    if not _is_attr_name(attr) or (dot and not _is_attr_name(sub_attr)):
        raise _invalid_path(token)
    return AttrPath(attr, sub_attr if dot else None, urn)


def _is_attr_name(name: str) -> bool:
    """ATTRNAME = ALPHA *(nameChar) (RFC 7643 §2.1), plus a leading ``$`` for ``$ref``."""
    return name[:1] in _NAME_START and all(char in _NAME_CHARS for char in name[1:])


def _invalid_path(token: _Token) -> FilterError:
    return FilterError(
        f"Invalid attribute path {token.describe()} at position {token.pos}.", token.pos
    )
