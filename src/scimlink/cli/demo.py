"""``scimlink demo``: both halves on embedded SQLite, on two local ports.

A sample directory (a few hundred users across departments and groups) provisions, through a
Druva application configured against the local app half, into a tenant with SCIM mappings per
department plus an "Allow any user" default. The demo prints URLs, credentials and a summary
and keeps running: later changes in the directory reach the app half.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated
from typing import Any

import typer
from rich.progress import BarColumn
from rich.progress import MofNCompleteColumn
from rich.progress import Progress
from rich.progress import TextColumn
from sqlalchemy.orm import Session

from scimlink.cli.common import JsonOption
from scimlink.cli.common import console
from scimlink.cli.common import emit
from scimlink.cli.common import fail
from scimlink.cli.sp_commands import mapping_line
from scimlink.config import Settings
from scimlink.errors import ScimLinkError
from scimlink.sp import profiles
from scimlink.sp import schema
from scimlink.sp import scim_mappings
from scimlink.sp import tenants
from scimlink.sp.administration import Administration
from scimlink.sp.audit import Actor
from scimlink.sp.roles import OPERATOR
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import write_session

DEMO_ADMIN = "admin@demo.example"
DEMO_APP = "Druva inSync"
DEPARTMENTS = ("Engineering", "Sales", "Marketing", "Finance", "Support")
FIRST = (
    "Alice",
    "Bob",
    "Carol",
    "Dan",
    "Erin",
    "Farid",
    "Gita",
    "Hugo",
    "Ines",
    "Jun",
    "Kemi",
    "Lars",
)
LAST = (
    "Ng",
    "Martin",
    "Diaz",
    "Okafor",
    "Li",
    "Haddad",
    "Rao",
    "Berg",
    "Silva",
    "Tanaka",
    "Adeyemi",
    "Nilsson",
)


def sample_directory(count: int) -> list[dict[str, str]]:
    """A deterministic sample of users across departments (JumpCloud's property names)."""
    users = []
    for n in range(count):
        first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST)) % len(LAST)]
        username = f"{first}.{last}{n}".lower()
        users.append(
            {
                "username": username,
                "email": f"{username}@demo.example",
                "firstname": first,
                "lastname": last,
                "displayname": f"{first} {last}",
                "employeeIdentifier": f"E{n:05d}",
                "department": DEPARTMENTS[n % len(DEPARTMENTS)],
                "jobTitle": "Engineer" if n % len(DEPARTMENTS) == 0 else "Specialist",
                "company": "Demo Corp",
            }
        )
    return users


def _demo_policies(session: Session, tenant_id: str) -> None:
    """Druva's recommended setup: mappings per department, then an "Allow any user" default."""
    profiles.create_profile(session, tenant_id, "Engineering", max_users=100)
    profiles.create_storage(session, tenant_id, "EU storage", "eu-central-1")
    scim_mappings.create_mapping(
        session,
        tenant_id,
        "Engineering",
        attribute="department",
        values="Engineering",
        profile="Engineering",
        storage="EU storage",
        quota_gb=500,
    )
    scim_mappings.create_mapping(
        session,
        tenant_id,
        "Sales and Marketing",
        attribute="department",
        values="Sales, Marketing",
        quota_gb=100,
    )
    scim_mappings.create_mapping(session, tenant_id, "Default (allow any user)", any_user=True)


def _serve(app: Any, host: str, port: int) -> Any:
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or server.should_exit:
            raise fail(f"could not start a server on {host}:{port}")
        time.sleep(0.05)
    return server


def _app_half(settings: Settings, root: str) -> tuple[Any, dict[str, Any]]:
    """The demo tenant: SCIM, mappings per department, a token, an administrator's API key."""
    from scimlink.web.app import create_sp_app

    engine = make_engine(settings.sp_database)
    schema.upgrade(engine)
    with write_session(make_sessionmaker(engine)) as session:
        try:
            tenant = tenants.find_tenant(session, "demo")
        except ScimLinkError:
            tenant = tenants.create_tenant(session, "demo")
            _demo_policies(session, tenant.id)
        admin = Administration(
            session, tenant.id, Actor("cli:demo", OPERATOR), settings.sp_scim_urls(root)
        )
        admin.switch_provisioning("scim")
        issued = admin.generate_token()
        if not any(a["email"] == DEMO_ADMIN for a in admin.admins()):
            admin.create_admin(DEMO_ADMIN, "druva-cloud-admin")
        facts = {
            "tenant_id": tenant.id,
            "scim_base_url": issued["scim_base_url"],
            "token": issued["token"],
            "admin_api": f"{root}/insync/api/v1",
            "admin_api_key": admin.create_key(DEMO_ADMIN, "demo")["key"],
            "mappings": [mapping_line(m) for m in admin.mappings()],
        }
    return create_sp_app(settings, engine=engine, default_root=root), facts


