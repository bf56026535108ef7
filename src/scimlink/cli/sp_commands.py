"""``scimlink sp ...``: administer the app half's tenants from the shell.

Each command is one :class:`~scimlink.sp.administration.Administration` call in one transaction,
the same call the admin API makes: the same role checks and the same audit entries. Without
``scimlink sp --admin EMAIL`` the CLI acts as the server operator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated
from typing import Any

import typer

from scimlink.cli.common import ACTING
from scimlink.cli.common import JsonOption
from scimlink.cli.common import TenantOption
from scimlink.cli.common import administration
from scimlink.cli.common import console
from scimlink.cli.common import emit
from scimlink.cli.common import emit_rows
from scimlink.cli.common import fail
from scimlink.cli.common import unit_of_work
from scimlink.config import Settings
from scimlink.sp import tenants
from scimlink.sp.roles import ROLE_TITLES

sp_app = typer.Typer(
    help="The app half (Druva inSync's role): SCIM service provider.", no_args_is_help=True
)


@sp_app.callback()
def sp_main(
    admin: Annotated[
        str | None,
        typer.Option(
            "--admin",
            envvar="SCIMLINK_ADMIN",
            help="Act as this administrator (e-mail), with its role. Default: the operator.",
        ),
    ] = None,
) -> None:
    """The app half (Druva inSync's role): SCIM service provider."""
    ACTING["admin"] = admin


def _group(name: str, help_text: str) -> typer.Typer:
    group = typer.Typer(help=help_text, no_args_is_help=True)
    sp_app.add_typer(group, name=name)
    return group


tenant_app = _group("tenant", "Tenants: create, list, show.")
provisioning_app = _group(
    "provisioning", "The provisioning method: manual (default), SCIM or AD/LDAP."
)
token_app = _group(
    "token", "SCIM tokens: valid 365 days; a new one revokes the previous one (or after a grace)."
)
ldap_app = _group("ldap", "AD/LDAP accounts and mappings (modelled for the SCIM guards).")
ldap_account_app = typer.Typer(help="AD/LDAP accounts.", no_args_is_help=True)
ldap_mapping_app = typer.Typer(help="AD/LDAP mappings.", no_args_is_help=True)
ldap_app.add_typer(ldap_account_app, name="account")
ldap_app.add_typer(ldap_mapping_app, name="mapping")
mapping_app = _group(
    "mapping", "SCIM mappings: which users SCIM may create, with which profile and storage."
)
profile_app = _group("profile", "Profiles (user limit, preserved-user auto-delete period).")
storage_app = _group("storage", "Storages (region, health).")
user_app = _group("user", "Accounts: list, add, show, preserve, activate, delete.")
admin_app = _group("admin", "Administrators (roles, passwords) and their API keys.")
key_app = typer.Typer(help="Admin API keys (shown once; stored as hashes).", no_args_is_help=True)
admin_app.add_typer(key_app, name="key")
audit_app = _group("audit", "The audit trail of admin and SCIM changes.")
mail_app = _group("mail", "The mail outbox: activation e-mails and token reminders.")
jobs_app = _group("jobs", "Scheduled jobs: auto-delete of preserved users, reminders, mail.")
db_app = _group("db", "The app half's database.")


def _iso(value: Any) -> str:
    return str(value).replace("T", " ")[:16] if value else "-"


# -- tenants -------------------------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant (customer) name.")],
    region: Annotated[str, typer.Option(help="cloud or govcloud.")] = "cloud",
    as_json: JsonOption = False,
) -> None:
    """Create a tenant (manual provisioning, a default profile and storage)."""
    settings = Settings()
    with unit_of_work(settings) as session:
        tenant = tenants.create_tenant(session, name, region)
        data = {
            "id": tenant.id,
            "name": tenant.name,
            "region": tenant.region,
            "provisioning": tenant.provisioning,
            "scim_base_url": tenants.scim_base_url(tenant.region, settings.sp_scim_urls()),
        }
    emit(
        as_json,
        data,
        f"Created tenant {data['name']} (id {data['id']}, region {data['region']}). "
        f"It provisions users manually; to use SCIM: scimlink sp provisioning use-scim "
        f"--tenant {data['id']}",
    )


