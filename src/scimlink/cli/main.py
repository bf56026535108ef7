"""``scimlink``: run and administer both halves from the shell.

Every command takes ``--json`` for machine-readable output; errors are one readable line on
stderr and exit code 1 (2 for usage errors, as Typer does).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated
from typing import Any

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from scimlink.config import Settings
from scimlink.errors import ScimLinkError
from scimlink.sp import schema
from scimlink.sp import tenants
from scimlink.sp.scim_api import SCIM_PREFIX
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import write_session

app = typer.Typer(
    help="scimlink: SCIM 2.0 provisioning and SAML SSO, directory and app.", no_args_is_help=True
)
sp_app = typer.Typer(
    help="The app half (Druva inSync's role): SCIM service provider.", no_args_is_help=True
)
tenant_app = typer.Typer(help="Tenants of the app half.", no_args_is_help=True)
token_app = typer.Typer(
    help="SCIM tokens (valid 365 days; a new one revokes the previous one).", no_args_is_help=True
)
db_app = typer.Typer(help="The app half's database.", no_args_is_help=True)
app.add_typer(sp_app, name="sp")
sp_app.add_typer(tenant_app, name="tenant")
sp_app.add_typer(token_app, name="token")
sp_app.add_typer(db_app, name="db")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
console = Console()
errors = Console(stderr=True)


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        console.print(text, highlight=False)


@contextmanager
def _unit_of_work(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.sp_database)
    schema.upgrade(engine)
    try:
        with write_session(make_sessionmaker(engine)) as session:
            yield session
    except ScimLinkError as exc:
        errors.print(f"error: {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


def scim_base_url(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> str:
    root = settings.sp_public_url.rstrip("/") if settings.sp_public_url else f"http://{host}:{port}"
    return f"{root}{SCIM_PREFIX}"


@sp_app.command("serve")
def sp_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    as_json: JsonOption = False,
) -> None:
    """Serve the app half (migrates the database first)."""
    import uvicorn

    from scimlink.web.app import create_sp_app

    settings = Settings()
    engine = make_engine(settings.sp_database)
    schema.upgrade(engine)
    _emit(
        as_json,
        {
            "scim_base_url": scim_base_url(settings, host, port),
            "database": _redact(settings.sp_database),
        },
        f"SCIM base URL: {scim_base_url(settings, host, port)}",
    )
    uvicorn.run(
        create_sp_app(settings, engine=engine),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
    )


def _redact(url: str) -> str:
    """Database URLs may hold a password: never print it."""
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in credentials else url


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Migrate the app half's database to the latest schema."""
    settings = Settings()
    engine = make_engine(settings.sp_database)
    schema.upgrade(engine)
    engine.dispose()
    _emit(
        as_json,
        {"database": _redact(settings.sp_database), "revision": "head"},
        "Database is up to date.",
    )


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant (customer) name.")],
    region: Annotated[str, typer.Option(help="cloud or govcloud.")] = "cloud",
    as_json: JsonOption = False,
) -> None:
    """Create a tenant."""
    with _unit_of_work(Settings()) as session:
        tenant = tenants.create_tenant(session, name, region)
        data = {"id": tenant.id, "name": tenant.name, "region": tenant.region}
    _emit(
        as_json, data, f"Created tenant {data['name']} (id {data['id']}, region {data['region']})."
    )


@tenant_app.command("list")
def tenant_list(as_json: JsonOption = False) -> None:
    """List tenants."""
    with _unit_of_work(Settings()) as session:
        rows = [
            {"id": t.id, "name": t.name, "region": t.region} for t in tenants.list_tenants(session)
        ]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    for row in rows:
        console.print(f"{row['id']}  {row['name']}  ({row['region']})", highlight=False)
    if not rows:
        console.print("No tenants yet: scimlink sp tenant create NAME")


@token_app.command("generate")
def token_generate(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id or name.")],
    as_json: JsonOption = False,
) -> None:
    """Generate the tenant's SCIM token; it is shown once and the previous one stops working."""
    settings = Settings()
    with _unit_of_work(settings) as session:
        row = tenants.find_tenant(session, tenant)
        issued = tenants.generate_token(session, row.id)
    data = {
        "tenant_id": issued.tenant_id,
        "token": issued.token,
        "expires_at": issued.expires_at.isoformat(),
        "scim_base_url": scim_base_url(settings),
    }
    _emit(
        as_json,
        data,
        f"SCIM token (shown once, keep it secret):\n{issued.token}\n"
        f"Expires: {issued.expires_at:%Y-%m-%d %H:%M UTC}. The previous token, if any, no longer works.",
    )


DEMO_USERS = (
    ("alice.ng@example.com", "Alice Ng", "Engineering"),
    ("bob.martin@example.com", "Bob Martin", "Sales"),
    ("carol.diaz@example.com", "Carol Diaz", "Engineering"),
    ("dan.okafor@example.com", "Dan Okafor", "Finance"),
    ("erin.li@example.com", "Erin Li", "Marketing"),
)


def _provision_demo_users(base: str, token: str, *, quiet: bool = False) -> None:
    """Push sample users over real SCIM HTTP, as an IdP would, and show each answer."""
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        for user_name, display, department in DEMO_USERS:
            given, family = display.split(" ", 1)
            body = {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
                "displayName": display,
                "name": {"givenName": given, "familyName": family},
                "emails": [{"value": user_name, "type": "work", "primary": True}],
                "department": department,
                "active": True,
            }
            response = client.post("/Users", json=body)
            outcome = "created" if response.status_code == 201 else "already provisioned"
            if not quiet:
                console.print(
                    f"  POST /Users {user_name:<26} -> {response.status_code} {outcome}",
                    highlight=False,
                )
        total = client.get("/Users", params={"count": 0}).json()["totalResults"]
    if not quiet:
        console.print(
            f"The demo tenant now has {total} users. Provision more with any SCIM client.",
            highlight=False,
        )


@app.command("demo")
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the app half.")] = 8000,
    as_json: JsonOption = False,
) -> None:
    """Run the demo: the app half with a demo tenant and sample users; prints its SCIM URL and a token."""
    import threading
    import time

    import uvicorn

    from scimlink.web.app import create_sp_app

    settings = Settings()
    engine = make_engine(settings.sp_database)
    schema.upgrade(engine)
    with write_session(make_sessionmaker(engine)) as session:
        try:
            tenant = tenants.find_tenant(session, "demo")
        except ScimLinkError:
            tenant = tenants.create_tenant(session, "demo")
        issued = tenants.generate_token(session, tenant.id)
    base = scim_base_url(settings, host, port)
    server = uvicorn.Server(
        uvicorn.Config(
            create_sp_app(settings, engine=engine), host=host, port=port, log_level="warning"
        )
    )

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        if as_json:
            _emit(True, {"scim_base_url": base, "token": issued.token, "tenant_id": tenant.id}, "")
            sys.stdout.flush()
            _provision_demo_users(base, issued.token, quiet=True)
            return
        console.print(
            f"[bold]scimlink demo[/bold] - app half on SQLite ({settings.sp_database})\n"
            f"SCIM base URL: {base}\nToken (shown once): {issued.token}",
            highlight=False,
            soft_wrap=True,
        )
        _provision_demo_users(base, issued.token)
        console.print(
            f'Try: curl -H "Authorization: Bearer {issued.token}" "{base}/Users?filter=department%20eq%20%22Engineering%22"\n'
            "Press Ctrl+C to stop.",
            highlight=False,
            soft_wrap=True,
        )

    threading.Thread(target=announce, daemon=True).start()
    server.run()


def main() -> None:
    app()
