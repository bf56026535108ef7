"""Provisioning benchmark: the directory half's engine provisioning into the local app half.

One run = one database kind, one population and one worker count:

1. Fresh databases for both halves (SQLite files, or two uniquely named PostgreSQL databases).
   ``scimlink sp serve`` runs in its own process with two tenants in SCIM mode, each with the
   "Allow any user" mapping and a token from the CLI: ``bench`` (the engine's target) and
   ``baseline`` (the plain HTTP client's).
2. The directory: N users bulk-inserted with SQLAlchemy Core; their group memberships through
   ``directory.add_members``; a Druva-preset application pointing at the app half, configured
   and activated (``idm.activate`` verifies it over HTTP).
3. Baseline: the app half's own create throughput in the same run: ``POST /Users`` of the same
   bodies the engine sends, from a plain ``http.client`` with the engine's concurrency.
4. Sync: ``--workers`` engines are started (``scimlink idp worker`` processes with
   ``--threads-per-worker`` threads each, the product's default of 4 unless given; or one process
   with that many threads, ``--worker-mode``), then ``applications.bind_group`` commits the real
   outbox rows; timed from that commit until the outbox is empty; the app half must then hold N.
5. Latency: with the workers running, ``--changes`` display-name changes, one at a time
   (``directory.set_user``), each timed until ``GET /Users/{id}`` on the app half shows it.
6. Reconcile: workers stopped; ``operations.reconcile`` in this process through an engine whose
   HTTP transport counts every request by method, then ``drain`` of whatever it enqueued.

Usage: .venv/bin/python benchmarks/provisioning_load.py [--users 10000] [--db sqlite]
       [--workers 1] [--threads-per-worker 4] [--worker-mode processes|threads]
       [--scenario all] [--out FILE]
       .venv/bin/python benchmarks/provisioning_load.py --summarize FILE [FILE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from provisioning_support import WRITE_METHODS
from provisioning_support import AppHalf
from provisioning_support import BenchmarkError
from provisioning_support import CountingTransport
from provisioning_support import Databases
from provisioning_support import PostgresBackends
from provisioning_support import Workers
from provisioning_support import databases
from provisioning_support import directory_user
from provisioning_support import environment
from provisioning_support import log_tail
from provisioning_support import process_cpu
from provisioning_support import seed_directory
from provisioning_support import start_app_half
from provisioning_support import start_workers
from scim_load import log
from scim_load import machine
from scim_load import percentile
from scim_load import source_fingerprint
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.config import Settings
from scimlink.idp import applications
from scimlink.idp import directory
from scimlink.idp import idm
from scimlink.idp import schema
from scimlink.idp.models import DEFAULT_CONCURRENCY
from scimlink.idp.models import Link
from scimlink.idp.models import LogEntry
from scimlink.idp.models import OutboxRow
from scimlink.idp.provisioning import operations
from scimlink.idp.provisioning.desired import desired
from scimlink.idp.provisioning.engine import Engine as ProvisioningEngine
from scimlink.idp.provisioning.engine import EngineConfig
from scimlink.idp.secrets import SecretBox
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
APP_LABEL = "Druva bench"
GROUP = "Bench users"
MEMBERSHIP_CHUNK = 5_000
THROUGHPUT_GOAL = 0.8
LATENCY_GOAL_MS = 1000.0


def git_head() -> str:
    """The commit the run started on (others may commit to ``src/`` during a series of runs)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %cI %s"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def distribution(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(percentile(ordered, 0.50), 1),
        "p95_ms": round(percentile(ordered, 0.95), 1),
        "p99_ms": round(percentile(ordered, 0.99), 1),
        "max_ms": round(ordered[-1], 1),
        "mean_ms": round(sum(ordered) / len(ordered), 1),
    }


