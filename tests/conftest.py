"""Shared fixtures: every database-backed test runs on real SQLite and on real PostgreSQL.

PostgreSQL comes from ``SCIMLINK_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``scimlink_test``, created if missing). ``make test`` and ``.ci/run``
make sure the server is running; a missing server fails the run instead of skipping tests.
"""

from __future__ import annotations

import email
import email.policy
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpServer
from aiosmtpd.smtp import Envelope
from aiosmtpd.smtp import Session as SmtpSession
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import text

from scimlink.config import Settings
from scimlink.idp import schema as idp_schema
from scimlink.sp import admins
from scimlink.sp import mail
from scimlink.sp import provisioning
from scimlink.sp import schema
from scimlink.sp import scim_mappings
from scimlink.sp import tenants
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import write_session
from scimlink.web.app import create_sp_app

#: One database per test session (runs in parallel never share or wipe each other's data).
POSTGRES_URL = (
    os.environ.get(
        "SCIMLINK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/scimlink_test"
    )
    + f"_{os.getpid()}"
)
BASE = "/insync/scim"


def _admin(url: str) -> tuple[Engine, str]:
    head, _, database = url.rpartition("/")
    return create_engine(f"{head}/postgres", isolation_level="AUTOCOMMIT"), database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, dropped at its end."""
    admin, database = _admin(POSTGRES_URL)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    yield POSTGRES_URL
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'sp.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    schema.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def idp_engine(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The directory half's database, on the same kind of database as ``engine`` but separate
    from it (the halves share nothing)."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('idp') / 'idp.db'}"
        created = None
    else:
        url = f"{database_url}_idp"
        admin, created = _admin(url)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{created}"'))
    engine = make_engine(url)
    idp_schema.upgrade(engine)
    yield engine
    engine.dispose()
    if created is not None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=Path(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def sp_app(engine: Engine, settings: Settings) -> Any:
    return create_sp_app(settings, engine=engine)


@pytest.fixture
def client(sp_app: Any) -> Iterator[TestClient]:
    with TestClient(sp_app, raise_server_exceptions=False) as client:
        yield client


@dataclass
class Tenant:
    id: str
    token: str


def make_tenant(engine: Engine, name: str | None = None, *, allow_any: bool = True) -> Tenant:
    """A tenant that provisions over SCIM, with a SCIM token and, unless ``allow_any`` is false, the "Allow any user"
    SCIM mapping Druva recommends (without one, inSync creates nobody)."""
    with write_session(make_sessionmaker(engine)) as session:
        row = tenants.create_tenant(session, name or f"tenant-{uuid.uuid4().hex[:12]}")
        provisioning.use_scim(session, row.id)
        issued = tenants.generate_token(session, row.id)
        if allow_any:
            scim_mappings.create_mapping(session, row.id, "Allow any user", any_user=True)
    return Tenant(row.id, issued.token)


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    return make_tenant(engine)


class Scim:
    """A SCIM client for one tenant: paths are relative to the SCIM base URL."""

    def __init__(self, client: TestClient | httpx.Client, token: str, base: str = BASE) -> None:
        self.client = client
        self.token = token
        self.base = base

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        all_headers = {"Authorization": f"Bearer {self.token}"}
        if json is not None:
            all_headers["Content-Type"] = "application/scim+json"
        all_headers.update(headers or {})
        return self.client.request(
            method, f"{self.base}{path}", json=json, headers=all_headers, **kwargs
        )

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


@pytest.fixture
def scim(client: TestClient, tenant: Tenant) -> Scim:
    return Scim(client, tenant.token)


ADMIN_API = "/insync/api/v1"


def make_admin(engine: Engine, tenant_id: str, role: str = "druva-cloud-admin") -> str:
    """A new administrator of ``tenant_id`` with ``role``; returns its admin API key."""
    with write_session(make_sessionmaker(engine)) as session:
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        admins.create_admin(session, tenant_id, email, role)
        return admins.create_key(session, tenant_id, email, "tests").key


class AdminApi:
    """An admin API client acting with one API key: paths are relative to ``/insync/api/v1``."""

    def __init__(self, client: TestClient | httpx.Client, key: str) -> None:
        self.client = client
        self.key = key

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return self.client.request(method, f"{ADMIN_API}{path}", headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, json=json, **kwargs)

    def put(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def api(client: TestClient, tenant: Tenant, engine: Engine) -> AdminApi:
    """The admin API as a Druva Cloud administrator of ``tenant``."""
    return AdminApi(client, make_admin(engine, tenant.id))


CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def user_body(user_name: str | None = None, **extra: Any) -> dict[str, Any]:
    """A typical IdP create body."""
    name = user_name or f"user-{uuid.uuid4().hex[:10]}@example.com"
    body: dict[str, Any] = {
        "schemas": [CORE],
        "userName": name,
        "displayName": name.split("@")[0].title(),
        "active": True,
        "emails": [{"value": name, "type": "work", "primary": True}],
    }
    body.update(extra)
    return body


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


# -- security suite helpers (tests/integration/test_security_*.py) -------------------------------


def assert_scim_error(response: httpx.Response, status: int, scim_type: str | None = None) -> None:
    """``response`` is an RFC 7644 §3.12 error with ``status`` (and ``scimType`` when given)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"], body
    assert body["status"] == str(status), body
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body


