"""Durability (security.md E9): ``kill -9`` of the server during a burst of creates loses no
acknowledged 201, on SQLite (WAL, synchronous=FULL) and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.conftest import user_body
from tests.e2e.conftest import cli_json
from tests.e2e.conftest import start_server

SCIMLINK = str(Path(sys.executable).with_name("scimlink"))


def test_kill_9_during_create_burst_keeps_every_acknowledged_user(
    server_env: dict[str, str],
) -> None:
    tenant = cli_json(server_env, "sp", "tenant", "create", f"durable-{uuid.uuid4().hex[:8]}")
    cli_json(server_env, "sp", "provisioning", "use-scim", "--tenant", tenant["id"])
    token = cli_json(server_env, "sp", "token", "generate", "--tenant", tenant["id"])["token"]
    cli_json(
        server_env, "sp", "mapping", "create", "--tenant", tenant["id"], "--name", "Any", "--any"
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    acknowledged: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    for round_ in range(3):
        port = free_port()
        server = start_server(server_env, port)
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
    port = free_port()
    server = start_server(server_env, port)
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
