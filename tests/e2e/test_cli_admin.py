"""Administering a tenant with the real ``scimlink sp`` executable, on SQLite and PostgreSQL.

Each test is one realistic session at the shell: provisioning-method guards, administrator
roles and API keys, the audit trail, and accounts with their mail and scheduled jobs. Secrets
(SCIM tokens, API keys, passwords) are printed once and never reach the audit trail; errors are
one readable line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

SCIMLINK = str(Path(sys.executable).with_name("scimlink"))
DEFAULT_SCIM_URL = "http://127.0.0.1:8000/insync/scim"


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    # No inherited SCIMLINK_* setting (SCIMLINK_ADMIN, SMTP, public URL) may change what we test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIMLINK_")}
    env["SCIMLINK_DATA_DIR"] = str(tmp_path)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        env["SCIMLINK_SP_DATABASE_URL"] = url.replace("postgresql+psycopg://", "postgresql://")
    return env


def run(
    env: dict[str, str], *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [SCIMLINK, *args], env=env, capture_output=True, text=True, input=input, check=False
    )
    assert "Traceback" not in done.stderr + done.stdout
    if check and done.returncode != 0:
        raise AssertionError(f"scimlink {' '.join(args)} failed: {done.stderr}")
    return done


def as_json(env: dict[str, str], *args: str, input: str | None = None) -> Any:
    return json.loads(run(env, *args, "--json", input=input).stdout)


def refused(env: dict[str, str], *args: str) -> str:
    """The command fails with exit code 1 and one 'error: ...' line on stderr (returned)."""
    done = run(env, *args, check=False)
    assert done.returncode == 1, done
    assert done.stdout == ""
    assert done.stderr.startswith("error: ")
    assert done.stderr.count("\n") == 1
    return done.stderr.strip()


def new_tenant(env: dict[str, str], prefix: str) -> tuple[dict[str, Any], tuple[str, str]]:
    tenant = as_json(env, "sp", "tenant", "create", f"{prefix}-{uuid.uuid4().hex[:10]}")
    return tenant, ("--tenant", tenant["name"])


def test_use_scim_is_refused_while_anything_of_ldap_remains(env: dict[str, str]) -> None:
    tenant, t = new_tenant(env, "guards")
    assert tenant["provisioning"] == "manual"
    switched = as_json(env, "sp", "provisioning", "use-ldap", *t)
    assert (switched["previous"], switched["provisioning"]) == ("manual", "ldap")
    run(env, "sp", "ldap", "account", "add", *t, "Corp", "--host", "ldap.example.com")
    run(env, "sp", "ldap", "mapping", "add", *t, "Staff", "--account", "Corp")
    lee = as_json(env, "sp", "user", "add", *t, "lee@example.com", "--name", "Lee", "--ldap")
    assert (lee["managed_by"], lee["state"]) == ("ldap", "active")

    use_scim = ("sp", "provisioning", "use-scim", *t)
    message = refused(env, *use_scim)
    assert "cannot use SCIM" in message
    assert "AD/LDAP account 'Corp'" in message
    run(env, "sp", "ldap", "account", "delete", *t, "Corp")
    message = refused(env, *use_scim)
    assert "AD/LDAP mapping 'Staff'" in message
    assert "Corp" not in message
    run(env, "sp", "ldap", "mapping", "delete", *t, "Staff")
    message = refused(env, *use_scim)
    assert "AD/LDAP-managed user" in message
    assert "'lee@example.com' (active)" in message
    run(env, "sp", "user", "delete", *t, "lee@example.com")
    switched = as_json(env, *use_scim)
    assert (switched["previous"], switched["provisioning"]) == ("ldap", "scim")

    token = as_json(env, "sp", "token", "generate", *t)
    assert token["token"].startswith("scimlink_")
    assert token["scim_base_url"] == tenant["scim_base_url"] == DEFAULT_SCIM_URL
    shown = as_json(env, "sp", "tenant", "show", *t)
    assert shown["provisioning"] == "scim"
    assert shown["scim_base_url"] == DEFAULT_SCIM_URL
    [current] = shown["tokens"]
    assert current["current"] is True
    assert current["expires_at"] == token["expires_at"]
    assert current["days_left"] == 365
    assert token["token"] not in json.dumps(shown)
    assert current["hint"].startswith("scimlink_")
    assert token["token"].endswith(current["hint"].split("\u2026")[-1])

    manual = as_json(env, "sp", "provisioning", "use-manual", *t)
    assert manual == {"provisioning": "manual", "previous": "scim", "tokens_revoked": 1}


def test_roles_api_keys_and_the_audit_trail(env: dict[str, str]) -> None:
    _, t = new_tenant(env, "roles")
    dora, ian, pat = "dora@example.com", "ian@example.com", "pat@example.com"
    password = "correct horse battery"
    created = as_json(env, "sp", "admin", "create", *t, dora, "--role", "druva-cloud-admin")
    assert (created["role"], created["has_password"]) == ("druva-cloud-admin", False)
    created = as_json(
        env,
        "sp",
        "admin",
        "create",
        *t,
        ian,
        "--role",
        "insync-cloud-admin",
        "--password-stdin",
        input=password,
    )
    assert (created["role"], created["has_password"]) == ("insync-cloud-admin", True)
    assert password not in json.dumps(created)
    run(env, "sp", "admin", "create", *t, pat, "--role", "profile-admin")

    message = refused(env, "sp", "--admin", pat, "token", "generate", *t)
    assert "Profile administrator may not change the provisioning method" in message
    assert "Druva Cloud administrator or an inSync Cloud administrator" in message
    switched = as_json(env, "sp", "--admin", ian, "provisioning", "use-scim", *t)
    assert switched["provisioning"] == "scim"
    token = as_json(env, "sp", "--admin", ian, "token", "generate", *t)["token"]
    assert token.startswith("scimlink_")
    message = refused(
        env, "sp", "--admin", ian, "admin", "create", *t, "x@example.com", "--role", "profile-admin"
    )
    assert "may not manage administrators" in message
    assert "only a Druva Cloud administrator may" in message

    issued = as_json(env, "sp", "--admin", dora, "admin", "key", "create", *t, "--for", pat)
    key = issued["key"]
    assert key.startswith("scimlink_admin_")
    assert issued["admin"] == pat
    assert issued["hint"].startswith("scimlink_admin_")
    assert key.endswith(issued["hint"].split("\u2026")[-1])
    assert key != issued["hint"]
    listed = run(env, "sp", "admin", "key", "list", *t, "--json").stdout
    assert key not in listed
    [row] = json.loads(listed)
    assert "key" not in row
    assert (row["id"], row["hint"], row["revoked_at"]) == (issued["id"], issued["hint"], None)
    revoked = as_json(env, "sp", "admin", "key", "revoke", *t, str(issued["id"]))
    assert revoked["revoked_at"] is not None
    assert "key" not in revoked

    trail_json = run(env, "sp", "audit", "list", *t, "--json").stdout
    trail = json.loads(trail_json)
    assert [e["action"] for e in trail] == [
        "apikey.revoke",
        "apikey.create",
        "token.generate",
        "provisioning.switch",
        "admin.create",
        "admin.create",
        "admin.create",
    ]  # refused commands changed nothing and left no entry
    ids = [e["id"] for e in trail]
    assert ids == sorted(ids, reverse=True)
    moments = [datetime.fromisoformat(e["at"]) for e in trail]
    assert moments == sorted(moments, reverse=True)
    revoke, create_key, generate, switch, *creates = trail
    assert revoke["actor"].startswith("cli:")
    assert create_key["actor"] == f"admin:{dora}"
    assert (generate["actor"], switch["actor"]) == (f"admin:{ian}", f"admin:{ian}")
    assert all(e["actor"].startswith("cli:") for e in creates)
    assert [e["target"] for e in creates] == [pat, ian, dora]
    assert (switch["before"], switch["after"]) == (
        {"provisioning": "manual"},
        {"provisioning": "scim"},
    )
    expires = datetime.fromisoformat(generate["after"]["expires_at"])
    assert timedelta(days=364) < expires - moments[2] <= timedelta(days=365)
    assert creates[1]["after"] == {"role": "insync-cloud-admin", "has_password": True}
    assert all(e["correlation_id"] for e in trail)
    assert len({e["correlation_id"] for e in trail}) == len(trail)  # one per command

    only = as_json(env, "sp", "audit", "list", *t, "--action", "token.generate")
    assert only == [generate]
    trail_text = run(env, "sp", "audit", "list", *t, "--limit", "1").stdout
    assert len(trail_text.strip().splitlines()) == 1
    assert trail_text.startswith(f"{revoke['id']} ")
    assert "apikey.revoke" in trail_text
    for secret in (token, key, password):
        assert secret not in trail_json
        assert secret not in trail_text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scim_create(env: dict[str, str], token: str, user_name: str) -> dict[str, Any]:
    """POST one user to a real ``scimlink sp serve``, as the IdP would."""
    import httpx

    port = _free_port()
    server = subprocess.Popen(
        [SCIMLINK, "sp", "serve", "--port", str(port), "--json"],
        env={**env, "SCIMLINK_SP_JOBS_INTERVAL": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert server.stderr is not None
    try:
        base = json.loads(server.stdout.readline())["scim_base_url"]
        assert base == f"http://127.0.0.1:{port}/insync/scim"
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/ServiceProviderConfig", headers=headers)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "sp serve did not start"
                time.sleep(0.1)
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "displayName": "Kim",
            "active": True,
            "emails": [{"value": user_name, "type": "work", "primary": True}],
        }
        response = httpx.post(f"{base}/Users", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return dict(response.json())
    finally:
        server.terminate()
        server.wait(timeout=15)
        assert "Traceback" not in server.stderr.read()
        server.stderr.close()
        server.stdout.close()


def _backdate_preservation(env: dict[str, str], tmp_path: Path, user_id: str, days: int) -> None:
    """Time passes: the user was preserved ``days`` days ago."""
    from sqlalchemy import update

    from scimlink.config import normalise_database_url
    from scimlink.sp.models import SpUser
    from scimlink.storage.base import utcnow
    from scimlink.storage.db import make_engine

    url = env.get("SCIMLINK_SP_DATABASE_URL")
    engine = make_engine(normalise_database_url(url) if url else f"sqlite:///{tmp_path}/sp.db")
    try:
        with engine.begin() as connection:
            moved = connection.execute(
                update(SpUser)
                .where(SpUser.id == user_id)
                .values(preserved_at=utcnow() - timedelta(days=days))
            )
            assert moved.rowcount == 1
    finally:
        engine.dispose()


def test_accounts_mail_and_scheduled_jobs(env: dict[str, str], tmp_path: Path) -> None:
    _, t = new_tenant(env, "users")
    run(env, "sp", "provisioning", "use-scim", *t)
    token = as_json(env, "sp", "token", "generate", *t)["token"]
    mapping = as_json(
        env, "sp", "mapping", "create", *t, "--name", "Everyone", "--any", "--activation-email"
    )
    assert (mapping["criteria"], mapping["send_activation_email"]) == ("Allow any user", True)
    kim = _scim_create(env, token, "kim@example.com")
    lee = as_json(env, "sp", "user", "add", *t, "lee@example.com", "--name", "Lee")
    assert (lee["managed_by"], lee["state"], lee["profile"]) == ("manual", "active", "Default")

    listing = as_json(env, "sp", "user", "list", *t)
    assert {u["userName"]: u["managed_by"] for u in listing["users"]} == {
        "kim@example.com": "scim",
        "lee@example.com": "manual",
    }
    assert listing["licenses"] == {"active": 2, "preserved": 0}
    preserved = as_json(env, "sp", "user", "preserve", *t, "lee@example.com")
    assert (preserved["state"], preserved["preserved_by"]) == ("preserved", "admin")
    activated = as_json(env, "sp", "user", "activate", *t, lee["id"])
    assert (activated["state"], activated["preserved_by"]) == ("active", None)
    preserved = as_json(env, "sp", "user", "preserve", *t, "kim@example.com")
    assert (preserved["id"], preserved["state"]) == (kim["id"], "preserved")
    profile = as_json(env, "sp", "profile", "edit", *t, "Default", "--auto-delete-days", "30")
    assert profile["auto_delete_days"] == 30

    # Only the SCIM create sent an activation e-mail; an account added by hand gets none.
    [activation] = as_json(env, "sp", "mail", "list", *t)
    assert (activation["kind"], activation["recipient"]) == ("activation", "kim@example.com")
    assert (activation["sent_at"], activation["attempts"]) == (None, 0)

    _backdate_preservation(env, tmp_path, kim["id"], days=31)
    report = as_json(env, "sp", "jobs", "run")
    assert report["deleted_users"] >= 1  # PostgreSQL: other tests' tenants share the database
    assert report["reminders"] >= 0
    assert (report["mail_sent"], report["mail_failed"]) == (None, None)
    again = run(env, "sp", "jobs", "run").stdout
    assert "mail not sent: SMTP is not configured (SCIMLINK_SP_SMTP_HOST)" in " ".join(
        again.split()
    )

    after = as_json(env, "sp", "user", "list", *t)
    assert [u["userName"] for u in after["users"]] == ["lee@example.com"]
    assert after["licenses"] == {"active": 1, "preserved": 0}
    [pending] = as_json(env, "sp", "mail", "list", *t, "--pending")
    assert pending["id"] == activation["id"]
    trail_json = run(env, "sp", "audit", "list", *t, "--json").stdout
    assert token not in trail_json
    trail = {e["action"]: e for e in json.loads(trail_json)}
    created, deleted = trail["user.create"], trail["user.auto-delete"]
    assert created["actor"].startswith("scim:")
    assert created["actor"] != f"scim:{token}"
    assert created["detail"] == "placed by SCIM mapping 'Everyone'"
    assert (deleted["actor"], deleted["target_id"]) == ("system:auto-delete", kim["id"])
    assert deleted["before"] == {"state": "preserved", "preservedBy": "admin"}