class CpuMeter:
    """CPU seconds of the app half, the workers, the PostgreSQL backends and this process."""

    def __init__(
        self, app: AppHalf, workers: Workers | None, backends: PostgresBackends | None
    ) -> None:
        self.app, self.workers, self.backends = app, workers, backends

    def snapshot(self) -> dict[str, Any]:
        times = os.times()
        return {
            "app_half": process_cpu(self.app.pid),
            "workers": self.workers.cpu() if self.workers else 0.0,
            "postgres": self.backends.snapshot() if self.backends else {},
            "benchmark": times.user + times.system,
            "machine": machine_ticks(),
        }

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any], per: int) -> dict[str, Any]:
        postgres = sum(s - before["postgres"].get(pid, 0.0) for pid, s in after["postgres"].items())
        seconds = {
            "app_half_s": after["app_half"] - before["app_half"],
            "workers_s": after["workers"] - before["workers"],
            "postgres_backends_s": postgres,
            "benchmark_process_s": after["benchmark"] - before["benchmark"],
        }
        result: dict[str, Any] = {k: round(v, 2) for k, v in seconds.items()}
        result["per_item_ms"] = {
            k.removesuffix("_s"): round(v * 1000 / max(per, 1), 2) for k, v in seconds.items()
        }
        ticks = {
            k: after["machine"].get(k, 0) - before["machine"].get(k, 0) for k in after["machine"]
        }
        elapsed = sum(ticks.values())
        if elapsed:
            # Of all CPUs' time in the phase: busy (any process), idle, and stolen by the
            # hypervisor (time our vCPUs wanted to run but another guest ran).
            result["machine_pct"] = {k: round(100 * v / elapsed, 1) for k, v in ticks.items()}
        return result


