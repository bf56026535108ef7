"""The directory half's admin REST API at ``/api/v1``: keys, users, groups, applications, the IdM
connector and provisioning, against the app half served over real HTTP.

Every test runs on SQLite and PostgreSQL (``idp_engine``), through ASGI and the same services the
CLI calls. The database is shared by the session, so every name is unique.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from scimlink.idp import directory
from scimlink.idp import keys
from scimlink.idp.admin_api import create_idp_admin_api
from scimlink.idp.provisioning.engine import Engine as ProvisioningEngine
from scimlink.idp.secrets import SecretBox
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import write_session
from tests.conftest import Tenant
from tests.conftest import database_text
from tests.conftest import free_port
from tests.conftest import make_tenant

PREFIX = "/api/v1"


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


class Api:
    """The directory's admin API with one key: paths are relative to ``/api/v1``."""

    def __init__(self, client: TestClient, key: str | None) -> None:
        self.client = client
        self.key = key

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        headers.update(kwargs.pop("headers", {}))
        return self.client.request(method, f"{PREFIX}{path}", headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, json=json, **kwargs)

    def put(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, json=json, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _error(response: httpx.Response, status: int, code: str | None = None) -> str:
    """A readable JSON error: ``{"error": code, "detail": ...}``, never a traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    if code is not None:
        assert body["error"] == code, body
    assert "Traceback" not in response.text
    return str(body["detail"])


def _new_key(idp_engine: Engine, name: str = "tests") -> str:
    return _issue_key(idp_engine, name)[0]


def _issue_key(idp_engine: Engine, name: str = "tests") -> tuple[str, int]:
    with write_session(make_sessionmaker(idp_engine)) as session:
        secret, view = keys.create_key(session, name)
    return secret, view.id


@pytest.fixture
def provisioning(idp_engine: Engine) -> ProvisioningEngine:
    return ProvisioningEngine(make_sessionmaker(idp_engine), SecretBox(Fernet.generate_key()))


@pytest.fixture
def idp_client(provisioning: ProvisioningEngine) -> Iterator[TestClient]:
    root = FastAPI()
    root.mount(PREFIX, create_idp_admin_api(provisioning))
    with TestClient(root, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def api(idp_client: TestClient, idp_engine: Engine) -> Api:
    return Api(idp_client, _new_key(idp_engine))


def _add_user(api: Api, **properties: Any) -> dict[str, Any]:
    username = properties.pop("username", None) or _unique("user")
    body = {"username": username, "email": f"{username}@example.com", **properties}
    created: dict[str, Any] = _ok(api.post("/users", json=body), 201)
    return created


def _add_app(api: Api, kind: str = "druva", **extra: Any) -> dict[str, Any]:
    created: dict[str, Any] = _ok(
        api.post("/apps", json={"kind": kind, "label": _unique(kind.title()), **extra}), 201
    )
    return created


# -- documentation and authentication ------------------------------------------------------------


def test_openapi_lists_every_path_and_the_docs_are_served(api: Api) -> None:
    spec = _ok(api.client.get(f"{PREFIX}/openapi.json"))
    paths = set(spec["paths"])
    for path in (
        "/users",
        "/users/{ref}",
        "/users/{ref}/suspend",
        "/users/{ref}/activate",
        "/groups",
        "/groups/{ref}",
        "/groups/{ref}/members",
        "/groups/{ref}/members/{user}",
        "/catalog",
        "/apps",
        "/apps/{ref}",
        "/apps/{ref}/mapping",
        "/apps/{ref}/mapping/{target}",
        "/apps/{ref}/settings",
        "/apps/{ref}/groups",
        "/apps/{ref}/groups/{group}",
        "/apps/{ref}/approve",
        "/apps/{ref}/reject",
        "/apps/{ref}/links",
        "/apps/{ref}/log",
        "/apps/{ref}/idm",
        "/apps/{ref}/idm/activate",
        "/apps/{ref}/idm/deactivate",
        "/apps/{ref}/plan",
        "/apps/{ref}/sync",
        "/apps/{ref}/provision/{user}",
        "/apps/{ref}/reconcile",
        "/api-keys",
        "/api-keys/{key_id}",
    ):
        assert path in paths, path
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    # Secrets are documented as write-only input.
    schemas = spec["components"]["schemas"]
    assert {"get", "patch", "delete"} <= set(spec["paths"]["/apps/{ref}"])
    edit = spec["paths"]["/apps/{ref}"]["patch"]["requestBody"]["content"]["application/json"]
    assert edit["schema"]["$ref"].endswith("/AppEditBody")
    assert set(schemas["AppEditBody"]["properties"]) == {
        "label",
        "description",
        "show_in_portal",
        "logo_url",
    }
    assert schemas["IdmBody"]["properties"]["token"]["anyOf"][0]["writeOnly"] is True
    assert schemas["NewUserBody"]["properties"]["password"]["anyOf"][0]["writeOnly"] is True
    docs = api.client.get(f"{PREFIX}/docs")
    assert docs.status_code == 200
    assert f"{PREFIX}/openapi.json" in docs.text


def test_requests_without_a_valid_key_get_401(
    idp_client: TestClient, idp_engine: Engine, api: Api
) -> None:
    revoked, revoked_id = _issue_key(idp_engine)
    with write_session(make_sessionmaker(idp_engine)) as session:
        keys.revoke_key(session, revoked_id)
    unknown = keys.new_secret()
    garbage = keys.PREFIX + "x" * 38
    app_half_key = "scimlink_admin_" + unknown.removeprefix(keys.PREFIX)
    for key in (None, "", "nonsense", garbage, unknown, app_half_key, revoked):
        response = Api(idp_client, key).get("/users")
        assert "API key is required" in _error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
    # Basic credentials are not a key.
    basic = idp_client.get(f"{PREFIX}/users", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    _error(basic, 401, "unauthorized")
    # No key: 401 before anything about the body is revealed.
    _error(Api(idp_client, None).post("/users", json={"bogus": 1}), 401, "unauthorized")
    _error(Api(idp_client, unknown).post("/users", json={"bogus": 1}), 401, "unauthorized")
    # A valid key works as a Bearer token and as X-API-Key.
    _ok(api.get("/users"))
    _ok(idp_client.get(f"{PREFIX}/groups", headers={"X-API-Key": str(api.key)}))


def test_api_keys_are_shown_once_and_stored_only_as_a_hash(api: Api, idp_engine: Engine) -> None:
    name = _unique("ci")
    response = api.post("/api-keys", json={"name": name})
    created = _ok(response, 201)
    assert response.headers["cache-control"] == "no-store"
    secret = created["key"]
    assert keys.well_formed(secret)
    assert secret.startswith("scimlink_idp_")
    assert created["hint"] == f"scimlink_idp_…{secret[-4:]}"
    assert (created["name"], created["active"], created["revoked_at"]) == (name, True, None)

    listed = _ok(api.get("/api-keys"))
    [row] = [k for k in listed if k["id"] == created["id"]]
    assert "key" not in row
    assert secret not in api.get("/api-keys").text
    stored = database_text(idp_engine)
    assert secret not in stored
    assert keys.key_hash(secret) in stored

    # The new key works; revoked, it stops working at once.
    other = Api(api.client, secret)
    _ok(other.get("/users"))
    revoked = _ok(api.delete(f"/api-keys/{created['id']}"))
    assert revoked["active"] is False
    assert revoked["revoked_at"]
    _error(other.get("/users"), 401, "unauthorized")
    # Revoking again keeps the first revocation time.
    assert _ok(api.delete(f"/api-keys/{created['id']}"))["revoked_at"] == revoked["revoked_at"]

    # An empty body takes the default name; bad ids are readable errors.
    default = _ok(api.post("/api-keys"), 201)
    assert default["name"] == "API key"
    _error(api.post("/api-keys", json={"name": "x" * 201}), 400, "invalid_input")
    assert "No API key 999999999" in _error(api.delete("/api-keys/999999999"), 404, "not_found")
    assert "key_id" in _error(api.delete("/api-keys/abc"), 422, "invalid_request")


# -- users ---------------------------------------------------------------------------------------


def test_users_are_created_read_changed_and_deleted(api: Api, idp_engine: Engine) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    username = _unique("ann")
    created = _add_user(
        api,
        username=username,
        firstname="Ann",
        lastname="Lee",
        displayname="Ann Lee",
        employeeIdentifier="E-1",
        department="Engineering",
        jobTitle="Engineer",
        costCenter="CC-7",
        attributes={"badge": "42", "remote": True},
        password=password,
    )
    assert created["username"] == username
    assert created["employeeIdentifier"] == "E-1"
    assert created["jobTitle"] == "Engineer"
    assert created["costCenter"] == "CC-7"
    assert created["state"] == "activated"
    assert created["attributes"] == {"badge": "42", "remote": True}
    assert "password" not in created
    assert "password_hash" not in created
    assert password not in database_text(idp_engine)

    # By id, username (any case) or e-mail.
    for ref in (created["id"], username.upper(), f"{username}@example.com"):
        assert _ok(api.get(f"/users/{ref}"))["id"] == created["id"]

    changed = _ok(
        api.patch(
            f"/users/{username}",
            json={
                "department": "Sales",
                "jobTitle": None,
                "attributes": {"badge": None, "floor": 3},
                "password": "another-secret",
            },
        )
    )
    assert changed["department"] == "Sales"
    assert changed["jobTitle"] is None
    assert changed["attributes"] == {"remote": True, "floor": 3}
    assert set(changed["changed"]) == {"department", "job_title", "attributes", "password"}
    assert "another-secret" not in str(changed)
    assert _ok(api.patch(f"/users/{username}", json={}))["changed"] == []

    assert _ok(api.post(f"/users/{username}/suspend"))["state"] == "suspended"
    suspended = _ok(api.get("/users", params={"state": "suspended", "limit": 1000}))["users"]
    assert created["id"] in [u["id"] for u in suspended]
    assert _ok(api.post(f"/users/{username}/activate"))["state"] == "activated"

    deleted = _ok(api.delete(f"/users/{username}"))
    assert deleted == {"deleted": username, "id": created["id"]}
    assert "No user" in _error(api.get(f"/users/{username}"), 404, "not_found")
    _error(api.delete(f"/users/{username}"), 404, "not_found")
    _error(api.post(f"/users/{username}/suspend"), 404, "not_found")


def test_user_validation_errors_are_readable(api: Api) -> None:
    taken = _add_user(api)
    again = api.post("/users", json={"username": taken["username"], "email": "x@example.com"})
    assert "already exists" in _error(again, 409, "conflict")
    same_email = api.post("/users", json={"username": _unique("b"), "email": taken["email"]})
    _error(same_email, 409, "conflict")
    bad_email = api.post("/users", json={"username": _unique("c"), "email": "not-an-email"})
    assert "not an e-mail address" in _error(bad_email, 400, "invalid_input")
    bad_name = api.post("/users", json={"username": "has space", "email": "s@example.com"})
    _error(bad_name, 400, "invalid_input")
    short = api.post(
        "/users",
        json={
            "username": _unique("d"),
            "email": f"{_unique('d')}@example.com",
            "password": "Zq9!x",
        },
    )
    assert "at least 8" in _error(short, 400, "invalid_input")
    assert "Zq9!x" not in short.text

    missing = _error(api.post("/users", json={"username": _unique("e")}), 422, "invalid_request")
    assert "email: Field required" in missing
    unknown = _error(
        api.post("/users", json={"username": "u1", "email": "u1@example.com", "shoeSize": "9"}),
        422,
        "invalid_request",
    )
    assert "shoeSize" in unknown
    state = _error(
        api.post("/users", json={"username": "u2", "email": "u2@example.com", "state": "gone"}),
        422,
        "invalid_request",
    )
    assert "state" in state
    # A secret that fails schema validation is named, never echoed.
    leaked = api.post(
        "/users", json={"username": "u3", "email": "u3@example.com", "password": ["secret-value"]}
    )
    assert "password" in _error(leaked, 422, "invalid_request")
    assert "secret-value" not in leaked.text
    # Clearing a required property is refused.
    cleared = api.patch(f"/users/{taken['id']}", json={"email": None})
    _error(cleared, 400, "invalid_input")
    _error(api.patch("/users/nobody-here", json={"department": "x"}), 404, "not_found")
    _error(api.get("/users", params={"limit": 0}), 422, "invalid_request")
    _error(api.get("/users", params={"after": "nobody-here"}), 404, "not_found")


def test_users_are_paged_in_creation_order(api: Api) -> None:
    group = _ok(api.post("/groups", json={"name": _unique("paged")}), 201)
    made = [
        _add_user(api, username=_unique(f"p{i}"), groups=[group["name"]])["id"] for i in range(5)
    ]
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"group": group["id"], "limit": 2}
        if after:
            params["after"] = after
        page = _ok(api.get("/users", params=params))
        seen += [u["id"] for u in page["users"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == made
    members = _ok(api.get(f"/groups/{group['name']}/members", params={"limit": 1000}))
    assert [u["id"] for u in members["users"]] == made
    assert members["next_after"] is None


# -- groups --------------------------------------------------------------------------------------


def test_groups_and_their_members(api: Api) -> None:
    name = _unique("Engineers")
    group = _ok(api.post("/groups", json={"name": name, "description": "Builders"}), 201)
    assert (group["name"], group["members"], group["description"]) == (name, 0, "Builders")
    assert "already exists" in _error(
        api.post("/groups", json={"name": name.upper()}), 409, "conflict"
    )
    _error(api.post("/groups", json={"name": "  "}), 400, "invalid_input")
    _error(api.post("/groups", json={}), 422, "invalid_request")

    ann, ben = _add_user(api), _add_user(api)
    added = api.post(
        f"/groups/{name}/members", json={"users": [ann["username"], ben["email"], ann["username"]]}
    )
    assert _ok(added) == {"added": 2}
    again = api.post(f"/groups/{name}/members", json={"users": [ann["id"], ben["id"]]})
    assert _ok(again) == {"added": 0}
    [listed] = [g for g in _ok(api.get("/groups")) if g["id"] == group["id"]]
    assert listed["members"] == 2
    members = _ok(api.get(f"/groups/{group['id']}/members"))["users"]
    assert {m["id"] for m in members} == {ann["id"], ben["id"]}

    # One unknown user: nothing is added (one transaction).
    carol = _add_user(api)
    partly = api.post(f"/groups/{name}/members", json={"users": [carol["id"], "nobody-here"]})
    assert "nobody-here" in _error(partly, 404, "not_found")
    assert len(_ok(api.get(f"/groups/{name}/members"))["users"]) == 2
    _error(api.post(f"/groups/{name}/members", json={"users": []}), 422, "invalid_request")

    assert _ok(api.delete(f"/groups/{name}/members/{ann['username']}")) == {"removed": 1}
    assert _ok(api.delete(f"/groups/{name}/members/{ann['username']}")) == {"removed": 0}
    _error(api.delete(f"/groups/{name}/members/nobody-here"), 404, "not_found")
    _error(api.get("/groups/no-such-group/members"), 404, "not_found")

    assert _ok(api.delete(f"/groups/{name}")) == {"deleted": name, "id": group["id"]}
    _error(api.delete(f"/groups/{name}"), 404, "not_found")
    # Its members stay in the directory.
    _ok(api.get(f"/users/{ben['id']}"))


# -- applications --------------------------------------------------------------------------------


def test_catalog_lists_druva_and_scim_with_default_mappings(api: Api) -> None:
    catalog = {entry["kind"]: entry for entry in _ok(api.get("/catalog"))}
    assert set(catalog) == {"druva", "scim"}
    druva = catalog["druva"]
    assert {"source": "username", "target": "userName"} in druva["attribute_map"]
    assert {"source": "employeeIdentifier", "target": "externalId"} in druva["attribute_map"]
    assert druva["regions"]["cloud"] == "https://apis.druva.com/insync/scim"
    assert catalog["scim"]["regions"] is None
    assert {"source": "firstname", "target": "name.givenName"} in catalog["scim"]["attribute_map"]


def test_applications_mapping_settings_and_groups(api: Api) -> None:
    druva = _add_app(api, "druva", region="govcloud")
    assert druva["idm"]["base_url"] == "https://govcloudapis.druva.com/insync/scim"
    assert druva["idm"]["state"] == "inactive"
    assert druva["idm"]["token"] is None
    assert druva["groups"] == []
    assert druva["deprovision"] == "deactivate"
    scim = _add_app(api, "scim", base_url="https://scim.example.com/v2/", show_in_portal=False)
    assert scim["idm"]["base_url"] == "https://scim.example.com/v2"
    assert scim["show_in_portal"] is False
    listed = {a["id"] for a in _ok(api.get("/apps"))}
    assert {druva["id"], scim["id"]} <= listed
    assert _ok(api.get(f"/apps/{druva['label'].upper()}"))["id"] == druva["id"]

    dup = api.post("/apps", json={"kind": "scim", "label": druva["label"]})
    assert "already exists" in _error(dup, 409, "conflict")
    region = api.post("/apps", json={"kind": "scim", "label": _unique("s"), "region": "cloud"})
    assert "Only the Druva application has a region" in _error(region, 400, "invalid_input")
    _error(api.post("/apps", json={"kind": "okta", "label": "x"}), 422, "invalid_request")
    _error(
        api.post("/apps", json={"kind": "scim", "label": "y", "base_url": "ftp://x"}),
        400,
        "invalid_input",
    )

    # Attribute mapping: add (or replace) one rule, remove one.
    mapped = _ok(
        api.put(
            f"/apps/{druva['id']}/mapping", json={"source": "department", "target": "department"}
        )
    )
    assert {"source": "department", "target": "department"} in mapped["attribute_map"]
    replaced = _ok(
        api.put(f"/apps/{druva['id']}/mapping", json={"source": "company", "target": "department"})
    )
    assert [r for r in replaced["attribute_map"] if r["target"] == "department"] == [
        {"source": "company", "target": "department"}
    ]
    bad = api.put(f"/apps/{druva['id']}/mapping", json={"source": "shoe", "target": "x"})
    assert "Unknown source" in _error(bad, 400, "invalid_input")
    unmapped = _ok(api.delete(f"/apps/{druva['id']}/mapping/department"))
    assert all(r["target"] != "department" for r in unmapped["attribute_map"])
    _error(api.delete(f"/apps/{druva['id']}/mapping/department"), 404, "not_found")
    assert "always mapped" in _error(
        api.delete(f"/apps/{druva['id']}/mapping/userName"), 400, "invalid_input"
    )

    # Settings.
    tuned = _ok(
        api.patch(
            f"/apps/{druva['id']}/settings",
            json={
                "mass_deactivation_threshold": 3,
                "max_concurrency": 2,
                "rate_per_second": 5.5,
                "deprovision": "delete",
                "bulk_creates": True,
            },
        )
    )
    assert (
        tuned["mass_deactivation_threshold"],
        tuned["max_concurrency"],
        tuned["rate_per_second"],
        tuned["deprovision"],
        tuned["bulk_creates"],
    ) == (3, 2, 5.5, "delete", True)
    assert tuned["idm"]["bulk_max_operations"] == 0  # known once IdM is activated
    _error(
        api.patch(f"/apps/{druva['id']}/settings", json={"max_concurrency": 0}),
        400,
        "invalid_input",
    )
    _error(
        api.patch(f"/apps/{druva['id']}/settings", json={"deprovision": "shred"}),
        422,
        "invalid_request",
    )

    # Groups: bind, unbind.
    group = _ok(api.post("/groups", json={"name": _unique("bound")}), 201)
    user = _add_user(api, groups=[group["name"]])
    assert _ok(api.post(f"/apps/{druva['id']}/groups", json={"group": group["name"]})) == {
        "members": 1
    }
    shown = _ok(api.get(f"/apps/{druva['id']}"))
    assert shown["groups"] == [group["name"]]
    assert shown["pending"] == {"due": 1, "held": 0}
    _error(api.post(f"/apps/{druva['id']}/groups", json={"group": "nope-x"}), 404, "not_found")
    assert _ok(api.delete(f"/apps/{druva['id']}/groups/{group['id']}")) == {
        "members": 1,
        "held": 0,
    }
    assert "is not bound" in _error(
        api.delete(f"/apps/{druva['id']}/groups/{group['id']}"), 404, "not_found"
    )
    assert _ok(api.post(f"/apps/{druva['id']}/approve")) == {"released": 0}
    assert _ok(api.post(f"/apps/{druva['id']}/reject")) == {"dropped": 0}
    assert _ok(api.get(f"/apps/{druva['id']}/links")) == []
    assert _ok(api.get(f"/apps/{druva['id']}/log", params={"user": user["username"]})) == []

    assert _ok(api.delete(f"/apps/{scim['id']}")) == {"deleted": scim["label"], "id": scim["id"]}
    for method, path in (
        ("GET", ""),
        ("DELETE", ""),
        ("GET", "/links"),
        ("GET", "/log"),
        ("POST", "/approve"),
        ("PUT", "/idm"),
    ):
        response = api.request(method, f"/apps/{scim['id']}{path}", json={"base_url": "http://x"})
        assert "No application" in _error(response, 404, "not_found")


def test_applications_are_relabelled_described_hidden_and_given_a_logo(api: Api) -> None:
    app = _add_app(api, "scim", base_url="https://scim.example.com/v2")
    other = _add_app(api, "druva")
    # Provisioning state to compare with afterwards: IdM configured, a group bound, work pending.
    _ok(_configure(api, app, "https://scim.example.com/v2", f"tok-{uuid.uuid4().hex}"))
    group = _ok(api.post("/groups", json={"name": _unique("edited")}), 201)
    _add_user(api, groups=[group["name"]])
    _ok(api.post(f"/apps/{app['id']}/groups", json={"group": group["name"]}))
    before = _ok(api.get(f"/apps/{app['id']}"))
    assert before["pending"] == {"due": 1, "held": 0}

    label = _unique("Renamed")
    edited = _ok(
        api.patch(
            f"/apps/{app['label']}",
            json={
                "label": label,
                "description": "Our SCIM app",
                "show_in_portal": False,
                "logo_url": "https://logo.example/app.png",
            },
        )
    )
    presentation = ("label", "description", "show_in_portal", "logo_url")
    assert [edited[f] for f in presentation] == [
        label,
        "Our SCIM app",
        False,
        "https://logo.example/app.png",
    ]
    unchanged = {k: v for k, v in before.items() if k not in presentation}
    assert {k: v for k, v in edited.items() if k not in presentation} == unchanged
    assert _ok(api.get(f"/apps/{label.lower()}"))["id"] == app["id"]
    assert "No application" in _error(api.get(f"/apps/{app['label']}"), 404, "not_found")

    # Only what is given changes; null is "leave it"; "" restores the catalog's; {} is a no-op.
    shown = _ok(api.patch(f"/apps/{app['id']}", json={"show_in_portal": True, "label": None}))
    assert (shown["label"], shown["show_in_portal"], shown["description"]) == (
        label,
        True,
        "Our SCIM app",
    )
    reset = _ok(api.patch(f"/apps/{app['id']}", json={"description": "", "logo_url": ""}))
    assert (reset["description"], reset["logo_url"]) == ("Any SCIM 2.0 service provider.", None)
    assert _ok(api.patch(f"/apps/{app['id']}", json={})) == reset

    # Refused, changing nothing: another application's label (in any case), an empty label,
    # fields that are not presentation, too long a value, an unknown application.
    clash = api.patch(
        f"/apps/{app['id']}", json={"label": other["label"].upper(), "show_in_portal": False}
    )
    assert "already exists" in _error(clash, 409, "conflict")
    empty = api.patch(f"/apps/{app['id']}", json={"label": "  "})
    assert "1 to 255 characters" in _error(empty, 400, "invalid_input")
    for body in ({"kind": "druva"}, {"base_url": "https://x.example"}, {"logo_url": "x" * 1001}):
        _error(api.patch(f"/apps/{app['id']}", json=body), 422, "invalid_request")
    assert _ok(api.get(f"/apps/{app['id']}")) == reset
    unknown = api.patch(f"/apps/{_unique('nowhere')}", json={"label": _unique("x")})
    assert "No application" in _error(unknown, 404, "not_found")


# -- Identity Management -------------------------------------------------------------------------


def _configure(api: Api, app: dict[str, Any], base_url: str, token: str) -> httpx.Response:
    return api.put(f"/apps/{app['id']}/idm", json={"base_url": base_url, "token": token})


def test_idm_token_is_write_only_and_stored_encrypted(api: Api, idp_engine: Engine) -> None:
    app = _add_app(api, "scim")
    token = f"tok-{uuid.uuid4().hex}"
    response = _configure(api, app, "https://scim.example.com/v2", token)
    configured = _ok(response)
    assert configured["idm"]["token"] == f"…{token[-4:]}"
    assert configured["idm"]["base_url"] == "https://scim.example.com/v2"
    assert configured["idm"]["state"] == "inactive"
    for text in (
        response.text,
        api.get(f"/apps/{app['id']}").text,
        api.get("/apps").text,
        database_text(idp_engine),
    ):
        assert token not in text
    # Only one of the two may be given; neither is a readable error.
    only_url = _ok(api.put(f"/apps/{app['id']}/idm", json={"base_url": "https://other.example"}))
    assert only_url["idm"]["token"] == f"…{token[-4:]}"
    _error(api.put(f"/apps/{app['id']}/idm", json={}), 400, "invalid_input")
    spaced = api.put(f"/apps/{app['id']}/idm", json={"token": "two words"})
    assert "one word" in _error(spaced, 400, "invalid_input")
    assert "two words" not in spaced.text
    _error(api.put(f"/apps/{app['id']}/idm", json={"token": 5}), 422, "invalid_request")


def test_activation_without_configuration_is_a_conflict(api: Api) -> None:
    app = _add_app(api, "scim")
    assert "Configure Identity Management first" in _error(
        api.post(f"/apps/{app['id']}/idm/activate"), 409, "conflict"
    )
    assert "not configured" in _error(
        api.post(f"/apps/{app['id']}/idm/deactivate"), 409, "conflict"
    )
    _error(api.post(f"/apps/{app['id']}/sync"), 409, "conflict")
    _error(api.post(f"/apps/{app['id']}/provision/anyone"), 409, "conflict")


def test_activation_verifies_the_app_half(api: Api, engine: Engine, live_server: str) -> None:
    tenant = make_tenant(engine)
    app = _add_app(api, "druva")
    _ok(_configure(api, app, f"{live_server}/insync/scim", tenant.token))
    activated = _ok(api.post(f"/apps/{app['id']}/idm/activate"))
    assert activated["verified"] is True
    assert activated["message"] == "successfully verified"
    assert activated["update_method"] in ("patch", "put")
    shown = _ok(api.get(f"/apps/{app['id']}"))
    assert shown["idm"]["state"] == "active"
    assert "successfully verified" in shown["idm"]["detail"]
    assert _ok(api.post(f"/apps/{app['id']}/idm/activate"))["message"] == "already active"

    # The token and the URL change only while deactivated.
    changing = _configure(api, app, f"{live_server}/insync/scim", "another-token")
    assert "deactivated" in _error(changing, 409, "conflict")
    assert _ok(api.post(f"/apps/{app['id']}/idm/deactivate")) == {"pending": 0}
    assert _ok(api.get(f"/apps/{app['id']}"))["idm"]["state"] == "inactive"
    _ok(_configure(api, app, f"{live_server}/insync/scim", tenant.token))


def test_a_wrong_token_is_reported_as_rejected(api: Api, live_server: str) -> None:
    app = _add_app(api, "druva")
    _ok(_configure(api, app, f"{live_server}/insync/scim", "scimlink_" + "A" * 38))
    detail = _error(api.post(f"/apps/{app['id']}/idm/activate"), 502, "verification_failed")
    assert detail.startswith("token rejected: "), detail
    assert "answered 401" in detail
    shown = _ok(api.get(f"/apps/{app['id']}"))
    assert shown["idm"]["state"] == "inactive"
    assert shown["idm"]["detail"].startswith("verification failed: token rejected")


def test_an_unreachable_url_is_reported_as_unreachable(api: Api) -> None:
    app = _add_app(api, "scim")
    _ok(_configure(api, app, f"http://127.0.0.1:{free_port()}/scim/v2", "some-token"))
    detail = _error(api.post(f"/apps/{app['id']}/idm/activate"), 502, "verification_failed")
    assert "unreachable" in detail, detail
    assert _ok(api.get(f"/apps/{app['id']}"))["idm"]["state"] == "inactive"


def test_a_target_that_is_not_scim_is_reported(api: Api, live_server: str) -> None:
    app = _add_app(api, "scim")
    _ok(_configure(api, app, f"{live_server}/not-scim", "some-token"))
    detail = _error(api.post(f"/apps/{app['id']}/idm/activate"), 502, "verification_failed")
    assert detail.startswith("not SCIM"), detail


# -- provisioning --------------------------------------------------------------------------------


def _app_half_user(live_server: str, tenant: Tenant, username: str) -> dict[str, Any] | None:
    response = httpx.get(
        f"{live_server}/insync/scim/Users",
        params={"filter": f'userName eq "{username}"'},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code == 200, response.text
    found = response.json().get("Resources") or []
    return found[0] if found else None


def test_bind_and_sync_provision_into_the_app_half(
    api: Api, engine: Engine, live_server: str
) -> None:
    tenant = make_tenant(engine)
    group = _ok(api.post("/groups", json={"name": _unique("Engineers")}), 201)
    ann = _add_user(api, displayname="Ann Lee", groups=[group["name"]])
    ben = _add_user(api, displayname="Ben Ng", groups=[group["name"]])
    app = _add_app(api, "druva")
    _ok(_configure(api, app, f"{live_server}/insync/scim", tenant.token))
    _ok(api.post(f"/apps/{app['id']}/idm/activate"))
    assert _ok(api.post(f"/apps/{app['id']}/groups", json={"group": group["id"]})) == {"members": 2}

    # The dry run says what a sync would do and sends nothing.
    plan = _ok(api.get(f"/apps/{app['id']}/plan"))
    assert (plan["create"], plan["update"], plan["deactivate"]) == (2, 0, 0)
    assert set(plan["examples"]["create"]) == {ann["username"], ben["username"]}
    assert _ok(api.get(f"/apps/{app['id']}/plan", params={"examples": 0}))["examples"] == {
        "create": [],
        "update": [],
        "deactivate": [],
        "retry_failed": [],
    }
    assert _app_half_user(live_server, tenant, ann["username"]) is None

    synced = _ok(api.post(f"/apps/{app['id']}/sync"))
    assert synced["processed"] >= 2
    assert (synced["due"], synced["held"]) == (0, 0)
    for user in (ann, ben):
        remote = _app_half_user(live_server, tenant, user["username"])
        assert remote is not None
        assert remote["active"] is True
        assert remote["displayName"] == user["displayname"]

    links = {link["user"]: link for link in _ok(api.get(f"/apps/{app['id']}/links"))}
    assert {links[ann["username"]]["state"], links[ben["username"]]["state"]} == {"active"}
    assert links[ann["username"]]["remote_id"]
    assert _ok(api.get(f"/apps/{app['id']}/links", params={"state": "failed"})) == []
    log = _ok(api.get(f"/apps/{app['id']}/log", params={"user": ann["username"]}))
    assert log
    assert {entry["user"] for entry in log} == {ann["username"]}
    assert any(e["request"] and e["request"]["method"] == "POST" for e in log)
    assert all(e["correlation_id"] for e in log)
    assert len(log) >= 2  # a lookup, then the create
    older = _ok(api.get(f"/apps/{app['id']}/log", params={"before": log[0]["id"], "limit": 1}))
    assert [e["id"] for e in older] == [log[1]["id"]]
    assert len(_ok(api.get(f"/apps/{app['id']}/log", params={"limit": 1}))) == 1

    after = _ok(api.get(f"/apps/{app['id']}/plan"))
    assert (after["create"], after["update"], after["unchanged"]) == (0, 0, 2)
    drift = _ok(api.post(f"/apps/{app['id']}/reconcile"))
    assert drift["read"] >= 2
    assert (drift["differing"], drift["missing"], drift["processed"]) == (0, 0, 0)

    # Provision one user now: each step is returned.
    _ok(api.patch(f"/users/{ann['id']}", json={"displayname": "Ann Lee-Smith"}))
    outcome = _ok(api.post(f"/apps/{app['id']}/provision/{ann['username']}"))
    assert outcome["state"] == "active"
    assert outcome["steps"]
    step = outcome["steps"][-1]
    assert step["request"].startswith(("PATCH ", "PUT "))
    assert step["status"] == 200
    assert step["decision"]
    remote = _app_half_user(live_server, tenant, ann["username"])
    assert remote is not None
    assert remote["displayName"] == "Ann Lee-Smith"
    # Nothing left to do: no step.
    again = _ok(api.post(f"/apps/{app['id']}/provision/{ann['email']}"))
    assert again["steps"] == []
    _error(api.post(f"/apps/{app['id']}/provision/nobody-here"), 404, "not_found")

    # A mass deactivation above the threshold waits for approval.
    _ok(api.patch(f"/apps/{app['id']}/settings", json={"mass_deactivation_threshold": 0}))
    assert _ok(api.delete(f"/groups/{group['id']}/members/{ben['id']}")) == {"removed": 1}
    assert _ok(api.get(f"/apps/{app['id']}"))["pending"]["held"] == 1
    assert _ok(api.post(f"/apps/{app['id']}/approve")) == {"released": 1}
    deactivated = _ok(api.post(f"/apps/{app['id']}/provision/{ben['username']}"))
    assert deactivated["state"] == "inactive"
    remote_ben = _app_half_user(live_server, tenant, ben["username"])
    assert remote_ben is not None
    assert remote_ben["active"] is False
    inactive = _ok(api.get(f"/apps/{app['id']}/links", params={"state": "inactive"}))
    assert [link["user"] for link in inactive] == [ben["username"]]

    # A suspension is a deactivation too: held, then rejected (Ann stays active there).
    _ok(api.post(f"/users/{ann['id']}/suspend"))
    assert _ok(api.get(f"/apps/{app['id']}"))["pending"]["held"] == 1
    assert _ok(api.post(f"/apps/{app['id']}/reject")) == {"dropped": 1}
    remote_ann = _app_half_user(live_server, tenant, ann["username"])
    assert remote_ann is not None
    assert remote_ann["active"] is True


# -- errors --------------------------------------------------------------------------------------


def test_errors_are_json_and_never_a_traceback(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert _error(api.get("/no-such-thing"), 404, "not_found") == "Not Found"
    _error(api.request("PUT", "/users"), 405, "method_not_allowed")
    malformed = api.post(
        "/groups", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    _error(malformed, 422, "invalid_request")
    wrong = _error(
        api.patch(f"/apps/{uuid.uuid4()}/settings", json={"max_concurrency": "many"}),
        422,
        "invalid_request",
    )
    assert "max_concurrency" in wrong

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(directory, "list_users", explode)
    with caplog.at_level("ERROR", logger="scimlink.idp.admin_api"):
        response = api.get("/users")
    detail = _error(response, 500, "internal")
    assert "secret internals" not in response.text
    correlation = response.headers["x-correlation-id"]
    assert correlation in detail
    assert any(correlation in r.getMessage() for r in caplog.records)
