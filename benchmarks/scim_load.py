"""SCIM load benchmark of the app half, with scim2-server 0.8.3 as the point of comparison.

For each database (SQLite, PostgreSQL) and population (10k, 1M users) it creates a fresh database,
a tenant and a token with the ``scimlink`` CLI, bulk-seeds the users straight into the database
(``seeding.py``), starts ``scimlink sp serve`` as a separate process, warms it up, then measures
create, get, ``userName eq`` filter, PATCH, list pages of 100 (first and random deep pages) and
delete from one sequential client over loopback. Per operation it records client latency
percentiles and the server's CPU time per request (``/proc/<pid>/stat`` utime+stime of the server
process, plus its PostgreSQL backends). scim2-server runs the same load at 10k in the same run.

Results go to ``benchmarks/results/<date>-<db>.json`` and the tables of ``docs/benchmarks.md``.

Usage: .venv/bin/python benchmarks/scim_load.py [--users 10000,1000000] [--db sqlite,postgresql]
       [--servers scimlink,scim2-server] [--ops N] [--max-seconds S]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import os
import platform
import random
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import report
import seeding
from sqlalchemy import Connection
from sqlalchemy import event
from sqlalchemy.orm import Session
from workload import PLACEHOLDER
from workload import number
from workload import patch_display_name
from workload import payload
from workload import user_name

from scimlink.scim.query import Limits
from scimlink.scim.query import parse_list_query
from scimlink.sp.users import UserService
from scimlink.storage.db import make_engine

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "scimlink_bench"
PG_BENCH = f"postgresql://postgres@127.0.0.1:5432/{PG_DATABASE}"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SCIMLINK_PREFIX = "/insync/scim"
SCIM2_PREFIX = "/v2"
SCIM2_SERVER_MAX_USERS = 10_000
PAGE = 100


class BenchmarkError(RuntimeError):
    """A server answered something other than what the operation expects."""


# -- the server process ------------------------------------------------------------------------


def source_fingerprint() -> str:
    """A short hash of the product's source tree: others may change it between runs."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "scimlink").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from ``/proc/<pid>/stat``."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def reaped_children_seconds(pid: int) -> float:
    """cutime + cstime: CPU of the children ``pid`` has waited for (exited processes)."""
    fields = _stat(pid)
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def parent_pid(pid: int) -> int:
    return int(_stat(pid)[1])


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB (10^6 bytes)."""
    names = {"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in names:
            values[names[key]] = round(int(rest.split()[0]) * 1024 / 1e6, 1)
    return values


class PostgresBackends:
    """CPU time of the benchmark database's client backends (the server's connections).

    Parallel workers (PostgreSQL's COUNT(*) at 1M uses two) live only for one query; their CPU
    is read afterwards from the postmaster's reaped-children time, which also holds any other
    backend of the cluster that exited meanwhile, so it is reported apart, as an upper bound.
    """

    def __init__(self) -> None:
        self.connection = psycopg.connect(PG_BENCH, autocommit=True)
        row = self.connection.execute("SELECT pg_backend_pid()").fetchone()
        self.postmaster = parent_pid(int(row[0])) if row else 0

    def pids(self) -> list[int]:
        rows = self.connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'",
            (PG_DATABASE,),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def snapshot(self) -> tuple[dict[int, float], float]:
        seconds = {}
        for pid in self.pids():
            try:
                seconds[pid] = cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue
        return seconds, reaped_children_seconds(self.postmaster)

    def close(self) -> None:
        self.connection.close()


@dataclass
class Server:
    """A server process under test and how to reach it."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    prefix: str
    token: str
    backends: PostgresBackends | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> tuple[float, dict[int, float], float]:
        """Server process CPU, CPU of each PostgreSQL backend, reaped PostgreSQL children."""
        backends, reaped = self.backends.snapshot() if self.backends else ({}, 0.0)
        return cpu_seconds(self.pid), backends, reaped

    def stop(self) -> None:
        if self.backends:
            self.backends.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchmarkError(f"{server.name} exited with {server.process.returncode}")
        try:
            client = Client(server)
            status, _, _ = client.call("GET", "/Users?count=1")
            client.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchmarkError(f"{server.name} did not answer within {timeout:.0f} s")


# -- the client --------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection over loopback; times request to last body byte."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.headers = {
            "Authorization": f"Bearer {server.token}",
            "Accept": "application/scim+json",
            "Content-Type": "application/scim+json",
        }
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        url = self.server.prefix + path
        for attempt in range(2):
            try:
                began = time.perf_counter()
                self.connection.request(method, url, body=body, headers=self.headers)
                response = self.connection.getresponse()
                data = response.read()
                return response.status, data, (time.perf_counter() - began) * 1000
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()  # the server closed an idle keep-alive connection
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes | None
    expect: tuple[int, ...]
    check: Callable[[bytes], None] | None = None