def _directory(settings: Settings, count: int, sp: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The sample directory and a Druva application pointed at the local app half."""
    from scimlink.cli.idp_commands import secret_box
    from scimlink.idp import applications
    from scimlink.idp import directory
    from scimlink.idp import keys
    from scimlink.idp import schema as idp_schema
    from scimlink.idp.provisioning.engine import Engine

    database = make_engine(settings.idp_database)
    idp_schema.upgrade(database)
    box = secret_box(settings)
    engine = Engine(make_sessionmaker(database), box)
    with write_session(engine.sessions) as session:
        if directory.count_users(session) == 0:
            for name in ("All Staff", *DEPARTMENTS):
                directory.create_group(session, name)
            for user in sample_directory(count):
                added = directory.add_user(session, user)
                directory.add_members(session, "All Staff", [added.id])
                directory.add_members(session, user["department"], [added.id])
        try:
            applications.find_app(session, DEMO_APP)
        except ScimLinkError:
            applications.add_app(session, "druva", DEMO_APP)
            # inSync's mappings filter on department, so the directory sends it.
            applications.map_attribute(session, DEMO_APP, "department", "department")
        app = applications.find_app(session, DEMO_APP)
        app.idm_state = "inactive"  # a new token: deactivate, update, reactivate (the spec)
        applications.configure_idm(
            session, DEMO_APP, box, base_url=sp["scim_base_url"], token=sp["token"]
        )
        api_key, _ = keys.create_key(session, "demo")
    facts = {"directory_api_key": api_key, "engine": engine}
    return engine, facts


def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the app half.")] = 8000,
    idp_port: Annotated[int, typer.Option("--idp-port", help="Port of the directory.")] = 8100,
    users: Annotated[int, typer.Option(help="Sample directory size (first run).")] = 300,
    as_json: JsonOption = False,
) -> None:
    """Run both halves on SQLite: a sample directory provisions into the app half over SCIM."""
    import threading

    from scimlink.idp import applications
    from scimlink.idp import idm
    from scimlink.idp.provisioning import operations
    from scimlink.web.idp_app import create_idp_app

    settings = Settings()
    root = f"http://{host}:{port}"
    sp_app, sp = _app_half(settings, root)
    _serve(sp_app, host, port)
    engine, directory_facts = _directory(settings, users, sp)
    _serve(create_idp_app(engine), host, idp_port)
    directory_api = f"http://{host}:{idp_port}/api/v1"
    verified = idm.activate(engine, DEMO_APP)
    if not verified.ok:
        raise fail(f"IdM verification failed: {verified.message}")
    with write_session(engine.sessions) as session:
        applications.bind_group(session, DEMO_APP, "All Staff")
    announcement = {
        "scim_base_url": sp["scim_base_url"],
        "token": sp["token"],
        "tenant_id": sp["tenant_id"],
        "admin_api": sp["admin_api"],
        "admin_api_key": sp["admin_api_key"],
        "directory_api": directory_api,
        "directory_api_key": directory_facts["directory_api_key"],
    }
    if as_json:
        emit(True, announcement, "")
        sys.stdout.flush()
        result = operations.sync(engine, DEMO_APP)
    else:
        console.print(
            f"[bold]scimlink demo[/bold] - both halves on SQLite ({settings.data_dir})",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            "App half (Druva inSync's role): SCIM mappings, first match wins:\n  "
            + "\n  ".join(sp["mappings"]),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        console.print(
            f"Directory: IdM of {DEMO_APP!r} {verified.message}; group 'All Staff' bound.",
            highlight=False,
        )
        with Progress(
            TextColumn("Provisioning"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("sync", total=None)
            result = operations.sync(engine, DEMO_APP, progress=lambda n: progress.advance(task, n))
            progress.update(task, total=result["processed"], completed=result["processed"])
    stop = threading.Event()
    threading.Thread(target=engine.run_forever, args=(stop,), daemon=True).start()
    if as_json:
        emit(True, {"provisioned": result["processed"]}, "")
        sys.stdout.flush()
    else:
        _summary(sp, announcement, result)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stop.set()


def _summary(sp: dict[str, Any], facts: dict[str, Any], result: dict[str, int]) -> None:
    import httpx

    profiles_in_use = httpx.get(
        f"{sp['admin_api']}/profiles",
        headers={"Authorization": f"Bearer {sp['admin_api_key']}"},
        timeout=10,
    ).json()
    placed = ", ".join(f"{p['name']}: {p['users']}" for p in profiles_in_use)
    console.print(
        f"Provisioned {result['processed']} change(s); users per inSync profile: {placed}.\n"
        f"App half   SCIM {facts['scim_base_url']}  token {facts['token']}\n"
        f"           admin API {facts['admin_api']}  key {facts['admin_api_key']}\n"
        f"Directory  admin API {facts['directory_api']}  key {facts['directory_api_key']}\n"
        "Try:\n"
        f"  SCIMLINK_DATA_DIR={os.environ.get('SCIMLINK_DATA_DIR', '~/.local/share/scimlink')} "
        f"scimlink idp user set alice.ng0 --displayname 'Alice N. Ng'   # arrives in the app\n"
        f"  scimlink idp log '{DEMO_APP}' --limit 5\n"
        f'  curl -H "Authorization: Bearer {facts["admin_api_key"]}" "{facts["admin_api"]}/audit?limit=5"\n'
        "Press Ctrl+C to stop.",
        highlight=False,
        soft_wrap=True,
    )