def machine_ticks() -> dict[str, int]:
    """All CPUs' time so far from ``/proc/stat`` (Linux), as busy, idle and steal."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return {}
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return {
        "busy": user + nice + system + irq + softirq,
        "idle": idle + iowait,
        "steal": steal,
    }


# -- the directory's side ------------------------------------------------------------------------


def druva_mapping() -> list[dict[str, str]]:
    return [{"source": s, "target": t} for s, t in applications.DRUVA.mapping]


def create_body(index: int) -> dict[str, Any]:
    """What the engine POSTs for directory user ``index`` (the Druva preset's mapping)."""
    values = directory_user(index)
    user = {
        "username": values["username"],
        "email": values["email"],
        "displayname": values["displayname"],
        "employeeIdentifier": values["employee_identifier"],
        "firstname": values["firstname"],
        "lastname": values["lastname"],
        "department": values["department"],
        "state": "activated",
    }
    return desired(user, True, druva_mapping()).resource


def prepare_directory(
    sessions: sessionmaker[Session],
    database: Engine,
    box: SecretBox,
    users: int,
    app: AppHalf,
    rate: float,
    concurrency: int,
    bulk: bool = False,
) -> dict[str, float]:
    timings: dict[str, float] = {}
    began = time.perf_counter()
    ids = seed_directory(database, users)
    timings["seed_users_s"] = round(time.perf_counter() - began, 2)
    log(f"  directory: {users:,} users inserted in {timings['seed_users_s']} s")
    began = time.perf_counter()
    with write_session(sessions) as session:
        directory.create_group(session, GROUP)
    for start in range(0, len(ids), MEMBERSHIP_CHUNK):
        with write_session(sessions) as session:
            directory.add_members(session, GROUP, ids[start : start + MEMBERSHIP_CHUNK])
    timings["add_members_s"] = round(time.perf_counter() - began, 2)
    log(f"  directory: memberships (directory.add_members) in {timings['add_members_s']} s")
    with write_session(sessions) as session:
        applications.add_app(session, "druva", APP_LABEL)
        applications.configure_idm(
            session,
            APP_LABEL,
            box,
            base_url=app.base_url,
            token=app.tokens["bench"],
        )
        # Engines share the application's limits: let every thread of every worker call.
        applications.settings(
            session, APP_LABEL, rate=rate, concurrency=concurrency, bulk_creates=bulk
        )
    return timings


# -- baseline ------------------------------------------------------------------------------------


def baseline(
    app: AppHalf,
    count: int,
    concurrency: int,
    cpu: CpuMeter,
    tenant: str = "baseline",
    bulk: int = 0,
) -> dict[str, Any]:
    """POST ``count`` users to an empty ``tenant`` from ``concurrency`` threads: one
    ``POST /Users`` each, or ``POST /Bulk`` requests of ``bulk`` creates (as the engine sends
    them with bulk creates on)."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    if bulk:
        requests = [
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [
                    {"method": "POST", "path": "/Users", "bulkId": str(i), "data": create_body(i)}
                    for i in range(start, min(count, start + bulk))
                ],
            }
            for start in range(0, count, bulk)
        ]
        bodies = {n: json.dumps(body).encode() for n, body in enumerate(requests)}
        path, created = "/Bulk", 200
    else:
        bodies = {i: json.dumps(create_body(i)).encode() for i in range(count)}
        path, created = "/Users", 201
    counter = iter(range(len(bodies)))

    def client() -> None:
        http = app.client(tenant)
        try:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                began = time.perf_counter()
                status, data = http.call("POST", path, bodies[index])
                elapsed = time.perf_counter() - began
                if bulk and status == created:
                    refused = [o for o in json.loads(data)["Operations"] if o["status"] != "201"]
                    if refused:
                        status, data = int(refused[0]["status"]), json.dumps(refused[0]).encode()
                if status != created:
                    with lock:
                        errors.append(f"{status}: {data[:200]!r}")
                    return
                with lock:
                    latencies.append(elapsed * 1000)
        finally:
            http.close()

    before = cpu.snapshot()
    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    after = cpu.snapshot()
    if errors:
        raise BenchmarkError(f"baseline create failed: {errors[0]}")
    check = app.client(tenant)
    total = check.total()
    check.close()
    if total != count:
        raise BenchmarkError(f"{tenant} tenant holds {total} users, expected {count}")
    return {
        "users": count,
        "bulk": bulk,
        "concurrency": concurrency,
        "wall_s": round(wall, 2),
        "creates_per_s": round(count / wall, 1),
        "latency": distribution(latencies),
        "cpu": CpuMeter.delta(before, after, count),
    }


# -- sync ----------------------------------------------------------------------------------------


def outbox_rows(sessions: sessionmaker[Session]) -> int:
    with read_session(sessions) as session:
        return int(session.execute(select(func.count()).select_from(OutboxRow)).scalar_one())


def outbox_empty(sessions: sessionmaker[Session]) -> bool:
    """The 50 ms completion poll: the head of the claim's index. A COUNT of a 100 000-row
    outbox every 50 ms cost PostgreSQL a tenth of a core, charged to the sync's backends; a
    bare ``LIMIT 1`` is a sequential scan from the heap's first page, over every page the sync
    has emptied so far (0.7 ms a poll at 30 000 pairs)."""
    order = (OutboxRow.app_id, OutboxRow.held, OutboxRow.due_at, OutboxRow.pk)
    with read_session(sessions) as session:
        return session.execute(select(OutboxRow.pk).order_by(*order).limit(1)).first() is None


def sync(
    sessions: sessionmaker[Session],
    app: AppHalf,
    users: int,
    cpu: CpuMeter,
    workers: Workers,
    timeout: float,
) -> dict[str, Any]:
    """Bind the group (the real outbox rows) and time the workers until the outbox is empty."""
    began = time.perf_counter()
    with write_session(sessions) as session:
        queued = applications.bind_group(session, APP_LABEL, GROUP)
    committed = time.perf_counter()
    before = cpu.snapshot()
    log(f"  bind_group queued {queued:,} pairs in {committed - began:.2f} s; draining")
    last_log = committed
    progress: list[list[float]] = []  # seconds since the commit, pairs done, 1-min load average
    while True:
        now = time.perf_counter()
        if outbox_empty(sessions):
            break
        if any(p.poll() is not None for p in workers.processes):
            raise BenchmarkError("a worker exited during the sync")
        if now - committed > timeout:
            left = outbox_rows(sessions)
            raise BenchmarkError(f"sync not finished after {timeout:.0f} s: {left} left")
        if now - last_log > 15:
            done = queued - outbox_rows(sessions)
            log(f"    {done:,}/{queued:,} done, {done / (now - committed):.1f} users/s")
            progress.append([round(now - committed, 1), done, round(os.getloadavg()[0], 2)])
            last_log = now
        time.sleep(0.05)
    wall = time.perf_counter() - committed
    after = cpu.snapshot()
    check = app.client("bench")
    total = check.total()
    check.close()
    with read_session(sessions) as session:
        states = dict(session.execute(select(Link.state, func.count()).group_by(Link.state)).all())
        steps = dict(
            session.execute(select(LogEntry.step, func.count()).group_by(LogEntry.step)).all()
        )
        methods = dict(
            session.execute(
                select(LogEntry.method, func.count())
                .where(LogEntry.method.is_not(None))
                .group_by(LogEntry.method)
            ).all()
        )
        # Users looked up together share the call's correlation id: this counts the calls.
        lookup_calls = session.execute(
            select(func.count(LogEntry.correlation_id.distinct())).where(LogEntry.step == "lookup")
        ).scalar_one()
        # The engine's own timing of each POST (its log): comparable with the baseline's latency.
        create_ms = list(
            session.execute(
                select(LogEntry.duration_ms).where(
                    LogEntry.step == "create", LogEntry.duration_ms.is_not(None)
                )
            ).scalars()
        )
    result = {
        "users": users,
        "queued": queued,
        "bind_group_s": round(committed - began, 2),
        "wall_s": round(wall, 2),
        "users_per_s": round(users / wall, 1),
        "app_half_total_results": total,
        "verified": total == users and states.get("active", 0) == users,
        "links_by_state": states,
        "log_steps": steps,
        "log_rows_by_method": methods,
        "lookup_calls": lookup_calls,
        "create_latency": distribution(create_ms) if create_ms else None,
        "cpu": CpuMeter.delta(before, after, users),
        "progress": progress,
    }
    if not result["verified"]:
        raise BenchmarkError(f"sync incomplete: app holds {total}, links {states}")
    return result


# -- latency -------------------------------------------------------------------------------------


def latency(
    sessions: sessionmaker[Session], app: AppHalf, changes: int, poll_ms: float, seed: int = 7
) -> dict[str, Any]:
    """One display-name change at a time; each timed until the app half serves it."""
    rng = random.Random(seed)
    with read_session(sessions) as session:
        links = session.execute(
            select(Link.username, Link.remote_id).where(Link.state == "active")
        ).all()
    chosen = rng.sample(links, min(changes, len(links)))
    http = app.client("bench")
    total_ms: list[float] = []
    commit_ms: list[float] = []
    from_commit_ms: list[float] = []
    polls = 0
    try:
        for n, (username, remote_id) in enumerate(chosen):
            time.sleep(rng.uniform(0, 0.2))  # no phase lock with the workers' idle polling
            value = f"Changed {n} {secrets.token_hex(3)}"
            began = time.perf_counter()
            with write_session(sessions) as session:
                directory.set_user(session, username, {"displayname": value}, "bench: latency")
            committed = time.perf_counter()
            deadline = committed + 30
            while True:
                status, body = http.json("GET", f"/Users/{remote_id}")
                polls += 1
                seen = time.perf_counter()
                if status == 200 and body.get("displayName") == value:
                    break
                if seen > deadline:
                    raise BenchmarkError(f"change {n} not visible after 30 s")
                time.sleep(poll_ms / 1000)
            total_ms.append((seen - began) * 1000)
            commit_ms.append((committed - began) * 1000)
            from_commit_ms.append((seen - committed) * 1000)
    finally:
        http.close()
    return {
        "changes": len(total_ms),
        "poll_interval_ms": poll_ms,
        "polls": polls,
        "change_to_visible": distribution(total_ms),
        "directory_commit": distribution(commit_ms),
        "commit_to_visible": distribution(from_commit_ms),
        "samples_ms": [round(v, 1) for v in total_ms],
    }


# -- reconcile -----------------------------------------------------------------------------------


def reconcile(
    sessions: sessionmaker[Session], box: SecretBox, app: AppHalf, users: int, cpu: CpuMeter
) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    engine = ProvisioningEngine(
        sessions,
        box,
        EngineConfig(timeout=120),
        transport=lambda _app: CountingTransport(counts, lock),
        worker="bench-reconcile",
    )
    before = cpu.snapshot()
    began = time.perf_counter()
    drift = operations.reconcile(engine, APP_LABEL)
    seconds = time.perf_counter() - began
    after = cpu.snapshot()
    reconcile_calls = dict(counts)
    counts.clear()
    drained = engine.drain()
    drain_calls = dict(counts)
    check = app.client("bench")
    total = check.total()
    check.close()
    return {
        "users": users,
        "seconds": round(seconds, 2),
        "users_per_s": round(users / seconds, 1),
        "drift": {"read": drift.read, "differing": drift.differing, "missing": drift.missing},
        "drift_examples": drift.examples,
        "calls_by_method": reconcile_calls,
        "write_calls": sum(reconcile_calls.get(m, 0) for m in WRITE_METHODS),
        "drain_after": {
            "processed": drained,
            "calls_by_method": drain_calls,
            "write_calls": sum(drain_calls.get(m, 0) for m in WRITE_METHODS),
        },
        "app_half_total_results_after": total,
        "cpu": CpuMeter.delta(before, after, users),
    }


# -- goals ---------------------------------------------------------------------------------------


def baseline_rate(result: dict[str, Any]) -> float | None:
    """The app half's create rate: the mean of the runs before and after the sync.

    The machine is shared, and its speed drifts by tens of percent within minutes; bracketing
    the sync with two baselines keeps the comparison to the same conditions.
    """
    rates = [
        result[key]["creates_per_s"] for key in ("baseline", "baseline_after") if result.get(key)
    ]
    return round(sum(rates) / len(rates), 1) if rates else None


def baseline_text(result: dict[str, Any]) -> str:
    parts = [f"before {result['baseline']['creates_per_s']}"] if result.get("baseline") else []
    if result.get("baseline_after"):
        parts.append(f"after {result['baseline_after']['creates_per_s']}")
    return ", ".join(parts)


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    sync_, rate = result.get("sync"), baseline_rate(result)
    if sync_ and rate:
        ratio = sync_["users_per_s"] / rate
        found.append(
            {
                "goal": "engine throughput >= 80% of the app half's own create throughput",
                "measured": f"{sync_['users_per_s']} users/s vs {rate} creates/s"
                f" ({ratio:.0%}; {baseline_text(result)})",
                "met": ratio >= THROUGHPUT_GOAL,
            }
        )
    lat = result.get("latency")
    if lat:
        p95 = lat["change_to_visible"]["p95_ms"]
        found.append(
            {
                "goal": "a single change visible in the app in under 1 s at p95",
                "measured": f"p50 {lat['change_to_visible']['p50_ms']} ms, p95 {p95} ms"
                f" ({lat['changes']} changes)",
                "met": p95 < LATENCY_GOAL_MS,
            }
        )
    rec = result.get("reconcile")
    if rec:
        writes = rec["write_calls"] + rec["drain_after"]["write_calls"]
        found.append(
            {
                "goal": "an unchanged reconcile makes zero write calls",
                "measured": f"{writes} write calls, {rec['calls_by_method'].get('GET', 0)} GETs,"
                f" {rec['seconds']} s for {rec['users']:,} users",
                "met": writes == 0,
            }
        )
    return found


# -- one run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    processes, threads = (
        (args.workers, args.threads_per_worker)
        if args.worker_mode == "processes"
        else (1, args.workers)
    )
    concurrency = args.concurrency or processes * DEFAULT_CONCURRENCY
    scenarios = {"sync", "latency", "reconcile"} if args.scenario == "all" else {args.scenario}
    baseline_users = args.baseline_users or min(args.users, 5000)
    result: dict[str, Any] = {
        "benchmark": "provisioning_load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "source": source_fingerprint(),
        "git_head": git_head(),
        "parameters": {
            "users": args.users,
            "db": args.db,
            "workers": args.workers,
            "worker_mode": args.worker_mode,
            "worker_processes": processes,
            "threads_per_worker": threads,
            "concurrency": concurrency,
            "scenario": args.scenario,
            "baseline_users": baseline_users,
            "changes": args.changes,
            "poll_ms": args.poll_ms,
            "app_rate_per_second": args.rate,
            "engine_batch": EngineConfig().batch,
            "bulk_creates": args.bulk,
        },
        "load_average_start": list(os.getloadavg()),
    }
    began = time.perf_counter()
    key = Fernet.generate_key()
    box = SecretBox(key)
    with tempfile.TemporaryDirectory(prefix="scimlink-pbench-") as tmp_name:
        tmp = Path(tmp_name)
        with databases(args.db, tmp) as dbs:
            try:
                run_in(args, dbs, tmp, key, box, processes, threads, scenarios, result)
            except BenchmarkError as exc:
                result["error"] = str(exc)
                log(f"  FAILED: {exc}")
                for name in ("sp-serve.log", "worker-0.log"):
                    tail = log_tail(tmp / name)
                    if tail:
                        log(f"  {name}:\n{tail}")
    result["wall_s"] = round(time.perf_counter() - began, 1)
    result["load_average_end"] = list(os.getloadavg())
    result["goals"] = goals(result)
    return result


def run_in(
    args: argparse.Namespace,
    dbs: Databases,
    tmp: Path,
    key: bytes,
    box: SecretBox,
    processes: int,
    threads: int,
    scenarios: set[str],
    result: dict[str, Any],
) -> None:
    concurrency: int = result["parameters"]["concurrency"]
    bulk = EngineConfig().bulk_batch if args.bulk else 0
    env = environment(
        SCIMLINK_DATA_DIR=str(tmp),
        SCIMLINK_SP_DATABASE_URL=dbs.sp_url,
        SCIMLINK_IDP_DATABASE_URL=dbs.idp_url,
        SCIMLINK_IDP_MASTER_KEY=key.decode(),
        SCIMLINK_IDP_RECONCILE_INTERVAL="0",
    )
    database = make_engine(dbs.idp_url)
    schema.upgrade(database)
    sessions = make_sessionmaker(database)
    app = start_app_half(env, tmp, ["bench", "baseline", "baseline-after"])
    backends = PostgresBackends(dbs.pg_names) if dbs.kind == "postgresql" else None
    workers: Workers | None = None
    try:
        setup = prepare_directory(
            sessions, database, box, args.users, app, args.rate, min(64, concurrency), args.bulk
        )
        engine = ProvisioningEngine(sessions, box, EngineConfig(timeout=60), worker="bench")
        verified = idm.activate(engine, APP_LABEL)
        if not verified.ok:
            raise BenchmarkError(f"IdM activation failed: {verified.message}")
        result["setup"] = setup
        cpu = CpuMeter(app, None, backends)
        if "sync" in scenarios:
            what = f"POST /Bulk of {bulk}" if bulk else "POST /Users"
            log(f"  baseline: {result['parameters']['baseline_users']:,} users, {what}")
            result["baseline"] = baseline(
                app, result["parameters"]["baseline_users"], concurrency, cpu, bulk=bulk
            )
            log(f"  baseline: {result['baseline']['creates_per_s']} creates/s")
        result["source_at_workers_start"] = source_fingerprint()
        workers = start_workers(env, tmp, processes, threads)
        cpu = CpuMeter(app, workers, backends)
        step = sync(sessions, app, args.users, cpu, workers, args.sync_timeout)
        result["sync"] = step
        log(f"  sync: {step['users_per_s']} users/s ({step['wall_s']} s)")
        if "latency" in scenarios:
            result["latency"] = latency(sessions, app, args.changes, args.poll_ms)
            shown = result["latency"]["change_to_visible"]
            log(f"  latency: p50 {shown['p50_ms']} ms, p95 {shown['p95_ms']} ms")
        workers.stop()
        workers = None
        if "sync" in scenarios:
            cpu = CpuMeter(app, None, backends)
            result["baseline_after"] = baseline(
                app,
                result["parameters"]["baseline_users"],
                concurrency,
                cpu,
                tenant="baseline-after",
                bulk=bulk,
            )
            log(f"  baseline after: {result['baseline_after']['creates_per_s']} creates/s")
        if "reconcile" in scenarios:
            cpu = CpuMeter(app, None, backends)
            result["reconcile"] = reconcile(sessions, box, app, args.users, cpu)
            rec = result["reconcile"]
            log(
                f"  reconcile: {rec['seconds']} s, calls {rec['calls_by_method']},"
                f" drift {rec['drift']}"
            )
        result["database_mb"] = dbs.size_mb()
    finally:
        if workers is not None:
            workers.stop()
        app.stop()
        if backends:
            backends.close()
        database.dispose()


# -- summary -------------------------------------------------------------------------------------


def summarize(paths: list[Path]) -> str:
    """A Markdown table of goal vs measured per run."""
    lines = [
        "| database | users | workers | goal | measured | status |",
        "|---|---|---|---|---|---|",
    ]
    details = [
        "| database | users | workers | baseline creates/s (before, after) | sync users/s | ratio"
        " | latency p50 / p95 ms | reconcile s (GETs, writes) | CPU ms/user app half"
        " + workers + PostgreSQL | CPU stolen % (baseline, sync, after) | load avg | file |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        result = json.loads(path.read_text())
        p = result["parameters"]
        if p["worker_mode"] == "processes":
            who = f"{p['workers']} process{'es' if p['workers'] > 1 else ''}"
            if p.get("threads_per_worker", 1) != 1:
                who += f" of {p['threads_per_worker']} threads"
        else:
            who = f"1 process, {p['workers']} threads"
        db = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[p["db"]]
        for goal in result.get("goals", []):
            status = "**Met**" if goal["met"] else "**Not met**"
            lines.append(
                f"| {db} | {p['users']:,} | {who} | {goal['goal']} | {goal['measured']} | {status} |"
            )
        if result.get("error"):
            lines.append(f"| {db} | {p['users']:,} | {who} | run failed | {result['error']} | — |")
        sync_ = result.get("sync") or {}
        lat, rec = result.get("latency") or {}, result.get("reconcile") or {}
        rate = baseline_rate(result)
        ratio = f"{sync_['users_per_s'] / rate:.0%}" if rate and sync_ else "—"
        cpu = (sync_.get("cpu") or {}).get("per_item_ms") or {}
        cpu_text = (
            f"{cpu['app_half']} + {cpu['workers']} + {cpu['postgres_backends']}" if cpu else "—"
        )
        lat_text = (
            f"{lat['change_to_visible']['p50_ms']} / {lat['change_to_visible']['p95_ms']}"
            if lat
            else "—"
        )
        rec_text = (
            f"{rec['seconds']} ({rec['calls_by_method'].get('GET', 0)}, "
            f"{rec['write_calls'] + rec['drain_after']['write_calls']})"
            if rec
            else "—"
        )
        load = f"{result['load_average_start'][0]:.1f} → {result['load_average_end'][0]:.1f}"
        stolen = ", ".join(
            str(
                ((result.get(phase) or {}).get("cpu") or {})
                .get("machine_pct", {})
                .get("steal", "—")
            )
            for phase in ("baseline", "sync", "baseline_after")
        )
        details.append(
            f"| {db} | {p['users']:,} | {who} | {baseline_text(result) or '—'}"
            f" | {sync_.get('users_per_s', '—')} | {ratio} | {lat_text} | {rec_text}"
            f" | {cpu_text} | {stolen} | {load} | `{path.name}` |"
        )
    return "\n".join([*lines, "", *details])


# -- main ----------------------------------------------------------------------------------------


def default_out(args: argparse.Namespace) -> Path:
    size = f"{args.users // 1000}k" if args.users % 1000 == 0 else str(args.users)
    mode = "-threads" if args.worker_mode == "threads" else f"-t{args.threads_per_worker}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    bulk = "-bulk" if args.bulk else ""
    return RESULTS_DIR / f"provisioning-{stamp}-{args.db}-{size}-w{args.workers}{mode}{bulk}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--users", type=int, default=10_000, help="directory users to provision")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="concurrent engines (1 or 4)")
    parser.add_argument(
        "--worker-mode",
        choices=("processes", "threads"),
        default="processes",
        help="processes: N `scimlink idp worker --threads T`; threads: one `--threads N`",
    )
    parser.add_argument(
        "--threads-per-worker",
        type=int,
        default=Settings().idp_worker_threads,
        help="T, the threads of each worker process (default: the product's default)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="the application's concurrency limit, shared by the workers, and the baseline's"
        " (default: the product's per-application default for each worker process)",
    )
    parser.add_argument(
        "--scenario", choices=("sync", "latency", "reconcile", "all"), default="all"
    )
    parser.add_argument("--out", type=Path, help="result file (default: benchmarks/results/...)")
    parser.add_argument(
        "--baseline-users", type=int, default=0, help="baseline creates (default min(N, 5000))"
    )
    parser.add_argument("--changes", type=int, default=200, help="latency samples")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="latency poll interval")
    parser.add_argument(
        "--rate",
        type=float,
        default=10_000.0,
        help="the application's rate limit, calls/s per worker process (product default 20)",
    )
    parser.add_argument("--sync-timeout", type=float, default=3600.0)
    parser.add_argument(
        "--bulk",
        action="store_true",
        help="bulk creates on (the engine sends POST /Bulk); the baselines then send POST /Bulk"
        " requests of the same size",
    )
    parser.add_argument(
        "--summarize", nargs="+", type=Path, help="print a Markdown table of result files"
    )
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return 0
    if args.workers < 1:
        parser.error("--workers is at least 1")
    log(
        f"provisioning_load: {args.users:,} users, {args.db}, {args.workers} worker(s)"
        f" ({args.worker_mode}), scenario {args.scenario}"
    )
    result = run(args)
    out: Path = args.out or default_out(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    for goal in result["goals"]:
        log(f"  {'MET' if goal['met'] else 'NOT MET'}: {goal['goal']}: {goal['measured']}")
    log(f"done in {result['wall_s'] / 60:.1f} min")
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
