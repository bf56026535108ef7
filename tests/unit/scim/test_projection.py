from scimlink.scim.projection import parse_attribute_list
from scimlink.scim.projection import project

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"

DOC = {
    "schemas": [CORE, ENT],
    "id": "42",
    "userName": "bjensen",
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "emails": [{"value": "b@x.org", "type": "work"}, {"value": "h@x.org", "type": "home"}],
    ENT: {"department": "Eng", "employeeNumber": "7"},
    "company": "Acme",
    "meta": {"resourceType": "User"},
}


def test_attribute_list_parsing() -> None:
    assert parse_attribute_list(None) == []
    assert parse_attribute_list(" userName , ,emails.value") == ["userName", "emails.value"]


def test_attributes_keep_only_what_is_asked_plus_id_and_schemas() -> None:
    assert project(DOC, ["USERNAME"], []) == {
        "schemas": DOC["schemas"],
        "id": "42",
        "userName": "bjensen",
    }


def test_attributes_with_sub_attributes_and_multi_valued() -> None:
    result = project(DOC, ["name.givenName", "emails.type", "emails.nothing", "name.nothing"], [])
    assert result["name"] == {"givenName": "Barbara"}
    assert result["emails"] == [{"type": "work"}, {"type": "home"}]


def test_urn_qualified_attributes() -> None:
    result = project(DOC, [f"{CORE}:userName", f"{ENT}:department", "company"], [])
    assert result["userName"] == "bjensen"
    assert result[ENT] == {"department": "Eng"}
    assert result["company"] == "Acme"
    assert project(DOC, [ENT], [])[ENT] == DOC[ENT]
    assert ENT not in project(DOC, [f"{ENT}:manager"], [])
    assert "urn:x:unknown" not in project(DOC, ["urn:x:unknown"], [])


def test_unknown_attributes_are_ignored() -> None:
    assert project(DOC, ["nickName", "name.middleName"], []) == {
        "schemas": DOC["schemas"],
        "id": "42",
    }
    assert project({"schemas": [], "id": "1"}, [f"{ENT}:department"], []) == {
        "schemas": [],
        "id": "1",
    }


def test_excluded_attributes_never_remove_id_or_schemas_and_do_not_touch_the_source() -> None:
    result = project(
        DOC, [], ["id", "schemas", "emails.type", "name", f"{ENT}:department", "nothing", "name.x"]
    )
    assert result["id"] == "42"
    assert result["schemas"] == DOC["schemas"]
    assert "name" not in result
    assert result["emails"] == [{"value": "b@x.org"}, {"value": "h@x.org"}]
    assert result[ENT] == {"employeeNumber": "7"}
    assert DOC["emails"][0]["type"] == "work"
    assert DOC[ENT]["department"] == "Eng"
    assert ENT not in project(DOC, [], [ENT])
    assert project(DOC, [], ["urn:x:unknown:thing"]) == DOC
    assert project({"id": "1"}, [], [f"{ENT}:department"]) == {"id": "1"}


def test_attributes_win_over_excluded_and_nothing_asked_returns_the_document() -> None:
    assert project(DOC, ["userName"], ["userName"])["userName"] == "bjensen"
    assert project(DOC, [], []) is DOC
