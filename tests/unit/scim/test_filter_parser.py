"""Tests for the SCIM filter parser and formatter (RFC 7644 §3.4.2.2)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from scimlink.scim.filter import COMPARE_OPS
from scimlink.scim.filter import And
from scimlink.scim.filter import AttrPath
from scimlink.scim.filter import Compare
from scimlink.scim.filter import FilterError
from scimlink.scim.filter import Node
from scimlink.scim.filter import Not
from scimlink.scim.filter import Or
from scimlink.scim.filter import Present
from scimlink.scim.filter import Value
from scimlink.scim.filter import ValuePath
from scimlink.scim.filter import equality_list
from scimlink.scim.filter import format_filter
from scimlink.scim.filter import parse_filter

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def p(attr: str, sub_attr: str | None = None, urn: str | None = None) -> AttrPath:
    return AttrPath(attr, sub_attr, urn)


def eq(attr: str, value: Value) -> Compare:
    return Compare(p(attr), "eq", value)


def pr(attr: str) -> Present:
    return Present(p(attr))


def parse_value(text: str) -> Value:
    node = parse_filter(f"a eq {text}")
    assert isinstance(node, Compare)
    return node.value


def error(text: str, **limits: int) -> FilterError:
    with pytest.raises(FilterError) as info:
        parse_filter(text, **limits)
    return info.value


# --- comparisons and presence ------------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(COMPARE_OPS))
def test_every_comparison_operator(op: str) -> None:
    assert parse_filter(f'userName {op} "x"') == Compare(p("userName"), op, "x")


def test_compare_ops_are_the_rfc_operators() -> None:
    assert frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"}) == COMPARE_OPS


def test_present() -> None:
    assert parse_filter("title pr") == pr("title")


def test_rfc_example() -> None:
    text = 'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")'
    assert parse_filter(text) == And(
        eq("userType", "Employee"),
        Or(
            Compare(p("emails"), "co", "example.com"),
            Compare(p("emails", "value"), "co", "example.org"),
        ),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName EQ "x"', eq("userName", "x")),
        ('userName Eq "x"', eq("userName", "x")),
        ("title PR", pr("title")),
        ("a pr AND b pr", And(pr("a"), pr("b"))),
        ("a pr Or b pr", Or(pr("a"), pr("b"))),
        ("NOT (a pr)", Not(pr("a"))),
        ("a eq TRUE", eq("a", True)),
        ("a eq False", eq("a", False)),
        ("a eq NULL", eq("a", None)),
    ],
)
def test_keywords_and_operators_are_case_insensitive(text: str, expected: Node) -> None:
    assert parse_filter(text) == expected


def test_attribute_names_keep_their_case() -> None:
    assert parse_filter('UserName eq "x" and NAME.familyName pr') == And(
        eq("UserName", "x"), Present(p("NAME", "familyName"))
    )


def test_whitespace_between_tokens_is_flexible() -> None:
    assert parse_filter(' \t(a  pr\n)\r\nand\tb eq "x" ') == And(pr("a"), eq("b", "x"))


# --- precedence, grouping and not --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a pr or b pr and c pr", Or(pr("a"), And(pr("b"), pr("c")))),
        ("a pr and b pr or c pr", Or(And(pr("a"), pr("b")), pr("c"))),
        ("a pr or b pr or c pr", Or(Or(pr("a"), pr("b")), pr("c"))),
        ("a pr and b pr and c pr", And(And(pr("a"), pr("b")), pr("c"))),
        ("(a pr or b pr) and c pr", And(Or(pr("a"), pr("b")), pr("c"))),
        ("a pr and (b pr or c pr)", And(pr("a"), Or(pr("b"), pr("c")))),
        ("a pr or (b pr or c pr)", Or(pr("a"), Or(pr("b"), pr("c")))),
        ("((a pr))", pr("a")),
        ("not (a pr) and b pr", And(Not(pr("a")), pr("b"))),
        ("not(a pr or b pr)", Not(Or(pr("a"), pr("b")))),
        ("not (not (a pr))", Not(Not(pr("a")))),
        ("b pr or not (a pr)", Or(pr("b"), Not(pr("a")))),
    ],
)
def test_precedence_and_grouping(text: str, expected: Node) -> None:
    assert parse_filter(text) == expected


# --- value paths -------------------------------------------------------------------------------


def test_value_path() -> None:
    assert parse_filter('emails[type eq "work"]') == ValuePath(p("emails"), eq("type", "work"))


def test_value_path_with_logic_inside_and_around() -> None:
    text = 'emails[type eq "work" and not (primary eq false)] or ims[value pr]'
    assert parse_filter(text) == Or(
        ValuePath(p("emails"), And(eq("type", "work"), Not(eq("primary", False)))),
        ValuePath(p("ims"), pr("value")),
    )


def test_value_path_with_sub_attribute_is_desugared() -> None:
    assert parse_filter('emails[type eq "work"].value eq "a@b.c"') == ValuePath(
        p("emails"), And(eq("type", "work"), eq("value", "a@b.c"))
    )


def test_value_path_with_sub_attribute_present() -> None:
    assert parse_filter('emails[type eq "work" or primary eq true].value PR') == ValuePath(
        p("emails"), And(Or(eq("type", "work"), eq("primary", True)), pr("value"))
    )


def test_value_path_with_urn() -> None:
    assert parse_filter(f"{CORE}:emails[primary eq true]") == ValuePath(
        p("emails", urn=CORE), eq("primary", True)
    )


def test_value_path_bare_value_before_closing_bracket() -> None:
    assert parse_filter("emails[value eq a@b.c]") == ValuePath(p("emails"), eq("value", "a@b.c"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('emails[type eq "work" and x[y pr]]', "Nested value filters are not allowed"),
        ('name.givenName[type eq "x"]', "must follow a plain attribute"),
        ("emails[value.x eq 1]", "must be a plain sub-attribute name"),
        (f"emails[{CORE}:type eq 1]", "must be a plain sub-attribute name"),
        ('emails[type eq "w"].1x eq "a"', "Invalid attribute path '.1x'"),
        ('emails[type eq "w"].value.x eq "a"', "Invalid attribute path"),
        ('emails[type eq "w"].value', "Expected a comparison operator"),
        ('emails[type eq "w"', "Expected ']' at position 18 but found the end of the filter"),
        ('emails[type eq "w")', "Expected ']'"),
        ("emails[]", "Expected an attribute path at position 7 but found ']'"),
        ('emails[type eq "w"] x', "Expected 'and', 'or' or the end of the filter"),
    ],
)
def test_value_path_errors(text: str, message: str) -> None:
    assert message in str(error(text))


# --- attribute paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("userName", p("userName")),
        ("name.givenName", p("name", "givenName")),
        ("$ref", p("$ref")),
        ("members.$ref", p("members", "$ref")),
        ("x-custom_attr9", p("x-custom_attr9")),
        (f"{CORE}:userName", p("userName", urn=CORE)),
        (f"{CORE}:name.givenName", p("name", "givenName", CORE)),
        (f"{ENTERPRISE}:employeeNumber", p("employeeNumber", urn=ENTERPRISE)),
        (f"{ENTERPRISE}:manager.value", p("manager", "value", ENTERPRISE)),
        ("URN:Example:v1.2:attr", p("attr", urn="URN:Example:v1.2")),
    ],
)
def test_attribute_paths(text: str, expected: AttrPath) -> None:
    assert parse_filter(f"{text} pr") == Present(expected)


@pytest.mark.parametrize(
    "text",
    ["1abc", "a..b", "a.", ".a", "a.b.c", "a$b", "é", "-a", "urn:", "urn:x", "urn::x", "urn:x:"],
)
def test_invalid_attribute_paths(text: str) -> None:
    exc = error(f"{text} pr")
    assert str(exc) == f"Invalid attribute path '{text}' at position 0."
    assert exc.position == 0


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"plain"', "plain"),
        ('""', ""),
        ('"say \\"hi\\""', 'say "hi"'),
        ('"back\\\\slash"', "back\\slash"),
        ('"a\\/b"', "a/b"),
        ('"\\b\\f\\n\\r\\t"', "\b\f\n\r\t"),
        ('"caf\\u00e9"', "café"),
        ('"\\ud83d\\ude00"', "\U0001f600"),
        ('"café ☃"', "café ☃"),
        ('"x (y) [z] and w or not"', "x (y) [z] and w or not"),
    ],
)
def test_string_values(text: str, expected: str) -> None:
    assert parse_value(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("false", False), ("TRUE", True), ("null", None), ("Null", None)],
)
def test_literal_values(text: str, expected: Value) -> None:
    value = parse_value(text)
    assert value is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("-0", 0),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("1.5", 1.5),
        ("-2.5e-3", -0.0025),
        ("1E3", 1000.0),
        ("1e+2", 100.0),
        ("0.0", 0.0),
    ],
)
def test_number_values(text: str, expected: float) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jyoung", "jyoung"),  # Entra ID: externalId eq jyoung
        ("O", "O"),  # Entra ID: userName sw O
        ("2015-10-10T14:38:21.8617979-07:00", "2015-10-10T14:38:21.8617979-07:00"),
        ("a@b.c", "a@b.c"),
        ("007", "007"),  # not a JSON number
        ("1.", "1."),
        ("+1", "+1"),
        ("-", "-"),
        ("not", "not"),
        ("pr", "pr"),
        ("truthy", "truthy"),
        ("0x1F", "0x1F"),
    ],
)
def test_unquoted_values_are_strings(text: str, expected: str) -> None:
    assert parse_value(text) == expected


def test_unquoted_values_in_context() -> None:
    assert parse_filter("externalId eq jyoung and meta.created gt 2015-10-10T14:38:21Z") == And(
        eq("externalId", "jyoung"), Compare(p("meta", "created"), "gt", "2015-10-10T14:38:21Z")
    )


@pytest.mark.parametrize("text", ["1e999", "-1e999", "1.0e400"])
def test_numbers_out_of_float_range(text: str) -> None:
    assert str(error(f"a eq {text}")) == "The number at position 5 is out of range."


@pytest.fixture
def small_int_digit_limit() -> Iterator[None]:
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    yield
    sys.set_int_max_str_digits(previous)


@pytest.mark.usefixtures("small_int_digit_limit")
def test_integer_with_too_many_digits() -> None:
    exc = error("a eq " + "1" * 700)
    assert str(exc) == "The number at position 5 is out of range."
    assert exc.position == 5


# --- syntax errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "The filter is empty.", 0),
        (" \t\r\n ", "The filter is empty.", 0),
        (
            'userName foo "x"',
            "Unknown comparison operator 'foo' at position 9; "
            "expected eq, ne, co, sw, ew, gt, ge, lt, le or pr.",
            9,
        ),
        (
            "userName",
            "Expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) "
            "at position 8 but found the end of the filter.",
            8,
        ),
        (
            'userName "eq" "x"',
            "Expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) "
            'at position 9 but found "eq".',
            9,
        ),
        (
            "userName eq",
            "Expected a value after 'eq' at position 11 but found the end of the filter.",
            11,
        ),
        ("userName eq )", "Expected a value after 'eq' at position 12 but found ')'.", 12),
        ("a EQ and b pr", "Expected a value after 'EQ' at position 5 but found 'and'.", 5),
        ("a eq OR", "Expected a value after 'eq' at position 5 but found 'OR'.", 5),
        ("(a pr", "Expected ')' at position 5 but found the end of the filter.", 5),
        ("((a pr)", "Expected ')' at position 7 but found the end of the filter.", 7),
        ("(a pr]", "Expected ')' at position 5 but found ']'.", 5),
        ("a pr)", "Expected 'and', 'or' or the end of the filter at position 4 but found ')'.", 4),
        ("a pr]", "Expected 'and', 'or' or the end of the filter at position 4 but found ']'.", 4),
        (
            "a pr b pr",
            "Expected 'and', 'or' or the end of the filter at position 5 but found 'b'.",
            5,
        ),
        (
            'a eq "x" "y"',
            "Expected 'and', 'or' or the end of the filter at position 9 but found \"y\".",
            9,
        ),
        (
            "a pr and",
            "Expected an attribute path at position 8 but found the end of the filter.",
            8,
        ),
        ("a pr or or b pr", "Expected an attribute path at position 8 but found 'or'.", 8),
        ("and pr", "Expected an attribute path at position 0 but found 'and'.", 0),
        ("()", "Expected an attribute path at position 1 but found ')'.", 1),
        ('"a" eq 1', 'Expected an attribute path at position 0 but found "a".', 0),
        ("[a pr]", "Expected an attribute path at position 0 but found '['.", 0),
        ("not a pr", "Expected '(' after 'not' at position 4 but found 'a'.", 4),
        ("not", "Expected '(' after 'not' at position 3 but found the end of the filter.", 3),
        ('a eq "abc', "The string starting at position 5 is not terminated.", 5),
        ('a eq "abc\\"', "The string starting at position 5 is not terminated.", 5),
        ('a eq "abc\\', "The string starting at position 5 is not terminated.", 5),
        ('a eq "a\\x"', "Invalid escape sequence in a string at position 7.", 7),
        ('a eq "\\u12"', "Invalid escape sequence in a string at position 7.", 7),
        ('a eq "\\u12zz"', "Invalid escape sequence in a string at position 7.", 7),
    ],
)
def test_syntax_errors(text: str, message: str, position: int) -> None:
    exc = error(text)
    assert str(exc) == message
    assert exc.position == position


def test_long_tokens_are_truncated_in_messages() -> None:
    word = "x" * 100
    message = str(error(f"a pr {word}"))
    assert f"found '{'x' * 37}...'." in message
    assert len(message) < 120


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)
    assert FilterError("Bad.").position is None


# --- limits ------------------------------------------------------------------------------------


def test_two_kilobyte_filter_is_accepted() -> None:
    text = " and ".join(f'attr{i} eq "{"v" * 200}"' for i in range(10))
    assert 2000 < len(text) < 4096
    node = parse_filter(text)
    assert isinstance(node, And)


def test_length_limit() -> None:
    exc = error('userName eq "' + "x" * 5000 + '"')
    assert (
        str(exc)
        == "The filter is 5014 characters long, which exceeds the limit of 4096 characters."
    )
    assert "exceeds the limit of 20 characters" in str(
        error('userName eq "abcdefghij"', max_length=20)
    )
    assert parse_filter('userName eq "abcdefgh"', max_length=22) == eq("userName", "abcdefgh")


def test_length_is_checked_before_tokenizing() -> None:
    assert "characters long" in str(error('"unterminated' + " " * 5000))


def test_whitespace_heavy_ten_kilobyte_input() -> None:
    text = " " * 5000 + "userName\t\n pr" + "\r\n" * 2500
    assert parse_filter(text, max_length=20_000) == pr("userName")
    assert str(error(" " * 10_000, max_length=20_000)) == "The filter is empty."
    assert "characters long" in str(error(" " * 10_000))


def test_five_hundred_or_clauses_are_rejected() -> None:
    text = " or ".join(f'id eq "{i}"' for i in range(500))
    assert "exceeds the limit" in str(error(text, max_length=100_000))
    by_nodes = error(text, max_length=100_000, max_depth=10_000)
    assert str(by_nodes) == "The filter has more than 100 expressions, which exceeds the limit."


def test_node_limit_fails_before_the_rest_is_read() -> None:
    text = " or ".join(f'id eq "{i}"' for i in range(500)) + " or ((( syntax error"
    assert "more than 100 expressions" in str(error(text, max_length=100_000, max_depth=10_000))


def test_node_limit_counts_every_node() -> None:
    text = 'not (a pr) and emails[type eq "w"].value pr'  # 7 nodes
    assert parse_filter(text, max_nodes=7) is not None
    assert "more than 6 expressions" in str(error(text, max_nodes=6))


@pytest.mark.parametrize(
    "text",
    [
        "(" * 50 + "a pr" + ")" * 50,
        "not (" * 50 + "a pr" + ")" * 50,
    ],
)
def test_depth_fifty_is_rejected(text: str) -> None:
    exc = error(text)
    assert str(exc) == "The filter is nested more than 12 levels deep, which exceeds the limit."


@pytest.mark.parametrize("joiner", [" and ", " or "])
def test_flat_chains_count_as_nodes_not_depth(joiner: str) -> None:
    """A long flat chain nests nothing: the node limit, not the depth limit, bounds it."""
    text = joiner.join(["a pr"] * 50)
    assert parse_filter(text, max_depth=1) is not None
    assert "more than 50 expressions" in str(error(text, max_nodes=50))


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("a pr", 1),
        ("((a pr))", 2),  # brackets nest even without adding nodes
        ("not (a pr)", 2),
        ('emails[type eq "w"]', 2),
        ('emails[type eq "w"].value pr', 3),
        ("a pr or b pr or c pr", 1),
        ("a pr and (b pr or c pr)", 1),
    ],
)
def test_depth_is_tree_height_or_bracket_nesting(text: str, depth: int) -> None:
    assert parse_filter(text, max_depth=depth) is not None
    assert "nested more than" in str(error(text, max_depth=depth - 1))


def test_extreme_nesting_never_raises_recursion_error() -> None:
    text = "(" * 5000 + "a pr" + ")" * 5000
    exc = error(text, max_length=20_000, max_depth=1_000_000)
    assert str(exc) == "The filter is nested too deeply to be parsed."


# --- formatting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName EQ "bjensen"', 'userName eq "bjensen"'),
        ("title Pr", "title pr"),
        ("A PR OR b pr AND NOT(c pr)", "A pr or b pr and not (c pr)"),
        ("((a pr or b pr)) and c pr", "(a pr or b pr) and c pr"),
        ("a pr or (b pr or c pr)", "a pr or (b pr or c pr)"),
        ("a pr and (b pr and c pr)", "a pr and (b pr and c pr)"),
        ("(a pr and b pr) or c pr", "a pr and b pr or c pr"),
        (
            "a eq 1 and b eq -2.5 and c eq TRUE and d eq null",
            "a eq 1 and b eq -2.5 and c eq true and d eq null",
        ),
        ("a eq 1e3", "a eq 1000.0"),
        ('a eq "caf\\u00e9 \\"q\\"\\n"', 'a eq "café \\"q\\"\\n"'),
        ("externalId eq jyoung", 'externalId eq "jyoung"'),
        (f"{ENTERPRISE}:manager.value eq x", f'{ENTERPRISE}:manager.value eq "x"'),
        ('emails[type eq "w"].value eq "a"', 'emails[type eq "w" and value eq "a"]'),
        (
            'emails[type eq "w" or type eq "h"].value pr',
            'emails[(type eq "w" or type eq "h") and value pr]',
        ),
    ],
)
def test_format_filter(text: str, expected: str) -> None:
    node = parse_filter(text)
    assert format_filter(node) == expected
    assert parse_filter(format_filter(node)) == node


# --- property: format_filter round-trips -------------------------------------------------------

_KEYWORDS = {"and", "or", "not"}
names = st.one_of(
    st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,7}", fullmatch=True).filter(
        lambda name: name.lower() not in _KEYWORDS
    ),
    st.just("$ref"),
)
urns = st.sampled_from([CORE, ENTERPRISE, "urn:example:v1.2:Thing", "URN:x-y:a.b.c"])
values: st.SearchStrategy[Value] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
ops = st.sampled_from(sorted(COMPARE_OPS))


def leaves(paths: st.SearchStrategy[AttrPath]) -> st.SearchStrategy[Node]:
    return st.one_of(st.builds(Present, paths), st.builds(Compare, paths, ops, values))


def trees(leaf: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        return st.one_of(
            st.builds(And, children, children),
            st.builds(Or, children, children),
            st.builds(Not, children),
        )

    return st.recursive(leaf, extend, max_leaves=12)


relative_paths = st.builds(AttrPath, names)
full_paths = st.builds(AttrPath, names, st.none() | names, st.none() | urns)
value_paths = st.builds(
    ValuePath,
    st.builds(AttrPath, names, st.none(), st.none() | urns),
    trees(leaves(relative_paths)),
)
filters = trees(st.one_of(leaves(full_paths), value_paths))


@settings(database=None, deadline=None, max_examples=300)
@given(filters)
def test_format_filter_round_trips(node: Node) -> None:
    text = format_filter(node)
    parsed = parse_filter(text, max_length=1_000_000, max_nodes=10_000, max_depth=1_000)
    assert parsed == node
    assert repr(parsed) == repr(node)  # also tells True from 1 and 0.0 from 0
    assert format_filter(parsed) == text


def test_a_list_of_values_of_one_attribute_may_pass_the_node_limit() -> None:
    """``a eq "x" or a eq "y" …`` (a directory's batched lookup) is one set of values: it may
    hold ``max_values`` of them, past ``max_nodes``; any other shape may not."""
    listed = " or ".join(f'userName eq "u{i}"' for i in range(100))  # 199 nodes
    node = parse_filter(listed, max_length=10_000, max_nodes=50, max_values=100)
    assert equality_list(node) == (AttrPath("userName"), [f"u{i}" for i in range(100)])
    too_many = error(
        listed + ' or userName eq "u100"', max_length=10_000, max_nodes=50, max_values=100
    )
    assert str(too_many) == (
        "The filter has more than 50 expressions (or more than 100 values of one attribute "
        "compared with 'eq' and 'or'), which exceeds the limit."
    )
    for odd_one in ('userName ne "x"', 'displayName eq "x"', "userName eq 1", "userName pr"):
        mixed = " or ".join(f'userName eq "u{i}"' for i in range(30)) + f" or {odd_one}"
        assert "more than 50 expressions" in str(
            error(mixed, max_length=10_000, max_nodes=50, max_values=100)
        )
    # Without max_values, the node limit is the limit for every shape.
    assert "more than 50 expressions, which" in str(error(listed, max_length=10_000, max_nodes=50))
    assert equality_list(eq("userName", "a")) is None
    assert equality_list(parse_filter('a pr or a eq "x"')) is None
