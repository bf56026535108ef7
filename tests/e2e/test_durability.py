"""Durability (security.md E9): ``kill -9`` of the server during a burst of creates loses no
acknowledged 201, on SQLite (WAL, synchronous=FULL) and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import user_body

SCIMLINK = str(Path(sys.executable).with_name("scimlink"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> dict[str, str]:
    out = subprocess.run(
        [SCIMLINK, *args, "--json"], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def _start(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [SCIMLINK, "sp", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("server did not start")


@pytest.fixture(params=["sqlite", "postgresql"])
def server_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "SCIMLINK_DATA_DIR": str(tmp_path)}
    if request.param == "postgresql":
        env["SCIMLINK_SP_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    else:
        env.pop("SCIMLINK_SP_DATABASE_URL", None)
    return env


def test_kill_9_during_create_burst_keeps_every_acknowledged_user(
    server_env: dict[str, str],
) -> None:
    tenant = _cli(server_env, "sp", "tenant", "create", f"durable-{uuid.uuid4().hex[:8]}")
    _cli(server_env, "sp", "provisioning", "use-scim", "--tenant", tenant["id"])
    token = _cli(server_env, "sp", "token", "generate", "--tenant", tenant["id"])["token"]
    _cli(server_env, "sp", "mapping", "create", "--tenant", tenant["id"], "--name", "Any", "--any")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    acknowledged: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    for round_ in range(3):
        port = _free_port()
        server = _start(server_env, port)
        stop = threading.Event()

        def burst(
            worker: int, port: int = port, stop: threading.Event = stop, round_: int = round_
        ) -> None:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}/insync/scim", headers=headers
            ) as client:
                n = 0
                while not stop.is_set():
                    name = f"r{round_}-w{worker}-{n}@example.com"
                    n += 1
                    try:
                        response = client.post("/Users", json=user_body(name), timeout=5)
                    except httpx.HTTPError:
                        return
                    if response.status_code == 201:
                        with lock:
                            acknowledged.append(response.json()["id"])
                    else:
                        failures.append(response.text)

        threads = [threading.Thread(target=burst, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.6 + 0.3 * round_)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        stop.set()
        for thread in threads:
            thread.join()

    assert len(acknowledged) > 20, "the burst should have created users before the kill"
    assert not failures, failures[:3]
    port = _free_port()
    server = _start(server_env, port)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}/insync/scim", headers=headers
        ) as client:
            missing = [
                uid for uid in acknowledged if client.get(f"/Users/{uid}").status_code != 200
            ]
            total = client.get("/Users", params={"count": 0}).json()["totalResults"]
    finally:
        server.terminate()
        server.wait()
    assert missing == []
    assert total >= len(acknowledged)
    if "SCIMLINK_SP_DATABASE_URL" not in server_env:
        import sqlite3

        with sqlite3.connect(Path(server_env["SCIMLINK_DATA_DIR"]) / "sp.db") as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
