"""Microsoft Entra ID replays (scim-servers.md §3.1): each test sends Entra's own JSON and checks
what got stored by reading it back with GET."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import CORE
from tests.conftest import ENTERPRISE
from tests.conftest import Scim
from tests.conftest import patch_body
from tests.conftest import user_body

pytestmark = pytest.mark.interop


def _create(scim: Scim, body: dict[str, Any]) -> dict[str, Any]:
    response = scim.post("/Users", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _stored(scim: Scim, user_id: str) -> dict[str, Any]:
    response = scim.get(f"/Users/{user_id}")
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()
    return stored


def _patch(scim: Scim, user_id: str, *operations: dict[str, Any]) -> dict[str, Any]:
    response = scim.patch(f"/Users/{user_id}", json=patch_body(*operations))
    assert response.status_code == 200, response.text
    return _stored(scim, user_id)


def _ids(scim: Scim, filter_: str) -> list[str]:
    response = scim.get("/Users", params={"filter": filter_})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totalResults"] == len(body["Resources"])
    return [resource["id"] for resource in body["Resources"]]


def test_e01_capitalised_ops(scim: Scim) -> None:
    user = _create(scim, user_body())
    stored = _patch(
        scim,
        user["id"],
        {"op": "Add", "path": "title", "value": "Engineer"},
        {"op": "Replace", "path": "displayName", "value": "Renamed"},
        {"op": "Add", "path": "nickName", "value": "Nick"},
    )
    assert (stored["title"], stored["displayName"], stored["nickName"]) == (
        "Engineer",
        "Renamed",
        "Nick",
    )
    stored = _patch(scim, user["id"], {"op": "Remove", "path": "nickName"})
    assert "nickName" not in stored
    assert stored["title"] == "Engineer"


def test_e02_string_booleans_in_patch_and_post(scim: Scim) -> None:
    # Entra's Postman collection: "Post emp1 with string True".
    user = _create(scim, user_body(active="True"))
    assert _stored(scim, user["id"])["active"] is True
    # Flagless disable.
    stored = _patch(scim, user["id"], {"op": "Replace", "path": "active", "value": "False"})
    assert stored["active"] is False
    # Path-less form of the same.
    stored = _patch(scim, user["id"], {"op": "Replace", "value": {"active": "True"}})
    assert stored["active"] is True


def test_e02_other_strings_are_refused_not_guessed(scim: Scim) -> None:
    user = _create(scim, user_body())
    response = scim.patch(
        f"/Users/{user['id']}",
        json=patch_body({"op": "Replace", "path": "active", "value": "Nope"}),
    )
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidValue"
    assert _stored(scim, user["id"])["active"] is True


def test_e03_pathless_replace_with_dotted_and_urn_keys(scim: Scim) -> None:
    user = _create(scim, user_body(name={"givenName": "Old", "familyName": "Name"}))
    stored = _patch(
        scim,
        user["id"],
        {
            "op": "replace",
            "value": {
                "displayName": "Bjfe",
                "name.givenName": "Kkom",
                "name.familyName": "Unua",
                f"{ENTERPRISE}:employeeNumber": "Aklq",
            },
        },
    )
    assert stored["displayName"] == "Bjfe"
    assert stored["name"]["givenName"] == "Kkom"
    assert stored["name"]["familyName"] == "Unua"
    assert stored[ENTERPRISE]["employeeNumber"] == "Aklq"
    assert ENTERPRISE in stored["schemas"]


def test_e06_filtered_path_on_a_missing_entry_creates_it(scim: Scim) -> None:
    user = _create(
        scim,
        user_body("e06@example.com", emails=[{"value": "e06@example.com", "type": "home"}]),
    )
    stored = _patch(
        scim,
        user["id"],
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "work@example.com"},
    )
    assert {"value": "work@example.com", "type": "work"} in stored["emails"]
    assert {"value": "e06@example.com", "type": "home"} in stored["emails"]
    # The new value is indexed: Entra's matching filter finds the user by it.
    assert _ids(scim, 'emails[type eq "work"].value eq "work@example.com"') == [user["id"]]
    stored = _patch(
        scim,
        user["id"],
        {"op": "add", "path": 'addresses[type eq "work"].formatted', "value": "1 Main St"},
    )
    assert stored["addresses"] == [{"formatted": "1 Main St", "type": "work"}]


def test_e06_filtered_path_on_an_existing_entry_replaces_only_it(scim: Scim) -> None:
    user = _create(
        scim,
        user_body(
            emails=[
                {"value": "w@example.com", "type": "work", "primary": True},
                {"value": "h@example.com", "type": "home"},
            ]
        ),
    )
    stored = _patch(
        scim,
        user["id"],
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "w2@example.com"},
    )
    assert stored["emails"] == [
        {"value": "w2@example.com", "type": "work", "primary": True},
        {"value": "h@example.com", "type": "home"},
    ]
    assert _ids(scim, 'emails.value eq "w@example.com"') == []


def test_e08_test_connection_with_a_random_guid(scim: Scim) -> None:
    _create(scim, user_body())
    guid = str(uuid.uuid4())
    for attribute in ("userName", "externalId", "id"):
        response = scim.get("/Users", params={"filter": f'{attribute} eq "{guid}"'})
        assert response.status_code == 200, response.text
        assert response.json() == {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 0,
            "itemsPerPage": 0,
            "startIndex": 1,
            "Resources": [],
        }
    # "fetch a random user and group": SCIM errors, never HTML.
    for path in (f"/Users/{guid}", f"/Groups/{guid}"):
        response = scim.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/scim+json")
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def test_e09_matching_queries(scim: Scim) -> None:
    guid = str(uuid.uuid4())
    jyoung = _create(scim, user_body("jyoung@example.com", externalId="jyoung"))
    other = _create(scim, user_body("other@example.com", externalId=guid))
    assert _ids(scim, 'userName eq "JYoung@Example.com"') == [jyoung["id"]]
    # Entra's doc example sends the value unquoted.
    assert _ids(scim, "externalId eq jyoung") == [jyoung["id"]]
    # Since Jan 2026 Entra also looks users up by a quoted GUID.
    assert _ids(scim, f'externalId eq "{guid}"') == [other["id"]]
    # externalId is caseExact (RFC 7643 §3.1).
    assert _ids(scim, "externalId eq JYOUNG") == []
    assert _ids(scim, f'externalId eq "{guid.upper()}"') == []
    assert _ids(scim, 'emails[type eq "work"].value eq "jyoung@example.com"') == [jyoung["id"]]
    assert _ids(scim, 'userName eq "jyoung@example.com" and externalId eq "jyoung"') == [
        jyoung["id"]
    ]


def test_e10_extra_payload_content_on_create(scim: Scim) -> None:
    typo = "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"
    body = {
        "schemas": [CORE, typo],
        "externalId": "e10-ext",
        "userName": "e10@example.com",
        "active": True,
        "displayName": "E Ten",
        "meta": {"resourceType": "User"},
        "roles": [],
        "addresses": None,
        "phoneNumbers": None,
        "emails": [{"primary": True, "type": "work", "value": "e10@example.com"}],
        "name": {"formatted": "E Ten", "familyName": "Ten", "givenName": "E"},
        typo: {"department": "Finance", "manager": "123456"},
        "department": "Top-level department",
    }
    user = _create(scim, body)
    stored = _stored(scim, user["id"])
    assert stored["schemas"] == [CORE, ENTERPRISE]
    assert stored[ENTERPRISE]["department"] == "Finance"
    # E07: a bare-string manager becomes the complex value Entra can read back.
    assert stored[ENTERPRISE]["manager"] == {"value": "123456", "$ref": "../Users/123456"}
    assert stored["department"] == "Top-level department"
    assert typo not in stored
    for dropped in ("addresses", "phoneNumbers", "roles"):
        assert dropped not in stored
    assert stored["meta"]["resourceType"] == "User"
    assert stored["meta"]["location"].endswith(f"/Users/{user['id']}")
    assert stored == user


def test_e10_client_sent_id_and_meta_are_ignored(scim: Scim) -> None:
    body = user_body(
        id="client-chosen",
        meta={"resourceType": "User", "created": "2001-01-01T00:00:00Z", "version": 'W/"9"'},
    )
    user = _create(scim, body)
    assert user["id"] != "client-chosen"
    stored = _stored(scim, user["id"])
    assert stored["meta"]["version"] == 'W/"1"'
    assert not stored["meta"]["created"].startswith("2001")


@pytest.mark.parametrize("op", ["Add", "Replace"])
def test_e11_setting_an_empty_attribute_by_add_or_replace(scim: Scim, op: str) -> None:
    user = _create(scim, user_body())
    stored = _patch(
        scim,
        user["id"],
        {"op": op, "path": "title", "value": "Manager"},
        {"op": op, "path": f"{ENTERPRISE}:department", "value": "Sales"},
        {"op": op, "path": "name.givenName", "value": "Given"},
    )
    assert stored["title"] == "Manager"
    assert stored[ENTERPRISE] == {"department": "Sales"}
    assert stored["name"] == {"givenName": "Given"}
    # And over an existing value the other op choice gives the same result.
    other = "Replace" if op == "Add" else "Add"
    stored = _patch(scim, user["id"], {"op": other, "path": "title", "value": "Director"})
    assert stored["title"] == "Director"


def test_e12_disabled_users_are_still_returned(scim: Scim) -> None:
    user = _create(scim, user_body("e12@example.com", externalId="e12"))
    stored = _patch(scim, user["id"], {"op": "Replace", "path": "active", "value": "False"})
    assert stored["active"] is False
    assert _ids(scim, 'userName eq "e12@example.com"') == [user["id"]]
    assert _ids(scim, 'externalId eq "e12"') == [user["id"]]
    assert _ids(scim, "active eq false") == [user["id"]]
    assert _ids(scim, "active eq true") == []


def test_e12_null_update_clears_attributes(scim: Scim) -> None:
    """The gallery's SCIM_Null_Update: PATCH empty strings, then nulls; both clear."""
    body = user_body(
        title="Engineer",
        nickName="Nick",
        name={"givenName": "Given", "familyName": "Family"},
        department="Custom",
        **{ENTERPRISE: {"department": "Sales", "employeeNumber": "42"}},
    )
    user = _create(scim, body)
    paths = ("title", "nickName", "name.givenName", f"{ENTERPRISE}:department", "department")
    stored = _patch(scim, user["id"], *({"op": "Replace", "path": p, "value": ""} for p in paths))
    assert "title" not in stored
    assert "nickName" not in stored
    assert stored["name"] == {"familyName": "Family"}
    assert stored[ENTERPRISE] == {"employeeNumber": "42"}
    assert "department" not in stored
    # Set again, then null them.
    restore = {"op": "Add", "value": {"title": "T", "nickName": "N", "department": "D"}}
    assert _patch(scim, user["id"], restore)["title"] == "T"
    stored = _patch(
        scim,
        user["id"],
        *(
            {"op": "Replace", "path": p, "value": None}
            for p in ("title", "nickName", "name.familyName", f"{ENTERPRISE}:employeeNumber")
        ),
        {"op": "Replace", "value": {"department": None}},
    )
    for cleared in ("title", "nickName", "name", "department", ENTERPRISE):
        assert cleared not in stored
    assert stored["schemas"] == [CORE]
    # Path-less empty strings clear too.
    _patch(scim, user["id"], restore)
    stored = _patch(scim, user["id"], {"op": "Replace", "value": {"title": "", "nickName": ""}})
    assert "title" not in stored
    assert "nickName" not in stored
    assert stored["department"] == "D"


