"""What every ``scimlink`` command shares: output, errors, and one unit of work per command."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated
from typing import Any

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from scimlink.config import Settings
from scimlink.errors import ScimLinkError
from scimlink.scim.errors import ScimError
from scimlink.sp import admins
from scimlink.sp import schema
from scimlink.sp import tenants
from scimlink.sp.administration import Administration
from scimlink.sp.audit import Actor
from scimlink.sp.roles import OPERATOR
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import write_session

TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant id or name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
console = Console()
errors = Console(stderr=True)

#: Set by ``scimlink sp --admin EMAIL``: act as that administrator, with its role.
ACTING: dict[str, str | None] = {"admin": None}


def emit(as_json: bool, data: Any, text: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        console.print(text, highlight=False, soft_wrap=True, markup=False)


def emit_rows(
    as_json: bool,
    rows: list[dict[str, Any]],
    line: Callable[[dict[str, Any]], str],
    empty: str = "",
) -> None:
    """A listing: a JSON array, or one line per row (``empty`` when there are none)."""
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    for row in rows:
        console.print(line(row), highlight=False, soft_wrap=True, markup=False)
    if not rows and empty:
        console.print(empty, highlight=False, markup=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False)
    return typer.Exit(code)


@contextmanager
def unit_of_work(settings: Settings) -> Iterator[Session]:
    """One transaction on the app half's database (migrated first); errors become one line."""
    with database_unit(settings.sp_database, schema.upgrade) as session:
        yield session


@contextmanager
def database_unit(url: str, upgrade: Callable[[Engine], None]) -> Iterator[Session]:
    """One transaction on a half's database, migrated first; errors become one line."""
    engine = make_engine(url)
    upgrade(engine)
    try:
        with write_session(make_sessionmaker(engine)) as session:
            yield session
    except ScimLinkError as exc:
        raise fail(str(exc)) from None
    except ScimError as exc:
        raise fail(exc.detail) from None
    finally:
        engine.dispose()


@contextmanager
def administration(ref: str, settings: Settings | None = None) -> Iterator[Administration]:
    """The tenant named by ``--tenant``, administered by the operator or by ``--admin``."""
    settings = settings or Settings()
    with unit_of_work(settings) as session:
        tenant = tenants.find_tenant(session, ref)
        admin_id = None
        if ACTING["admin"]:
            admin = admins.find_admin(session, tenant.id, ACTING["admin"])
            actor = Actor(f"admin:{admin.email}", admin.role)
            admin_id = admin.id
        else:
            actor = Actor(f"cli:{_os_user()}", OPERATOR)
        yield Administration(session, tenant.id, actor, settings.sp_scim_urls(), admin_id=admin_id)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "operator"
