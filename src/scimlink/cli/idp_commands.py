"""``scimlink idp ...``: the directory half (JumpCloud's role) from the shell.

Users, groups and applications are named by name or id. Every command takes ``--json``.
``idp serve`` serves the admin API and runs the provisioning engine in the same process, so one
process on SQLite is a complete directory; ``idp worker`` runs only the engine.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from typing import Any

import typer
from rich.progress import BarColumn
from rich.progress import MofNCompleteColumn
from rich.progress import Progress
from rich.progress import TextColumn
from rich.progress import TimeElapsedColumn
from sqlalchemy.orm import Session

from scimlink.cli.common import JsonOption
from scimlink.cli.common import console
from scimlink.cli.common import database_unit
from scimlink.cli.common import emit
from scimlink.cli.common import emit_rows
from scimlink.cli.common import errors
from scimlink.cli.common import fail
from scimlink.config import Settings
from scimlink.errors import ScimLinkError
from scimlink.idp import applications
from scimlink.idp import directory
from scimlink.idp import idm
from scimlink.idp import outbox
from scimlink.idp import schema
from scimlink.idp.provisioning import operations
from scimlink.idp.provisioning.engine import Engine
from scimlink.idp.provisioning.engine import EngineConfig
from scimlink.idp.secrets import SecretBox
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker

idp_app = typer.Typer(
    help="The directory half (JumpCloud's role): users, groups, applications, provisioning.",
    no_args_is_help=True,
)


def _group(name: str, help_text: str, parent: typer.Typer = idp_app) -> typer.Typer:
    group = typer.Typer(help=help_text, no_args_is_help=True)
    parent.add_typer(group, name=name)
    return group


user_app = _group("user", "Directory users (JumpCloud's properties).")
group_app = _group("group", "User groups and their members.")
app_app = _group("app", "Applications: catalog, attribute mapping, groups, Identity Management.")
idm_app = _group("idm", "An application's Identity Management (SCIM) connector.", app_app)
db_app = _group("db", "The directory's database.")

AppArgument = Annotated[str, typer.Argument(help="Application label or id.")]
UserArgument = Annotated[str, typer.Argument(help="Username, e-mail or id.")]
GroupArgument = Annotated[str, typer.Argument(help="Group name or id.")]


def secret_box(settings: Settings) -> SecretBox:
    if settings.idp_master_key:
        return SecretBox(settings.idp_master_key.encode())
    return SecretBox.from_file(settings.data_dir / "idp-master.key")


@contextmanager
def directory_unit(settings: Settings | None = None) -> Iterator[Session]:
    """One transaction on the directory's database (migrated first); errors become one line."""
    settings = settings or Settings()
    with database_unit(settings.idp_database, schema.upgrade) as session:
        yield session


@contextmanager
def provisioning_engine(settings: Settings | None = None) -> Iterator[Engine]:
    settings = settings or Settings()
    database = make_engine(settings.idp_database)
    schema.upgrade(database)
    try:
        yield Engine(
            make_sessionmaker(database),
            secret_box(settings),
            EngineConfig(timeout=settings.idp_scim_timeout),
        )
    except ScimLinkError as exc:
        raise fail(str(exc)) from None
    finally:
        database.dispose()


