"""Bad input and security: filters (security.md §5 F1-F7).

Filters are evaluated in SQL; these tests make sure hostile ones are refused with ``400
invalidFilter`` or match literally, on SQLite and on PostgreSQL, and never reach a 500. No test
measures time: limits are asserted by behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from scimlink.config import Settings
from scimlink.scim.filter import Compare
from scimlink.scim.filter import parse_filter
from scimlink.sp.user_filters import UserScope
from scimlink.storage.filter_sql import compile_filter
from scimlink.web.app import create_sp_app
from tests.conftest import ENTERPRISE
from tests.conftest import Scim
from tests.conftest import Tenant
from tests.conftest import assert_scim_error
from tests.conftest import make_tenant
from tests.conftest import total_users
from tests.conftest import user_body

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def _user(scim: Scim, body: dict[str, Any]) -> str:
    response = scim.post("/Users", json=body)
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


def _ids(scim: Scim, flt: str, *, search: bool = False) -> set[str]:
    """The ids a filter selects (with ``search``, POST /.search must select the same)."""
    listed = scim.get("/Users", params={"filter": flt, "count": 1000})
    assert listed.status_code == 200, listed.text
    ids = {u["id"] for u in listed.json()["Resources"]}
    assert listed.json()["totalResults"] == len(ids)
    if search:
        searched = scim.post("/Users/.search", json={"schemas": [SEARCH], "filter": flt})
        assert searched.status_code == 200, searched.text
        assert {u["id"] for u in searched.json()["Resources"]} == ids
    return ids


def _refused(scim: Scim, flt: str, scim_type: str = "invalidFilter") -> None:
    listed = scim.get("/Users", params={"filter": flt})
    assert listed.status_code == 400, (flt, listed.text)
    assert_scim_error(listed, 400, scim_type)
    searched = scim.post("/Users/.search", json={"schemas": [SEARCH], "filter": flt})
    assert searched.status_code == 400, (flt, searched.text)
    assert_scim_error(searched, 400, scim_type)


# -- F1: case-insensitive userName -----------------------------------------------------------------


def test_f1_user_name_eq_ignores_case_and_width(scim: Scim) -> None:
    a = _user(scim, user_body("a", emails=[{"value": "a@example.com"}]))
    _user(scim, user_body("b", emails=[{"value": "b@example.com"}]))
    for value in ("a", "A", "\uff41", "\uff21"):
        assert _ids(scim, f'userName eq "{value}"', search=True) == {a}, value
        assert _ids(scim, f'USERNAME EQ "{value}"') == {a}, value
    assert _ids(scim, 'userName ne "A"') == _ids(scim, "id pr") - {a}


def test_f1_case_exact_attributes_stay_case_exact(scim: Scim) -> None:
    user = _user(scim, user_body(externalId="AbC-1"))
    assert _ids(scim, 'externalId eq "AbC-1"') == {user}
    assert _ids(scim, 'externalId eq "abc-1"') == set()
    assert _ids(scim, 'externalId sw "Ab"') == {user}
    assert _ids(scim, 'externalId sw "ab"') == set()
    assert _ids(scim, 'externalId co "C-"') == {user}
    assert _ids(scim, 'externalId co "c-"') == set()
    assert _ids(scim, 'externalId ew "C-1"') == {user}
    assert _ids(scim, 'externalId ew "c-1"') == set()


# -- F1: many names in one lookup (``userName eq … or userName eq …``) -------------------------


def test_f1_or_of_equal_names_matches_each_name_ignoring_case(scim: Scim) -> None:
    wanted = {name: _user(scim, user_body(name)) for name in ("ann", "bob", "cy")}
    _user(scim, user_body("dee"))
    names = " or ".join(f'userName eq "{name.upper()}"' for name in [*wanted, "nobody"])
    assert _ids(scim, names, search=True) == set(wanted.values())
    # Twice the same name, in fullwidth letters, as a single name would match.
    assert _ids(scim, 'userName eq "ann" or userName eq "\uff41nn"') == {wanted["ann"]}
    assert _ids(scim, 'userName eq "BOB" or USERNAME eq "\uff43y"') == {
        wanted["bob"],
        wanted["cy"],
    }


def test_f1_or_of_equal_case_exact_values_stays_case_exact(scim: Scim) -> None:
    upper = _user(scim, user_body(externalId="ID-A"))
    lower = _user(scim, user_body(externalId="id-b"))
    assert _ids(scim, 'externalId eq "ID-A" or externalId eq "ID-B"') == {upper}
    assert _ids(scim, 'externalId eq "id-a" or externalId eq "id-b"') == {lower}


def test_f1_or_across_attributes_and_multi_valued_paths_still_match(scim: Scim) -> None:
    by_name = _user(scim, user_body("named", emails=[{"value": "n@example.com"}]))
    by_mail = _user(scim, user_body("mailed", emails=[{"value": "m@example.com"}]))
    by_id = _user(scim, user_body("ided", externalId="E-9"))
    assert _ids(scim, 'userName eq "named" or externalId eq "E-9"') == {by_name, by_id}
    assert _ids(scim, 'emails.value eq "n@example.com" or emails.value eq "M@example.com"') == {
        by_name,
        by_mail,
    }
    assert _ids(scim, 'userName eq "named" or userName sw "mail"') == {by_name, by_mail}
    assert _ids(scim, 'userName eq "named" or userName eq null') == {by_name}
    assert _ids(scim, "active eq true or active eq false") == {by_name, by_mail, by_id}


def test_f1_a_control_character_in_any_name_is_invalid_filter(scim: Scim) -> None:
    _user(scim, user_body("ann"))
    _refused(scim, 'userName eq "ann" or userName eq "b\\u0001"')


def test_f1_or_of_equal_names_compiles_to_one_in_list() -> None:
    """Twenty names build one ``IN`` expression, not twenty comparisons: the statement (and
    its cache key) does not grow with the names an IdP looks up at once."""
    names = " or ".join(f'userName eq "User{i}"' for i in range(20))
    sql = str(compile_filter(parse_filter(names), UserScope("sqlite")))
    assert " IN " in sql
    assert " OR " not in sql
    mixed = str(
        compile_filter(parse_filter('userName eq "a" or externalId eq "b"'), UserScope("sqlite"))
    )
    assert " OR " in mixed


# -- F2: syntax errors --------------------------------------------------------------------------


BAD_FILTERS = [
    "userName eq",
    'userName "a"',
    'eq "a"',
    "userName",
    '(userName eq "a"',
    'userName eq "a")',
    '((userName eq "a")',
    'userName zz "a"',
    'userName === "a"',
    'userName like "a%"',
    'userName eq "a" and',
    'userName eq "a" or or userName eq "b"',
    'and userName eq "a"',
    'not userName eq "a"',
    'userName eq "unterminated',
    'userName eq "bad escape \\q"',
    'emails[type eq "work"',
    'emails[type eq "work"]]',
    'emails[emails[type eq "work"]]',
    "emails[]",
    'userName[value eq "a"].x',
    '1userName eq "a"',
    'user-name? eq "a"',
    'userName eq "a" userName eq "b"',
    "()",
    '"a" eq userName',
    'urn:ietf:params:scim:schemas:core:2.0:User: eq "a"',
    'meta.created gt "not a date"',
    'meta.created gt "9999-12-31T23:59:59-14:00"',
    'meta.created lt "0001-01-01T00:00:00+14:00"',
    'active eq "yes"',
    "active gt true",
    'name eq "x"',
    'name.nonexistent eq "x"',
    'emails.nonexistent eq "x"',
    'urn:example:unknown:User:x eq "1"',
    "userName gt 1e999",
]


def test_f2_bad_filters_are_invalid_filter(scim: Scim) -> None:
    _user(scim, user_body())
    for flt in BAD_FILTERS:
        _refused(scim, flt)


def test_f2_empty_or_blank_filter_means_no_filter(scim: Scim) -> None:
    user = _user(scim, user_body())
    for flt in ("", "   ", "\t\n"):
        listed = scim.get("/Users", params={"filter": flt})
        assert listed.status_code == 200, listed.text
        assert [u["id"] for u in listed.json()["Resources"]] == [user]


# -- F3: LIKE meta-characters, quote injection and SQL meta-characters match literally --------

LITERALS = [
    "%",
    "_",
    "\\",
    "%_\\",
    "a_b",
    "' OR '1'='1",
    "'; DROP TABLE sp_users; --",
    '" or "1"="1',
    "[a-z]",
]


@pytest.fixture(scope="module")
def hay(engine: Engine, sp_app: Any) -> Iterator[tuple[Scim, dict[str, str]]]:
    """Users whose values hold the hostile strings, plus one plain user that must never match.

    Every value is ``<prefix><literal>y`` (``userName`` and ``externalId`` add ``-<n>``), so
    ``sw "<prefix><literal>y"`` selects exactly one user.
    """
    client = TestClient(sp_app, raise_server_exceptions=False)
    scim = Scim(client, make_tenant(engine).token)  # one tenant for the module: built once
    users = {"plain": _user(scim, user_body("plain@example.com", title="plain", company="plain"))}
    for i, literal in enumerate(LITERALS):
        body = user_body(
            f"x{literal}y-{i}" if literal in SAFE_IN_USER_NAME else f"xsafe{i}y-{i}",
            emails=[{"value": f"u{i}@example.com", "type": f"t{literal}y"}],
            displayName=f"d{literal}y",
            externalId=f"e{literal}y-{i}",
            title=f"t{literal}y",
            company=f"c{literal}y",
        )
        users[literal] = _user(scim, body)
    yield scim, users
    client.close()


#: Literals a userName keeps as sent: inSync turns ? * / \\ < > into "_", which would make
#: userName values collide with the "_" literal's.
SAFE_IN_USER_NAME = {literal for literal in LITERALS if not set(literal) & set("?*/\\<>_")}


def _q(value: str) -> str:
    """A filter string literal (JSON escaping, as RFC 7644 §3.4.2.2 prescribes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("literal", LITERALS)
def test_f3_operators_match_literally_on_every_kind_of_column(
    hay: tuple[Scim, dict[str, str]], literal: str
) -> None:
    scim, haystack = hay
    expected = {haystack[literal]}
    # A folded indexed column, a case-exact one, JSON values, custom attributes, EXISTS rows.
    for attribute, prefix in (
        ("userName", "x"),
        ("externalId", "e"),
        ("title", "t"),
        ("company", "c"),
        ("emails.type", "t"),
    ):
        if attribute == "userName" and literal not in SAFE_IN_USER_NAME:
            continue  # inSync rewrites ? * / \\ < > in userName to "_" (see test_insync_policy.py)
        contains = _ids(scim, f"{attribute} co {_q(literal)}")
        assert contains >= expected, attribute
        assert haystack["plain"] not in contains, attribute
        assert _ids(scim, f"{attribute} sw {_q(prefix + literal + 'y')}") == expected, attribute
        if attribute not in {"userName", "externalId"}:  # those two end with "-<n>"
            assert _ids(scim, f"{attribute} ew {_q(literal + 'y')}") >= expected, attribute
            assert _ids(scim, f"{attribute} eq {_q(prefix + literal + 'y')}") == expected, attribute
    assert _ids(scim, f"emails[type eq {_q('t' + literal + 'y')}]", search=True) == expected
    # Nothing was dropped or rewritten by the hostile strings.
    assert total_users(scim) == len(LITERALS) + 1


def test_f3_wildcards_alone_match_only_values_that_contain_them(
    hay: tuple[Scim, dict[str, str]],
) -> None:
    scim, haystack = hay
    holders = {literal: uid for literal, uid in haystack.items() if literal != "plain"}
    with_underscore = {uid for lit, uid in holders.items() if "_" in lit}
    percent_in_user_name = {holders[lit] for lit in SAFE_IN_USER_NAME if "%" in lit}
    assert _ids(scim, 'userName co "%"', search=True) == percent_in_user_name
    assert _ids(scim, 'displayName co "_"') == with_underscore
    assert _ids(scim, 'userName sw "_"') == set()
    assert _ids(scim, 'userName sw "%"') == set()
    assert _ids(scim, 'title ew "%y"') == {haystack["%"]}
    assert _ids(scim, 'externalId co "_"') == with_underscore
    assert _ids(scim, 'company co "\\\\"') == {haystack["\\"], haystack["%_\\"]}


def test_f3_quote_injection_is_one_literal_value(hay: tuple[Scim, dict[str, str]]) -> None:
    scim, haystack = hay
    plain = haystack["plain"]
    assert _ids(scim, 'userName eq "x\\" or \\"1\\"=\\"1"', search=True) == set()
    assert _ids(scim, 'userName eq "plain@example.com\\" or \\"1\\"=\\"1"') == set()
    assert _ids(scim, 'userName eq "\' OR 1=1 --"') == set()
    assert _ids(scim, "userName eq \"plain@example.com' OR '1'='1\"") == set()
    assert _ids(scim, 'userName eq "plain@example.com"') == {plain}
    # Unquoted values (as Entra sends them) are one word, not SQL either.
    assert _ids(scim, "userName eq plain@example.com") == {plain}
    assert _ids(scim, "userName eq '1'='1'") == set()
    assert total_users(scim) == len(LITERALS) + 1


# -- F4: complexity limits ----------------------------------------------------------------------


def test_f4_overlong_filter_is_invalid_filter(scim: Scim) -> None:
    _refused(scim, 'userName eq "' + "a" * 4100 + '"')
    _refused(scim, "userName pr and " * 200 + "userName pr")


def test_f4_five_hundred_or_clauses_are_invalid_filter(scim: Scim) -> None:
    _refused(scim, " or ".join(f'userName eq "u{i}"' for i in range(500)))
    # Short enough for the length limit: the expression-count limit refuses it.
    short = " or ".join("id pr" for _ in range(60))
    assert len(short) < 4096
    _refused(scim, short)
    _refused(scim, " and ".join("id pr" for _ in range(60)))
    # One attribute compared with 'eq' and 'or' (a directory's batched lookup) may list 100
    # values; one operand of another kind brings back the 50-expression limit.
    names = [f"listed{i}@example.com" for i in range(101)]
    _refused(scim, " or ".join(f'userName eq "{n}"' for n in names))
    mixed = " or ".join(f'userName eq "{n}"' for n in names[:30]) + ' or displayName eq "x"'
    _refused(scim, mixed)


def test_f4_a_directorys_lookup_of_a_hundred_names_is_one_query(scim: Scim) -> None:
    created = [f"listed-{i}@example.com" for i in range(3)]
    ids = {_user(scim, user_body(name)) for name in created}
    names = [*created, *(f"absent{i}@example.com" for i in range(97))]
    listed = " or ".join(f'userName eq "{n.upper()}"' for n in names)
    assert len(listed) > 2048
    assert _ids(scim, listed, search=True) == ids


@pytest.mark.parametrize(
    "flt",
    [
        "(" * 50 + 'userName eq "a"' + ")" * 50,
        "not (" * 50 + 'userName eq "a"' + ")" * 50,
        "(" * 1000,
        "not (" * 400,
        "(" * 50 + 'emails[type eq "work"]' + ")" * 50,
    ],
)
def test_f4_depth_fifty_is_invalid_filter(scim: Scim, flt: str) -> None:
    _refused(scim, flt)


def test_f4_filters_within_the_limits_still_work(scim: Scim) -> None:
    user = _user(scim, user_body())
    assert _ids(scim, "(" * 9 + "id pr" + ")" * 9) == {user}
    assert _ids(scim, " or ".join("id pr" for _ in range(20))) == {user}


# -- F5: whitespace-heavy filters --------------------------------------------------------------


@pytest.mark.parametrize(
    "flt",
    [
        " " * 10_240,
        " " * 10_000 + 'userName eq "a"',
        "userName" + " " * 10_000 + 'eq "a"',
        'userName eq "a"' + " \t\r\n" * 2_500,
        "( " * 5_000,
        "userName eq " + '"' + " " * 10_000 + '"',
        "userName eq " + " " * 10_000,
    ],
)
def test_f5_ten_kilobytes_of_whitespace_is_answered_never_500(scim: Scim, flt: str) -> None:
    _user(scim, user_body())
    for response in (
        scim.get("/Users", params={"filter": flt}),
        scim.post("/Users/.search", json={"schemas": [SEARCH], "filter": flt}),
    ):
        assert response.status_code in {200, 400}, response.text
        if response.status_code == 400:
            assert_scim_error(response, 400, "invalidFilter")


def test_f5_parser_handles_whitespace_heavy_input_beyond_the_http_limit() -> None:
    """The parser itself is linear: with raised limits, 10 kB of whitespace parses correctly."""
    text = " " * 5_000 + "userName" + " \t" * 1_000 + "eq" + "\n" * 1_000 + '"a"' + " " * 2_000
    node = parse_filter(text, max_length=100_000)
    assert node == Compare(node.path, "eq", "a")  # type: ignore[union-attr]
    assert node.path.attr == "userName"  # type: ignore[union-attr]


# -- F6: password -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flt",
    [
        'password eq "x"',
        "password pr",
        'PASSWORD co "x"',
        'urn:ietf:params:scim:schemas:core:2.0:User:password eq "x"',
        'userName pr and password sw "a"',
        'not (password eq "x")',
    ],
)
def test_f6_filtering_on_password_is_refused(scim: Scim, flt: str) -> None:
    _user(scim, user_body(password="Secret-123"))
    _refused(scim, flt)


