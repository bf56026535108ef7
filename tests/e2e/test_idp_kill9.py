"""security.md E8: ``kill -9`` of the provisioning worker at random moments, 30 times, while the
directory keeps changing. After a final run the app half holds exactly the desired state: every
user once, with the right name and status; nothing lost, no duplicates. Both databases."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from scimlink.config import normalise_database_url
from scimlink.idp import applications
from scimlink.idp import directory
from scimlink.idp import idm
from scimlink.idp import schema
from scimlink.idp.provisioning.engine import Engine
from scimlink.idp.secrets import SecretBox
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import write_session
from tests.conftest import free_port
from tests.e2e.conftest import SCIMLINK
from tests.e2e.conftest import cli_json
from tests.e2e.conftest import start_server

USERS = 120
KILLS = int(os.environ.get("SCIMLINK_TEST_KILLS", "30"))


def _directory_url(server_env: dict[str, str], tmp_path: Path) -> str:
    if "SCIMLINK_SP_DATABASE_URL" in server_env:
        return server_env["SCIMLINK_SP_DATABASE_URL"]  # its own idp_* tables, the same server
    return f"sqlite:///{tmp_path / 'idp.db'}"


def test_kill_9_of_the_worker_30_times_converges_without_duplicates(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    key = Fernet.generate_key()
    env = {
        **server_env,
        "SCIMLINK_IDP_MASTER_KEY": key.decode(),
        "SCIMLINK_IDP_DATABASE_URL": _directory_url(server_env, tmp_path),
        "SCIMLINK_IDP_RECONCILE_INTERVAL": "0",
    }
    tenant = cli_json(env, "sp", "tenant", "create", f"kill9-{uuid.uuid4().hex[:8]}")["id"]
    cli_json(env, "sp", "provisioning", "use-scim", "--tenant", tenant)
    token = cli_json(env, "sp", "token", "generate", "--tenant", tenant)["token"]
    cli_json(env, "sp", "mapping", "create", "--tenant", tenant, "--name", "Any", "--any")
    port = free_port()
    server = start_server(env, port)
    base = f"http://127.0.0.1:{port}/insync/scim"

    database = make_engine(normalise_database_url(env["SCIMLINK_IDP_DATABASE_URL"]))
    schema.upgrade(database)
    box = SecretBox(key)
    engine = Engine(make_sessionmaker(database), box)
    label = f"Druva-{uuid.uuid4().hex[:6]}"
    group = f"staff-{uuid.uuid4().hex[:6]}"
    prefix = uuid.uuid4().hex[:6]
    names = [f"u{prefix}{n:03d}" for n in range(USERS)]
    rng = random.Random(8)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with write_session(engine.sessions) as session:
            directory.create_group(session, group)
            for name in names:
                directory.add_user(
                    session,
                    {"username": name, "email": f"{name}@example.com", "displayname": name.upper()},
                )
            directory.add_members(session, group, names)
            applications.add_app(session, "druva", label, base_url=base)
            applications.configure_idm(session, label, box, base_url=None, token=token)
        assert idm.activate(engine, label).ok
        with write_session(engine.sessions) as session:
            applications.bind_group(session, label, group)

        expected = {name: (name.upper(), True) for name in names}
        for round_ in range(KILLS):
            worker = subprocess.Popen(
                [SCIMLINK, "idp", "worker", "--threads", "2"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            workers.append(worker)
            # Keep the directory changing while the worker runs and dies.
            with write_session(engine.sessions) as session:
                for name in rng.sample(names, 4):
                    display = f"{name.upper()} r{round_}"
                    directory.set_user(session, name, {"displayname": display}, "test")
                    expected[name] = (display, expected[name][1])
                victim = rng.choice(names)
                active = not expected[victim][1]
                directory.set_state(session, victim, "activated" if active else "suspended")
                expected[victim] = (expected[victim][0], active)
            time.sleep(rng.uniform(1.5, 4.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        # A last, uninterrupted pass finishes what the killed workers left (leases expire).
        final = subprocess.Popen(
            [SCIMLINK, "idp", "worker", "--threads", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        workers.append(final)
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if _matches(base, headers, expected):
                break
            with database.connect() as connection:
                left = connection.exec_driver_sql("SELECT count(*) FROM idp_outbox").scalar()
            if left == 0 and time.monotonic() > deadline - 200:
                break  # nothing left to do: what is there now is final
            time.sleep(2)
        if not _matches(base, headers, expected):
            with database.connect() as connection:
                rows = connection.exec_driver_sql(
                    "SELECT user_id, attempts, due_at, claimed_until, held, last_error FROM idp_outbox"
                ).fetchall()
                links = connection.exec_driver_sql(
                    "SELECT username, state, remote_id, detail FROM idp_links WHERE state != 'active'"
                ).fetchall()
                log = connection.exec_driver_sql(
                    "SELECT username, step, status, decision FROM idp_provisioning_log"
                    " ORDER BY pk DESC LIMIT 15"
                ).fetchall()
            try:
                _matches(base, headers, expected, strict=True)
            except AssertionError as problems:
                first = str(problems).split("'")[1].split(":")[0]
                with database.connect() as connection:
                    mine = connection.exec_driver_sql(
                        "SELECT state, remote_id, detail, accepted_hash FROM idp_links WHERE username = ?"
                        if database.dialect.name == "sqlite"
                        else "SELECT state, remote_id, detail, accepted_hash FROM idp_links WHERE username = %s",
                        (first,),
                    ).fetchall()
                    steps = connection.exec_driver_sql(
                        "SELECT step, status, cause, decision, request FROM idp_provisioning_log WHERE username = ?"
                        if database.dialect.name == "sqlite"
                        else "SELECT step, status, cause, decision, request FROM idp_provisioning_log WHERE username = %s",
                        (first,),
                    ).fetchall()
                remote = httpx.get(
                    f"{base}/Users", params={"filter": f'userName eq "{first}"'}, headers=headers
                ).json()
                raise AssertionError(
                    f"{problems}\nlink of {first}: {mine}\nsteps: {steps}\nremote: {remote}"
                ) from None
            raise AssertionError(f"outbox: {rows[:10]}\nlinks: {links[:10]}\nlog: {log}")
        assert _matches(base, headers, expected, strict=True)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
        server.send_signal(signal.SIGTERM)
        server.wait(10)
        database.dispose()


def _matches(
    base: str,
    headers: dict[str, str],
    expected: dict[str, tuple[str, bool]],
    *,
    strict: bool = False,
) -> bool:
    """The app half holds each user exactly once, with the expected name and status."""
    seen: dict[str, list[dict[str, object]]] = {}
    start = 1
    while True:
        page = httpx.get(
            f"{base}/Users", params={"startIndex": start, "count": 500}, headers=headers, timeout=30
        ).json()
        for user in page["Resources"]:
            seen.setdefault(str(user["userName"]), []).append(user)
        start += len(page["Resources"])
        if not page["Resources"] or start > page["totalResults"]:
            break
    problems = []
    for name, (display, active) in expected.items():
        found = seen.get(name, [])
        if not found and not active:
            continue  # suspended before it was ever provisioned: nothing to deactivate
        if len(found) != 1:
            problems.append(f"{name}: {len(found)} copies")
        elif (found[0].get("displayName"), found[0].get("active")) != (display, active):
            problems.append(f"{name}: {found[0].get('displayName')}/{found[0].get('active')}")
    if strict:
        assert not problems, problems[:10]
    return not problems
