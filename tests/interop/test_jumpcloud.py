"""JumpCloud replays (scim-servers.md §3.3): activation test user, lookup before create,
deprovision by deactivation, delete. JumpCloud's exact update verb is unpublished (J07), so
deactivation is replayed both as PATCH and as PUT."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import CORE
from tests.conftest import PATCH_OP
from tests.conftest import Scim

pytestmark = pytest.mark.interop


def jumpcloud_user(user_name: str) -> dict[str, Any]:
    """The default mapping: username, firstname, lastname, email (J03)."""
    return {
        "schemas": [CORE],
        "userName": user_name,
        "name": {"givenName": "Jumpcloud", "familyName": "Tester"},
        "displayName": "Jumpcloud Tester",
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "active": True,
    }


def _lookup(scim: Scim, user_name: str) -> list[dict[str, Any]]:
    response = scim.get("/Users", params={"filter": f'userName eq "{user_name}"'})
    assert response.status_code == 200, response.text
    resources: list[dict[str, Any]] = response.json()["Resources"]
    assert response.json()["totalResults"] == len(resources)
    return resources


def _stored(scim: Scim, user_id: str) -> dict[str, Any]:
    response = scim.get(f"/Users/{user_id}")
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()
    return stored


def test_j01_j02_activation_test_user_and_group(scim: Scim) -> None:
    response = scim.post("/Users", json=jumpcloud_user("jc-test@example.com"))
    assert response.status_code == 201, response.text
    user = response.json()
    stored = _stored(scim, user["id"])
    assert stored["userName"] == "jc-test@example.com"
    assert stored["name"] == {"givenName": "Jumpcloud", "familyName": "Tester"}
    assert stored["active"] is True
    # The test group: groups are not offered, and the answer says so as a SCIM error.
    group = scim.post(
        "/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "JumpCloud Test Group",
            "members": [{"value": user["id"]}],
        },
    )
    assert group.status_code == 404
    assert group.headers["content-type"].startswith("application/scim+json")
    assert group.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    # Then the test user is deleted.
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert scim.get(f"/Users/{user['id']}").status_code == 404


def test_j03_lookup_before_create(scim: Scim) -> None:
    assert _lookup(scim, "jc.lookup@example.com") == []
    response = scim.post("/Users", json=jumpcloud_user("jc.lookup@example.com"))
    assert response.status_code == 201, response.text
    found = _lookup(scim, "jc.lookup@example.com")
    assert [u["id"] for u in found] == [response.json()["id"]]
    assert found[0] == _stored(scim, found[0]["id"])
    assert [u["id"] for u in _lookup(scim, "JC.Lookup@Example.com")] == [found[0]["id"]]


def test_j04_deprovision_by_patch_then_delete(scim: Scim) -> None:
    user = scim.post("/Users", json=jumpcloud_user("jc.patch@example.com")).json()
    response = scim.patch(
        f"/Users/{user['id']}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        },
    )
    assert response.status_code == 200, response.text
    stored = _stored(scim, user["id"])
    assert stored["active"] is False
    assert stored["name"] == user["name"]
    assert [u["active"] for u in _lookup(scim, "jc.patch@example.com")] == [False]
    # user_delete_provision
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    missing = scim.get(f"/Users/{user['id']}")
    assert missing.status_code == 404
    assert missing.json()["status"] == "404"
    assert _lookup(scim, "jc.patch@example.com") == []
    assert scim.delete(f"/Users/{user['id']}").status_code == 404


def test_j04_deprovision_by_put(scim: Scim) -> None:
    user = scim.post("/Users", json=jumpcloud_user("jc.put@example.com")).json()
    response = scim.put(
        f"/Users/{user['id']}", json={**jumpcloud_user("jc.put@example.com"), "active": False}
    )
    assert response.status_code == 200, response.text
    stored = _stored(scim, user["id"])
    assert stored["active"] is False
    assert stored["emails"] == user["emails"]
    assert [u["id"] for u in _lookup(scim, "jc.put@example.com")] == [user["id"]]
    # Re-provisioning the same person reactivates the same account rather than duplicating it.
    response = scim.put(f"/Users/{user['id']}", json=jumpcloud_user("jc.put@example.com"))
    assert response.status_code == 200, response.text
    assert _stored(scim, user["id"])["active"] is True
    duplicate = scim.post("/Users", json=jumpcloud_user("jc.put@example.com"))
    assert duplicate.status_code == 409
