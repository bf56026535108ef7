"""``scimlink sp serve`` and ``sp db upgrade``, and the scheduled jobs that run beside the server."""

from __future__ import annotations

import logging
import threading
from typing import Annotated

import typer
from sqlalchemy import Engine

from scimlink.cli.common import JsonOption
from scimlink.cli.common import emit
from scimlink.cli.sp_commands import db_app
from scimlink.cli.sp_commands import jobs_app
from scimlink.cli.sp_commands import sp_app
from scimlink.config import Settings
from scimlink.sp import jobs
from scimlink.sp import schema
from scimlink.sp.mail import SmtpSettings
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.planner import StatsKeeper

log = logging.getLogger("scimlink.sp.jobs")


def smtp_settings(settings: Settings) -> SmtpSettings | None:
    if not settings.sp_smtp_host:
        return None
    return SmtpSettings(
        host=settings.sp_smtp_host,
        port=settings.sp_smtp_port,
        sender=settings.sp_smtp_sender,
        username=settings.sp_smtp_username,
        password=settings.sp_smtp_password,
        security=settings.sp_smtp_security,
    )


def run_jobs_once(settings: Settings, engine: Engine | None = None) -> jobs.JobReport:
    owned = engine is None
    engine = engine or make_engine(settings.sp_database)
    try:
        if owned:  # a server's engine was migrated when it started
            schema.upgrade(engine)
        return jobs.run_once(make_sessionmaker(engine), smtp_settings(settings))
    finally:
        if owned:
            engine.dispose()


class JobRunner(threading.Thread):
    """Runs the scheduled jobs every ``interval`` seconds until stopped; a failing run is logged
    and retried at the next tick (the jobs are idempotent)."""

    def __init__(self, settings: Settings, engine: Engine, interval: float) -> None:
        super().__init__(name="scimlink-jobs", daemon=True)
        self.settings = settings
        self.engine = engine
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                run_jobs_once(self.settings, self.engine)
            except Exception:
                log.exception("scheduled jobs failed; retrying at the next run")

    def stop(self) -> None:
        self.stopped.set()


def redact(url: str) -> str:
    """Database URLs may hold a password: never print it."""
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in credentials else url


@sp_app.command("serve")
def sp_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    as_json: JsonOption = False,
) -> None:
    """Serve the app half: SCIM, the admin API and the scheduled jobs (migrates first)."""
    import uvicorn

    from scimlink.web.app import create_sp_app

    settings = Settings()
    engine = make_engine(settings.sp_database)
    schema.upgrade(engine)
    root = f"http://{host}:{port}"
    urls = settings.sp_scim_urls(root)
    admin_api = (settings.sp_public_url or root).rstrip("/") + "/insync/api/v1"
    emit(
        as_json,
        {
            "scim_base_url": urls["cloud"],
            "scim_base_urls": urls,
            "admin_api": admin_api,
            "database": redact(settings.sp_database),
        },
        f"SCIM base URL: {urls['cloud']}"
        + (f" (GovCloud: {urls['govcloud']})" if urls["govcloud"] != urls["cloud"] else "")
        + f"\nAdmin API: {admin_api} (OpenAPI: {admin_api}/openapi.json)",
    )
    runner = None
    if settings.sp_jobs_interval > 0:
        runner = JobRunner(settings, engine, settings.sp_jobs_interval)
        runner.start()
    stopped = threading.Event()
    StatsKeeper(make_sessionmaker(engine), schema.GROWING).start(stopped)
    try:
        uvicorn.run(
            create_sp_app(settings, engine=engine, default_root=root),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
        )
    finally:
        stopped.set()
        if runner is not None:
            runner.stop()


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Migrate the app half's database to the latest schema."""
    settings = Settings()
    engine = make_engine(settings.sp_database)
    schema.upgrade(engine)
    engine.dispose()
    emit(
        as_json,
        {"database": redact(settings.sp_database), "revision": "head"},
        "Database is up to date.",
    )


@jobs_app.command("run")
def jobs_run(as_json: JsonOption = False) -> None:
    """Run every scheduled job once: auto-delete, token reminders, and sending due mail."""
    report = run_jobs_once(Settings())
    data = {
        "deleted_users": report.deleted_users,
        "reminders": report.reminders,
        "mail_sent": report.mail.sent if report.mail else None,
        "mail_failed": report.mail.failed if report.mail else None,
    }
    mail_text = (
        f"{report.mail.sent} e-mail(s) sent, {report.mail.failed} failed"
        if report.mail
        else "mail not sent: SMTP is not configured (SCIMLINK_SP_SMTP_HOST)"
    )
    emit(
        as_json,
        data,
        f"Deleted {report.deleted_users} preserved user(s) past their auto-delete period; "
        f"queued {report.reminders} token reminder(s); {mail_text}.",
    )