def test_e12_clearing_an_absent_attribute_is_harmless(scim: Scim) -> None:
    user = _create(scim, user_body())
    stored = _patch(
        scim,
        user["id"],
        {"op": "Replace", "path": "title", "value": ""},
        {"op": "Replace", "path": "nickName", "value": None},
    )
    assert "title" not in stored
    assert stored["meta"]["version"] == 'W/"1"'


def test_e13_case_insensitive_attribute_names_in_bodies(scim: Scim) -> None:
    body = {
        "schemas": [CORE],
        "UserName": "OMalley@example.com",
        "Active": True,
        "DisplayName": "Postman User",
        "ExternalId": "pm-1",
        "Name": {"FamilyName": "Malley", "GivenName": "O"},
        "Emails": [{"Primary": True, "Type": "work", "Value": "OMalley@example.com"}],
    }
    user = _create(scim, body)
    stored = _stored(scim, user["id"])
    assert stored["userName"] == "OMalley@example.com"
    assert stored["active"] is True
    assert stored["displayName"] == "Postman User"
    assert stored["externalId"] == "pm-1"
    assert stored["name"] == {"familyName": "Malley", "givenName": "O"}
    assert stored["emails"] == [{"value": "OMalley@example.com", "type": "work", "primary": True}]
    # Entra's Postman string "True" spelled with a capital key as well.
    second = _create(
        scim,
        {
            "schemas": [CORE],
            "UserName": "second@example.com",
            "DisplayName": "S",
            "Active": "False",
        },
    )
    assert _stored(scim, second["id"])["active"] is False


def test_e13_case_insensitive_filters(scim: Scim) -> None:
    user = _create(
        scim,
        user_body(
            "OMalley@example.com",
            displayName="Postman User",
            name={"familyName": "Malley", "givenName": "O"},
        ),
    )
    other = _create(scim, user_body("zed@example.com", displayName="Zed"))
    assert _ids(scim, 'DisplayName eq "postman user"') == [user["id"]]
    assert _ids(scim, 'name.FamilyName eq "Malley"') == [user["id"]]
    assert _ids(scim, 'UserName Eq "omalley@example.com"') == [user["id"]]
    assert sorted(_ids(scim, "meta.Created gt 2015-10-10T14:38:21.8617979-07:00")) == sorted(
        [user["id"], other["id"]]
    )
    assert _ids(scim, "meta.Created lt 2015-10-10T14:38:21.8617979-07:00") == []
    assert _ids(scim, "userName sw O") == [user["id"]]
    assert _ids(scim, "userName sw o") == [user["id"]]
