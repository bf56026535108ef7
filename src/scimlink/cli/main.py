"""``scimlink``: run and administer both halves from the shell.

Every command takes ``--json`` for machine-readable output; errors are one readable line on
stderr and exit code 1 (2 for usage errors, as Typer does).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from typing import Any

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from scimlink.config import Settings
from scimlink.errors import InvalidInputError
from scimlink.errors import ScimLinkError
from scimlink.scim.errors import ScimError
from scimlink.sp import lifecycle
from scimlink.sp import profiles
from scimlink.sp import schema
from scimlink.sp import scim_mappings
from scimlink.sp import tenants
from scimlink.sp.models import Profile
from scimlink.sp.models import ScimMapping
from scimlink.sp.models import Storage
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
mapping_app = typer.Typer(
    help="SCIM mappings: which users SCIM may create, with which profile and storage.",
    no_args_is_help=True,
)
profile_app = typer.Typer(
    help="Profiles (user limit, preserved-user auto-delete period).", no_args_is_help=True
)
storage_app = typer.Typer(help="Storages (region, health).", no_args_is_help=True)
sp_app.add_typer(mapping_app, name="mapping")
sp_app.add_typer(profile_app, name="profile")
sp_app.add_typer(storage_app, name="storage")
user_app = typer.Typer(
    help="Accounts: list, preserve, activate, delete (the management console's actions).",
    no_args_is_help=True,
)
sp_app.add_typer(user_app, name="user")
TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant id or name.")]

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


@contextmanager
def _tenant_unit(ref: str) -> Iterator[tuple[Session, str]]:
    """One unit of work on the tenant named by ``--tenant`` (id or name)."""
    with _unit_of_work(Settings()) as session:
        yield session, tenants.find_tenant(session, ref).id


def _emit_rows(
    as_json: bool,
    rows: list[dict[str, Any]],
    line: Callable[[dict[str, Any]], str],
    empty: str = "",
) -> None:
    """A listing: a JSON array, or one line per row (``empty`` when there are none)."""
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    for row in rows:
        console.print(line(row), highlight=False)
    if not rows and empty:
        console.print(empty, highlight=False)


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
    _emit_rows(
        as_json,
        rows,
        lambda row: f"{row['id']}  {row['name']}  ({row['region']})",
        empty="No tenants yet: scimlink sp tenant create NAME",
    )


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


def _mapping_data(session: Session, mapping: ScimMapping) -> dict[str, Any]:
    profile = session.get(Profile, mapping.profile_id)
    storage = session.get(Storage, mapping.storage_id)
    return {
        "id": mapping.id,
        "name": mapping.name,
        "priority": mapping.position,
        "criteria": "Allow any user"
        if mapping.any_user
        else {"attribute": mapping.attribute, "values": mapping.values},
        "profile": profile.name if profile else None,
        "storage": storage.name if storage else None,
        "quota_gb": mapping.quota_gb,
        "send_activation_email": mapping.send_activation_email,
    }


def _mapping_line(data: dict[str, Any]) -> str:
    criteria = data["criteria"]
    shown = (
        criteria
        if isinstance(criteria, str)
        else f"{criteria['attribute']} in {criteria['values']}"
    )
    quota = f", quota {data['quota_gb']} GB" if data["quota_gb"] is not None else ""
    return f"{data['priority']}. {data['name']}: {shown} -> profile {data['profile']}, storage {data['storage']}{quota}"


@mapping_app.command("create")
def mapping_create(
    tenant: TenantOption,
    name: Annotated[str, typer.Option("--name", help="Mapping name.")],
    any_user: Annotated[bool, typer.Option("--any", help="Allow any user.")] = False,
    attribute: Annotated[
        str | None, typer.Option("--attribute", help="SCIM attribute (case-sensitive).")
    ] = None,
    values: Annotated[
        str | None,
        typer.Option("--values", help="Values: comma-separated, or semicolon-separated."),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Profile (default: the tenant's).")
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="Storage (default: the tenant's).")
    ] = None,
    quota: Annotated[int | None, typer.Option("--quota", help="Quota per user, in GB.")] = None,
    activation_email: Annotated[
        bool, typer.Option("--activation-email", help="Send an activation e-mail.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a SCIM mapping at the bottom of the priority list."""
    with _tenant_unit(tenant) as (session, tenant_id):
        mapping = scim_mappings.create_mapping(
            session,
            tenant_id,
            name,
            any_user=any_user,
            attribute=attribute,
            values=values,
            profile=profile,
            storage=storage,
            quota_gb=quota,
            activation_email=activation_email,
        )
        data = _mapping_data(session, mapping)
    _emit(as_json, data, f"Created SCIM mapping {_mapping_line(data)}")


