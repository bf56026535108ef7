"""``scimlink idp serve`` (admin API + provisioning engine in one process) and ``idp worker``
(the engine alone; run any number on PostgreSQL)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated

import typer

from scimlink.cli.common import JsonOption
from scimlink.cli.common import emit
from scimlink.cli.idp_commands import idp_app
from scimlink.cli.idp_commands import secret_box
from scimlink.config import Settings
from scimlink.idp import applications
from scimlink.idp import schema
from scimlink.idp.provisioning import operations
from scimlink.idp.provisioning.engine import Engine
from scimlink.idp.provisioning.engine import EngineConfig
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.planner import StatsKeeper

log = logging.getLogger("scimlink.idp")


def _engine(settings: Settings) -> Engine:
    database = make_engine(settings.idp_database)
    schema.upgrade(database)
    return Engine(
        make_sessionmaker(database),
        secret_box(settings),
        EngineConfig(timeout=settings.idp_scim_timeout),
    )


def _reconciler(engine: Engine, interval: float, stop: threading.Event) -> None:
    """A periodic full reconcile of every active application repairs drift made in the apps."""
    while not stop.wait(interval):
        with read_session(engine.sessions) as session:
            active = [a.label for a in applications.list_apps(session) if a.idm_state == "active"]
        for label in active:
            try:
                drift = operations.reconcile(engine, label)
                if drift.differing or drift.missing:
                    log.info(
                        "reconcile %s: %s differing, %s missing",
                        label,
                        drift.differing,
                        drift.missing,
                    )
            except Exception:
                log.exception("reconcile of %s failed", label)


def start_engine(
    engine: Engine, settings: Settings
) -> tuple[threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=engine.run_forever,
            args=(stop,),
            kwargs={"threads": settings.idp_worker_threads},
            name="scimlink-engine",
            daemon=True,
        )
    ]
    if settings.idp_reconcile_interval > 0:
        threads.append(
            threading.Thread(
                target=_reconciler,
                args=(engine, settings.idp_reconcile_interval, stop),
                name="scimlink-reconcile",
                daemon=True,
            )
        )
    for thread in threads:
        thread.start()
    StatsKeeper(engine.sessions, schema.GROWING).start(stop)
    return stop, threads


@idp_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    engine_enabled: Annotated[
        bool, typer.Option("--engine/--no-engine", help="Run the provisioning engine here too.")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Serve the directory's admin API and, by default, run the provisioning engine."""
    import uvicorn

    from scimlink.web.idp_app import create_idp_app

    settings = Settings()
    engine = _engine(settings)
    api = f"http://{host}:{port}/api/v1"
    emit(
        as_json,
        {"admin_api": api, "engine": engine_enabled},
        f"Directory admin API: {api} (OpenAPI: {api}/openapi.json)"
        + ("; provisioning engine running" if engine_enabled else ""),
    )
    stop = None
    if engine_enabled:
        stop, _ = start_engine(engine, settings)
    try:
        uvicorn.run(
            create_idp_app(engine), host=host, port=port, log_level="warning", access_log=False
        )
    finally:
        if stop is not None:
            stop.set()


@idp_app.command("worker")
def worker(
    threads: Annotated[
        int | None, typer.Option(help="Concurrent claimers in this process.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the provisioning engine only; any number of workers share the queue on PostgreSQL."""
    settings = Settings()
    if threads is not None:
        settings.idp_worker_threads = threads
    engine = _engine(settings)
    emit(
        as_json,
        {"worker": engine.worker},
        f"Provisioning worker {engine.worker} running; Ctrl+C stops it.",
    )
    stop, workers = start_engine(engine, settings)
    try:
        while any(t.is_alive() for t in workers):
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop.set()
