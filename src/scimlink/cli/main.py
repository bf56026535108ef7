"""``scimlink``: run and administer both halves from the shell.

Every command takes ``--json`` for machine-readable output; errors are one readable line on
stderr and exit code 1 (2 for usage errors, as Typer does).
"""

from __future__ import annotations

import typer

from scimlink.cli import idp_serve  # noqa: F401 - registers idp serve and idp worker
from scimlink.cli import serve  # noqa: F401 - registers sp serve, db upgrade, jobs run
from scimlink.cli.demo import demo
from scimlink.cli.idp_commands import idp_app
from scimlink.cli.sp_commands import sp_app

app = typer.Typer(
    help="scimlink: SCIM 2.0 provisioning and SAML SSO, directory and app.", no_args_is_help=True
)
app.add_typer(sp_app, name="sp")
app.add_typer(idp_app, name="idp")
app.command("demo")(demo)


def main() -> None:
    app()
