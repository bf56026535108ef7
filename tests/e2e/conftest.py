"""End-to-end fixtures: the real ``scimlink`` executable and a real ``sp serve`` process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCIMLINK = str(Path(sys.executable).with_name("scimlink"))


def cli_json(env: dict[str, str], *args: str) -> dict[str, str]:
    out = subprocess.run(
        [SCIMLINK, *args, "--json"], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
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
