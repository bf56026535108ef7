"""inSync's create and update rules beyond mappings (provisioning-engines.md §5.2, §5.5):
a manually added account with the same e-mail is adopted, a duplicate e-mail is refused, and an
update changes only the account's display name, e-mail and status.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import AdminApi
from tests.conftest import Scim
from tests.conftest import assert_scim_error
from tests.conftest import create_user
from tests.conftest import make_admin
from tests.conftest import make_tenant
from tests.conftest import patch_body
from tests.conftest import total_users
from tests.conftest import user_body


def _tenant_with_policies(client: TestClient, engine: Engine) -> tuple[Scim, AdminApi]:
    """Engineering goes to its own profile and storage; everyone else to the defaults."""
    tenant = make_tenant(engine, allow_any=False)
    api = AdminApi(client, make_admin(engine, tenant.id))
    api.post("/profiles", json={"name": "Engineering"})
    api.post("/profiles", json={"name": "Contractors"})
    api.post("/storages", json={"name": "EU", "region": "eu-west-1"})
    api.post(
        "/mappings",
        json={
            "name": "Engineering",
            "attribute": "department",
            "values": "Engineering",
            "profile": "Engineering",
            "storage": "EU",
        },
    )
    api.post("/mappings", json={"name": "Anyone", "any_user": True})
    return Scim(client, tenant.token), api


def test_a_manual_account_with_the_same_email_is_adopted_keeping_profile_and_storage(
    client: TestClient, engine: Engine
) -> None:
    scim, api = _tenant_with_policies(client, engine)
    manual = api.post(
        "/users",
        json={"email": "Ada@Example.com", "name": "Ada", "profile": "Contractors", "storage": "EU"},
    ).json()
    # SCIM does not see a manual account before the IdP provisions it.
    assert total_users(scim) == 0
    assert (
        scim.get("/Users", params={"filter": 'userName eq "Ada@Example.com"'}).json()[
            "totalResults"
        ]
        == 0
    )
    body = user_body("ada.lovelace", department="Engineering")
    body["emails"] = [{"value": "ada@example.com", "type": "work", "primary": True}]
    created = scim.post("/Users", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == manual["id"]
    assert created.json()["userName"] == "ada.lovelace"
    account = api.get(f"/users/{manual['id']}").json()
    # Adopted: SCIM-managed now, with the profile and storage it had (not the mapping's).
    assert (account["managed_by"], account["profile"], account["storage"]) == (
        "scim",
        "Contractors",
        "EU",
    )
    assert total_users(scim) == 1
    found = scim.get("/Users", params={"filter": 'emails.value eq "ada@example.com"'}).json()
    assert [u["id"] for u in found["Resources"]] == [manual["id"]]
    [entry] = api.get("/audit", params={"action": "user.adopt"}).json()
    assert entry["target_id"] == manual["id"]
    assert entry["before"]["userName"] == "Ada@Example.com"
    assert entry["after"]["userName"] == "ada.lovelace"


def test_a_manual_account_with_the_same_username_is_adopted(
    client: TestClient, engine: Engine
) -> None:
    scim, api = _tenant_with_policies(client, engine)
    manual = api.post("/users", json={"email": "bo@example.com", "name": "Bo"}).json()
    body = user_body("bo@example.com")
    body["emails"] = [{"value": "bo.work@example.com", "primary": True}]
    created = scim.post("/Users", json=body)
    assert created.status_code == 201
    assert created.json()["id"] == manual["id"]
    account = api.get(f"/users/{manual['id']}").json()
    assert account["email"] == "bo.work@example.com"
    assert account["profile"] == "Default"


def test_a_duplicate_email_fails_with_its_own_error_and_creates_nothing(
    client: TestClient, engine: Engine
) -> None:
    scim, _ = _tenant_with_policies(client, engine)
    create_user(scim, user_body("kim@example.com"))
    twin = user_body("kim.other")
    twin["emails"] = [{"value": "KIM@example.com", "type": "work", "primary": True}]
    refused = scim.post("/Users", json=twin)
    assert_scim_error(refused, 409, "uniqueness")
    assert "e-mail address KIM@example.com already exists" in refused.json()["detail"]
    assert total_users(scim) == 1
    # An update that would give a second user the same e-mail is refused the same way.
    other = create_user(scim, user_body("lee@example.com"))
    clash = scim.patch(
        f"/Users/{other['id']}",
        json=patch_body(
            {
                "op": "replace",
                "path": "emails",
                "value": [{"value": "kim@example.com", "primary": True}],
            }
        ),
    )
    assert_scim_error(clash, 409, "uniqueness")
    assert scim.get(f"/Users/{other['id']}").json()["emails"][0]["value"] == "lee@example.com"


def test_updates_change_only_the_accounts_name_email_and_status(
    client: TestClient, engine: Engine
) -> None:
    scim, api = _tenant_with_policies(client, engine)
    user = create_user(scim, user_body("mo@example.com", department="Engineering", title="Dev"))
    assert api.get(f"/users/{user['id']}").json()["profile"] == "Engineering"
    changed = scim.patch(
        f"/Users/{user['id']}",
        json=patch_body(
            {"op": "replace", "path": "department", "value": "Sales"},
            {"op": "replace", "path": "title", "value": "Lead"},
            {"op": "replace", "path": "displayName", "value": "Mo Farah"},
            {
                "op": "replace",
                "path": "emails",
                "value": [{"value": "mo.farah@example.com", "primary": True}],
            },
        ),
    )
    assert changed.status_code == 200, changed.text
    # Mappings are not evaluated again: still the Engineering profile and storage.
    account = api.get(f"/users/{user['id']}").json()
    assert (account["profile"], account["storage"]) == ("Engineering", "EU")
    assert (account["displayName"], account["email"]) == ("Mo Farah", "mo.farah@example.com")
    # The other attributes are kept in the SCIM document.
    stored = scim.get(f"/Users/{user['id']}").json()
    assert (stored["department"], stored["title"]) == ("Sales", "Lead")
    [entry] = api.get("/audit", params={"action": "user.update", "target_id": user["id"]}).json()
    assert entry["before"]["displayName"] == "Mo"
    assert entry["after"]["displayName"] == "Mo Farah"
    assert entry["after"]["email"] == "mo.farah@example.com"
    assert entry["detail"] == "SCIM attributes changed: department, displayName, emails, title"
    # Status: active=false preserves (license released), true reactivates the same account.
    scim.patch(
        f"/Users/{user['id']}", json=patch_body({"op": "replace", "path": "active", "value": False})
    )
    assert api.get("/tenant").json()["licenses"] == {"active": 0, "preserved": 1}
    scim.patch(
        f"/Users/{user['id']}", json=patch_body({"op": "replace", "path": "active", "value": True})
    )
    account = api.get(f"/users/{user['id']}").json()
    assert (account["state"], account["profile"]) == ("active", "Engineering")


def test_the_preview_says_what_a_create_would_do_to_existing_accounts(
    client: TestClient, engine: Engine
) -> None:
    scim, api = _tenant_with_policies(client, engine)
    api.post("/users", json={"email": "hand@example.com", "name": "Hand", "profile": "Contractors"})
    adopt = scim.post("/Users/.evaluate", json=user_body("hand@example.com")).json()
    assert (adopt["outcome"], adopt["profile"]) == ("adopt", "Contractors")
    active = create_user(scim, user_body("on@example.com", department="Engineering"))
    twin = user_body("twin")
    twin["emails"] = [{"value": "on@example.com", "primary": True}]
    duplicate = api.post("/mappings/evaluate", json={"user": twin}).json()
    assert duplicate["outcome"] == "reject"
    assert "e-mail address on@example.com already exists" in duplicate["rejection"]
    same = scim.post("/Users/.evaluate", json=user_body("on@example.com")).json()
    assert same["rejection"] == "A user with this userName already exists."
    scim.delete(f"/Users/{active['id']}")
    back = scim.post("/Users/.evaluate", json=user_body("on@example.com")).json()
    assert (back["outcome"], back["profile"], back["storage"]) == (
        "reactivate",
        "Engineering",
        "EU",
    )
    api.post(f"/users/{active['id']}/preserve")
    held = scim.post("/Users/.evaluate", json=user_body("on@example.com")).json()
    assert held["outcome"] == "reject"
    assert "preserved by an administrator" in held["rejection"]
    # An existing account previewed by id is placed by the mappings, as if new.
    placed = api.post("/mappings/evaluate", json={"existing": active["id"]}).json()
    assert (placed["outcome"], placed["mapping"]) == ("create", "Engineering")
    assert total_users(scim) == 0
