"""``scimlink idp ...`` as an administrator runs it, against a real ``scimlink sp serve``: the
directory, the Druva application, IdM verification, sync, provision, log. Both databases."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.conftest import free_port
from tests.e2e.conftest import SCIMLINK
from tests.e2e.conftest import cli_json
from tests.e2e.conftest import start_server


def _run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [SCIMLINK, *args], env=env, capture_output=True, text=True, input=stdin, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _json(env: dict[str, str], *args: str) -> Any:
    done = _run(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _refused(env: dict[str, str], *args: str) -> str:
    done = _run(env, *args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: "), done.stderr
    return done.stderr


def test_the_directory_provisions_into_the_app_half_from_the_shell(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **server_env,
        "SCIMLINK_IDP_MASTER_KEY": Fernet.generate_key().decode(),
        "SCIMLINK_IDP_DATABASE_URL": server_env.get(
            "SCIMLINK_SP_DATABASE_URL", f"sqlite:///{tmp_path / 'idp.db'}"
        ),
    }
    tenant = cli_json(env, "sp", "tenant", "create", f"cli-{uuid.uuid4().hex[:8]}")["id"]
    cli_json(env, "sp", "provisioning", "use-scim", "--tenant", tenant)
    token = cli_json(env, "sp", "token", "generate", "--tenant", tenant)["token"]
    cli_json(env, "sp", "mapping", "create", "--tenant", tenant, "--name", "Any", "--any")
    port = free_port()
    server = start_server(env, port)
    base = f"http://127.0.0.1:{port}/insync/scim"
    tag = uuid.uuid4().hex[:6]
    ann, bo, cy = f"ann{tag}", f"bo{tag}", f"cy{tag}"
    app = f"Druva {tag}"
    try:
        added = _json(
            env,
            "idp",
            "user",
            "add",
            ann,
            "--email",
            f"{ann}@example.com",
            "--displayname",
            "Ann Lee",
            "--department",
            "Engineering",
            "--attribute",
            "costCode=7",
        )
        assert (added["department"], added["attributes"]) == ("Engineering", {"costCode": "7"})
        people = tmp_path / "people.csv"
        people.write_text(
            "username,email,displayname,jobTitle\n"
            f"{bo},{bo}@example.com,Bo Ek,Engineer\n"
            f"{cy},{cy}@example.com,Cy Oh,Designer\n"
            f"bad{tag},not-an-email,Bad,\n"
        )
        report = _run(env, "idp", "user", "import", str(people), "--json")
        assert report.returncode == 1  # one line failed; the others were imported
        summary = json.loads(report.stdout)
        assert (summary["created"], summary["failed"]) == (2, 1)
        assert summary["errors"][0]["line"] == 4
        assert (
            json.loads(_run(env, "idp", "user", "import", str(people), "--json").stdout)[
                "unchanged"
            ]
            == 2
        )
        staff = f"Staff {tag}"
        _json(env, "idp", "group", "create", staff)
        assert _json(env, "idp", "group", "add-member", staff, ann, bo, cy)["added"] == 3

        shown = _json(env, "idp", "app", "add", "druva", "--label", app, "--base-url", base)
        assert shown["idm"]["state"] == "inactive"
        assert {"source": "displayname", "target": "displayName"} in shown["attribute_map"]
        _json(env, "idp", "app", "map", app, "--source", "department", "--target", "department")
        _json(env, "idp", "app", "idm", "configure", app, "--token-key", "scimlink_wrong")
        assert "token rejected" in _refused(env, "idp", "app", "idm", "activate", app)
        _json(env, "idp", "app", "idm", "configure", app, "--token-key", token)
        assert (
            _json(env, "idp", "app", "idm", "activate", app)["message"] == "successfully verified"
        )
        assert "only while Identity Management is deactivated" in _refused(
            env, "idp", "app", "idm", "configure", app, "--token-key", "x"
        )
        assert _json(env, "idp", "app", "bind-group", app, staff)["members"] == 3
        plan = _json(env, "idp", "sync", app, "--dry-run")
        assert (plan["create"], plan["unchanged"]) == (3, 0)
        assert (
            "Creates: one request per user (bulk off" in _run(env, "idp", "app", "show", app).stdout
        )
        tuned = _run(env, "idp", "app", "settings", app, "--bulk").stdout
        assert "Creates: in bulk requests of up to 100 users" in tuned
        assert _json(env, "idp", "sync", app)["processed"] == 3
        created = _json(env, "idp", "log", app, "--user", bo)[0]
        assert created["step"] == "create"
        assert created["request"]["url"] == f"{base}/Bulk"
        assert created["decision"].endswith("(one bulk request for 3 users)")

        headers = {"Authorization": f"Bearer {token}"}
        users = httpx.get(
            f"{base}/Users", params={"filter": f'userName sw "{ann}"'}, headers=headers
        ).json()
        assert users["Resources"][0]["department"] == "Engineering"

        _json(env, "idp", "user", "suspend", ann)
        steps = _json(env, "idp", "provision", app, ann)["steps"]
        assert [s["step"] for s in steps] == ["deactivate"]
        assert steps[0]["status"] == 200
        found = httpx.get(
            f"{base}/Users", params={"filter": f'userName eq "{ann}"'}, headers=headers
        ).json()
        assert found["Resources"][0]["active"] is False
        log = _json(env, "idp", "log", app, "--user", ann)
        assert [e["step"] for e in log][:1] == ["deactivate"]
        assert log[0]["request"]["method"] == "PATCH"
        assert log[0]["cause"] == "provision now"
        text = _run(env, "idp", "log", app, "--limit", "2").stdout
        assert "[provision now]" in text
        assert token not in text
        assert _json(env, "idp", "sync", app, "--dry-run")["unchanged"] == 3
        listed = _json(env, "idp", "user", "list", "--group", staff)
        assert sorted(u["username"] for u in listed) == sorted([ann, bo, cy])
        assert _json(env, "idp", "app", "show", app)["idm"]["token"].startswith("…")
        assert "No user" in _refused(env, "idp", "provision", app, f"nobody{tag}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def test_app_set_changes_only_how_an_application_is_presented(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **server_env,
        "SCIMLINK_IDP_MASTER_KEY": Fernet.generate_key().decode(),
        "SCIMLINK_IDP_DATABASE_URL": server_env.get(
            "SCIMLINK_SP_DATABASE_URL", f"sqlite:///{tmp_path / 'idp.db'}"
        ),
    }
    tag = uuid.uuid4().hex[:6]
    app, other, renamed = f"Druva {tag}", f"Other {tag}", f"Backup {tag}"
    base = "https://druva.example/insync/scim"
    _json(env, "idp", "app", "add", "druva", "--label", app, "--base-url", base)
    _json(env, "idp", "app", "add", "scim", "--label", other)
    _json(env, "idp", "app", "idm", "configure", app, "--token-key", f"tok{tag}")
    before = _json(env, "idp", "app", "show", app)

    edited = _json(
        env,
        "idp",
        "app",
        "set",
        app,
        "--label",
        renamed,
        "--description",
        "Endpoint backup",
        "--hide-in-portal",
        "--logo-url",
        "https://logo.example/druva.png",
    )
    presentation = ("label", "description", "show_in_portal", "logo_url")
    assert [edited[f] for f in presentation] == [
        renamed,
        "Endpoint backup",
        False,
        "https://logo.example/druva.png",
    ]
    # The IdM connector, mapping and pending work are as they were.
    assert {k: v for k, v in edited.items() if k not in presentation} == {
        k: v for k, v in before.items() if k not in presentation
    }
    assert _json(env, "idp", "app", "show", renamed.upper())["id"] == before["id"]
    assert "No application" in _refused(env, "idp", "app", "show", app)

    # Text output is `app show`'s; one option changes one field; an empty value means the
    # catalog's.
    text = _run(env, "idp", "app", "set", renamed, "--show-in-portal", "--description", "")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"{renamed} (druva, cloud, id {before['id']})")
    assert "User portal: shown  logo https://logo.example/druva.png" in text.stdout
    assert before["description"] in text.stdout

    # Refused: nothing to change (a usage error, 2), a clash, an empty label, an unknown app.
    nothing = _run(env, "idp", "app", "set", renamed)
    assert nothing.returncode == 2
    assert nothing.stderr.startswith("error: nothing to change")
    assert "already exists" in _refused(env, "idp", "app", "set", renamed, "--label", other)
    assert "1 to 255 characters" in _refused(env, "idp", "app", "set", renamed, "--label", " ")
    assert "No application" in _refused(env, "idp", "app", "set", f"none{tag}", "--label", "x")
    assert _json(env, "idp", "app", "show", renamed)["label"] == renamed
