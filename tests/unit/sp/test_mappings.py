import pytest

from scimlink.sp.mappings import NO_MATCH
from scimlink.sp.mappings import Criteria
from scimlink.sp.mappings import MappingRule
from scimlink.sp.mappings import attribute_values
from scimlink.sp.mappings import evaluate
from scimlink.sp.mappings import parse_values

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER = {
    "userName": "ann@example.com",
    "displayName": "Ann",
    "title": "Engineer",
    "company": "Acme, Inc.",
    "name": {"givenName": "Ann"},
    "emails": [{"value": "ann@example.com"}, {"value": "a@home.org"}],
    ENT: {"department": "Engineering", "costCenter": "42"},
}


def rule(name: str, attribute: str | None = None, *values: str) -> MappingRule:
    return MappingRule(name, name, Criteria(attribute is None, attribute, values))


def test_values_split_on_commas_or_on_semicolons_when_values_hold_commas() -> None:
    assert parse_values("Engineering, Sales") == ("Engineering", "Sales")
    assert parse_values("Acme, Inc.; Initech") == ("Acme, Inc.", "Initech")
    with pytest.raises(ValueError, match="at least one value"):
        parse_values(" , ")


def test_attribute_lookup_covers_core_custom_dotted_and_enterprise() -> None:
    assert attribute_values(USER, "title") == ["Engineer"]
    assert attribute_values(USER, "company") == ["Acme, Inc."]
    assert attribute_values(USER, "name.givenName") == ["Ann"]
    assert attribute_values(USER, "emails.value") == ["ann@example.com", "a@home.org"]
    assert attribute_values(USER, f"{ENT}:department") == ["Engineering"]
    assert attribute_values(USER, "department") == ["Engineering"]
    assert attribute_values(USER, "Title") == []  # names are case-sensitive here
    assert attribute_values({"department": "Custom", ENT: {"department": "Ent"}}, "department") == [
        "Custom"
    ]


def test_first_match_in_priority_order_wins_and_every_step_says_why() -> None:
    rules = [
        rule("Sales", "department", "Sales"),
        rule("Eng", "department", "Engineering"),
        rule("Any"),
    ]
    result = evaluate(rules, USER)
    assert result.matched is not None
    assert result.matched.name == "Eng"
    assert [s.matched for s in result.steps] == [False, True]
    assert "not one of ('Sales',)" in result.steps[0].reason
    assert "match: Eng" in result.explain()


def test_values_compare_case_sensitively() -> None:
    result = evaluate([rule("eng", "department", "engineering")], USER)
    assert result.matched is None
    assert result.rejection == NO_MATCH
    assert "case-sensitive" in result.steps[0].reason


def test_missing_attribute_and_no_mappings_are_explained() -> None:
    assert "has no 'jobCode'" in evaluate([rule("x", "jobCode", "1")], USER).steps[0].reason
    empty = evaluate([], USER)
    assert empty.matched is None
    assert empty.rejection == f"{NO_MATCH}: the tenant has no SCIM mapping"
    assert "rejected:" in empty.explain()


@pytest.mark.parametrize("missing", ["userName", "displayName"])
def test_users_without_user_name_or_display_name_are_never_placed(missing: str) -> None:
    user = {k: v for k, v in USER.items() if k != missing}
    result = evaluate([rule("Any")], user)
    assert result.matched is None
    assert result.rejection == f"{NO_MATCH}: the user has no '{missing}'"


def test_multi_valued_and_non_string_values_match_by_their_text() -> None:
    assert evaluate([rule("home", "emails.value", "a@home.org")], USER).matched is not None
    assert evaluate([rule("cc", "costCenter", "42")], USER).matched is not None
    assert (
        evaluate([rule("active", "active", "True")], {**USER, "active": True}).matched is not None
    )
    assert Criteria(True).describe() == "Allow any user"
    assert Criteria(False, "title", ("A", "B")).describe() == "title is one of 'A', 'B'"
