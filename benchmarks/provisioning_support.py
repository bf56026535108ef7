"""Pieces of the provisioning benchmark (``provisioning_load.py``): databases, processes, the
directory's population, a counting HTTP transport and a plain SCIM client.

Nothing here measures; it prepares what is measured and reads CPU time of processes.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import httpx2
import psycopg
from scim_load import cpu_seconds
from scim_load import free_port
from sqlalchemy import Engine
from sqlalchemy import Table
from sqlalchemy import insert

from scimlink.idp.models import DirectoryUser
from scimlink.idp.provisioning.transport import KeptAliveTransport
from scimlink.scim.text import fold
from scimlink.storage.base import utcnow

BIN = Path(sys.executable).parent
PG_HOST = "postgresql://postgres@127.0.0.1:5432"
PG_ADMIN = f"{PG_HOST}/postgres"
SCIM_PREFIX = "/insync/scim"
_SEED_CHUNK = 10_000


class BenchmarkError(RuntimeError):
    """Something the benchmark relies on did not happen."""


# -- databases -----------------------------------------------------------------------------------


@dataclass
class Databases:
    """The app half's and the directory's databases of one run (fresh, dropped at the end)."""

    kind: str
    tmp: Path
    sp_url: str = ""
    idp_url: str = ""
    pg_names: list[str] = field(default_factory=list)

    def size_mb(self) -> dict[str, float]:
        if self.kind == "sqlite":
            return {
                name: round(sum(p.stat().st_size for p in self.tmp.glob(f"{name}.db*")) / 1e6, 1)
                for name in ("sp", "idp")
            }
        sizes = {}
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            for name in self.pg_names:
                row = connection.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
                sizes[name.rsplit("_", 1)[-1]] = round(int(row[0]) / 1e6, 1) if row else 0.0
        return sizes


@contextmanager
def databases(kind: str, tmp: Path) -> Iterator[Databases]:
    """SQLite files in ``tmp``, or two uniquely named PostgreSQL databases dropped afterwards."""
    dbs = Databases(kind, tmp)
    if kind == "sqlite":
        dbs.sp_url = f"sqlite:///{tmp / 'sp.db'}"
        dbs.idp_url = f"sqlite:///{tmp / 'idp.db'}"
        yield dbs
        return
    stem = f"scimlink_pbench_{uuid.uuid4().hex[:8]}"
    dbs.pg_names = [f"{stem}_sp", f"{stem}_idp"]
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        for name in dbs.pg_names:
            connection.execute(f"CREATE DATABASE {name}")
    dbs.sp_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbs.pg_names[0]}"
    dbs.idp_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbs.pg_names[1]}"
    try:
        yield dbs
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            for name in dbs.pg_names:
                connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class PostgresBackends:
    """CPU time of the client backends connected to the run's databases.

    Backends that exit between two snapshots are not counted (the pools of the server and the
    workers keep theirs for the whole run).
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.connection = psycopg.connect(PG_ADMIN, autocommit=True)

    def snapshot(self) -> dict[int, float]:
        rows = self.connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s)"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            (self.names,),
        ).fetchall()
        seconds = {}
        for (pid,) in rows:
            try:
                seconds[int(pid)] = cpu_seconds(int(pid))
            except (FileNotFoundError, ProcessLookupError):
                continue
        return seconds

    def close(self) -> None:
        self.connection.close()


