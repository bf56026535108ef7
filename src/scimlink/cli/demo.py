"""``scimlink demo``: the app half on embedded SQLite with a demo tenant and sample users."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from scimlink.cli.common import JsonOption
from scimlink.cli.common import console
from scimlink.cli.common import emit
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
            placed = client.post("/Users/.evaluate", json=body).json().get("mapping", "no mapping")
            response = client.post("/Users", json=body)
            outcome = (
                f"created by mapping '{placed}'"
                if response.status_code == 201
                else "already provisioned"
            )
            if not quiet:
                console.print(
                    f"  POST /Users {user_name:<26} -> {response.status_code} {outcome}",
                    highlight=False,
                    soft_wrap=True,
                )
        total = client.get("/Users", params={"count": 0}).json()["totalResults"]
    if not quiet:
        console.print(
            f"The demo tenant now has {total} users. Provision more with any SCIM client.",
            highlight=False,
        )


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
    root = f"http://{host}:{port}"
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
        mapping_lines = [mapping_line(m) for m in admin.mappings()]
        if not any(a["email"] == DEMO_ADMIN for a in admin.admins()):
            admin.create_admin(DEMO_ADMIN, "druva-cloud-admin")
        api_key = admin.create_key(DEMO_ADMIN, "demo")["key"]
    base = issued["scim_base_url"]
    token = issued["token"]
    admin_api = f"{root}/insync/api/v1"
    server = uvicorn.Server(
        uvicorn.Config(
            create_sp_app(settings, engine=engine, default_root=root),
            host=host,
            port=port,
            log_level="warning",
        )
    )

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        if as_json:
            emit(
                True,
                {
                    "scim_base_url": base,
                    "token": token,
                    "tenant_id": tenant.id,
                    "admin_api": admin_api,
                    "admin_api_key": api_key,
                },
                "",
            )
            sys.stdout.flush()
            _provision_demo_users(base, token, quiet=True)
            return
        console.print(
            f"[bold]scimlink demo[/bold] - app half on SQLite ({settings.sp_database})\n"
            f"SCIM base URL: {base}\nToken (shown once): {token}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            "SCIM mappings (first match wins):\n  " + "\n  ".join(mapping_lines),
            highlight=False,
            soft_wrap=True,
        )
        _provision_demo_users(base, token)
        console.print(
            f"Admin API: {admin_api} (OpenAPI: {admin_api}/openapi.json)\n"
            f"Admin API key of {DEMO_ADMIN}, Druva Cloud administrator (shown once): {api_key}\n"
            f'Try: curl -H "Authorization: Bearer {token}" "{base}/Users?filter=department%20eq%20%22Engineering%22"\n'
            f'     curl -H "Authorization: Bearer {api_key}" "{admin_api}/audit?limit=5"\n'
            "Press Ctrl+C to stop.",
            highlight=False,
            soft_wrap=True,
        )

    threading.Thread(target=announce, daemon=True).start()
    server.run()