def test_f6_sorting_on_password_is_refused(scim: Scim) -> None:
    assert_scim_error(scim.get("/Users", params={"sortBy": "password"}), 400, "invalidFilter")


# -- F7: count is clamped to filter.maxResults ---------------------------------------------------


def test_f7_huge_count_is_clamped_to_max_results(scim: Scim) -> None:
    _user(scim, user_body())
    limit = scim.get("/ServiceProviderConfig").json()["filter"]["maxResults"]
    for count in ("100000", str(10**30)):
        listed = scim.get("/Users", params={"count": count})
        assert listed.status_code == 200, listed.text
        assert listed.json()["itemsPerPage"] <= limit
    searched = scim.post("/Users/.search", json={"schemas": [SEARCH], "count": 100_000})
    assert searched.status_code == 200, searched.text


def test_f7_clamping_is_visible_with_a_small_max_results(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    small = settings.model_copy(update={"sp_max_results": 3})
    with TestClient(create_sp_app(small, engine=engine)) as client:
        scim = Scim(client, tenant.token)
        for _ in range(5):
            _user(scim, user_body())
        assert scim.get("/ServiceProviderConfig").json()["filter"]["maxResults"] == 3
        for params in ({"count": 100_000}, {"count": 4}, {}):
            page = scim.get("/Users", params=params).json()
            assert (page["totalResults"], page["itemsPerPage"]) == (5, 3)
            assert len(page["Resources"]) == 3
        body = {"schemas": [SEARCH], "count": 100_000, "filter": "id pr"}
        page = scim.post("/Users/.search", json=body).json()
        assert (page["totalResults"], page["itemsPerPage"]) == (5, 3)


@pytest.mark.parametrize(
    "params",
    [
        {"startIndex": "99999999999999999999999"},
        {"startIndex": str(2**63)},
        {"startIndex": "-5", "count": "-5"},
        {"count": "0"},
    ],
)
def test_f7_out_of_range_paging_is_interpreted_not_a_500(
    scim: Scim, params: dict[str, str]
) -> None:
    _user(scim, user_body())
    listed = scim.get("/Users", params=params)
    assert listed.status_code == 200, listed.text
    assert listed.json()["totalResults"] == 1
    assert listed.json()["startIndex"] >= 1


# -- never a 500: values PostgreSQL cannot bind ------------------------------------------------


@pytest.mark.parametrize(
    "flt",
    [
        'displayName eq "a\\u0000b"',
        'userName co "\\u0000"',
        'externalId sw "\\u0000"',
        'title eq "\\u0000"',
        'company eq "x\\u0000"',
        'emails.value eq "\\u0000"',
        'emails[type eq "\\u0001"]',
        f'{ENTERPRISE}:department eq "\\u001b"',
        'id eq "\\u0000"',
    ],
)
def test_filter_values_with_control_characters_are_invalid_filter(scim: Scim, flt: str) -> None:
    _user(scim, user_body())
    _refused(scim, flt)