@tenant_app.command("list")
def tenant_list(as_json: JsonOption = False) -> None:
    """List tenants with their region, provisioning method and SCIM base URL."""
    settings = Settings()
    urls = settings.sp_scim_urls()
    with unit_of_work(settings) as session:
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "region": t.region,
                "provisioning": t.provisioning,
                "scim_base_url": tenants.scim_base_url(t.region, urls),
            }
            for t in tenants.list_tenants(session)
        ]
    emit_rows(
        as_json,
        rows,
        lambda r: (
            f"{r['id']}  {r['name']}  ({r['region']}, {r['provisioning']})  {r['scim_base_url']}"
        ),
        empty="No tenants yet: scimlink sp tenant create NAME",
    )


@tenant_app.command("show")
def tenant_show(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """The tenant's summary: region, SCIM base URL, provisioning, token expiry, licenses."""
    with administration(tenant) as admin:
        data = admin.overview()
    lines = [
        f"{data['name']} (id {data['id']}, region {data['region']})",
        f"Provisioning: {data['provisioning']}",
        f"SCIM base URL: {data['scim_base_url']}",
        f"Token grace window: {data['token_grace_hours']} hours",
        *(_token_line(t) for t in data["tokens"]),
        f"Licenses in use: {data['licenses']['active']} active, "
        f"{data['licenses']['preserved']} preserved (no license).",
    ]
    emit(as_json, data, "\n".join(lines))


# -- provisioning method -------------------------------------------------------------------------


def _switch(tenant: str, method: str, as_json: bool) -> None:
    with administration(tenant) as admin:
        data = admin.switch_provisioning(method)
    revoked = (
        f" {data['tokens_revoked']} SCIM token(s) stopped working."
        if data["tokens_revoked"]
        else ""
    )
    emit(as_json, data, f"Provisioning: {data['previous']} -> {data['provisioning']}.{revoked}")


@provisioning_app.command("show")
def provisioning_show(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """Show the tenant's provisioning method."""
    with administration(tenant) as admin:
        data = admin.overview()
    emit(as_json, {"provisioning": data["provisioning"]}, f"Provisioning: {data['provisioning']}")


@provisioning_app.command("use-scim")
def provisioning_use_scim(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """Users > Deployment > Use SCIM > Confirm (refused while anything of AD/LDAP remains)."""
    _switch(tenant, "scim", as_json)


@provisioning_app.command("use-manual")
def provisioning_use_manual(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """Provision users by hand; SCIM tokens stop working at once."""
    _switch(tenant, "manual", as_json)


@provisioning_app.command("use-ldap")
def provisioning_use_ldap(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """Manage users from AD/LDAP (refused while SCIM-managed users exist)."""
    _switch(tenant, "ldap", as_json)


# -- SCIM tokens ---------------------------------------------------------------------------------


def _token_line(token: dict[str, Any]) -> str:
    if token["current"]:
        return (
            f"Token {token['hint']}: expires {_iso(token['expires_at'])} UTC "
            f"({token['days_left']} days left)"
        )
    return f"Token {token['hint']}: previous token, works until {_iso(token['valid_until'])} UTC"


@token_app.command("generate")
def token_generate(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """Generate the tenant's SCIM token; it is shown once and the previous one stops working."""
    with administration(tenant) as admin:
        data = admin.generate_token()
    previous = (
        f"The previous token works until {_iso(data['previous_valid_until'])} UTC (grace window)."
        if data["previous_valid_until"]
        else "The previous token, if any, no longer works."
    )
    emit(
        as_json,
        data,
        f"SCIM token (shown once, keep it secret):\n{data['token']}\n"
        f"Expires: {_iso(data['expires_at'])} UTC. {previous}\n"
        f"SCIM base URL: {data['scim_base_url']}",
    )


@token_app.command("list")
def token_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """Tokens that still work, with their expiry (never the token itself)."""
    with administration(tenant) as admin:
        rows = admin.tokens()
    emit_rows(as_json, rows, _token_line, empty="No working SCIM token.")


@token_app.command("grace")
def token_grace(
    tenant: TenantOption,
    hours: Annotated[int, typer.Option("--hours", help="0 turns the grace window off.")],
    as_json: JsonOption = False,
) -> None:
    """Opt in to rotation with a grace window: the previous token works N hours more."""
    with administration(tenant) as admin:
        data = admin.set_token_grace(hours)
    emit(as_json, data, f"Token grace window: {hours} hours.")


# -- AD/LDAP -------------------------------------------------------------------------------------


@ldap_account_app.command("add")
def ldap_account_add(
    tenant: TenantOption,
    name: Annotated[str, typer.Argument(help="Account name.")],
    host: Annotated[str, typer.Option("--host", help="Directory server host.")],
    as_json: JsonOption = False,
) -> None:
    """Add an AD/LDAP account (the tenant must use AD/LDAP)."""
    with administration(tenant) as admin:
        data = admin.add_ldap_account(name, host)
    emit(as_json, data, f"Added AD/LDAP account {data['name']} ({data['host']}).")


@ldap_account_app.command("list")
def ldap_account_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List AD/LDAP accounts."""
    with administration(tenant) as admin:
        rows = admin.ldap_accounts()
    emit_rows(as_json, rows, lambda r: f"{r['name']}  {r['host']}", empty="No AD/LDAP accounts.")


@ldap_account_app.command("delete")
def ldap_account_delete(
    tenant: TenantOption,
    name: Annotated[str, typer.Argument(help="Account id or name.")],
    as_json: JsonOption = False,
) -> None:
    """Delete an AD/LDAP account."""
    with administration(tenant) as admin:
        data = admin.delete_ldap_account(name)
    emit(as_json, data, f"Deleted AD/LDAP account {data['deleted']}.")


@ldap_mapping_app.command("add")
def ldap_mapping_add(
    tenant: TenantOption,
    name: Annotated[str, typer.Argument(help="Mapping name.")],
    account: Annotated[str | None, typer.Option("--account", help="AD/LDAP account.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add an AD/LDAP mapping (the tenant must use AD/LDAP)."""
    with administration(tenant) as admin:
        data = admin.add_ldap_mapping(name, account, profile)
    emit(as_json, data, f"Added AD/LDAP mapping {data['name']} -> profile {data['profile']}.")


@ldap_mapping_app.command("list")
def ldap_mapping_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List AD/LDAP mappings."""
    with administration(tenant) as admin:
        rows = admin.ldap_mappings()
    emit_rows(
        as_json,
        rows,
        lambda r: f"{r['name']}  account {r['account']} -> profile {r['profile']}",
        empty="No AD/LDAP mappings.",
    )


@ldap_mapping_app.command("delete")
def ldap_mapping_delete(
    tenant: TenantOption,
    name: Annotated[str, typer.Argument(help="Mapping id or name.")],
    as_json: JsonOption = False,
) -> None:
    """Delete an AD/LDAP mapping."""
    with administration(tenant) as admin:
        data = admin.delete_ldap_mapping(name)
    emit(as_json, data, f"Deleted AD/LDAP mapping {data['deleted']}.")


# -- SCIM mappings -------------------------------------------------------------------------------


def mapping_line(data: dict[str, Any]) -> str:
    criteria = data["criteria"]
    shown = (
        criteria
        if isinstance(criteria, str)
        else f"{criteria['attribute']} in {criteria['values']}"
    )
    quota = f", quota {data['quota_gb']} GB" if data["quota_gb"] is not None else ""
    email = ", activation e-mail" if data["send_activation_email"] else ""
    return (
        f"{data['priority']}. {data['name']}: {shown} -> profile {data['profile']}, "
        f"storage {data['storage']}{quota}{email}"
    )


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
    with administration(tenant) as admin:
        data = admin.create_mapping(
            name,
            any_user=any_user,
            attribute=attribute,
            values=values,
            profile=profile,
            storage=storage,
            quota_gb=quota,
            activation_email=activation_email,
        )
    emit(as_json, data, f"Created SCIM mapping {mapping_line(data)}")


@mapping_app.command("list")
def mapping_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List SCIM mappings in priority order (the first match wins)."""
    with administration(tenant) as admin:
        rows = admin.mappings()
    emit_rows(
        as_json,
        rows,
        mapping_line,
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
    with administration(tenant) as admin:
        data = admin.edit_mapping(
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
    emit(as_json, data, f"Updated SCIM mapping {mapping_line(data)}")


@mapping_app.command("move")
def mapping_move(
    tenant: TenantOption,
    mapping: Annotated[str, typer.Argument(help="Mapping id or name.")],
    position: Annotated[int, typer.Option("--to", help="New priority (1 = first).")],
    as_json: JsonOption = False,
) -> None:
    """Change a mapping's priority."""
    with administration(tenant) as admin:
        rows = admin.move_mapping(mapping, position)
    emit_rows(as_json, rows, mapping_line)


@mapping_app.command("delete")
def mapping_delete(
    tenant: TenantOption,
    mapping: Annotated[str, typer.Argument(help="Mapping id or name.")],
    as_json: JsonOption = False,
) -> None:
    """Delete a mapping; the users it placed keep their profile and storage."""
    with administration(tenant) as admin:
        data = admin.delete_mapping(mapping)
    emit(
        as_json,
        data,
        f"Deleted SCIM mapping {data['deleted']}; its users keep their configuration.",
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
        raise fail("give either --body or --user", 2)
    payload = _json_argument(body) if body is not None else None
    with administration(tenant) as admin:
        data = admin.evaluate(payload, user)
    text = data["explanation"]
    if data["outcome"] == "create":
        text += (
            f"\n=> created by mapping {data['mapping']} "
            f"(profile {data['profile']}, storage {data['storage']})"
        )
    elif data["outcome"] in ("adopt", "reactivate"):
        text += f"\n=> {data['outcome']}d (profile {data['profile']}, storage {data['storage']})"
    emit(as_json, data, text)


def _json_argument(value: str) -> dict[str, Any]:
    try:
        raw = Path(value[1:]).read_text() if value.startswith("@") else value
        payload = json.loads(raw)
    except OSError as exc:
        raise fail(f"cannot read {value[1:]}: {exc.strerror}") from None
    except ValueError as exc:
        raise fail(f"--body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise fail("--body must be a JSON object (a SCIM user)")
    return payload


# -- profiles and storages -----------------------------------------------------------------------


def _profile_line(row: dict[str, Any]) -> str:
    limit = f"max {row['max_users']}" if row["max_users"] is not None else "no limit"
    default = " (default)" if row["default"] else ""
    delete = (
        f", preserved users deleted after {row['auto_delete_days']} days"
        if row["auto_delete_days"]
        else ""
    )
    used = f"{row['users']} users, " if "users" in row else ""
    return f"{row['name']}{default}: {used}{limit}{delete}"


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
    with administration(tenant) as admin:
        data = admin.create_profile(name, max_users, auto_delete_days)
    emit(as_json, data, f"Created profile {_profile_line(data)}.")


@profile_app.command("edit")
def profile_edit(
    tenant: TenantOption,
    profile: Annotated[str, typer.Argument(help="Profile id or name.")],
    name: Annotated[str | None, typer.Option("--name", help="New name.")] = None,
    max_users: Annotated[int | None, typer.Option("--max-users", help="User limit.")] = None,
    no_limit: Annotated[bool, typer.Option("--no-limit", help="Remove the user limit.")] = False,
    auto_delete_days: Annotated[
        int | None, typer.Option("--auto-delete-days", help="Delete preserved users after N days.")
    ] = None,
    no_auto_delete: Annotated[
        bool, typer.Option("--no-auto-delete", help="Keep preserved users indefinitely.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Rename a profile or change its user limit or auto-delete period."""
    with administration(tenant) as admin:
        data = admin.edit_profile(
            profile,
            name=name,
            max_users=max_users,
            preserved_auto_delete_days=auto_delete_days,
            clear_max_users=no_limit,
            clear_auto_delete=no_auto_delete,
        )
    emit(as_json, data, f"Updated profile {_profile_line(data)}.")


@profile_app.command("list")
def profile_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List profiles with their licenses in use."""
    with administration(tenant) as admin:
        rows = admin.profiles()
    emit_rows(as_json, rows, _profile_line)


def _storage_line(row: dict[str, Any]) -> str:
    state = "healthy" if row["healthy"] else "UNHEALTHY"
    default = " (default)" if row["default"] else ""
    return f"{row['name']}{default}: {row['region']}, {state}"


@storage_app.command("create")
def storage_create(
    tenant: TenantOption,
    name: Annotated[str, typer.Argument(help="Storage name.")],
    region: Annotated[str, typer.Option("--region", help="Storage region.")],
    as_json: JsonOption = False,
) -> None:
    """Create a storage."""
    with administration(tenant) as admin:
        data = admin.create_storage(name, region)
    emit(as_json, data, f"Created storage {data['name']} in {data['region']}.")


@storage_app.command("list")
def storage_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List storages."""
    with administration(tenant) as admin:
        rows = admin.storages()
    emit_rows(as_json, rows, _storage_line)


@storage_app.command("set-health")
def storage_set_health(
    tenant: TenantOption,
    name: Annotated[str, typer.Argument(help="Storage id or name.")],
    healthy: Annotated[bool, typer.Option("--healthy/--unhealthy")],
    as_json: JsonOption = False,
) -> None:
    """Mark a storage healthy or unhealthy (an unhealthy storage takes no new users)."""
    with administration(tenant) as admin:
        data = admin.set_storage_health(name, healthy)
    emit(
        as_json,
        data,
        f"Storage {data['name']} is now {'healthy' if data['healthy'] else 'unhealthy'}.",
    )


# -- accounts ------------------------------------------------------------------------------------


def account_line(data: dict[str, Any]) -> str:
    state = data["state"] if data["state"] == "active" else f"preserved by {data['preserved_by']}"
    gone = ", deleted in the IdP" if data["deleted_in_idp"] else ""
    return (
        f"{data['userName']}  {state}{gone}  ({data['managed_by']}, profile {data['profile']}, "
        f"storage {data['storage']}, id {data['id']})"
    )


@user_app.command("list")
def user_list(
    tenant: TenantOption,
    state: Annotated[str | None, typer.Option("--state", help="active or preserved.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many.")] = 100,
    after: Annotated[
        str | None, typer.Option("--after", help="Continue after this user id.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List accounts with their state, and the licenses in use."""
    if state not in (None, "active", "preserved"):
        raise fail("--state is active or preserved", 2)
    with administration(tenant) as admin:
        data = admin.users(state, limit, after)
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
        return
    for row in data["users"]:
        console.print(account_line(row), highlight=False, soft_wrap=True, markup=False)
    counts = data["licenses"]
    console.print(
        f"Licenses in use: {counts['active']} active; {counts['preserved']} preserved (no license)."
    )


@user_app.command("add")
def user_add(
    tenant: TenantOption,
    email: Annotated[str, typer.Argument(help="The user's e-mail address.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    profile: Annotated[str | None, typer.Option("--profile")] = None,
    storage: Annotated[str | None, typer.Option("--storage")] = None,
    quota: Annotated[int | None, typer.Option("--quota", help="Quota in GB.")] = None,
    ldap: Annotated[
        bool, typer.Option("--ldap", help="Managed by AD/LDAP (tenant must use AD/LDAP).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add an account by hand; SCIM adopts it when the IdP provisions the same e-mail."""
    with administration(tenant) as admin:
        data = admin.add_user(
            email,
            name,
            profile=profile,
            storage=storage,
            quota_gb=quota,
            managed_by="ldap" if ldap else "manual",
        )
    emit(as_json, data, f"Added {account_line(data)}")


UserArgument = Annotated[str, typer.Argument(help="The user's id or userName.")]


@user_app.command("show")
def user_show(tenant: TenantOption, user: UserArgument, as_json: JsonOption = False) -> None:
    """Show one account."""
    with administration(tenant) as admin:
        data = admin.user(user)
    emit(as_json, data, account_line(data))


@user_app.command("preserve")
def user_preserve(tenant: TenantOption, user: UserArgument, as_json: JsonOption = False) -> None:
    """Preserve an account: license released, data kept; the IdP cannot reactivate it."""
    with administration(tenant) as admin:
        data = admin.preserve_user(user)
    emit(as_json, data, account_line(data))


@user_app.command("activate")
def user_activate(tenant: TenantOption, user: UserArgument, as_json: JsonOption = False) -> None:
    """Make a preserved account Active again."""
    with administration(tenant) as admin:
        data = admin.activate_user(user)
    emit(as_json, data, account_line(data))


@user_app.command("delete")
def user_delete(tenant: TenantOption, user: UserArgument, as_json: JsonOption = False) -> None:
    """Delete an account and its data for good."""
    with administration(tenant) as admin:
        data = admin.delete_user(user)
    emit(as_json, data, f"Deleted {data['deleted']} and its data.")


# -- administrators and API keys -----------------------------------------------------------------


def _read_password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise fail("--password-stdin: no password on standard input")
    return password


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


def _admin_line(row: dict[str, Any]) -> str:
    password = "" if row["has_password"] else ", no password (API keys only)"
    return f"{row['email']}  {ROLE_TITLES.get(row['role'], row['role'])}{password}"


@admin_app.command("create")
def admin_create(
    tenant: TenantOption,
    email: Annotated[str, typer.Argument(help="The administrator's e-mail.")],
    role: Annotated[
        str,
        typer.Option("--role", help="druva-cloud-admin, insync-cloud-admin or profile-admin."),
    ],
    password_stdin: PasswordStdin = False,
    as_json: JsonOption = False,
) -> None:
    """Create an administrator (password stored as an argon2 hash)."""
    password = _read_password(password_stdin)
    with administration(tenant) as admin:
        data = admin.create_admin(email, role, password)
    emit(as_json, data, f"Created administrator {_admin_line(data)}.")


@admin_app.command("list")
def admin_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List administrators and their roles."""
    with administration(tenant) as admin:
        rows = admin.admins()
    emit_rows(as_json, rows, _admin_line, empty="No administrators.")


@admin_app.command("set-role")
def admin_set_role(
    tenant: TenantOption,
    email: Annotated[str, typer.Argument(help="The administrator's e-mail or id.")],
    role: Annotated[str, typer.Option("--role")],
    as_json: JsonOption = False,
) -> None:
    """Change an administrator's role."""
    with administration(tenant) as admin:
        data = admin.set_admin_role(email, role)
    emit(as_json, data, f"{_admin_line(data)}.")


@admin_app.command("set-password")
def admin_set_password(
    tenant: TenantOption,
    email: Annotated[str, typer.Argument(help="The administrator's e-mail or id.")],
    as_json: JsonOption = False,
) -> None:
    """Set an administrator's password, read from standard input."""
    password = _read_password(True)
    assert password is not None
    with administration(tenant) as admin:
        data = admin.set_admin_password(email, password)
    emit(as_json, data, f"Password set for {data['email']}.")


@admin_app.command("delete")
def admin_delete(
    tenant: TenantOption,
    email: Annotated[str, typer.Argument(help="The administrator's e-mail or id.")],
    as_json: JsonOption = False,
) -> None:
    """Delete an administrator and its API keys."""
    with administration(tenant) as admin:
        data = admin.delete_admin(email)
    emit(as_json, data, f"Deleted administrator {data['deleted']}.")


def _key_line(row: dict[str, Any]) -> str:
    revoked = f", revoked {_iso(row['revoked_at'])}" if row["revoked_at"] else ""
    return f"{row['id']}  {row['hint']}  {row['name']}  ({row['admin']}{revoked})"


@key_app.command("create")
def key_create(
    tenant: TenantOption,
    admin_email: Annotated[str, typer.Option("--for", help="The administrator the key acts as.")],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "API key",
    as_json: JsonOption = False,
) -> None:
    """Create an admin API key; it is shown once."""
    with administration(tenant) as admin:
        data = admin.create_key(admin_email, name)
    emit(
        as_json,
        data,
        f"Admin API key for {data['admin']} (shown once, keep it secret):\n{data['key']}",
    )


@key_app.command("list")
def key_list(tenant: TenantOption, as_json: JsonOption = False) -> None:
    """List admin API keys (hints only)."""
    with administration(tenant) as admin:
        rows = admin.keys()
    emit_rows(as_json, rows, _key_line, empty="No API keys.")


@key_app.command("revoke")
def key_revoke(
    tenant: TenantOption,
    key_id: Annotated[int, typer.Argument(help="The key's id (from key list).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke an admin API key at once."""
    with administration(tenant) as admin:
        data = admin.revoke_key(key_id)
    emit(as_json, data, f"Revoked {_key_line(data)}.")


# -- audit, mail, jobs ---------------------------------------------------------------------------


def _audit_line(row: dict[str, Any]) -> str:
    outcome = "" if row["outcome"] == "done" else f" [{row['outcome'].upper()}]"
    changes = ""
    if row["before"] or row["after"]:
        before, after = row["before"] or {}, row["after"] or {}
        diff = [
            f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
            for k in sorted(before.keys() | after.keys())
            if before.get(k) != after.get(k)
        ]
        changes = f" ({'; '.join(diff)})" if diff else ""
    detail = f" - {row['detail']}" if row["detail"] else ""
    return (
        f"{row['id']}  {_iso(row['at'])}  {row['actor']}  {row['action']}{outcome}  "
        f"{row['target']}{changes}{detail}  [{row['correlation_id']}]"
    )


@audit_app.command("list")
def audit_list(
    tenant: TenantOption,
    actor: Annotated[str | None, typer.Option("--actor", help="e.g. admin:ann@example.com")] = None,
    action: Annotated[str | None, typer.Option("--action", help="e.g. user.preserve")] = None,
    target: Annotated[str | None, typer.Option("--target", help="A target's id.")] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id")] = None,
    before: Annotated[
        int | None, typer.Option("--before", help="Entries older than this id (paging).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The audit trail, newest first: who, what, to what, before -> after, correlation id."""
    with administration(tenant) as admin:
        rows = admin.audit(
            actor=actor,
            action=action,
            target_id=target,
            correlation_id=correlation_id,
            before_id=before,
            limit=limit,
        )
    emit_rows(as_json, rows, _audit_line, empty="No audit entries match.")


def _mail_line(row: dict[str, Any]) -> str:
    state = (
        f"sent {_iso(row['sent_at'])}"
        if row["sent_at"]
        else f"pending ({row['attempts']} attempts"
        + (f", last error: {row['last_error']})" if row["last_error"] else ")")
    )
    return f"{row['id']}  {row['kind']}  to {row['recipient']}: {row['subject']}  [{state}]"


@mail_app.command("list")
def mail_list(
    tenant: TenantOption,
    pending: Annotated[bool, typer.Option("--pending", help="Only unsent mail.")] = False,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Mail in the outbox, newest first."""
    with administration(tenant) as admin:
        rows = admin.mail(pending, limit)
    emit_rows(as_json, rows, _mail_line, empty="The outbox is empty.")