def _progress(*, enabled: bool = True) -> Progress:
    """A progress bar on stderr, so that stdout holds only the result (``--json`` stays JSON)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=False,
        disable=not enabled,
    )


# -- users ---------------------------------------------------------------------------------------


def _attributes(values: list[str] | None) -> dict[str, str | None]:
    parsed: dict[str, str | None] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise fail(f"--attribute takes NAME=VALUE, not {item!r}", 2)
        parsed[name.strip()] = value or None
    return parsed


def _properties(**given: Any) -> dict[str, Any]:
    names = {
        "email": "email",
        "firstname": "firstname",
        "lastname": "lastname",
        "displayname": "displayname",
        "employee_identifier": "employeeIdentifier",
        "department": "department",
        "job_title": "jobTitle",
        "company": "company",
        "location": "location",
        "cost_center": "costCenter",
        "state": "state",
    }
    return {names[k]: v for k, v in given.items() if k in names and v is not None}


def _user_line(row: dict[str, Any]) -> str:
    name = row.get("displayname") or " ".join(
        p for p in (row.get("firstname"), row.get("lastname")) if p
    )
    extra = f", {row['department']}" if row.get("department") else ""
    return f"{row['username']}  <{row['email']}>  {name}  [{row['state']}{extra}]  (id {row['id']})"


Text = Annotated[str | None, typer.Option()]


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Username.")],
    email: Annotated[str, typer.Option("--email", help="E-mail address.")],
    firstname: Text = None,
    lastname: Text = None,
    displayname: Text = None,
    employee_identifier: Annotated[str | None, typer.Option("--employee-identifier")] = None,
    department: Text = None,
    job_title: Annotated[str | None, typer.Option("--job-title")] = None,
    company: Text = None,
    location: Text = None,
    cost_center: Annotated[str | None, typer.Option("--cost-center")] = None,
    state: Annotated[str, typer.Option(help="activated, suspended or staged.")] = "activated",
    attribute: Annotated[
        list[str] | None, typer.Option("--attribute", help="Custom attribute NAME=VALUE.")
    ] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Add to this group.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read a password (for SSO) from stdin.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a user."""
    properties = _properties(
        email=email,
        firstname=firstname,
        lastname=lastname,
        displayname=displayname,
        employee_identifier=employee_identifier,
        department=department,
        job_title=job_title,
        company=company,
        location=location,
        cost_center=cost_center,
        state=state,
    )
    properties["username"] = username
    if attribute:
        properties["attributes"] = _attributes(attribute)
    if password_stdin:
        properties["password"] = sys.stdin.readline().rstrip("\r\n")
    with directory_unit() as session:
        user = directory.add_user(session, properties)
        for name in group or []:
            directory.add_members(session, name, [user.id])
        data = directory.user_view(user)
    emit(as_json, data, f"Added {_user_line(data)}")