@mapping_app.command("list")
def mapping_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List SCIM mappings in priority order (the first match wins)."""
    with _tenant_unit(tenant) as (session, tenant_id):
        rows = [_mapping_data(session, m) for m in scim_mappings.list_mappings(session, tenant_id)]
    _emit_rows(
        as_json,
        rows,
        lambda row: _mapping_line(row),
        empty="No SCIM mappings: SCIM creates nobody. Add one, e.g. --any for 'Allow any user'.",
    )


@mapping_app.command("edit")
def mapping_edit(
    tenant: TenantOption,
    mapping: Annotated[str, typer.Argument(help="Mapping id or name.")],
    name: Annotated[str | None, typer.Option("--name", help="New name.")] = None,
    profile: Annotated[str | None, typer.Option("--profile")] = None,
    storage: Annotated[str | None, typer.Option("--storage")] = None,
    quota: Annotated[int | None, typer.Option("--quota")] = None,
    activation_email: Annotated[
        bool | None, typer.Option("--activation-email/--no-activation-email")
    ] = None,
    attribute: Annotated[
        str | None, typer.Option("--attribute", help="Refused: criteria cannot change.")
    ] = None,
    values: Annotated[
        str | None, typer.Option("--values", help="Refused: criteria cannot change.")
    ] = None,
    any_user: Annotated[
        bool, typer.Option("--any", help="Refused: criteria cannot change.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Change a mapping's name or inSync configuration (its criteria cannot change)."""
    with _tenant_unit(tenant) as (session, tenant_id):
        row = scim_mappings.edit_mapping(
            session,
            tenant_id,
            mapping,
            name=name,
            profile=profile,
            storage=storage,
            quota_gb=quota,
            activation_email=activation_email,
            attribute=attribute,
            values=values,
            any_user=any_user,
        )
        data = _mapping_data(session, row)
    _emit(as_json, data, f"Updated SCIM mapping {_mapping_line(data)}")


@mapping_app.command("move")
def mapping_move(
    tenant: TenantOption,
    mapping: Annotated[str, typer.Argument(help="Mapping id or name.")],
    position: Annotated[int, typer.Option("--to", help="New priority (1 = first).")],
    as_json: JsonOption = False,
) -> None:
    """Change a mapping's priority."""
    with _tenant_unit(tenant) as (session, tenant_id):
        rows = [
            _mapping_data(session, m)
            for m in scim_mappings.move_mapping(session, tenant_id, mapping, position)
        ]
    _emit_rows(as_json, rows, _mapping_line)


@mapping_app.command("delete")
def mapping_delete(
    tenant: TenantOption,
    mapping: Annotated[str, typer.Argument(help="Mapping id or name.")],
    as_json: JsonOption = False,
) -> None:
    """Delete a mapping; the users it placed keep their profile and storage."""
    with _tenant_unit(tenant) as (session, tenant_id):
        scim_mappings.delete_mapping(session, tenant_id, mapping)
    _emit(
        as_json,
        {"deleted": mapping},
        f"Deleted SCIM mapping {mapping}; its users keep their configuration.",
    )


