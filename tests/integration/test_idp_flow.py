"""The spec's whole flow, directory -> app half over real HTTP, on both databases.

Generate the token in the app, configure and activate IdM in the directory, bind a group: users
appear with the mapping's profile and storage; display name and e-mail changes arrive;
suspension preserves, reactivation activates; an admin-preserved user stays preserved and the
directory's log says why.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from scimlink.idp import applications
from scimlink.idp import directory
from scimlink.idp import idm
from scimlink.idp.provisioning import operations
from scimlink.idp.provisioning.engine import Engine as ProvisioningEngine
from scimlink.idp.secrets import SecretBox
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from tests.conftest import AdminApi
from tests.conftest import Tenant
from tests.conftest import make_admin
from tests.conftest import make_tenant


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


@pytest.fixture
def provisioning(idp_engine: Engine, box: SecretBox) -> ProvisioningEngine:
    return ProvisioningEngine(make_sessionmaker(idp_engine), box)


@pytest.fixture
def sp_tenant(engine: Engine) -> Tenant:
    """An inSync tenant: Engineering to its own profile and storage, everyone else by default."""
    return make_tenant(engine, allow_any=False)


@pytest.fixture
def sp_api(client: TestClient, engine: Engine, sp_tenant: Tenant) -> AdminApi:
    api = AdminApi(client, make_admin(engine, sp_tenant.id))
    api.post("/profiles", json={"name": "Engineering"})
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
    api.post("/mappings", json={"name": "Allow any user", "any_user": True})
    return api


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _account(api: AdminApi, email: str) -> dict[str, Any]:
    found = [
        u for u in api.get("/users", params={"limit": 1000}).json()["users"] if u["email"] == email
    ]
    assert len(found) == 1, found
    return found[0]


def test_the_spec_flow_from_token_to_preserved(
    idp_engine: Engine,
    provisioning: ProvisioningEngine,
    box: SecretBox,
    live_server: str,
    sp_tenant: Tenant,
    sp_api: AdminApi,
) -> None:
    sessions = make_sessionmaker(idp_engine)
    label = _unique("Druva")
    group = _unique("Engineers")
    ann, ben = _unique("ann"), _unique("ben")
    with write_session(sessions) as session:
        directory.create_group(session, group)
        for username, department in ((ann, "Engineering"), (ben, "Sales")):
            directory.add_user(
                session,
                {
                    "username": username,
                    "email": f"{username}@example.com",
                    "displayname": username.title(),
                    "department": department,
                    "employeeIdentifier": f"E-{username}",
                },
            )
        directory.add_members(session, group, [ann, ben])
        applications.add_app(session, "druva", label)
        # inSync's mappings filter on department, so the directory sends it.
        applications.map_attribute(session, label, "department", "department")
        applications.configure_idm(
            session,
            label,
            box,
            base_url=f"{live_server}/insync/scim",
            token=sp_tenant.token,
        )
    verified = idm.activate(provisioning, label)
    assert verified.ok, verified.message
    assert verified.message == "successfully verified"
    # The app half reports its token's expiry: 365 days out, so no warning yet.
    assert verified.token_expires_at is not None
    assert idm.expiry_warning(verified.token_expires_at) is None
    with write_session(sessions) as session:
        assert applications.bind_group(session, label, group) == 2
    assert provisioning.drain() >= 2

    account = _account(sp_api, f"{ann}@example.com")
    assert (account["profile"], account["storage"], account["state"]) == (
        "Engineering",
        "EU",
        "active",
    )
    assert _account(sp_api, f"{ben}@example.com")["profile"] == "Default"

    # Display name and e-mail changes arrive.
    with write_session(sessions) as session:
        directory.set_user(
            session, ann, {"displayname": "Ann Lee", "email": f"{ann}@corp.example"}, "test"
        )
    provisioning.drain()
    account = _account(sp_api, f"{ann}@corp.example")
    assert account["displayName"] == "Ann Lee"
    assert account["profile"] == "Engineering"

    # Suspension -> Preserved; reactivation -> Active again, same account.
    with write_session(sessions) as session:
        directory.set_state(session, ann, "suspended")
    provisioning.drain()
    preserved = _account(sp_api, f"{ann}@corp.example")
    assert (preserved["state"], preserved["preserved_by"]) == ("preserved", "idp")
    with write_session(sessions) as session:
        directory.set_state(session, ann, "activated")
    provisioning.drain()
    back = _account(sp_api, f"{ann}@corp.example")
    assert (back["id"], back["state"]) == (account["id"], "active")

    # An administrator preserves Ben in inSync: the directory cannot reactivate him, and says why.
    ben_account = _account(sp_api, f"{ben}@example.com")
    sp_api.post(f"/users/{ben_account['id']}/preserve")
    with write_session(sessions) as session:
        directory.set_user(session, ben, {"displayname": "Ben Ng"}, "test")
    provisioning.drain()
    assert _account(sp_api, f"{ben}@example.com")["state"] == "preserved"
    with read_session(sessions) as session:
        [link] = operations.links(session, label, state="failed")
        entries = operations.log_entries(session, label, user=ben)
    assert link["user"] == ben
    assert "preserved by an administrator" in link["detail"]
    assert entries[0]["step"] == "failed"
    assert entries[0]["response"]["status"] == 403
    assert "preserved by an administrator" in entries[0]["decision"]
    assert entries[0]["correlation_id"]
    # The engine sends its correlation id: the app half's audit trail records the same one.
    refused = sp_api.get("/audit", params={"correlation_id": entries[0]["correlation_id"]}).json()
    assert [(e["action"], e["outcome"]) for e in refused] == [("user.reactivate", "refused")]

    # Unbinding deactivates everyone the group granted.
    with write_session(sessions) as session:
        applications.unbind_group(session, label, group)
    provisioning.drain()
    assert _account(sp_api, f"{ann}@corp.example")["state"] == "preserved"
    # Nothing left to do: a reconcile finds no drift and a sync makes no call.
    assert operations.plan(provisioning, label).to_dict()["unchanged"] >= 1
