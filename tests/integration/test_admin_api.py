"""The admin REST API: API-key authentication, roles, provisioning method, policies, accounts.

Every test runs on SQLite and PostgreSQL through real HTTP (ASGI) and the same Administration
service the CLI uses.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from scimlink.config import Settings
from scimlink.sp import admins
from scimlink.sp import tenants
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from scimlink.web.app import create_sp_app
from tests.conftest import ADMIN_API
from tests.conftest import AdminApi
from tests.conftest import Scim
from tests.conftest import Tenant
from tests.conftest import assert_scim_error
from tests.conftest import create_user
from tests.conftest import database_text
from tests.conftest import make_admin
from tests.conftest import make_tenant
from tests.conftest import user_body


def _manual_tenant(engine: Engine) -> str:
    with write_session(make_sessionmaker(engine)) as session:
        return tenants.create_tenant(session, f"manual-{uuid.uuid4().hex[:10]}").id


def _error(response: Any, status: int, code: str | None = None) -> str:
    """A readable JSON error: ``{"error": code, "detail": ...}``, never a traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    if code is not None:
        assert body["error"] == code, body
    assert "Traceback" not in response.text
    return str(body["detail"])


# -- authentication ------------------------------------------------------------------------------


def test_openapi_documents_every_resource(client: TestClient) -> None:
    spec = client.get(f"{ADMIN_API}/openapi.json").json()
    paths = set(spec["paths"])
    for path in (
        "/tenant",
        "/provisioning/{method}",
        "/tokens",
        "/tokens/settings",
        "/ldap/accounts",
        "/ldap/mappings",
        "/profiles",
        "/storages",
        "/mappings",
        "/mappings/{ref}/move",
        "/mappings/evaluate",
        "/users",
        "/users/{ref}/preserve",
        "/admins",
        "/api-keys",
        "/audit",
        "/mail",
    ):
        assert path in paths, path
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])


