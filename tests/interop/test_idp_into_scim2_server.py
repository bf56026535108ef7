"""The directory half provisioning into a third-party SCIM server: scim2-server 0.8.3.

scim2-server is served in this process the way ``benchmarks/scim2_server_app.py`` serves it
(in-memory storage, the default provider, one static bearer token, uvicorn) on a free port, and
a generic ``scim`` application of the directory points at it. What the directory sends is read
back with scim2-server's own ``GET /Users``: activation verifies, binding a group creates its
members with the generic mapping, a display name change arrives, suspension and deletion send
``active=false``, and a second sync or a reconcile makes no write call. Both directory
databases (``idp_engine`` is parametrised over SQLite and PostgreSQL).
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from cryptography.fernet import Fernet
from scim2_models import ScimProvider
from scim2_models import UnauthorizedException
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.requests import ScimRequest
from scim2_server.utils import load_default_provider
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.idp import applications
from scimlink.idp import directory
from scimlink.idp import idm
from scimlink.idp import outbox
from scimlink.idp.provisioning import operations
from scimlink.idp.provisioning.desired import ENTERPRISE
from scimlink.idp.provisioning.engine import Engine as ProvisioningEngine
from scimlink.idp.secrets import SecretBox
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from tests.integration.faulty_transport import FaultyTransport

pytestmark = pytest.mark.interop

WRITES = ("POST", "PUT", "PATCH", "DELETE")


class BearerApplication(ASGIApplication):
    """scim2-server's ASGI application, refusing requests without the one bearer token
    (as ``benchmarks/scim2_server_app.py`` builds it)."""

    def __init__(self, provider: ScimProvider, token: str) -> None:
        super().__init__(AsyncInMemoryStorage(), provider)
        self.token = token

    def check_auth(self, request: ScimRequest) -> None:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or token != self.token:
            raise UnauthorizedException


@dataclass(frozen=True, slots=True)
class Scim2Server:
    base_url: str
    token: str
    http: httpx.Client

    def users(self) -> dict[str, dict[str, Any]]:
        """Every user scim2-server holds, by userName (a duplicate fails the test)."""
        response = self.http.get("/Users", params={"count": 1000})
        assert response.status_code == 200, response.text
        body = response.json()
        resources = body.get("Resources") or []
        assert body["totalResults"] == len(resources)
        held = {r["userName"]: r for r in resources}
        assert len(held) == len(resources), resources
        return held

    def user(self, remote_id: str) -> dict[str, Any]:
        response = self.http.get(f"/Users/{remote_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


@pytest.fixture
def scim2_server() -> Iterator[Scim2Server]:
    token = f"s2s-{uuid.uuid4().hex}"
    app = BearerApplication(load_default_provider(), token)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    assert server.started, "scim2-server did not start"
    base_url = f"http://127.0.0.1:{port}/v2"
    try:
        with httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            yield Scim2Server(base_url, token, http)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def recorder() -> Iterator[FaultyTransport]:
    """A real HTTP transport that records every request (no fault programmed)."""
    transport = FaultyTransport(httpx2.HTTPTransport())
    yield transport
    transport.shutdown()


def _props(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "username": name,
        "email": f"{name}@example.com",
        "displayname": f"Name {name}",
        "firstname": "First",
        "lastname": name.title(),
        "employeeIdentifier": f"E-{name}",
        **extra,
    }


@dataclass(frozen=True, slots=True)
class Directory:
    """A generic ``scim`` application pointing at scim2-server, configured with a wrong token."""

    sessions: sessionmaker[Session]
    box: SecretBox
    engine: ProvisioningEngine
    label: str
    app_id: str

    def drain(self) -> int:
        return self.engine.drain(app_id=self.app_id)


@pytest.fixture
def idp(
    idp_engine: Engine, scim2_server: Scim2Server, recorder: FaultyTransport
) -> Iterator[Directory]:
    sessions = make_sessionmaker(idp_engine)
    box = SecretBox(Fernet.generate_key())
    label = f"scim2-server-{uuid.uuid4().hex[:8]}"
    with write_session(sessions) as session:
        app_id = applications.add_app(session, "scim", label, base_url=scim2_server.base_url).id
        applications.configure_idm(session, label, box, base_url=None, token="not-the-token")
        applications.settings(session, label, rate=10000)
    engine = ProvisioningEngine(sessions, box, transport=lambda app: recorder)
    yield Directory(sessions, box, engine, label, app_id)
    # Nothing of this application may linger for other tests' engines to claim.
    with write_session(sessions) as session:
        applications.delete_app(session, app_id)


def test_provisioning_into_scim2_server(
    idp: Directory, scim2_server: Scim2Server, recorder: FaultyTransport
) -> None:
    sessions, label = idp.sessions, idp.label
    group = f"Staff-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    ann, ben, cid = (f"{n}-{tag}" for n in ("ann", "ben", "cid"))
    with write_session(sessions) as session:
        directory.create_group(session, group)
        directory.add_user(session, _props(ann, department="Engineering"))
        directory.add_user(session, _props(ben, department="Sales"))
        directory.add_user(session, _props(cid))  # in no bound group: never sent
        directory.add_members(session, group, [ann, ben])

    # A wrong token: scim2-server's user lookup answers 401, so activation refuses.
    refused = idm.activate(idp.engine, label)
    assert not refused.ok
    assert refused.message.startswith("token rejected: GET /Users?filter=userName eq"), refused
    with write_session(sessions) as session:
        applications.configure_idm(session, label, idp.box, base_url=None, token=scim2_server.token)
    verified = idm.activate(idp.engine, label)
    assert verified.ok, verified.message
    assert (verified.message, verified.update_method) == ("successfully verified", "patch")
    assert scim2_server.users() == {}

    # Binding the group creates its members, with the generic mapping's attributes.
    recorder.reset_counts()
    with write_session(sessions) as session:
        assert applications.bind_group(session, label, group) == 2
    assert idp.drain() == 2
    assert recorder.count("POST") == 2
    held = scim2_server.users()
    assert sorted(held) == sorted([ann, ben])
    first = held[ann]
    assert first["active"] is True
    assert first["displayName"] == f"Name {ann}"
    assert first["externalId"] == f"E-{ann}"
    assert first["name"] == {"givenName": "First", "familyName": ann.title()}
    assert first["emails"][0]["value"] == f"{ann}@example.com"
    assert first[ENTERPRISE]["department"] == "Engineering"
    assert held[ben][ENTERPRISE]["department"] == "Sales"
    ids = {name: user["id"] for name, user in held.items()}
    with read_session(sessions) as session:
        active = operations.links(session, label, state="active")
    assert {(link["user"], link["remote_id"]) for link in active} == set(ids.items())

    # A display name change arrives (PATCH: scim2-server says it supports it).
    recorder.reset_counts()
    with write_session(sessions) as session:
        directory.set_user(session, ann, {"displayname": "Ann Changed"}, "test")
    assert idp.drain() == 1
    assert [s.method for s in recorder.seen] == ["PATCH"]
    assert scim2_server.user(ids[ann])["displayName"] == "Ann Changed"

    # Suspension sends active=false; reactivation sets it back, same user.
    with write_session(sessions) as session:
        directory.set_state(session, ann, "suspended")
    assert idp.drain() == 1
    suspended = scim2_server.user(ids[ann])
    assert (suspended["active"], suspended["displayName"]) == (False, "Ann Changed")
    with write_session(sessions) as session:
        directory.set_state(session, ann, "activated")
    assert idp.drain() == 1
    assert scim2_server.user(ids[ann])["active"] is True

    # Deleting a directory user deactivates it (deprovision: deactivate, not delete).
    recorder.reset_counts()
    with write_session(sessions) as session:
        directory.delete_user(session, ben)
    assert idp.drain() == 1
    assert [s.method for s in recorder.seen] == ["PATCH"]
    gone = scim2_server.user(ids[ben])
    assert (gone["active"], gone["userName"]) == (False, ben)
    assert sorted(scim2_server.users()) == sorted([ann, ben])

    # A second sync has nothing to send; a reconcile only reads and finds no drift.
    recorder.reset_counts()
    result = operations.sync(idp.engine, label)
    assert result == {"queued": 2, "processed": 2, "due": 0, "held": 0}
    assert recorder.seen == []
    drift = operations.reconcile(idp.engine, label)
    assert (drift.read, drift.differing, drift.missing) == (2, 0, 0), drift
    assert idp.drain() == 0
    assert [s.method for s in recorder.seen] == ["GET"]
    assert not any(recorder.count(method) for method in WRITES)
    with read_session(sessions) as session:
        assert outbox.pending(session, idp.app_id) == {"due": 0, "held": 0}
        assert operations.links(session, label, state="failed") == []
    assert cid not in scim2_server.users()
    assert not [s for s in recorder.seen if cid in s.url]
