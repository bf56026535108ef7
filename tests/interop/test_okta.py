"""Okta replays (scim-servers.md §3.2, Okta's SCIM 2.0 protocol reference and Runscope suite):
each test sends Okta's own JSON and checks what got stored by reading it back with GET."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Engine

from scimlink.sp.users import UserService
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import write_session
from tests.conftest import CORE
from tests.conftest import PATCH_OP
from tests.conftest import Scim
from tests.conftest import Tenant
from tests.conftest import user_body

pytestmark = pytest.mark.interop

LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
OKTA_HEADERS = {"User-Agent": "Okta SCIM Client 1.0.0", "Accept": "application/scim+json"}


def okta_user(user_name: str = "test.user@okta.local", **extra: Any) -> dict[str, Any]:
    """Okta's create body, verbatim from its protocol reference (O03)."""
    body: dict[str, Any] = {
        "schemas": [CORE],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    body.update(extra)
    return body


def _create(scim: Scim, body: dict[str, Any]) -> dict[str, Any]:
    response = scim.post("/Users", json=body, headers=OKTA_HEADERS)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _stored(scim: Scim, user_id: str) -> dict[str, Any]:
    response = scim.get(f"/Users/{user_id}", headers=OKTA_HEADERS)
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()
    return stored


def _page(scim: Scim, **params: Any) -> dict[str, Any]:
    response = scim.get("/Users", params=params, headers=OKTA_HEADERS)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [LIST_RESPONSE]
    for key in ("totalResults", "itemsPerPage", "startIndex"):
        assert type(body[key]) is int, (key, body[key])
    return body


def test_o01_credential_test(scim: Scim) -> None:
    for _ in range(3):
        _create(scim, user_body())
    body = _page(scim, count=2, startIndex=1)
    assert body["Resources"]
    assert (body["totalResults"], body["itemsPerPage"], body["startIndex"]) == (3, 2, 1)
    assert len(body["Resources"]) == 2


def test_o02_existence_check(scim: Scim) -> None:
    query = {"filter": 'userName eq "test.user@okta.local"', "startIndex": 1, "count": 100}
    body = _page(scim, **query)
    assert (body["totalResults"], body["Resources"]) == (0, [])
    user = _create(scim, okta_user())
    body = _page(scim, **query)
    assert body["totalResults"] == 1
    assert [r["id"] for r in body["Resources"]] == [user["id"]]
    # The filter attribute is configurable per app, and userName matching ignores case.
    upper = _page(scim, filter='userName eq "TEST.USER@OKTA.LOCAL"', startIndex=1, count=100)
    assert [r["id"] for r in upper["Resources"]] == [user["id"]]
    by_external = _page(scim, filter='externalId eq "00ujl29u0le5T6Aj10h7"')
    assert [r["id"] for r in by_external["Resources"]] == [user["id"]]


def test_o03_create_returns_201_with_the_user(scim: Scim) -> None:
    response = scim.post("/Users", json=okta_user(), headers=OKTA_HEADERS)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"]
    assert response.headers["location"] == created["meta"]["location"]
    assert response.headers["etag"] == created["meta"]["version"]
    stored = _stored(scim, created["id"])
    assert stored == created
    assert stored["userName"] == "test.user@okta.local"
    assert stored["name"] == {"givenName": "Test", "familyName": "User"}
    assert stored["emails"] == [{"value": "test.user@okta.local", "type": "work", "primary": True}]
    assert stored["displayName"] == "Test User"
    assert stored["locale"] == "en-US"
    assert stored["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert stored["active"] is True
    assert "password" not in stored
    assert "1mz050nq" not in response.text
    # groups is read-only (RFC 7643 §4.1.2): Okta's empty list is accepted, nothing is stored.
    assert "groups" not in stored


def test_o03_duplicate_is_409(scim: Scim) -> None:
    _create(scim, okta_user())
    response = scim.post("/Users", json=okta_user(), headers=OKTA_HEADERS)
    assert response.status_code == 409
    assert response.json()["scimType"] == "uniqueness"
    assert response.json()["status"] == "409"
    case_only = scim.post(
        "/Users", json=okta_user("Test.User@Okta.Local", externalId="other"), headers=OKTA_HEADERS
    )
    assert case_only.status_code == 409
    assert _page(scim)["totalResults"] == 1


def test_o04_import_paging_is_complete_and_consistently_ordered(
    scim: Scim, tenant: Tenant, engine: Engine
) -> None:
    with write_session(make_sessionmaker(engine)) as session:
        service = UserService(session, tenant.id)
        for n in range(230):
            service.create(user_body(f"import-{n:03d}-{uuid.uuid4().hex[:6]}@example.com"))
    seen: list[str] = []
    start = 1
    first_page: list[str] = []
    while True:
        body = _page(scim, startIndex=start, count=100)
        assert body["totalResults"] == 230
        assert body["startIndex"] == start
        ids = [r["id"] for r in body["Resources"]]
        assert body["itemsPerPage"] == len(ids)
        if start == 1:
            first_page = ids
            # Updating users between pages must not move them across page boundaries.
            for user_id in ids[:5]:
                response = scim.patch(
                    f"/Users/{user_id}",
                    json={
                        "schemas": [PATCH_OP],
                        "Operations": [{"op": "replace", "value": {"title": "moved"}}],
                    },
                )
                assert response.status_code == 200
        seen.extend(ids)
        start += 100
        if start > body["totalResults"]:
            break
    assert len(seen) == 230
    assert len(set(seen)) == 230
    assert [r["id"] for r in _page(scim, startIndex=1, count=100)["Resources"]] == first_page


def test_o05_put_the_whole_object(scim: Scim) -> None:
    created = _create(scim, okta_user())
    current = _stored(scim, created["id"])
    # Okta GETs, changes its copy and PUTs it back whole (id, meta, groups and password included).
    replacement = {
        **current,
        "name": {"givenName": "Another", "familyName": "User"},
        "displayName": "Another User",
        "emails": [{"primary": True, "value": "another.user@okta.local", "type": "work"}],
        "groups": [],
        "password": "t1meMa$heen",
    }
    response = scim.put(f"/Users/{created['id']}", json=replacement, headers=OKTA_HEADERS)
    assert response.status_code == 200, response.text
    stored = _stored(scim, created["id"])
    assert stored == response.json()
    assert stored["name"] == {"givenName": "Another", "familyName": "User"}
    assert stored["displayName"] == "Another User"
    assert stored["emails"] == [
        {"value": "another.user@okta.local", "type": "work", "primary": True}
    ]
    assert stored["meta"]["version"] == 'W/"2"'
    assert stored["meta"]["created"] == created["meta"]["created"]
    assert "password" not in stored
    assert _page(scim, filter='emails.value eq "another.user@okta.local"')["totalResults"] == 1
    assert _page(scim, filter='emails.value eq "test.user@okta.local"')["totalResults"] == 0
    # AIW apps deactivate through PUT as well.
    deactivate = {**stored, "active": False}
    response = scim.put(f"/Users/{created['id']}", json=deactivate, headers=OKTA_HEADERS)
    assert response.status_code == 200, response.text
    stored = _stored(scim, created["id"])
    assert stored["active"] is False
    assert stored["displayName"] == "Another User"
    assert [r["id"] for r in _page(scim, filter="active eq false")["Resources"]] == [created["id"]]
    # PUT replaces: an attribute left out of the body is gone afterwards.
    trimmed = {k: v for k, v in stored.items() if k != "locale"}
    response = scim.put(f"/Users/{created['id']}", json=trimmed, headers=OKTA_HEADERS)
    assert response.status_code == 200, response.text
    assert "locale" not in _stored(scim, created["id"])


def test_o06_pathless_deactivate_and_reactivate(scim: Scim) -> None:
    created = _create(scim, okta_user())
    for active in (False, True):
        response = scim.patch(
            f"/Users/{created['id']}",
            json={
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "value": {"active": active}}],
            },
            headers=OKTA_HEADERS,
        )
        assert response.status_code == 200, response.text
        stored = _stored(scim, created["id"])
        assert stored["active"] is active
        assert stored["userName"] == "test.user@okta.local"
        hits = _page(scim, filter=f"active eq {str(active).lower()}")["Resources"]
        assert [r["id"] for r in hits] == [created["id"]]