def test_requests_without_a_valid_key_get_401(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    assert _error(client.get(f"{ADMIN_API}/tenant"), 401, "unauthorized")
    # A SCIM token is not an admin key, and an admin key is not a SCIM token.
    _error(AdminApi(client, tenant.token).get("/tenant"), 401, "unauthorized")
    key = make_admin(engine, tenant.id)
    assert_scim_error(Scim(client, key).get("/Users"), 401)
    garbage = key[:-1] + ("A" if key[-1] != "A" else "B")
    _error(AdminApi(client, garbage).get("/tenant"), 401)
    by_header = client.get(f"{ADMIN_API}/tenant", headers={"X-API-Key": key})
    assert by_header.status_code == 200
    assert by_header.json()["id"] == tenant.id


def test_keys_and_passwords_are_stored_as_hashes_only(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    api = AdminApi(client, make_admin(engine, tenant.id))
    password = f"pw-{uuid.uuid4().hex}"
    created = api.post(
        "/admins",
        json={"email": "ops@example.com", "role": "profile-admin", "password": password},
    )
    assert created.status_code == 201, created.text
    assert created.json()["has_password"] is True
    issued = api.post("/api-keys", json={"admin": "ops@example.com", "name": "ci"})
    assert issued.status_code == 201
    assert issued.headers["cache-control"] == "no-store"
    key = issued.json()["key"]
    assert key.startswith("scimlink_admin_")
    listed = api.get("/api-keys").json()
    assert key not in str(listed)
    assert any(k["hint"] == issued.json()["hint"] for k in listed)
    text = database_text(engine)
    assert password not in text
    assert key not in text
    assert api.key not in text
    assert "$argon2id$" in text
    with read_session(make_sessionmaker(engine)) as session:
        assert admins.verify_password(session, tenant.id, "OPS@example.com", password)
        assert admins.verify_password(session, tenant.id, "ops@example.com", "wrong") is None
        assert admins.verify_password(session, tenant.id, "nobody@example.com", password) is None
    short = api.post(
        "/admins", json={"email": "x@example.com", "role": "profile-admin", "password": "short"}
    )
    assert "at least 12" in _error(short, 400, "invalid_input")


def test_a_revoked_key_stops_working_at_once(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    api = AdminApi(client, make_admin(engine, tenant.id))
    own = api.get("/api-keys").json()
    assert len(own) >= 1
    mine = next(k for k in own if api.key.endswith(k["hint"][-4:]))
    assert api.delete(f"/api-keys/{mine['id']}").status_code == 200
    _error(api.get("/tenant"), 401)


# -- the tenant and its region -------------------------------------------------------------------


def test_tenant_overview_shows_method_token_expiry_licenses_and_base_url(
    api: AdminApi, scim: Scim
) -> None:
    create_user(scim)
    overview = api.get("/tenant").json()
    assert overview["provisioning"] == "scim"
    assert overview["region"] == "cloud"
    assert overview["scim_base_url"] == "http://127.0.0.1:8000/insync/scim"
    assert overview["licenses"] == {"active": 1, "preserved": 0}
    [token] = overview["tokens"]
    assert token["current"] is True
    assert token["days_left"] == 365
    assert scim.token[-4:] in token["hint"]


def test_each_region_shows_its_configured_scim_base_url(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        sp_cloud_scim_url="https://apis.example.com/insync/scim",
        sp_govcloud_scim_url="https://govcloudapis.example.com/insync/scim",
    )
    with write_session(make_sessionmaker(engine)) as session:
        cloud = tenants.create_tenant(session, f"c-{uuid.uuid4().hex[:8]}", "cloud").id
        gov = tenants.create_tenant(session, f"g-{uuid.uuid4().hex[:8]}", "govcloud").id
    with TestClient(create_sp_app(settings, engine=engine)) as client:
        cloud_view = AdminApi(client, make_admin(engine, cloud)).get("/tenant").json()
        gov_view = AdminApi(client, make_admin(engine, gov)).get("/tenant").json()
    assert cloud_view["scim_base_url"] == "https://apis.example.com/insync/scim"
    assert gov_view["scim_base_url"] == "https://govcloudapis.example.com/insync/scim"
    assert gov_view["region"] == "govcloud"


# -- provisioning method -------------------------------------------------------------------------


def test_tokens_exist_only_once_the_tenant_uses_scim(client: TestClient, engine: Engine) -> None:
    api = AdminApi(client, make_admin(engine, _manual_tenant(engine)))
    assert api.get("/tenant").json()["provisioning"] == "manual"
    detail = _error(api.post("/tokens"), 409, "conflict")
    assert "use-scim" in detail
    switched = api.post("/provisioning/use-scim").json()
    assert switched == {"provisioning": "scim", "previous": "manual", "tokens_revoked": 0}
    issued = api.post("/tokens")
    assert issued.status_code == 201
    assert issued.headers["cache-control"] == "no-store"
    token = issued.json()["token"]
    assert Scim(client, token).get("/Users").status_code == 200
    # Leaving SCIM stops the token at once.
    assert api.post("/provisioning/use-manual").json()["tokens_revoked"] == 1
    assert_scim_error(Scim(client, token).get("/Users"), 401)
    assert api.get("/tenant").json()["tokens"] == []


def test_use_scim_is_refused_while_anything_of_ad_ldap_remains(
    client: TestClient, engine: Engine
) -> None:
    api = AdminApi(client, make_admin(engine, _manual_tenant(engine)))
    assert api.post("/provisioning/use-ldap").status_code == 200
    assert (
        api.post("/ldap/accounts", json={"name": "corp-ad", "host": "dc1.corp"}).status_code == 201
    )
    mapping = api.post("/ldap/mappings", json={"name": "All staff", "account": "corp-ad"})
    assert mapping.status_code == 201
    assert mapping.json()["account"] == "corp-ad"
    user = api.post(
        "/users", json={"email": "li@corp.example", "name": "Li", "managed_by": "ldap"}
    ).json()
    assert user["managed_by"] == "ldap"

    assert "AD/LDAP account 'corp-ad'" in _error(api.post("/provisioning/use-scim"), 409)
    assert api.delete("/ldap/accounts/corp-ad").status_code == 200
    assert "AD/LDAP mapping 'All staff'" in _error(api.post("/provisioning/use-scim"), 409)
    assert api.delete("/ldap/mappings/All staff").status_code == 200
    # An AD/LDAP-managed user blocks the switch whether Active or Preserved.
    assert "'li@corp.example' (active)" in _error(api.post("/provisioning/use-scim"), 409)
    api.post(f"/users/{user['id']}/preserve")
    assert "'li@corp.example' (preserved)" in _error(api.post("/provisioning/use-scim"), 409)
    assert api.get("/tenant").json()["provisioning"] == "ldap"
    assert api.delete(f"/users/{user['id']}").status_code == 200
    assert api.post("/provisioning/use-scim").json()["provisioning"] == "scim"
    # AD/LDAP objects can only be added while the tenant uses AD/LDAP.
    _error(api.post("/ldap/accounts", json={"name": "again", "host": "dc2"}), 409)


def test_use_ldap_is_refused_while_scim_users_exist(api: AdminApi, scim: Scim) -> None:
    create_user(scim)
    assert "SCIM-managed users exist" in _error(api.post("/provisioning/use-ldap"), 409)


# -- roles ---------------------------------------------------------------------------------------


def test_only_druva_and_insync_cloud_administrators_switch_to_scim_or_generate_tokens(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    profile_admin = AdminApi(client, make_admin(engine, tenant.id, "profile-admin"))
    insync = AdminApi(client, make_admin(engine, tenant.id, "insync-cloud-admin"))
    druva = AdminApi(client, make_admin(engine, tenant.id, "druva-cloud-admin"))
    user = create_user(Scim(client, tenant.token))
    for path in ("/tokens", "/provisioning/use-scim"):
        detail = _error(profile_admin.post(path), 403, "forbidden")
        assert "Druva Cloud administrator or an inSync Cloud administrator" in detail
    _error(profile_admin.put("/tokens/settings", json={"grace_hours": 4}), 403)
    _error(profile_admin.post("/mappings", json={"name": "X", "any_user": True}), 403)
    assert insync.post("/tokens").status_code == 201
    assert druva.post("/tokens").status_code == 201
    assert insync.post("/provisioning/use-scim").status_code == 200
    # Managing administrators is the Druva Cloud administrator's alone.
    new_admin = {"email": "n@example.com", "role": "profile-admin"}
    _error(insync.post("/admins", json=new_admin), 403)
    assert druva.post("/admins", json=new_admin).status_code == 201
    # A profile administrator manages users and reads everything.
    assert profile_admin.get("/users").status_code == 200
    assert profile_admin.get("/audit").status_code == 200
    assert profile_admin.post(f"/users/{user['id']}/preserve").json()["state"] == "preserved"


def test_keys_belong_to_their_administrator(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    druva = AdminApi(client, make_admin(engine, tenant.id))
    lesser = AdminApi(client, make_admin(engine, tenant.id, "profile-admin"))
    # Anyone may make a key for themselves; only a Druva Cloud administrator for others.
    own = lesser.post("/api-keys", json={"name": "mine"})
    assert own.status_code == 201
    druva_admin = next(a for a in druva.get("/admins").json() if a["role"] == "druva-cloud-admin")
    _error(lesser.post("/api-keys", json={"admin": druva_admin["email"]}), 403)
    # A lesser administrator sees only its own keys, and cannot revoke others'.
    lesser_keys = lesser.get("/api-keys").json()
    assert {k["admin"] for k in lesser_keys} == {own.json()["admin"]}
    druva_key = next(k for k in druva.get("/api-keys").json() if k["admin"] == druva_admin["email"])
    _error(lesser.delete(f"/api-keys/{druva_key['id']}"), 403)
    assert druva.get("/tenant").status_code == 200


def test_an_administrator_sees_only_its_own_tenant(client: TestClient, engine: Engine) -> None:
    first, second = make_tenant(engine), make_tenant(engine)
    theirs = create_user(Scim(client, second.token))
    api = AdminApi(client, make_admin(engine, first.id))
    _error(api.get(f"/users/{theirs['id']}"), 404, "not_found")
    _error(api.post(f"/users/{theirs['id']}/preserve"), 404)
    _error(api.delete(f"/users/{theirs['id']}"), 404)
    assert api.get("/users").json()["users"] == []
    assert all(e["target_id"] != theirs["id"] for e in api.get("/audit").json())
    assert Scim(client, second.token).get(f"/Users/{theirs['id']}").json()["active"] is True


# -- policies ------------------------------------------------------------------------------------


def test_mappings_profiles_and_storages_through_the_api(client: TestClient, engine: Engine) -> None:
    tenant = make_tenant(engine, allow_any=False)
    api = AdminApi(client, make_admin(engine, tenant.id))
    scim = Scim(client, tenant.token)
    profile = api.post("/profiles", json={"name": "Sales", "max_users": 1, "auto_delete_days": 30})
    assert profile.status_code == 201
    assert profile.json()["auto_delete_days"] == 30
    assert api.post("/storages", json={"name": "EU", "region": "eu-west-1"}).status_code == 201
    sales = api.post(
        "/mappings",
        json={
            "name": "Sales",
            "attribute": "department",
            "values": "Sales, Presales",
            "profile": "Sales",
            "storage": "EU",
            "quota_gb": 50,
        },
    )
    assert sales.status_code == 201, sales.text
    assert sales.json()["criteria"] == {"attribute": "department", "values": ["Sales", "Presales"]}
    assert api.post("/mappings", json={"name": "Anyone", "any_user": True}).json()["priority"] == 2
    refused = api.patch("/mappings/Sales", json={"attribute": "title"})
    assert "cannot change" in _error(refused, 400, "invalid_input")
    assert api.patch("/mappings/Sales", json={"name": "Sales team"}).json()["name"] == "Sales team"
    moved = api.post("/mappings/Anyone/move", json={"position": 1}).json()
    assert [m["name"] for m in moved] == ["Anyone", "Sales team"]
    api.post("/mappings/Anyone/move", json={"position": 2})
    evaluated = api.post(
        "/mappings/evaluate", json={"user": user_body(department="Presales")}
    ).json()
    assert evaluated["mapping"] == "Sales team"
    assert evaluated["profile"] == "Sales"
    _error(api.post("/mappings/evaluate", json={}), 400)
    # The profile's limit holds, then lifting it (null clears) admits the next one.
    assert scim.post("/Users", json=user_body(department="Sales")).status_code == 201
    full = scim.post("/Users", json=user_body(department="Sales"))
    assert_scim_error(full, 400, "invalidValue")
    assert "maximum of 1 users" in full.json()["detail"]
    cleared = api.patch("/profiles/Sales", json={"max_users": None})
    assert cleared.json()["max_users"] is None
    assert cleared.json()["auto_delete_days"] == 30
    assert scim.post("/Users", json=user_body(department="Sales")).status_code == 201
    # An unhealthy storage refuses new users with 503 until it recovers.
    assert api.patch("/storages/EU", json={"healthy": False}).json()["healthy"] is False
    assert_scim_error(scim.post("/Users", json=user_body(department="Sales")), 503)
    api.patch("/storages/EU", json={"healthy": True})
    assert scim.post("/Users", json=user_body(department="Sales")).status_code == 201
    listed = {p["name"]: p for p in api.get("/profiles").json()}
    assert listed["Sales"]["users"] == 3
    assert api.delete("/mappings/Sales team").json() == {"deleted": "Sales team"}
    assert [m["name"] for m in api.get("/mappings").json()] == ["Anyone"]


def test_accounts_through_the_api(api: AdminApi, scim: Scim) -> None:
    ids = [create_user(scim)["id"] for _ in range(3)]
    manual = api.post("/users", json={"email": "hand@example.com", "name": "By Hand"})
    assert manual.status_code == 201
    assert manual.json()["managed_by"] == "manual"
    first = api.get("/users", params={"limit": 2}).json()
    assert [u["id"] for u in first["users"]] == ids[:2]
    rest = api.get("/users", params={"after": ids[1]}).json()["users"]
    assert [u["id"] for u in rest] == [ids[2], manual.json()["id"]]
    preserved = api.post(f"/users/{ids[0]}/preserve").json()
    assert (preserved["state"], preserved["preserved_by"]) == ("preserved", "admin")
    assert api.get("/users", params={"state": "preserved"}).json()["licenses"] == {
        "active": 3,
        "preserved": 1,
    }
    assert api.post(f"/users/{ids[0]}/activate").json()["state"] == "active"
    assert api.delete(f"/users/{ids[2]}").status_code == 200
    assert_scim_error(scim.get(f"/Users/{ids[2]}"), 404)
    _error(api.get("/users/nobody@example.com"), 404)
    duplicate = api.post("/users", json={"email": "HAND@example.com", "name": "Again"})
    assert "already exists" in _error(duplicate, 409)


def test_bad_requests_get_readable_errors(api: AdminApi) -> None:
    invalid = api.post("/profiles", json={"name": "X", "max_users": -1, "surprise": 1})
    detail = _error(invalid, 422, "invalid_request")
    assert "max_users" in detail
    assert "surprise" in detail
    _error(api.get("/no-such-thing"), 404)
    _error(api.post("/provisioning/use-magic"), 422)
    _error(api.put("/tokens/settings", json={"grace_hours": 100000}), 400)
    _error(api.patch("/profiles/missing", json={"name": "x"}), 404)


def test_administrators_roles_passwords_and_listings(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    api = AdminApi(client, make_admin(engine, tenant.id))
    created = api.post("/admins", json={"email": "Rae@example.com", "role": "profile-admin"})
    assert created.json()["has_password"] is False
    promoted = api.patch("/admins/rae@example.com", json={"role": "insync-cloud-admin"})
    assert promoted.json()["role"] == "insync-cloud-admin"
    password = api.patch("/admins/rae@example.com", json={"password": "a long enough secret"})
    assert password.json()["has_password"] is True
    unchanged = api.patch("/admins/rae@example.com", json={})
    assert unchanged.json()["role"] == "insync-cloud-admin"
    _error(api.post("/admins", json={"email": "rae@EXAMPLE.com", "role": "profile-admin"}), 409)
    _error(api.post("/admins", json={"email": "not-an-email", "role": "profile-admin"}), 400)
    _error(api.post("/admins", json={"email": "z@example.com", "role": "root"}), 422)
    # An administrator may change its own password without the right to manage administrators.
    rae = AdminApi(client, api.post("/api-keys", json={"admin": "rae@example.com"}).json()["key"])
    assert (
        rae.patch("/admins/rae@example.com", json={"password": "another long secret"}).status_code
        == 200
    )
    assert [a["role"] for a in rae.get("/admins").json()].count("insync-cloud-admin") == 1
    assert rae.get("/ldap/accounts").json() == []
    assert rae.get("/ldap/mappings").json() == []
    assert rae.get("/mail", params={"pending": True}).json() == []
    assert rae.get("/tokens").json()[0]["current"] is True
    assert api.delete("/admins/rae@example.com").json() == {"deleted": "Rae@example.com"}
    _error(rae.get("/tenant"), 401)
    _error(api.delete("/admins/rae@example.com"), 404)