# -- processes -----------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def stop_process(process: subprocess.Popen[bytes], *, graceful: bool = True) -> None:
    """SIGINT (the CLI's Ctrl+C) and wait, then SIGTERM, then SIGKILL: this process only."""
    if process.poll() is not None:
        return
    steps = ((signal.SIGINT, 15), (signal.SIGTERM, 10)) if graceful else ((signal.SIGTERM, 10),)
    for sig, wait in steps:
        process.send_signal(sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``scimlink <args> --json``; the JSON object it prints."""
    out = subprocess.run(
        [str(BIN / "scimlink"), *args, "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    value = json.loads(out.stdout)
    if not isinstance(value, dict):
        raise BenchmarkError(f"unexpected CLI output: {out.stdout}")
    return value


@dataclass
class AppHalf:
    """``scimlink sp serve`` in its own process, with the tenants of the run."""

    process: subprocess.Popen[bytes]
    port: int
    tokens: dict[str, str]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SCIM_PREFIX}"

    def client(self, tenant: str) -> ScimHttp:
        return ScimHttp(self.port, self.tokens[tenant])

    def stop(self) -> None:
        stop_process(self.process, graceful=False)


def start_app_half(env: dict[str, str], tmp: Path, tenants: list[str]) -> AppHalf:
    """Tenants in SCIM mode with the recommended "Allow any user" mapping and a token each."""
    tokens = {}
    for name in tenants:
        cli(env, "sp", "tenant", "create", name)
        cli(env, "sp", "provisioning", "use-scim", "--tenant", name)
        cli(env, "sp", "mapping", "create", "--tenant", name, "--name", "Allow any user", "--any")
        tokens[name] = str(cli(env, "sp", "token", "generate", "--tenant", name)["token"])
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "scimlink"), "sp", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "sp-serve.log").open("wb"),
    )
    app = AppHalf(process, port, tokens)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"sp serve exited with {process.returncode}; see sp-serve.log")
        try:
            client = app.client(tenants[0])
            status, _ = client.call("GET", "/Users?count=1")
            client.close()
            if status == 200:
                return app
        except OSError:
            pass
        time.sleep(0.2)
    app.stop()
    raise BenchmarkError("sp serve did not answer within 120 s")


@dataclass
class Workers:
    """``scimlink idp worker`` processes sharing the directory's outbox."""

    processes: list[subprocess.Popen[bytes]]

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def cpu(self) -> float:
        return sum(process_cpu(pid) for pid in self.pids())

    def stop(self) -> None:
        """Ctrl+C to every worker at once; whoever has not exited 5 s later gets SIGTERM."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 5
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop_process(process, graceful=False)


def start_workers(env: dict[str, str], tmp: Path, processes: int, threads: int) -> Workers:
    """Start ``scimlink idp worker`` processes; wait until each has printed its id (it is then
    claiming)."""
    command = [str(BIN / "scimlink"), "idp", "worker", "--threads", str(threads), "--json"]
    started = []
    for n in range(processes):
        started.append(
            subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.PIPE,
                stderr=(tmp / f"worker-{n}.log").open("wb"),
            )
        )
    workers = Workers(started)
    for process in started:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            workers.stop()
            raise BenchmarkError(f"a worker exited with {process.poll()}; see worker-*.log")
        process.stdout.close()
    return workers


# -- HTTP ----------------------------------------------------------------------------------------


class ScimHttp:
    """A plain SCIM client: one keep-alive HTTP/1.1 connection (``http.client``), loopback."""

    def __init__(self, port: int, token: str) -> None:
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/scim+json",
            "Content-Type": "application/scim+json",
        }
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.connection.request(method, SCIM_PREFIX + path, body=body, headers=self.headers)
                response = self.connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        status, data = self.call(method, path, json.dumps(body).encode() if body else None)
        value = json.loads(data) if data else {}
        return status, value if isinstance(value, dict) else {"json": value}

    def total(self) -> int:
        status, body = self.json("GET", "/Users?count=1")
        if status != 200:
            raise BenchmarkError(f"GET /Users answered {status}: {body}")
        return int(body["totalResults"])

    def close(self) -> None:
        self.connection.close()


class CountingTransport(httpx2.BaseTransport):
    """The directory's own transport, counting every request it sends by method."""

    def __init__(self, counts: Counter[str], lock: threading.Lock) -> None:
        self.inner = KeptAliveTransport()
        self.counts = counts
        self.lock = lock

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        with self.lock:
            self.counts[request.method] += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


# -- the directory's population ------------------------------------------------------------------


def user_name(index: int) -> str:
    return f"user{index:07d}"


def directory_user(index: int) -> dict[str, Any]:
    """One directory user (JumpCloud's properties as our columns)."""
    name = user_name(index)
    return {
        "username": name,
        "email": f"{name}@bench.example",
        "firstname": f"Given{index:07d}",
        "lastname": f"Family{index:07d}",
        "displayname": f"Bench User {index:07d}",
        "employee_identifier": f"E{index:07d}",
        "department": "Engineering",
    }


def seed_directory(engine: Engine, users: int) -> list[str]:
    """Insert ``users`` activated users (SQLAlchemy Core, 10 000 rows a transaction).

    Only the users themselves: memberships and the outbox come from the product's own calls.
    """
    ids: list[str] = []
    table = DirectoryUser.__table__
    assert isinstance(table, Table)
    for start in range(0, users, _SEED_CHUNK):
        rows = []
        now = utcnow()
        for index in range(start, min(users, start + _SEED_CHUNK)):
            values = directory_user(index)
            user_id = str(uuid.uuid4())
            ids.append(user_id)
            rows.append(
                {
                    "id": user_id,
                    "username_key": fold(values["username"]),
                    "email_key": fold(values["email"]),
                    "job_title": None,
                    "company": None,
                    "location": None,
                    "cost_center": None,
                    "state": "activated",
                    "attributes": {},
                    "password_hash": None,
                    "created": now,
                    "updated": now,
                    **values,
                }
            )
        with engine.begin() as connection:
            connection.execute(insert(table), rows)
    return ids


def environment(**values: str) -> dict[str, str]:
    """The benchmark's environment for child processes, without inherited SCIMLINK_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIMLINK_")}
    env.update(values)
    return env


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