def _json(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise BenchmarkError("the response is not a JSON object")
    return value


def _total_is_one(data: bytes) -> None:
    if _json(data).get("totalResults") != 1:
        raise BenchmarkError(f"filter did not find exactly one user: {data[:200]!r}")


def _full_page(data: bytes) -> None:
    if len(_json(data).get("Resources") or []) != PAGE:
        raise BenchmarkError(f"list page does not hold {PAGE} users")


# -- measuring ---------------------------------------------------------------------------------


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


@dataclass
class OpStats:
    operation: str
    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    server_cpu_ms: float
    app_cpu_ms: float
    db_cpu_ms: float
    db_exited_cpu_ms: float
    wall_s: float


def run_batch(
    server: Server,
    client: Client,
    operation: str,
    requests: Iterator[Request],
    samples: int,
    max_seconds: float,
    on_response: Callable[[bytes], None] | None = None,
) -> OpStats:
    """Send requests one after another; stop at ``samples`` or after ``max_seconds`` (min 20)."""
    latencies: list[float] = []
    app_before, db_before, reaped_before = server.cpu()
    began = time.perf_counter()
    for request in requests:
        status, data, ms = client.call(request.method, request.path, request.body)
        if status not in request.expect:
            raise BenchmarkError(
                f"{server.name} {operation}: {request.method} {request.path} answered {status}: "
                f"{data[:300]!r}"
            )
        if request.check:
            request.check(data)
        if on_response:
            on_response(data)
        latencies.append(ms)
        elapsed = time.perf_counter() - began
        if len(latencies) >= samples or (elapsed > max_seconds and len(latencies) >= 20):
            break
    wall = time.perf_counter() - began
    app_after, db_after, reaped_after = server.cpu()
    if not latencies:
        raise BenchmarkError(f"{operation}: no request was sent")
    app = (app_after - app_before) * 1000 / len(latencies)
    db = sum(after - db_before.get(pid, 0.0) for pid, after in db_after.items())
    db = db * 1000 / len(latencies)
    exited = (reaped_after - reaped_before) * 1000 / len(latencies)
    ordered = sorted(latencies)
    return OpStats(
        operation=operation,
        samples=len(latencies),
        p50_ms=round(percentile(ordered, 0.50), 3),
        p95_ms=round(percentile(ordered, 0.95), 3),
        p99_ms=round(percentile(ordered, 0.99), 3),
        mean_ms=round(sum(ordered) / len(ordered), 3),
        server_cpu_ms=round(app + db, 3),
        app_cpu_ms=round(app, 3),
        db_cpu_ms=round(db, 3),
        db_exited_cpu_ms=round(exited, 3),
        wall_s=round(wall, 2),
    )


class Load:
    """The requests of each operation, drawn from a seeded random generator."""

    def __init__(self, ids: list[str], users: int, seed: int = 42) -> None:
        self.ids = ids
        self.users = users
        self.rng = random.Random(seed)
        self.created: list[str] = []
        self.next_new = 0

    def create(self, prefix: str) -> Iterator[Request]:
        while True:
            body = json.dumps(payload(self.next_new, prefix)).encode()
            self.next_new += 1
            yield Request("POST", "/Users", body, (201,))

    def remember(self, data: bytes) -> None:
        self.created.append(str(_json(data)["id"]))

    def get(self) -> Iterator[Request]:
        while True:
            yield Request("GET", f"/Users/{self.rng.choice(self.ids)}", None, (200,))

    def filter(self) -> Iterator[Request]:
        while True:
            name = user_name(self.rng.randrange(self.users))
            query = quote(f'userName eq "{name}"')
            yield Request("GET", f"/Users?filter={query}", None, (200,), _total_is_one)

    def patch(self) -> Iterator[Request]:
        n = 0
        while True:
            n += 1
            body = json.dumps(patch_display_name(f"Patched User {n}")).encode()
            yield Request("PATCH", f"/Users/{self.rng.choice(self.ids)}", body, (200, 204))

    def list_first(self) -> Iterator[Request]:
        while True:
            yield Request("GET", f"/Users?startIndex=1&count={PAGE}", None, (200,), _full_page)

    def list_deep(self) -> Iterator[Request]:
        while True:
            start = self.rng.randint(1, self.users - PAGE + 1)
            path = f"/Users?startIndex={start}&count={PAGE}"
            yield Request("GET", path, None, (200,), _full_page)

    def repeat(self, path: str, status: int) -> Iterator[Request]:
        while True:
            yield Request("GET", path, None, (status,))

    def delete(self) -> Iterator[Request]:
        while self.created:
            yield Request("DELETE", f"/Users/{self.created.pop()}", None, (204,))


def exercise(server: Server, load: Load, samples: int, max_seconds: float) -> list[OpStats]:
    """Warm up, then measure every operation in turn, then the two reference floors."""
    client = Client(server)

    def measure(name: str, requests: Iterator[Request], count: int, **kw: Any) -> OpStats:
        stats = run_batch(server, client, name, requests, count, max_seconds, **kw)
        log(f"    {name:<10} {_brief(stats)}")
        return stats

    try:
        warm = max(20, samples // 10)
        run_batch(server, client, "warm", load.create("warm"), warm, max_seconds, load.remember)
        for requests in (load.get(), load.filter(), load.patch(), load.list_first()):
            run_batch(server, client, "warm", requests, warm, max_seconds)
        run_batch(server, client, "warm", load.list_deep(), 20, max_seconds)
        run_batch(server, client, "warm", load.delete(), len(load.created), max_seconds * 10)
        results = [measure("create", load.create("new"), samples, on_response=load.remember)]
        results += [
            measure("get", load.get(), samples),
            measure("filter", load.filter(), samples),
            measure("patch", load.patch(), samples),
            measure("list_first", load.list_first(), samples),
            measure("list_deep", load.list_deep(), samples),
        ]
        results.append(
            run_batch(server, client, "delete", load.delete(), len(load.created), max_seconds * 10)
        )
        log(f"    {'delete':<10} {_brief(results[-1])}")
        results += [
            measure("ref_404", load.repeat("/NoSuchEndpoint", 404), samples),
            measure("ref_config", load.repeat("/ServiceProviderConfig", 200), samples),
        ]
        return results
    finally:
        client.close()


def _brief(stats: OpStats) -> str:
    return (
        f"n={stats.samples:<5} p50={stats.p50_ms:8.2f} ms  p99={stats.p99_ms:8.2f} ms  "
        f"cpu={stats.server_cpu_ms:7.2f} ms/req"
    )


def _comparable(resource: dict[str, Any], index: int) -> str:
    """A resource without its id and times, with its user number replaced by the placeholder."""
    meta = resource.get("meta") or {}
    kept = {k: v for k, v in resource.items() if k not in {"id", "meta"}}
    kept["meta"] = {"resourceType": meta.get("resourceType"), "version": meta.get("version")}
    return json.dumps(kept, sort_keys=True).replace(number(index), PLACEHOLDER)


def check_seeded_like_created(server: Server, ids: list[str], users: int) -> None:
    """A seeded user must read back exactly like one created through POST /Users."""
    client = Client(server)
    try:
        index = users + 1000  # a number no seeded user has
        status, data, _ = client.call("POST", "/Users", json.dumps(payload(index)).encode())
        if status != 201:
            raise BenchmarkError(f"create for the seeding check answered {status}: {data[:300]!r}")
        created_id = str(_json(data)["id"])
        _, created, _ = client.call("GET", f"/Users/{created_id}")
        _, seeded, _ = client.call("GET", f"/Users/{ids[0]}")
        client.call("DELETE", f"/Users/{created_id}")
        if _comparable(_json(created), index) != _comparable(_json(seeded), 0):
            raise BenchmarkError(
                f"a seeded user reads back differently from a created one:\n{seeded[:600]!r}\n"
                f"{created[:600]!r}"
            )
    finally:
        client.close()


# -- preparing databases and servers ------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def scimlink_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(BIN / "scimlink"), "sp", *args, "--json"],
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


def reset_postgres() -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {PG_DATABASE}")


def drop_postgres() -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


@dataclass
class Run:
    """One server, database and population, measured."""

    server: str
    db: str
    users: int
    seed_seconds: float = 0.0
    database_mb: float | None = None
    memory_after_seed: dict[str, float] = field(default_factory=dict)
    memory_after_run: dict[str, float] = field(default_factory=dict)
    operations: list[OpStats] = field(default_factory=list)
    query_plans: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    source_at_start: str = ""
    source_at_server_start: str = ""
    load_average: list[float] = field(default_factory=list)
    load_average_end: list[float] = field(default_factory=list)
    error: str | None = None


def run_scimlink(db: str, users: int, samples: int, max_seconds: float) -> Run:
    """Fresh database, tenant, token, seed, serve, measure, stop."""
    run = Run("scimlink", db, users, load_average=list(os.getloadavg()))
    run.source_at_start = source_fingerprint()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scimlink-bench-") as tmp:
        env = dict(os.environ, SCIMLINK_DATA_DIR=tmp)
        sqlite_path = Path(tmp) / "sp.db"
        if db == "sqlite":
            env["SCIMLINK_SP_DATABASE_URL"] = f"sqlite:///{sqlite_path}"
        else:
            reset_postgres()
            env["SCIMLINK_SP_DATABASE_URL"] = PG_BENCH.replace("postgresql:", "postgresql+psycopg:")
        tenant = scimlink_cli(env, "tenant", "create", "bench")
        scimlink_cli(env, "provisioning", "use-scim", "--tenant", "bench")
        token = str(scimlink_cli(env, "token", "generate", "--tenant", "bench")["token"])
        # inSync creates nobody without a SCIM mapping: the recommended "Allow any user" one.
        scimlink_cli(env, "mapping", "create", "--tenant", "bench", "--name", "Any", "--any")
        log(f"  seeding {users:,} users into {db}")
        if db == "sqlite":
            seeded = seeding.seed_sqlite(str(sqlite_path), tenant["id"], users)
        else:
            seeded = seeding.seed_postgresql(PG_BENCH, tenant["id"], users)
        run.seed_seconds = round(seeded.seconds, 1)
        log(f"  seeded in {seeded.seconds:.1f} s")
        port = free_port()
        run.source_at_server_start = source_fingerprint()
        process = subprocess.Popen(
            [str(BIN / "scimlink"), "sp", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(Path(tmp) / "server.log").open("wb"),
        )
        server = Server("scimlink", process, port, SCIMLINK_PREFIX, token)
        try:
            wait_ready(server, timeout=120)
            if db == "postgresql":
                server.backends = PostgresBackends()
            run.memory_after_seed = memory_mb(server.pid)
            check_seeded_like_created(server, seeded.ids, users)
            load = Load(seeded.ids, users)
            operations = exercise(server, load, samples, max_seconds)
            run.operations = operations
            run.memory_after_run = memory_mb(server.pid)
            url = env["SCIMLINK_SP_DATABASE_URL"]
            run.query_plans = query_plans(url, tenant["id"], users, seeded.ids)
            run.database_mb = database_mb(db, sqlite_path)
        except BenchmarkError as exc:
            run.error = str(exc)
            log(f"  FAILED: {exc}")
        finally:
            server.stop()
            if db == "postgresql":
                drop_postgres()
    run.wall_seconds = round(time.perf_counter() - began, 1)
    run.load_average_end = list(os.getloadavg())
    return run


def run_scim2_server(users: int, samples: int, max_seconds: float) -> Run:
    """scim2-server in memory, seeded in-process through its own create path."""
    run = Run("scim2-server", "memory", users, load_average=list(os.getloadavg()))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scim2-bench-") as tmp:
        ids_file = Path(tmp) / "ids.json"
        token = secrets.token_urlsafe(24)
        port = free_port()
        log(f"  seeding {users:,} users into scim2-server (in-process, its own create path)")
        process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("scim2_server_app.py")),
                "--port",
                str(port),
                "--token",
                token,
                "--users",
                str(users),
                "--ids-file",
                str(ids_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(Path(tmp) / "server.log").open("wb"),
        )
        server = Server("scim2-server", process, port, SCIM2_PREFIX, token)
        try:
            wait_ready(server, timeout=1800)
            run.seed_seconds = round(time.perf_counter() - began, 1)
            run.memory_after_seed = memory_mb(server.pid)
            ids = json.loads(ids_file.read_text())
            run.operations = exercise(server, Load(ids, users), samples, max_seconds)
            run.memory_after_run = memory_mb(server.pid)
        except BenchmarkError as exc:
            run.error = str(exc)
            log(f"  FAILED: {exc}")
        finally:
            server.stop()
    run.wall_seconds = round(time.perf_counter() - began, 1)
    run.load_average_end = list(os.getloadavg())
    return run


# -- query plans -------------------------------------------------------------------------------

#: Not what the product runs: a keyset page (pk > the last pk of the previous page).
_KEYSET_PAGE = (
    "SELECT pk, id, version, created, last_modified, document FROM sp_users"
    " WHERE tenant_id = :t AND pk > :after ORDER BY pk LIMIT 100"
)


def _use_cases(users: int, ids: list[str]) -> dict[str, Callable[[UserService], object]]:
    limits = Limits()

    def listing(params: dict[str, str]) -> Callable[[UserService], object]:
        return lambda service: service.search(parse_list_query(params, limits))

    return {
        "get": lambda service: service.get(ids[len(ids) // 3]),
        "filter userName eq": listing({"filter": f'userName eq "{user_name(users // 3)}"'}),
        "list first page": listing({"startIndex": "1", "count": "100"}),
        "list deep page (middle)": listing({"startIndex": str(users // 2), "count": "100"}),
        "filter matching every user (active eq true)": listing(
            {"filter": "active eq true", "count": "100"}
        ),
    }


def query_plans(url: str, tenant_id: str, users: int, ids: list[str]) -> dict[str, Any]:
    """The SQL UserService itself issues for each read (captured), EXPLAINed and timed.

    ``ms`` is the time inside the database (median of 5): sqlite3 execution and fetch, or
    PostgreSQL's EXPLAIN ANALYZE with TIMING OFF; ``fetch_ms`` on PostgreSQL is the round trip
    with psycopg turning each jsonb document into a dict, as the server does.
    """
    engine = make_engine(url)
    issued: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        if statement.lstrip().upper().startswith("SELECT"):
            issued.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    plans: dict[str, Any] = {}
    try:
        with engine.connect() as connection:
            service = UserService(Session(bind=connection), tenant_id)
            for name, use_case in _use_cases(users, ids).items():
                issued.clear()
                use_case(service)
                statements = list(issued)
                plans[name] = [_explain(connection, sql, params) for sql, params in statements]
            event.remove(engine, "before_cursor_execute", capture)
            keyset, params = _keyset(engine.dialect.name, tenant_id, users // 2)
            plans["candidate: keyset page (pk > last seen)"] = [
                _explain(connection, keyset, params)
            ]
            connection.rollback()
    finally:
        engine.dispose()
    return plans


def _keyset(dialect: str, tenant_id: str, after: int) -> tuple[str, Any]:
    """The keyset candidate in the driver's parameter style."""
    if dialect == "sqlite":
        return _KEYSET_PAGE.replace(":t", "?").replace(":after", "?"), (tenant_id, after)
    sql = _KEYSET_PAGE.replace(":t", "%(t)s").replace(":after", "%(after)s")
    return sql, {"t": tenant_id, "after": after}


def _explain(connection: Connection, sql: str, params: Any) -> dict[str, Any]:
    def run(text: str) -> list[Any]:
        return list(connection.exec_driver_sql(text, params).fetchall())

    entry: dict[str, Any] = {"sql": " ".join(sql.split())}
    if connection.dialect.name == "sqlite":
        entry["plan"] = [str(row[-1]) for row in run(f"EXPLAIN QUERY PLAN {sql}")]
        entry["ms"] = _median_ms(partial(run, sql))
        return entry
    entry["plan"] = [str(row[0]) for row in run(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")]
    # Per-node timing inflates scans of many rows; the timed runs switch it off.
    executions = []
    for _ in range(5):
        last = str(run(f"EXPLAIN (ANALYZE, TIMING OFF) {sql}")[-1][0])  # "Execution Time: 1 ms"
        executions.append(float(last.split(":")[1].split()[0]))
    entry["ms"] = round(sorted(executions)[2], 3)
    entry["fetch_ms"] = _median_ms(partial(run, sql))
    return entry


def _median_ms(call: Callable[[], object]) -> float:
    times = []
    for _ in range(5):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return round(sorted(times)[2], 3)


def database_mb(db: str, sqlite_path: Path) -> float:
    if db == "sqlite":
        size = sum(p.stat().st_size for p in sqlite_path.parent.glob("sp.db*"))
    else:
        with psycopg.connect(PG_BENCH) as connection:
            row = connection.execute("SELECT pg_database_size(%s)", (PG_DATABASE,)).fetchone()
            size = int(row[0]) if row else 0
    return round(size / 1e6, 1)


# -- the whole run -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    meminfo = Path("/proc/meminfo").read_text().split()
    with psycopg.connect(PG_ADMIN) as connection:
        row = connection.execute("SHOW server_version").fetchone()
        shared = connection.execute("SHOW shared_buffers").fetchone()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": row[0] if row else "unknown",
        "postgresql_shared_buffers": shared[0] if shared else "unknown",
        "scimlink": metadata.version("scimlink"),
        "scim2_server": metadata.version("scim2-server"),
        "uvicorn": metadata.version("uvicorn"),
    }


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--users", default="10000,1000000", help="populations, comma-separated")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite and/or postgresql")
    parser.add_argument("--servers", default="scimlink,scim2-server")
    parser.add_argument("--ops", type=int, default=1000, help="samples per operation")
    parser.add_argument(
        "--max-seconds", type=float, default=30.0, help="time budget per operation batch"
    )
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    sizes = [int(item.replace("_", "")) for item in _csv(args.users)]
    dbs = _csv(args.db)
    servers = _csv(args.servers)
    if not set(dbs) <= {"sqlite", "postgresql"} or not set(servers) <= {"scimlink", "scim2-server"}:
        parser.error("unknown --db or --servers value")
    began = time.perf_counter()
    date = datetime.now(UTC)
    parameters = {"ops": args.ops, "max_seconds": args.max_seconds, "page": PAGE}
    log(f"scim_load: users={sizes} db={dbs} servers={servers} ops={args.ops}")
    runs: list[Run] = []
    if "scimlink" in servers:
        for db in dbs:
            for users in sizes:
                log(f"scimlink on {db}, {users:,} users")
                runs.append(run_scimlink(db, users, args.ops, args.max_seconds))
    skipped: list[str] = []
    if "scim2-server" in servers:
        for users in sizes:
            if users > SCIM2_SERVER_MAX_USERS:
                skipped.append(
                    f"scim2-server at {users:,} users: skipped (in memory and linear: each list"
                    " page sorts every user, and seeding alone would take most of an hour)"
                )
                continue
            log(f"scim2-server (memory), {users:,} users")
            runs.append(run_scim2_server(users, args.ops, args.max_seconds))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    baseline = [asdict(r) for r in runs if r.server == "scim2-server"]
    written = []
    for db in dbs:
        ours = [asdict(r) for r in runs if r.server == "scimlink" and r.db == db]
        result = {
            "benchmark": "scim_load",
            "date": date.isoformat(timespec="seconds"),
            "db": db,
            "machine": machine(),
            "parameters": parameters,
            "runs": ours + baseline,
            "skipped": skipped,
        }
        result["goals"] = report.goals(result)
        path = RESULTS_DIR / f"{date:%Y-%m-%d}-{db}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        written.append(path)
        log(f"wrote {path.relative_to(ROOT)}")
    if not args.no_doc and written:
        report.write_doc(DOC, RESULTS_DIR)
        log(f"wrote {DOC.relative_to(ROOT)}")
    log(f"done in {(time.perf_counter() - began) / 60:.1f} min")
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
