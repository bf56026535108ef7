"""The audit trail: every SCIM and admin change with actor, action, target, before/after, time
and correlation id; a refused reactivation is recorded although its request rolled back."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import AdminApi
from tests.conftest import Scim
from tests.conftest import Tenant
from tests.conftest import assert_scim_error
from tests.conftest import create_user
from tests.conftest import make_admin
from tests.conftest import patch_body
from tests.conftest import user_body


def _entries(api: AdminApi, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/audit", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def test_scim_changes_are_audited_with_the_token_and_the_correlation_id(
    scim: Scim, api: AdminApi
) -> None:
    created = scim.post(
        "/Users", json=user_body("ann@example.com"), headers={"X-Correlation-Id": "idp-req-1"}
    )
    assert created.status_code == 201
    assert created.headers["x-correlation-id"] == "idp-req-1"
    user_id = created.json()["id"]
    [entry] = _entries(api, correlation_id="idp-req-1")
    assert entry["action"] == "user.create"
    assert entry["actor"] == f"scim:scimlink_…{scim.token[-4:]}"
    assert (entry["target_type"], entry["target_id"], entry["target"]) == (
        "user",
        user_id,
        "ann@example.com",
    )
    assert entry["before"] is None
    assert entry["after"]["state"] == "active"
    assert entry["detail"] == "placed by SCIM mapping 'Allow any user'"
    assert entry["at"].endswith("Z")

    scim.patch(
        f"/Users/{user_id}", json=patch_body({"op": "replace", "path": "active", "value": False})
    )
    assert scim.delete(f"/Users/{user_id}").status_code == 204
    actions = [e["action"] for e in _entries(api, target_id=user_id)]
    assert actions == ["user.delete", "user.preserve", "user.create"]
    preserve = _entries(api, action="user.preserve")[0]
    assert (preserve["before"]["state"], preserve["after"]["state"]) == ("active", "preserved")
    assert preserve["after"]["preservedBy"] == "idp"


def test_a_refused_reactivation_is_audited_although_the_request_rolled_back(
    scim: Scim, api: AdminApi
) -> None:
    user = create_user(scim)
    assert api.post(f"/users/{user['id']}/preserve").status_code == 200
    refused = scim.patch(
        f"/Users/{user['id']}",
        json=patch_body({"op": "replace", "path": "active", "value": True}),
        headers={"X-Request-Id": "reactivate-7"},
    )
    assert_scim_error(refused, 403)
    assert "preserved by an administrator" in refused.json()["detail"]
    assert api.get(f"/users/{user['id']}").json()["state"] == "preserved"
    [entry] = _entries(api, correlation_id="reactivate-7")
    assert (entry["action"], entry["outcome"]) == ("user.reactivate", "refused")
    assert entry["before"]["preservedBy"] == "admin"
    assert "cannot be reactivated from the IdP" in entry["detail"]
    # A POST of the same userName (re-provisioning) is refused and recorded the same way.
    again = scim.post("/Users", json=user_body(user["userName"]), headers={"X-Request-Id": "re-8"})
    assert_scim_error(again, 403)
    assert _entries(api, correlation_id="re-8")[0]["outcome"] == "refused"


def test_admin_changes_are_audited_with_the_administrator(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    api = AdminApi(client, make_admin(engine, tenant.id))
    me = next(a["email"] for a in api.get("/admins").json())
    api.post("/profiles", json={"name": "Finance", "max_users": 5})
    api.patch("/profiles/Finance", json={"max_users": 10})
    api.put("/tokens/settings", json={"grace_hours": 6})
    edits = _entries(api, action="profile.edit")
    assert len(edits) == 1
    assert edits[0]["actor"] == f"admin:{me}"
    assert (edits[0]["before"]["max_users"], edits[0]["after"]["max_users"]) == (5, 10)
    grace = _entries(api, action="token.grace")[0]
    assert (grace["before"], grace["after"]) == ({"grace_hours": 0}, {"grace_hours": 6})
    # Newest first, paged by id; each response names its correlation id in the trail.
    everything = _entries(api)
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    page = _entries(api, limit=1)
    older = _entries(api, before_id=page[0]["id"], limit=1)
    assert older[0]["id"] < page[0]["id"]
    response = api.patch("/profiles/Finance", json={"name": "Finance EU"})
    rename = _entries(api, correlation_id=response.headers["x-correlation-id"])
    assert [e["action"] for e in rename] == ["profile.edit"]


def test_an_unusable_correlation_id_is_replaced(scim: Scim) -> None:
    for offered in ("has spaces", "x" * 65, "semi;colon"):
        response = scim.get("/Users", headers={"X-Correlation-Id": offered})
        assert response.status_code == 200
        assigned = response.headers["x-correlation-id"]
        assert assigned != offered
        assert len(assigned) == 32