@mapping_app.command("evaluate")
def mapping_evaluate(
    tenant: TenantOption,
    body: Annotated[
        str | None, typer.Option("--body", help="A SCIM user as JSON, or @FILE.")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="An existing user's id or userName.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show which mapping would place a user, and why, or exactly why it would be rejected."""
    if (body is None) == (user is None):
        errors.print("error: give either --body or --user", highlight=False)
        raise typer.Exit(2)
    with _tenant_unit(tenant) as (session, tenant_id):
        document = _document_for(session, tenant_id, body, user)
        data = scim_mappings.preview(session, tenant_id, document)
    text = data["explanation"] + (
        f"\n=> created by mapping {data['mapping']} (profile {data['profile']}, storage {data['storage']})"
        if data["matched"]
        else ""
    )
    _emit(as_json, data, text)


def _document_for(
    session: Session, tenant_id: str, body: str | None, user: str | None
) -> dict[str, Any]:
    if body is not None:
        raw = Path(body[1:]).read_text() if body.startswith("@") else body
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise InvalidInputError(f"--body is not JSON: {exc}") from None
        try:
            return scim_mappings.document_from_body(payload)
        except ScimError as exc:
            raise InvalidInputError(exc.detail) from None
    assert user is not None
    return scim_mappings.stored_document(session, tenant_id, user)


@profile_app.command("create")
def profile_create(
    tenant: TenantOption,
    name: Annotated[str, typer.Argument(help="Profile name.")],
    max_users: Annotated[int | None, typer.Option("--max-users", help="User limit.")] = None,
    auto_delete_days: Annotated[
        int | None, typer.Option("--auto-delete-days", help="Delete preserved users after N days.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a profile."""
    with _tenant_unit(tenant) as (session, tenant_id):
        row = profiles.create_profile(
            session,
            tenant_id,
            name,
            max_users=max_users,
            preserved_auto_delete_days=auto_delete_days,
        )
        data = {
            "id": row.id,
            "name": row.name,
            "max_users": row.max_users,
            "auto_delete_days": row.preserved_auto_delete_days,
        }
    _emit(as_json, data, f"Created profile {row.name}.")


@profile_app.command("list")
def profile_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List profiles with their licenses in use."""
    with _tenant_unit(tenant) as (session, tenant_id):
        rows = [
            {
                "id": p.id,
                "name": p.name,
                "default": p.is_default,
                "users": used,
                "max_users": p.max_users,
            }
            for p, used in profiles.list_profiles(session, tenant_id)
        ]
    _emit_rows(as_json, rows, _profile_line)


def _profile_line(row: dict[str, Any]) -> str:
    limit = row["max_users"] if row["max_users"] is not None else "no limit"
    default = " (default)" if row["default"] else ""
    return f"{row['name']}{default}: {row['users']} users, {limit}"


@storage_app.command("create")
def storage_create(
    tenant: TenantOption,
    name: Annotated[str, typer.Argument(help="Storage name.")],
    region: Annotated[str, typer.Option("--region", help="Storage region.")],
    as_json: JsonOption = False,
) -> None:
    """Create a storage."""
    with _tenant_unit(tenant) as (session, tenant_id):
        row = profiles.create_storage(session, tenant_id, name, region)
        data = {"id": row.id, "name": row.name, "region": row.region, "healthy": row.healthy}
    _emit(as_json, data, f"Created storage {row.name} in {row.region}.")


@storage_app.command("list")
def storage_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List storages."""
    with _tenant_unit(tenant) as (session, tenant_id):
        rows = [
            {
                "id": s.id,
                "name": s.name,
                "region": s.region,
                "healthy": s.healthy,
                "default": s.is_default,
            }
            for s in profiles.list_storages(session, tenant_id)
        ]
    _emit_rows(as_json, rows, _storage_line)


def _storage_line(row: dict[str, Any]) -> str:
    state = "healthy" if row["healthy"] else "UNHEALTHY"
    default = " (default)" if row["default"] else ""
    return f"{row['name']}{default}: {row['region']}, {state}"


@storage_app.command("set-health")
def storage_set_health(
    tenant: TenantOption,
    name: Annotated[str, typer.Argument(help="Storage id or name.")],
    healthy: Annotated[bool, typer.Option("--healthy/--unhealthy")],
    as_json: JsonOption = False,
) -> None:
    """Mark a storage healthy or unhealthy (an unhealthy storage takes no new users)."""
    with _tenant_unit(tenant) as (session, tenant_id):
        row = profiles.set_storage_health(session, tenant_id, name, healthy)
        data = {"name": row.name, "healthy": row.healthy}
    _emit(as_json, data, f"Storage {row.name} is now {'healthy' if row.healthy else 'unhealthy'}.")


def _account_data(account: lifecycle.Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "userName": account.user_name,
        "state": account.state,
        "preserved_by": account.preserved_by,
        "preserved_at": account.preserved_at.isoformat() if account.preserved_at else None,
        "deleted_in_idp": account.deleted_in_idp,
        "profile": account.profile,
    }


def _account_line(data: dict[str, Any]) -> str:
    state = data["state"] if data["state"] == "active" else f"preserved by {data['preserved_by']}"
    gone = ", deleted in the IdP" if data["deleted_in_idp"] else ""
    return f"{data['userName']}  {state}{gone}  (profile {data['profile']}, id {data['id']})"


@user_app.command("list")
def user_list(
    tenant: TenantOption,
    state: Annotated[str | None, typer.Option("--state", help="active or preserved.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List accounts with their state, and the licenses in use."""
    if state not in (None, "active", "preserved"):
        errors.print("error: --state is active or preserved", highlight=False)
        raise typer.Exit(2)
    with _tenant_unit(tenant) as (session, tenant_id):
        rows = [
            _account_data(a)
            for a in lifecycle.list_accounts(session, tenant_id, state=state, limit=limit)
        ]
        counts = lifecycle.license_counts(session, tenant_id)
    if as_json:
        sys.stdout.write(json.dumps({"users": rows, "licenses": counts}) + "\n")
        return
    for row in rows:
        console.print(_account_line(row), highlight=False)
    console.print(
        f"Licenses in use: {counts['active']} active; {counts['preserved']} preserved (no license)."
    )


def _account_command(action: str, tenant: str, user: str, as_json: bool) -> None:
    with _tenant_unit(tenant) as (session, tenant_id):
        if action == "delete":
            lifecycle.delete(session, tenant_id, user)
            data: dict[str, Any] = {"deleted": user}
            text = f"Deleted {user} and its data."
        else:
            account = (lifecycle.preserve if action == "preserve" else lifecycle.activate)(
                session, tenant_id, user
            )
            data = _account_data(account)
            text = _account_line(data)
    _emit(as_json, data, text)


UserArgument = Annotated[str, typer.Argument(help="The user's id or userName.")]


@user_app.command("preserve")
def user_preserve(tenant: TenantOption, user: UserArgument, as_json: JsonOption = False) -> None:
    """Preserve an account: license released, data kept; the IdP cannot reactivate it."""
    _account_command("preserve", tenant, user, as_json)


@user_app.command("activate")
def user_activate(tenant: TenantOption, user: UserArgument, as_json: JsonOption = False) -> None:
    """Make a preserved account Active again."""
    _account_command("activate", tenant, user, as_json)


@user_app.command("delete")
def user_delete(tenant: TenantOption, user: UserArgument, as_json: JsonOption = False) -> None:
    """Delete an account and its data for good."""
    _account_command("delete", tenant, user, as_json)


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
            _demo_policies(session, tenant.id)
        issued = tenants.generate_token(session, tenant.id)
        mapping_lines = [
            _mapping_line(_mapping_data(session, m))
            for m in scim_mappings.list_mappings(session, tenant.id)
        ]
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
        console.print(
            "SCIM mappings (first match wins):\n  " + "\n  ".join(mapping_lines), highlight=False
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