def snapshot(scim: Scim, user_id: str) -> tuple[int, Any, str | None]:
    """What a follow-up GET sees: status, body and ETag ("unchanged" compares two of these)."""
    response = scim.get(f"/Users/{user_id}")
    return response.status_code, response.json(), response.headers.get("etag")


@pytest.fixture(scope="session")
def live_server(engine: Engine, settings: Settings) -> Iterator[str]:
    """The app half served by a real uvicorn on 127.0.0.1 (a free port); yields its root URL."""
    import socket
    import threading

    import uvicorn

    # IPPROTO_TCP lets asyncio turn Nagle off; without it every response waits ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_sp_app(settings, engine=engine),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def create_user(scim: Scim, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a user (a typical IdP body by default) and return the created resource."""
    response = scim.post("/Users", json=body or user_body())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def total_users(scim: Scim) -> int:
    """The tenant's unfiltered ``totalResults``."""
    response = scim.get("/Users")
    assert response.status_code == 200, response.text
    total: int = response.json()["totalResults"]
    return total


def database_text(engine: Engine) -> str:
    """Every row of every table, as text (to prove a secret or a value was never stored)."""
    from sqlalchemy import inspect as inspect_database

    parts = []
    with engine.connect() as connection:
        for name in inspect_database(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{name}"')):  # noqa: S608
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


# -- an SMTP server that collects what it receives ------------------------------------------------


class SmtpInbox:
    """An aiosmtpd handler that accepts every message and keeps its envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(
        self, server: SmtpServer, session: SmtpSession, envelope: Envelope
    ) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def received(self, recipient: str) -> list[EmailMessage]:
        """The messages delivered to ``recipient`` (other tenants' mail may arrive too)."""
        found = []
        for envelope in self.envelopes:
            if recipient in envelope.rcpt_tos:
                content = envelope.content
                assert isinstance(content, bytes)
                parsed = email.message_from_bytes(content, policy=email.policy.default)
                assert isinstance(parsed, EmailMessage)
                found.append(parsed)
        return found


@dataclass
class SmtpServerUp:
    inbox: SmtpInbox
    settings: mail.SmtpSettings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServerUp]:
    inbox = SmtpInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServerUp(
            inbox,
            mail.SmtpSettings(
                "127.0.0.1",
                controller.port,
                sender="insync@example.com",
                security="none",
                timeout=10,
            ),
        )
    finally:
        controller.stop()
