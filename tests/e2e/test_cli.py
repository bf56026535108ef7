"""The ``scimlink`` command as a user runs it: every command answers ``--json``; errors are readable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

SCIMLINK = str(Path(sys.executable).with_name("scimlink"))


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "SCIMLINK_DATA_DIR": str(tmp_path)}
    env.pop("SCIMLINK_SP_DATABASE_URL", None)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        env["SCIMLINK_SP_DATABASE_URL"] = url.replace("postgresql+psycopg://", "postgresql://")
    return env


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCIMLINK, *args], env=env, capture_output=True, text=True, check=check)


def as_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run(env, *args, "--json").stdout)


def test_tenant_and_token_lifecycle(env: dict[str, str], tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:12]}"
    assert as_json(env, "sp", "db", "upgrade")["revision"] == "head"
    tenant = as_json(env, "sp", "tenant", "create", name, "--region", "govcloud")
    assert tenant["region"] == "govcloud"
    assert any(t["id"] == tenant["id"] for t in as_json(env, "sp", "tenant", "list"))
    refused = run(env, "sp", "token", "generate", "--tenant", name, check=False)
    assert refused.returncode == 1
    assert "provisions users manually" in refused.stderr
    assert (
        as_json(env, "sp", "provisioning", "use-scim", "--tenant", name)["provisioning"] == "scim"
    )
    first = as_json(env, "sp", "token", "generate", "--tenant", name)
    assert first["token"].startswith("scimlink_")
    assert first["expires_at"].startswith(str(int(first["expires_at"][:4])))
    second = as_json(env, "sp", "token", "generate", "--tenant", tenant["id"])
    assert second["token"] != first["token"]
    human = run(env, "sp", "token", "generate", "--tenant", name).stdout
    assert "shown once" in human
    assert "Expires:" in human


def test_errors_are_one_readable_line(env: dict[str, str], tmp_path: Path) -> None:
    name = f"dup-{uuid.uuid4().hex[:12]}"
    run(env, "sp", "tenant", "create", name)
    duplicate = run(env, "sp", "tenant", "create", name, check=False)
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr
    missing = run(env, "sp", "token", "generate", "--tenant", "no-such-tenant", check=False)
    assert missing.returncode == 1
    assert "No tenant" in missing.stderr
    region = run(env, "sp", "tenant", "create", f"{name}-x", "--region", "mars", check=False)
    assert region.returncode == 1
    assert "Unknown region" in region.stderr


def test_database_password_is_never_printed(tmp_path: Path) -> None:
    from scimlink.cli.serve import redact

    assert (
        redact("postgresql+psycopg://app:s3cret@db:5432/x")
        == "postgresql+psycopg://app:***@db:5432/x"
    )
    assert redact("sqlite:////tmp/sp.db") == "sqlite:////tmp/sp.db"
    assert redact("postgresql://app@db/x") == "postgresql://app@db/x"


def test_demo_provisions_a_sample_directory_into_the_app_half(tmp_path: Path) -> None:
    """Both halves on two ports: the sample directory reaches the app half over SCIM, placed by
    the department mappings, and later directory changes keep arriving."""
    import socket

    import httpx

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    env = {**os.environ, "SCIMLINK_DATA_DIR": str(tmp_path)}
    for name in (
        "SCIMLINK_SP_DATABASE_URL",
        "SCIMLINK_IDP_DATABASE_URL",
        "SCIMLINK_IDP_MASTER_KEY",
    ):
        env.pop(name, None)
    demo = subprocess.Popen(
        [
            SCIMLINK,
            "demo",
            "--port",
            str(ports[0]),
            "--idp-port",
            str(ports[1]),
            "--users",
            "25",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        announced = json.loads(demo.stdout.readline())
        assert announced["scim_base_url"] == f"http://127.0.0.1:{ports[0]}/insync/scim"
        assert announced["directory_api"] == f"http://127.0.0.1:{ports[1]}/api/v1"
        assert json.loads(demo.stdout.readline()) == {"provisioned": 25}
        scim = {"Authorization": f"Bearer {announced['token']}"}
        users = httpx.get(f"{announced['scim_base_url']}/Users", headers=scim).json()
        assert users["totalResults"] == 25
        profiles = httpx.get(
            f"{announced['admin_api']}/profiles",
            headers={"Authorization": f"Bearer {announced['admin_api_key']}"},
        ).json()
        assert {p["name"]: p["users"] for p in profiles} == {"Default": 20, "Engineering": 5}
        directory = httpx.get(
            f"{announced['directory_api']}/users",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {announced['directory_api_key']}"},
        ).json()["users"][0]
        # A change in the directory arrives while the demo keeps running.
        changed = run(env, "idp", "user", "set", directory["username"], "--displayname", "Changed")
        assert changed.returncode == 0
        found: dict[str, object] = {}
        for _ in range(100):
            found = httpx.get(
                f"{announced['scim_base_url']}/Users",
                params={"filter": f'userName eq "{directory["username"]}"'},
                headers=scim,
            ).json()["Resources"][0]
            if found["displayName"] == "Changed":
                break
            time.sleep(0.1)
        assert found["displayName"] == "Changed"
    finally:
        demo.terminate()
        demo.wait(timeout=10)


def test_scim_mapping_commands(env: dict[str, str]) -> None:
    name = f"map-{uuid.uuid4().hex[:12]}"
    run(env, "sp", "tenant", "create", name)
    t = ("--tenant", name)
    assert (
        as_json(env, "sp", "profile", "create", *t, "Eng", "--max-users", "10")["max_users"] == 10
    )
    assert (
        as_json(env, "sp", "storage", "create", *t, "EU", "--region", "eu-central-1")["healthy"]
        is True
    )
    eng = as_json(
        env,
        "sp",
        "mapping",
        "create",
        *t,
        "--name",
        "Eng",
        "--attribute",
        "department",
        "--values",
        "Engineering",
        "--profile",
        "Eng",
        "--storage",
        "EU",
        "--quota",
        "50",
    )
    assert eng["criteria"] == {"attribute": "department", "values": ["Engineering"]}
    as_json(env, "sp", "mapping", "create", *t, "--name", "Any", "--any")
    moved = as_json(env, "sp", "mapping", "move", *t, "Any", "--to", "1")
    assert [m["name"] for m in moved] == ["Any", "Eng"]
    refused = run(env, "sp", "mapping", "edit", *t, "Eng", "--values", "Sales", check=False)
    assert refused.returncode == 1
    assert "cannot change" in refused.stderr
    assert (
        as_json(env, "sp", "mapping", "edit", *t, "Eng", "--name", "Engineering")["name"]
        == "Engineering"
    )
    body = json.dumps(
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "a@b.co",
            "displayName": "A",
            "department": "Engineering",
        }
    )
    preview = as_json(env, "sp", "mapping", "evaluate", *t, "--body", body)
    assert (preview["matched"], preview["mapping"]) == (True, "Any")
    human = run(env, "sp", "mapping", "evaluate", *t, "--body", body).stdout
    assert "created by mapping Any" in human
    assert [m["name"] for m in as_json(env, "sp", "mapping", "list", *t)] == ["Any", "Engineering"]
    run(env, "sp", "mapping", "delete", *t, "Any")
    assert as_json(env, "sp", "mapping", "evaluate", *t, "--body", body)["mapping"] == "Engineering"
    assert any(p["name"] == "Eng" for p in as_json(env, "sp", "profile", "list", *t))
    assert as_json(env, "sp", "storage", "set-health", *t, "EU", "--unhealthy")["healthy"] is False
    assert "UNHEALTHY" in run(env, "sp", "storage", "list", *t).stdout
    bad = run(env, "sp", "mapping", "evaluate", *t, "--body", "{not json", check=False)
    assert bad.returncode == 1
    assert "not JSON" in bad.stderr


def test_user_lifecycle_commands(tmp_path: Path) -> None:
    from scimlink.sp import tenants
    from scimlink.sp.users import UserService
    from scimlink.storage.db import make_engine
    from scimlink.storage.db import make_sessionmaker
    from scimlink.storage.db import write_session
    from tests.conftest import user_body

    env = {**os.environ, "SCIMLINK_DATA_DIR": str(tmp_path)}
    env.pop("SCIMLINK_SP_DATABASE_URL", None)
    run(env, "sp", "tenant", "create", "acme")
    run(env, "sp", "mapping", "create", "--tenant", "acme", "--name", "Any", "--any")
    engine = make_engine(f"sqlite:///{tmp_path / 'sp.db'}")
    with write_session(make_sessionmaker(engine)) as session:
        tenant_id = tenants.find_tenant(session, "acme").id
        UserService(session, tenant_id).create(user_body("kim@example.com"))
    engine.dispose()
    preserved = as_json(env, "sp", "user", "preserve", "--tenant", "acme", "kim@example.com")
    assert (preserved["state"], preserved["preserved_by"]) == ("preserved", "admin")
    listing = as_json(env, "sp", "user", "list", "--tenant", "acme", "--state", "preserved")
    assert [u["userName"] for u in listing["users"]] == ["kim@example.com"]
    assert listing["licenses"] == {"active": 0, "preserved": 1}
    assert "preserved by admin" in run(env, "sp", "user", "list", "--tenant", "acme").stdout
    assert (
        as_json(env, "sp", "user", "activate", "--tenant", "acme", "kim@example.com")["state"]
        == "active"
    )
    run(env, "sp", "user", "delete", "--tenant", "acme", "kim@example.com")
    assert as_json(env, "sp", "user", "list", "--tenant", "acme")["users"] == []
    bad = run(env, "sp", "user", "list", "--tenant", "acme", "--state", "gone", check=False)
    assert bad.returncode == 2