@user_app.command("set")
def user_set(
    user: UserArgument,
    username: Annotated[str | None, typer.Option("--username")] = None,
    email: Text = None,
    firstname: Text = None,
    lastname: Text = None,
    displayname: Text = None,
    employee_identifier: Annotated[str | None, typer.Option("--employee-identifier")] = None,
    department: Text = None,
    job_title: Annotated[str | None, typer.Option("--job-title")] = None,
    company: Text = None,
    location: Text = None,
    cost_center: Annotated[str | None, typer.Option("--cost-center")] = None,
    attribute: Annotated[
        list[str] | None, typer.Option("--attribute", help="NAME=VALUE; NAME= removes it.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a user's properties; the applications it reaches are updated."""
    properties = _properties(
        email=email,
        firstname=firstname,
        lastname=lastname,
        displayname=displayname,
        employee_identifier=employee_identifier,
        department=department,
        job_title=job_title,
        company=company,
        location=location,
        cost_center=cost_center,
    )
    if username is not None:
        properties["username"] = username
    if attribute:
        properties["attributes"] = _attributes(attribute)
    if not properties:
        raise fail("nothing to change: give at least one property option", 2)
    with directory_unit() as session:
        change = directory.set_user(session, user, properties, "user updated")
        data = {**directory.user_view(change.user), "changed": change.changed}
    emit(
        as_json,
        data,
        f"Updated {data['username']}: {', '.join(change.changed) or 'nothing changed'}.",
    )


def _state(user: str, state: str, as_json: bool) -> None:
    with directory_unit() as session:
        change = directory.set_state(session, user, state)
        data = directory.user_view(change.user)
    emit(as_json, data, f"{data['username']} is {state}.")


@user_app.command("suspend")
def user_suspend(user: UserArgument, as_json: JsonOption = False) -> None:
    """Suspend a user: deactivated in every application."""
    _state(user, "suspended", as_json)


@user_app.command("activate")
def user_activate(user: UserArgument, as_json: JsonOption = False) -> None:
    """Activate a suspended or staged user: reactivated in its applications."""
    _state(user, "activated", as_json)


@user_app.command("delete")
def user_delete(user: UserArgument, as_json: JsonOption = False) -> None:
    """Delete a user: deactivated (or deleted) in every application it reached."""
    with directory_unit() as session:
        removed = directory.delete_user(session, user)
        data = {"deleted": removed.username, "id": removed.id}
    emit(as_json, data, f"Deleted {removed.username}.")


@user_app.command("list")
def user_list(
    state: Annotated[str | None, typer.Option(help="activated, suspended or staged.")] = None,
    group: Annotated[str | None, typer.Option(help="Only members of this group.")] = None,
    limit: Annotated[int, typer.Option()] = 100,
    after: Annotated[str | None, typer.Option(help="Continue after this user.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List users in creation order."""
    with directory_unit() as session:
        rows = [
            directory.user_view(u)
            for u in directory.list_users(
                session, state=state, group=group, after=after, limit=limit
            )
        ]
    emit_rows(as_json, rows, _user_line, empty="No users.")


@user_app.command("import")
def user_import(
    file: Annotated[
        Path, typer.Argument(help="A CSV or JSON file with JumpCloud's property names.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Import users from CSV or JSON (idempotent); prints a per-line validation report."""
    from scimlink.idp import importer

    settings = Settings()
    database = make_engine(settings.idp_database)
    schema.upgrade(database)
    try:
        records = importer.read_records(file)
        with _progress(enabled=not as_json) as progress:
            task = progress.add_task("Importing", total=len(records))
            report = importer.import_users(
                make_sessionmaker(database),
                records,
                on_progress=lambda n: progress.advance(task, n),
            )
    except ScimLinkError as exc:
        raise fail(str(exc)) from None
    finally:
        database.dispose()
    data = report.to_dict()
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        for error in report.errors:
            console.print(str(error), highlight=False, soft_wrap=True, markup=False)
        console.print(
            f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.failed} failed.",
            highlight=False,
        )
    if report.failed:
        raise typer.Exit(1)


# -- groups --------------------------------------------------------------------------------------


@group_app.command("create")
def group_create(
    name: Annotated[str, typer.Argument(help="Group name.")],
    description: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a user group."""
    with directory_unit() as session:
        group = directory.create_group(session, name, description)
        data = {"id": group.id, "name": group.name, "description": group.description}
    emit(as_json, data, f"Created group {group.name} (id {group.id}).")


@group_app.command("delete")
def group_delete(group: GroupArgument, as_json: JsonOption = False) -> None:
    """Delete a group; its members lose the applications it granted."""
    with directory_unit() as session:
        removed = directory.delete_group(session, group)
        data = {"deleted": removed.name}
    emit(as_json, data, f"Deleted group {removed.name}.")


@group_app.command("add-member")
def group_add_member(
    group: GroupArgument,
    users: Annotated[list[str], typer.Argument(help="Users to add.")],
    as_json: JsonOption = False,
) -> None:
    """Add users to a group (provisioned to the applications it is bound to)."""
    with directory_unit() as session:
        added = directory.add_members(session, group, users)
    emit(as_json, {"added": len(added)}, f"Added {len(added)} member(s).")


@group_app.command("remove-member")
def group_remove_member(
    group: GroupArgument,
    users: Annotated[list[str], typer.Argument(help="Users to remove.")],
    as_json: JsonOption = False,
) -> None:
    """Remove users from a group (deactivated where nothing else grants access)."""
    with directory_unit() as session:
        removed = directory.remove_members(session, group, users)
    emit(as_json, {"removed": len(removed)}, f"Removed {len(removed)} member(s).")


@group_app.command("list")
def group_list(as_json: JsonOption = False) -> None:
    """List groups with their member counts."""
    with directory_unit() as session:
        rows = [
            {"id": g.id, "name": g.name, "members": n, "description": g.description}
            for g, n in directory.list_groups(session)
        ]
    emit_rows(
        as_json,
        rows,
        lambda r: f"{r['name']}  {r['members']} member(s)  (id {r['id']})",
        empty="No groups.",
    )


# -- applications --------------------------------------------------------------------------------


def _bulk_text(data: dict[str, Any]) -> str:
    offered = data["idm"]["bulk_max_operations"]
    if not data["bulk_creates"]:
        return "one request per user (bulk off: scimlink idp app settings APP --bulk)"
    if not offered:
        return "one request per user (bulk on, but the application offers none)"
    return f"in bulk requests of up to {offered} users"


def _app_text(data: dict[str, Any]) -> str:
    idm_data = data["idm"]
    lines = [
        f"{data['label']} ({data['kind']}{', ' + data['region'] if data['region'] else ''}, id {data['id']})",
        f"  {data['description'] or '(no description)'}",
        f"  User portal: {'shown' if data['show_in_portal'] else 'hidden'}  "
        f"logo {data['logo_url'] or '(none)'}",
        f"  Identity Management: {idm_data['state']}  {idm_data['base_url'] or '(no base URL)'}  "
        f"token {idm_data['token'] or '(none)'}",
    ]
    if idm_data["detail"]:
        lines.append(f"  {idm_data['detail']}")
    if data.get("token_warning"):
        lines.append(f"  WARNING: {data['token_warning']}")
    lines.append(
        "  Attributes: "
        + ", ".join(f"{r['source']} -> {r['target']}" for r in data["attribute_map"])
    )
    lines.append(f"  Groups: {', '.join(data['groups']) or '(none: nobody is provisioned)'}")
    lines.append(f"  Creates: {_bulk_text(data)}")
    pending = data["pending"]
    lines.append(f"  Pending: {pending['due']} change(s)")
    if pending["held"]:
        lines.append(
            f"  {pending['held']} deactivation(s) wait for approval: "
            f"scimlink idp app approve {data['label']!r} (or reject)"
        )
    if data["quarantine_reason"]:
        lines.append(f"  QUARANTINED: {data['quarantine_reason']}")
    return "\n".join(lines)


def _view(session: Session, app: Any) -> dict[str, Any]:
    data = applications.app_view(session, app)
    data["token_warning"] = idm.expiry_warning(app.token_expires_at)
    return data


@app_app.command("add")
def app_add(
    kind: Annotated[str, typer.Argument(help="Catalog entry: druva or scim.")],
    label: Annotated[str, typer.Option("--label", help="Display label.")],
    region: Annotated[
        str | None, typer.Option("--region", help="Druva: cloud or govcloud.")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Override the IdM URL.")
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
    hide_in_portal: Annotated[bool, typer.Option("--hide-in-portal")] = False,
    logo_url: Annotated[str | None, typer.Option("--logo-url")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add an application from the catalog."""
    with directory_unit() as session:
        app = applications.add_app(
            session,
            kind,
            label,
            region=region,
            base_url=base_url,
            description=description,
            show_in_portal=not hide_in_portal,
            logo_url=logo_url,
        )
        data = _view(session, app)
    emit(as_json, data, _app_text(data))


@app_app.command("set")
def app_set(
    app: AppArgument,
    label: Annotated[str | None, typer.Option("--label", help="Display label.")] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Empty: the catalog's.")
    ] = None,
    show_in_portal: Annotated[
        bool | None,
        typer.Option("--show-in-portal/--hide-in-portal", help="Show it in the user portal."),
    ] = None,
    logo_url: Annotated[
        str | None, typer.Option("--logo-url", help="Empty: the catalog's.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change the label, description, portal visibility or logo (provisioning is unaffected)."""
    if label is None and description is None and show_in_portal is None and logo_url is None:
        raise fail(
            "nothing to change: give --label, --description, --show-in-portal, "
            "--hide-in-portal or --logo-url",
            2,
        )
    with directory_unit() as session:
        data = _view(
            session,
            applications.edit_app(
                session,
                app,
                label=label,
                description=description,
                show_in_portal=show_in_portal,
                logo_url=logo_url,
            ),
        )
    emit(as_json, data, _app_text(data))


@app_app.command("list")
def app_list(as_json: JsonOption = False) -> None:
    """List applications."""
    with directory_unit() as session:
        rows = [_view(session, a) for a in applications.list_apps(session)]
    emit_rows(
        as_json,
        rows,
        lambda r: (
            f"{r['label']}  ({r['kind']})  IdM {r['idm']['state']}  groups: {', '.join(r['groups']) or '-'}"
        ),
        empty="No applications: scimlink idp app add druva --label Druva",
    )


@app_app.command("show")
def app_show(app: AppArgument, as_json: JsonOption = False) -> None:
    """Show an application, its IdM state, mapping, groups and pending work."""
    with directory_unit() as session:
        data = _view(session, applications.find_app(session, app))
    emit(as_json, data, _app_text(data))


@app_app.command("delete")
def app_delete(app: AppArgument, as_json: JsonOption = False) -> None:
    """Delete an application (nothing more is sent to it)."""
    with directory_unit() as session:
        removed = applications.delete_app(session, app)
    emit(as_json, {"deleted": removed.label}, f"Deleted application {removed.label}.")


@app_app.command("map")
def app_map(
    app: AppArgument,
    source: Annotated[
        str, typer.Option("--source", help="Directory property, or attributes.NAME.")
    ],
    target: Annotated[str, typer.Option("--target", help="SCIM attribute path.")],
    as_json: JsonOption = False,
) -> None:
    """Map a directory property to a SCIM attribute (e.g. department -> department)."""
    with directory_unit() as session:
        data = _view(session, applications.map_attribute(session, app, source, target))
    emit(as_json, data, _app_text(data))


@app_app.command("unmap")
def app_unmap(
    app: AppArgument,
    target: Annotated[str, typer.Option("--target", help="SCIM attribute path.")],
    as_json: JsonOption = False,
) -> None:
    """Stop sending a SCIM attribute."""
    with directory_unit() as session:
        data = _view(session, applications.unmap_attribute(session, app, target))
    emit(as_json, data, _app_text(data))


@app_app.command("settings")
def app_settings(
    app: AppArgument,
    threshold: Annotated[
        int | None, typer.Option("--threshold", help="Hold mass deactivations above this.")
    ] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Calls per second.")] = None,
    deprovision: Annotated[
        str | None, typer.Option("--deprovision", help="deactivate or delete.")
    ] = None,
    bulk: Annotated[
        bool | None,
        typer.Option(
            "--bulk/--no-bulk",
            help="Send creates in SCIM bulk requests when the application offers bulk.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Safety and pacing: mass-deactivation threshold, concurrency, rate, deprovisioning, bulk."""
    with directory_unit() as session:
        data = _view(
            session,
            applications.settings(
                session,
                app,
                threshold=threshold,
                concurrency=concurrency,
                rate=rate,
                deprovision=deprovision,
                bulk_creates=bulk,
            ),
        )
    emit(as_json, data, _app_text(data))


@app_app.command("bind-group")
def app_bind_group(app: AppArgument, group: GroupArgument, as_json: JsonOption = False) -> None:
    """Provision the group's members to the application."""
    with directory_unit() as session:
        members = applications.bind_group(session, app, group)
    emit(as_json, {"members": members}, f"Bound; {members} member(s) will be provisioned.")


@app_app.command("unbind-group")
def app_unbind_group(app: AppArgument, group: GroupArgument, as_json: JsonOption = False) -> None:
    """Stop granting the application through the group (its members are deactivated)."""
    with directory_unit() as session:
        members, held = applications.unbind_group(session, app, group)
    note = (
        f" {held} deactivation(s) exceed the threshold and wait for approval "
        "(scimlink idp app approve)."
        if held
        else ""
    )
    emit(
        as_json,
        {"members": members, "held": held},
        f"Unbound; {members} member(s) re-checked.{note}",
    )


@app_app.command("approve")
def app_approve(app: AppArgument, as_json: JsonOption = False) -> None:
    """Release deactivations held by the mass-deactivation threshold."""
    with directory_unit() as session:
        released = outbox.approve(session, applications.find_app(session, app).id)
    emit(as_json, {"released": released}, f"Released {released} held deactivation(s).")


@app_app.command("reject")
def app_reject(app: AppArgument, as_json: JsonOption = False) -> None:
    """Drop held deactivations (those users stay as the application has them)."""
    with directory_unit() as session:
        dropped = outbox.reject(session, applications.find_app(session, app).id)
    emit(as_json, {"dropped": dropped}, f"Dropped {dropped} held deactivation(s).")


@app_app.command("links")
def app_links(
    app: AppArgument,
    state: Annotated[str | None, typer.Option(help="active, inactive or failed.")] = None,
    limit: Annotated[int, typer.Option()] = 100,
    as_json: JsonOption = False,
) -> None:
    """What the application holds per user, with the reason of any failure."""
    with directory_unit() as session:
        rows = operations.links(session, app, state=state, limit=limit)
    emit_rows(
        as_json,
        rows,
        lambda r: f"{r['user']}  {r['state']}  {r['remote_id'] or '-'}  {r['detail'] or ''}",
        empty="Nothing provisioned yet.",
    )


@idm_app.command("configure")
def idm_configure(
    app: AppArgument,
    base_url: Annotated[str | None, typer.Option("--base-url", help="The SCIM base URL.")] = None,
    token_key: Annotated[str | None, typer.Option("--token-key", help="The bearer token.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Set the base URL and token key (the token only while IdM is deactivated)."""
    settings = Settings()
    with directory_unit(settings) as session:
        configured = applications.configure_idm(
            session, app, secret_box(settings), base_url=base_url, token=token_key
        )
        data = _view(session, configured)
    emit(as_json, data, _app_text(data))


@idm_app.command("activate")
def idm_activate(app: AppArgument, as_json: JsonOption = False) -> None:
    """Verify the target (discovery and a harmless lookup), then start provisioning."""
    with provisioning_engine() as engine:
        result = idm.activate(engine, app)
    data = {
        "verified": result.ok,
        "message": result.message,
        "update_method": result.update_method,
        "token_expires_at": result.token_expires_at.isoformat()
        if result.token_expires_at
        else None,
    }
    if not result.ok:
        if as_json:
            sys.stdout.write(json.dumps(data) + "\n")
        raise fail(f"verification failed: {result.message}")
    warning = idm.expiry_warning(result.token_expires_at)
    emit(as_json, data, result.message + (f"\nWARNING: {warning}" if warning else ""))


@idm_app.command("deactivate")
def idm_deactivate(app: AppArgument, as_json: JsonOption = False) -> None:
    """Stop provisioning; pending changes are kept and sent after reactivation."""
    settings = Settings()
    database = make_engine(settings.idp_database)
    schema.upgrade(database)
    try:
        waiting = idm.deactivate(make_sessionmaker(database), app)
    except ScimLinkError as exc:
        raise fail(str(exc)) from None
    finally:
        database.dispose()
    emit(as_json, {"pending": waiting}, f"Deactivated; {waiting} pending change(s) kept.")


# -- provisioning ------------------------------------------------------------------------------


@idp_app.command("sync")
def sync(
    app: AppArgument,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Bring the application to the desired state now (or show the plan)."""
    with provisioning_engine() as engine:
        if dry_run:
            plan = operations.plan(engine, app).to_dict()
            text = (
                f"Plan: {plan['create']} to create, {plan['update']} to update, "
                f"{plan['deactivate']} to deactivate, {plan['retry_failed']} failed to retry, "
                f"{plan['unchanged']} unchanged."
            )
            for kind, names in plan["examples"].items():
                if names:
                    text += f"\n  {kind}: {', '.join(names)}"
            emit(as_json, plan, text)
            return
        if as_json:
            result = operations.sync(engine, app)
        else:
            with _progress() as progress:
                task = progress.add_task("Provisioning", total=None)
                result = operations.sync(engine, app, progress=lambda n: progress.advance(task, n))
                progress.update(task, total=result["processed"], completed=result["processed"])
    emit(
        as_json,
        result,
        f"Processed {result['processed']} change(s); {result['due']} waiting to retry, "
        f"{result['held']} held for approval.",
    )


@idp_app.command("provision")
def provision(app: AppArgument, user: UserArgument, as_json: JsonOption = False) -> None:
    """Provision one user now and print each step."""
    with provisioning_engine() as engine:
        outcome = operations.provision_one(engine, app, user)
    steps = [
        {
            "step": s.name,
            "request": f"{s.exchange.method} {s.exchange.url}" if s.exchange else None,
            "status": s.exchange.status if s.exchange else None,
            "decision": s.decision,
        }
        for s in outcome.steps
    ]
    lines = [
        f"{i}. {s['step']}: {s['request'] or ''} -> {s['status']}  {s['decision']}"
        for i, s in enumerate(steps, start=1)
    ]
    emit(
        as_json,
        {"steps": steps, "state": outcome.state, "remote_id": outcome.remote_id},
        "\n".join(lines) or "Nothing to do: the application already holds the desired state.",
    )


@idp_app.command("reconcile")
def reconcile(app: AppArgument, as_json: JsonOption = False) -> None:
    """Re-read the application and repair drift (only differing users are written)."""
    with provisioning_engine() as engine:
        drift = operations.reconcile(engine, app)
        processed = engine.drain()
    data = {
        "read": drift.read,
        "differing": drift.differing,
        "missing": drift.missing,
        "examples": drift.examples,
        "processed": processed,
    }
    emit(
        as_json,
        data,
        f"Read {drift.read} user(s); {drift.differing} differed and {drift.missing} were "
        f"missing; {processed} change(s) sent.",
    )


@idp_app.command("log")
def provisioning_log(
    app: AppArgument,
    user: Annotated[str | None, typer.Option("--user", help="Only this user.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    before: Annotated[int | None, typer.Option(help="Entries older than this id.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The provisioning log: cause -> request -> response -> the application's decision."""
    with directory_unit() as session:
        rows = operations.log_entries(session, app, user=user, before=before, limit=limit)

    def line(row: dict[str, Any]) -> str:
        request = row["request"]
        call = (
            f"{request['method']} {request['url']} -> {row['response']['status']}"
            if request
            else "(no call)"
        )
        return (
            f"{row['id']}  {row['at'][:19]}  {row['user']}  [{row['cause']}]  {row['step']}: "
            f"{call}  {row['decision']}  ({row['duration_ms']} ms, {row['correlation_id']})"
        )

    emit_rows(as_json, rows, line, empty="No provisioning yet.")


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Migrate the directory's database to the latest schema."""
    settings = Settings()
    database = make_engine(settings.idp_database)
    schema.upgrade(database)
    database.dispose()
    emit(as_json, {"revision": "head"}, "Database is up to date.")


key_app = _group("key", "Directory admin API keys (shown once; stored as hashes).")


@key_app.command("create")
def key_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "API key",
    as_json: JsonOption = False,
) -> None:
    """Create an admin API key for the directory; it is shown once."""
    from scimlink.idp import keys

    with directory_unit() as session:
        secret, view = keys.create_key(session, name)
        data = {**view.as_dict(), "key": secret}
    emit(as_json, data, f"Directory admin API key (shown once, keep it secret):\n{secret}")


@key_app.command("list")
def key_list(as_json: JsonOption = False) -> None:
    """List admin API keys (hints only)."""
    from scimlink.idp import keys

    with directory_unit() as session:
        rows = [view.as_dict() for view in keys.list_keys(session)]
    emit_rows(
        as_json,
        rows,
        lambda r: (
            f"{r['id']}  {r['hint']}  {r['name']}"
            + (f"  (revoked {r['revoked_at']})" if r["revoked_at"] else "")
        ),
        empty="No API keys: scimlink idp key create",
    )


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (from key list).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke an admin API key at once."""
    from scimlink.idp import keys

    with directory_unit() as session:
        data = keys.revoke_key(session, key_id).as_dict()
    emit(as_json, data, f"Revoked key {data['id']} ({data['hint']}).")
