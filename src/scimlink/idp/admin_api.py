"""The directory half's admin REST API, mounted at ``/api/v1`` (JSON, OpenAPI at ``openapi.json``).

A directory API key (``Authorization: Bearer scimlink_idp_…`` or ``X-API-Key``) is required on
every call; a missing, malformed, unknown or revoked key is 401, before the request is validated.
Every handler makes the service calls the CLI (``scimlink idp …``) makes, in one transaction run
off the event loop, so the API and the CLI validate alike and answer with the same JSON shapes.
Provisioning operations (activate, plan, sync, provision, reconcile) talk to the application and
manage their own short transactions, as they do for the CLI. Users, groups and applications are named
by id or name (a user also by e-mail), as on the command line.

Errors are ``{"error": code, "detail": text}``: 400 ``invalid_input``, 401 ``unauthorized``,
403 ``forbidden``, 404 ``not_found``, 409 ``conflict``, 422 ``invalid_request`` (the body or a
parameter does not match the schema, each problem named), 500 ``internal`` (with a correlation id
for the logs; no traceback ever reaches a client).

Activating Identity Management verifies the target first (discovery and a harmless lookup). A
failed verification is **502** ``verification_failed`` whose detail is the precise cause, as the
target answered it or failed to: ``token rejected: …``, ``…: unreachable: …``,
``…: TLS error: …``, ``…: timeout: …`` or ``not SCIM: …``. It is 502, not 401 or 409, because the
request was valid and this API's key was accepted: it is the application behind the connector
that refused or did not answer. Activating an application whose connector is not configured yet
is 409 ``conflict``.

Secrets are write-only: a user's password and the IdM token are accepted but never returned (an
application shows only the token's hint); a new API key is returned once, with
``Cache-Control: no-store``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Annotated
from typing import Any
from typing import Literal
from typing import TypeVar

from fastapi import Body
from fastapi import Depends
from fastapi import FastAPI
from fastapi import Query
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import SecretStr
from sqlalchemy.exc import DataError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from scimlink.errors import ConflictError
from scimlink.errors import ForbiddenError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.errors import ScimLinkError
from scimlink.idp import applications
from scimlink.idp import directory
from scimlink.idp import idm
from scimlink.idp import keys
from scimlink.idp import outbox
from scimlink.idp.models import Application
from scimlink.idp.models import DirectoryUser
from scimlink.idp.provisioning import operations
from scimlink.idp.provisioning.engine import Engine
from scimlink.idp.provisioning.engine import Outcome
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session

IDP_ADMIN_API_PREFIX = "/api/v1"
T = TypeVar("T")
log = logging.getLogger("scimlink.idp.admin_api")

_bearer = HTTPBearer(auto_error=False, description="A directory API key: scimlink_idp_…")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="A directory API key.")
_UNAUTHORIZED = "A valid directory API key is required (Authorization: Bearer scimlink_idp_…)."


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


async def _authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_api_key)],
) -> None:
    """Every operation's first step: the key (``X-API-Key``, else the Bearer token) must be
    well-formed, known and not revoked, or the answer is 401 before the request is even
    validated. The key's id is kept on ``request.state.api_key_id`` for the logs."""
    key = header or (bearer.credentials if bearer else None)
    if not key or not keys.well_formed(key):
        raise ApiError(401, "unauthorized", _UNAUTHORIZED)
    engine = _engine(request)

    def check() -> int | None:
        with read_session(engine.sessions) as session:
            found = keys.authenticate(session, key)
            return found.pk if found is not None else None

    key_id = await run_in_threadpool(check)
    if key_id is None:
        raise ApiError(401, "unauthorized", _UNAUTHORIZED)
    request.state.api_key_id = key_id


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def _run(request: Request, call: Callable[[Session], T], *, write: bool = False) -> T:
    """Make ``call`` in one transaction (committed when ``write``), off the event loop."""
    engine = _engine(request)

    def run() -> T:
        with (write_session if write else read_session)(engine.sessions) as session:
            return call(session)

    return await run_in_threadpool(run)


async def _run_engine(request: Request, call: Callable[[Engine], T]) -> T:
    """Run a provisioning operation off the event loop: it manages its own transactions and
    talks to the application, so it runs outside any transaction of ours."""
    return await run_in_threadpool(call, _engine(request))


def _secret(data: dict[str, Any]) -> JSONResponse:
    """A response that carries a secret shown once: no cache may keep it."""
    return JSONResponse(
        data, status_code=201, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _error(status: int, code: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


# -- views ---------------------------------------------------------------------------------------


def _user_page(rows: list[DirectoryUser], limit: int) -> dict[str, Any]:
    return {
        "users": [directory.user_view(u) for u in rows],
        "next_after": rows[-1].id if len(rows) == limit else None,
    }


def _app(session: Session, app: Application) -> dict[str, Any]:
    data = applications.app_view(session, app)
    data["deprovision"] = app.deprovision
    data["token_warning"] = idm.expiry_warning(app.token_expires_at)
    return data


def _catalog() -> list[dict[str, Any]]:
    return [
        {
            "kind": entry.kind,
            "title": entry.title,
            "description": entry.description,
            "logo_url": entry.logo_url,
            "deprovision": entry.deprovision,
            "attribute_map": [{"source": s, "target": t} for s, t in entry.mapping],
            "regions": dict(applications.DRUVA_URLS) if entry.kind == "druva" else None,
        }
        for entry in applications.CATALOG.values()
    ]


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "steps": [
            {
                "step": s.name,
                "request": f"{s.exchange.method} {s.exchange.url}" if s.exchange else None,
                "status": s.exchange.status if s.exchange else None,
                "decision": s.decision,
            }
            for s in outcome.steps
        ],
        "state": outcome.state,
        "remote_id": outcome.remote_id,
        "detail": outcome.detail,
    }


# -- request bodies ------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Text = str | None
Attributes = dict[str, str | int | float | bool | None]
_HASHED_HELP = (
    "Write-only: at least 8 characters, kept as an argon2 hash (for SSO), never returned."
)


class _UserProperties(_Body):
    firstname: Text = None
    lastname: Text = None
    displayname: Text = None
    employeeIdentifier: Text = None
    department: Text = None
    jobTitle: Text = None
    company: Text = None
    location: Text = None
    costCenter: Text = None


class NewUserBody(_UserProperties):
    username: str
    email: str
    state: Literal["activated", "suspended", "staged"] = "activated"
    attributes: Attributes = Field(default_factory=dict, description="Custom attributes.")
    password: SecretStr | None = Field(default=None, description=_HASHED_HELP)
    groups: list[str] = Field(default_factory=list, description="Add to these groups.")

    def properties(self) -> dict[str, Any]:
        values = self.model_dump(exclude_unset=True, exclude={"password", "groups"})
        values.setdefault("state", self.state)
        if self.password is not None:
            values["password"] = self.password.get_secret_value()
        return values


class UserEditBody(_UserProperties):
    username: Text = None
    email: Text = None
    state: Literal["activated", "suspended", "staged"] | None = None
    attributes: Attributes | None = Field(
        default=None, description="Merged into the user's; a null value removes that attribute."
    )
    password: SecretStr | None = Field(default=None, description=_HASHED_HELP)

    def properties(self) -> dict[str, Any]:
        """Only what the request names; ``null`` clears an optional property."""
        values = self.model_dump(exclude_unset=True, exclude={"password"})
        if values.get("attributes", {}) is None:
            del values["attributes"]
        if values.get("state", "") is None:
            del values["state"]
        if self.password is not None:
            values["password"] = self.password.get_secret_value()
        return values


class GroupBody(_Body):
    name: str
    description: str | None = Field(default=None, max_length=1000)


class MembersBody(_Body):
    users: list[str] = Field(
        min_length=1, max_length=1000, description="Usernames, e-mails or ids."
    )


class AppBody(_Body):
    kind: Literal["druva", "scim"] = Field(description="The catalog entry (GET /catalog).")
    label: str
    region: Literal["cloud", "govcloud"] | None = Field(default=None, description="Druva only.")
    base_url: str | None = Field(default=None, description="Override the catalog's IdM URL.")
    description: str | None = Field(default=None, max_length=1000)
    show_in_portal: bool = True
    logo_url: str | None = Field(default=None, max_length=1000)


class AppEditBody(_Body):
    """Only the fields given change; ``null`` or absent leaves a field as it is."""

    label: str | None = Field(default=None, description="A new display label, unique.")
    description: str | None = Field(
        default=None, max_length=1000, description="An empty string restores the catalog's."
    )
    show_in_portal: bool | None = None
    logo_url: str | None = Field(
        default=None, max_length=1000, description="An empty string restores the catalog's."
    )


class RuleBody(_Body):
    source: str = Field(description="A directory property, or attributes.NAME.")
    target: str = Field(description="A SCIM attribute path.")


class SettingsBody(_Body):
    mass_deactivation_threshold: int | None = Field(
        default=None, description="More deactivations than this from one action wait for approval."
    )
    max_concurrency: int | None = Field(default=None, description="1 to 64.")
    rate_per_second: float | None = Field(default=None, description="Above 0, at most 10000.")
    deprovision: Literal["deactivate", "delete"] | None = None
    bulk_creates: bool | None = Field(
        default=None,
        description="Send creates in SCIM bulk requests when the application offers bulk.",
    )


class BindBody(_Body):
    group: str = Field(description="A group name or id.")


class IdmBody(_Body):
    base_url: str | None = Field(default=None, description="The application's SCIM base URL.")
    token: SecretStr | None = Field(
        default=None,
        description="Write-only bearer token, kept encrypted; responses show only its hint. "
        "Changeable only while Identity Management is deactivated.",
    )


class KeyBody(_Body):
    name: str = "API key"


# -- the application -----------------------------------------------------------------------------


def create_idp_admin_api(engine: Engine) -> FastAPI:
    """The directory's admin API on ``engine``'s database and master key (mount at ``/api/v1``)."""
    api = FastAPI(
        title="scimlink directory half: admin API",
        version="1",
        description="Administer the directory (JumpCloud's role): users, groups, applications, "
        "their Identity Management connectors and provisioning. Authenticate with a directory "
        "API key.",
        docs_url="/docs",
        redoc_url=None,
        dependencies=[Depends(_authenticate)],
    )
    api.state.engine = engine
    _routes(api)
    _handlers(api)
    return api


def _handlers(api: FastAPI) -> None:
    statuses: list[tuple[type[ScimLinkError], int, str]] = [
        (NotFoundError, 404, "not_found"),
        (ConflictError, 409, "conflict"),
        (ForbiddenError, 403, "forbidden"),
        (InvalidInputError, 400, "invalid_input"),
    ]

    async def domain(request: Request, exc: Exception) -> JSONResponse:
        for kind, status, code in statuses:
            if isinstance(exc, kind):
                return _error(status, code, str(exc))
        return _error(400, "invalid_input", str(exc))

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        if exc.status == 401:
            return _error(exc.status, exc.code, exc.detail, **{"WWW-Authenticate": "Bearer"})
        return _error(exc.status, exc.code, exc.detail)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        # Named by location and message only: a rejected value (a password, a token) is never
        # echoed back.
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, "invalid_request", problems)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return _error(exc.status_code, code, str(exc.detail))

    async def data_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(400, "invalid_input", "A value is too long or otherwise cannot be stored.")

    async def integrity_error(request: Request, exc: Exception) -> JSONResponse:
        # A uniqueness race (two requests creating the same name): this one rolled back.
        return _error(
            409,
            "conflict",
            "The change conflicts with data already stored (a duplicate, or a concurrent "
            "change); nothing was changed.",
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        given = getattr(request.state, "correlation_id", None)
        correlation = given if isinstance(given, str) and given else uuid.uuid4().hex
        log.error("unexpected directory admin API error %s", correlation, exc_info=exc)
        # The web app's correlation middleware sends the header itself; alone, say it here.
        headers = {} if given else {"X-Correlation-Id": correlation}
        return _error(
            500,
            "internal",
            f"Internal error; quote correlation id {correlation} to the operator.",
            **headers,
        )

    api.add_exception_handler(ScimLinkError, domain)
    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(RequestValidationError, validation)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(DataError, data_error)
    api.add_exception_handler(IntegrityError, integrity_error)
    api.add_exception_handler(Exception, unexpected)


Limit = Annotated[int, Query(ge=1, le=1000)]


def _routes(api: FastAPI) -> None:
    _user_routes(api)
    _group_routes(api)
    _app_routes(api)
    _idm_routes(api)
    _provisioning_routes(api)
    _key_routes(api)


def _user_routes(api: FastAPI) -> None:
    @api.get("/users", tags=["users"], summary="Users in creation order, a page at a time")
    async def list_users(
        request: Request,
        state: Literal["activated", "suspended", "staged"] | None = None,
        group: Annotated[str | None, Query(description="Only members of this group.")] = None,
        after: Annotated[str | None, Query(description="next_after of the previous page.")] = None,
        limit: Limit = 100,
    ) -> Any:
        return await _run(
            request,
            lambda s: _user_page(
                directory.list_users(s, state=state, group=group, after=after, limit=limit), limit
            ),
        )

    @api.post("/users", tags=["users"], status_code=201, summary="Add a user")
    async def add_user(request: Request, body: NewUserBody) -> Any:
        def add(session: Session) -> dict[str, Any]:
            user = directory.add_user(session, body.properties())
            for group in body.groups:
                directory.add_members(session, group, [user.id])
            return directory.user_view(user)

        return await _run(request, add, write=True)

    @api.get("/users/{ref}", tags=["users"], summary="A user by id, username or e-mail")
    async def get_user(request: Request, ref: str) -> Any:
        return await _run(request, lambda s: directory.user_view(directory.find_user(s, ref)))

    @api.patch(
        "/users/{ref}",
        tags=["users"],
        summary="Change properties; the applications the user reaches are updated",
    )
    async def edit_user(request: Request, ref: str, body: UserEditBody) -> Any:
        def edit(session: Session) -> dict[str, Any]:
            change = directory.set_user(session, ref, body.properties(), "user updated")
            changed = ["password" if c == "password_hash" else c for c in change.changed]
            return {**directory.user_view(change.user), "changed": changed}

        return await _run(request, edit, write=True)

    @api.post(
        "/users/{ref}/suspend", tags=["users"], summary="Suspend: deactivated in every application"
    )
    async def suspend_user(request: Request, ref: str) -> Any:
        return await _run(
            request,
            lambda s: directory.user_view(directory.set_state(s, ref, "suspended").user),
            write=True,
        )

    @api.post(
        "/users/{ref}/activate",
        tags=["users"],
        summary="Activate a suspended or staged user: reactivated in its applications",
    )
    async def activate_user(request: Request, ref: str) -> Any:
        return await _run(
            request,
            lambda s: directory.user_view(directory.set_state(s, ref, "activated").user),
            write=True,
        )

    @api.delete(
        "/users/{ref}",
        tags=["users"],
        summary="Delete: deactivated (or deleted) in every application it reached",
    )
    async def delete_user(request: Request, ref: str) -> Any:
        def delete(session: Session) -> dict[str, Any]:
            removed = directory.delete_user(session, ref)
            return {"deleted": removed.username, "id": removed.id}

        return await _run(request, delete, write=True)


def _group_routes(api: FastAPI) -> None:
    @api.get("/groups", tags=["groups"], summary="Groups with their member counts")
    async def list_groups(request: Request) -> Any:
        return await _run(
            request,
            lambda s: [
                {"id": g.id, "name": g.name, "members": n, "description": g.description}
                for g, n in directory.list_groups(s)
            ],
        )

    @api.post("/groups", tags=["groups"], status_code=201, summary="Create a user group")
    async def create_group(request: Request, body: GroupBody) -> Any:
        def create(session: Session) -> dict[str, Any]:
            group = directory.create_group(session, body.name, body.description)
            return {
                "id": group.id,
                "name": group.name,
                "members": 0,
                "description": group.description,
            }

        return await _run(request, create, write=True)

    @api.delete(
        "/groups/{ref}",
        tags=["groups"],
        summary="Delete a group; its members lose the applications it granted",
    )
    async def delete_group(request: Request, ref: str) -> Any:
        def delete(session: Session) -> dict[str, Any]:
            removed = directory.delete_group(session, ref)
            return {"deleted": removed.name, "id": removed.id}

        return await _run(request, delete, write=True)

    @api.get(
        "/groups/{ref}/members", tags=["groups"], summary="A group's members, a page at a time"
    )
    async def list_members(
        request: Request,
        ref: str,
        after: Annotated[str | None, Query(description="next_after of the previous page.")] = None,
        limit: Limit = 100,
    ) -> Any:
        return await _run(
            request,
            lambda s: _user_page(
                directory.list_users(s, group=ref, after=after, limit=limit), limit
            ),
        )

    @api.post(
        "/groups/{ref}/members",
        tags=["groups"],
        summary="Add users (provisioned to the applications the group is bound to)",
    )
    async def add_members(request: Request, ref: str, body: MembersBody) -> Any:
        return await _run(
            request,
            # The same reference twice is one member, not a duplicate row.
            lambda s: {
                "added": len(directory.add_members(s, ref, list(dict.fromkeys(body.users))))
            },
            write=True,
        )

    @api.delete(
        "/groups/{ref}/members/{user}",
        tags=["groups"],
        summary="Remove a user (deactivated where nothing else grants access)",
    )
    async def remove_member(request: Request, ref: str, user: str) -> Any:
        return await _run(
            request,
            lambda s: {"removed": len(directory.remove_members(s, ref, [user]))},
            write=True,
        )


def _app_routes(api: FastAPI) -> None:
    @api.get("/catalog", tags=["applications"], summary="What can be added, with default mappings")
    async def catalog(request: Request) -> Any:
        return await _run(request, lambda s: _catalog())

    @api.get("/apps", tags=["applications"], summary="Applications")
    async def list_apps(request: Request) -> Any:
        return await _run(request, lambda s: [_app(s, a) for a in applications.list_apps(s)])

    @api.post(
        "/apps",
        tags=["applications"],
        status_code=201,
        summary="Add an application from the catalog",
    )
    async def add_app(request: Request, body: AppBody) -> Any:
        def add(session: Session) -> dict[str, Any]:
            app = applications.add_app(
                session,
                body.kind,
                body.label,
                region=body.region,
                base_url=body.base_url,
                description=body.description,
                show_in_portal=body.show_in_portal,
                logo_url=body.logo_url,
            )
            return _app(session, app)

        return await _run(request, add, write=True)

    @api.get(
        "/apps/{ref}",
        tags=["applications"],
        summary="An application: IdM state, mapping, groups, pending work",
    )
    async def get_app(request: Request, ref: str) -> Any:
        return await _run(request, lambda s: _app(s, applications.find_app(s, ref)))

    @api.patch(
        "/apps/{ref}",
        tags=["applications"],
        summary="Change the label, description, portal visibility or logo (not provisioning)",
    )
    async def edit_app(request: Request, ref: str, body: AppEditBody) -> Any:
        return await _run(
            request,
            lambda s: _app(
                s,
                applications.edit_app(
                    s,
                    ref,
                    label=body.label,
                    description=body.description,
                    show_in_portal=body.show_in_portal,
                    logo_url=body.logo_url,
                ),
            ),
            write=True,
        )

    @api.delete("/apps/{ref}", tags=["applications"], summary="Delete (nothing more is sent to it)")
    async def delete_app(request: Request, ref: str) -> Any:
        def delete(session: Session) -> dict[str, Any]:
            removed = applications.delete_app(session, ref)
            return {"deleted": removed.label, "id": removed.id}

        return await _run(request, delete, write=True)

    @api.put(
        "/apps/{ref}/mapping",
        tags=["applications"],
        summary="Add the rule that fills a SCIM attribute (replacing any rule for that target)",
    )
    async def map_attribute(request: Request, ref: str, body: RuleBody) -> Any:
        return await _run(
            request,
            lambda s: _app(s, applications.map_attribute(s, ref, body.source, body.target)),
            write=True,
        )

    @api.delete(
        "/apps/{ref}/mapping/{target}",
        tags=["applications"],
        summary="Stop sending a SCIM attribute (userName and active always stay)",
    )
    async def unmap_attribute(request: Request, ref: str, target: str) -> Any:
        return await _run(
            request,
            lambda s: _app(s, applications.unmap_attribute(s, ref, target)),
            write=True,
        )

    @api.patch(
        "/apps/{ref}/settings",
        tags=["applications"],
        summary="Safety and pacing: mass-deactivation threshold, concurrency, rate, "
        "deprovisioning, bulk creates",
    )
    async def edit_settings(request: Request, ref: str, body: SettingsBody) -> Any:
        return await _run(
            request,
            lambda s: _app(
                s,
                applications.settings(
                    s,
                    ref,
                    threshold=body.mass_deactivation_threshold,
                    concurrency=body.max_concurrency,
                    rate=body.rate_per_second,
                    deprovision=body.deprovision,
                    bulk_creates=body.bulk_creates,
                ),
            ),
            write=True,
        )

    @api.post(
        "/apps/{ref}/groups",
        tags=["applications"],
        summary="Bind a group: its members are provisioned",
    )
    async def bind_group(request: Request, ref: str, body: BindBody) -> Any:
        return await _run(
            request,
            lambda s: {"members": applications.bind_group(s, ref, body.group)},
            write=True,
        )

    @api.delete(
        "/apps/{ref}/groups/{group}",
        tags=["applications"],
        summary="Unbind a group: members nothing else grants are deactivated",
    )
    async def unbind_group(request: Request, ref: str, group: str) -> Any:
        def unbind(session: Session) -> dict[str, Any]:
            members, held = applications.unbind_group(session, ref, group)
            return {"members": members, "held": held}

        return await _run(request, unbind, write=True)

    @api.post(
        "/apps/{ref}/approve",
        tags=["applications"],
        summary="Release deactivations held by the mass-deactivation threshold",
    )
    async def approve(request: Request, ref: str) -> Any:
        return await _run(
            request,
            lambda s: {"released": outbox.approve(s, applications.find_app(s, ref).id)},
            write=True,
        )

    @api.post(
        "/apps/{ref}/reject",
        tags=["applications"],
        summary="Drop held deactivations (those users stay as the application has them)",
    )
    async def reject(request: Request, ref: str) -> Any:
        return await _run(
            request,
            lambda s: {"dropped": outbox.reject(s, applications.find_app(s, ref).id)},
            write=True,
        )


def _idm_routes(api: FastAPI) -> None:
    @api.put(
        "/apps/{ref}/idm",
        tags=["identity management"],
        summary="Set the SCIM base URL and/or token (the token only while deactivated)",
    )
    async def configure_idm(request: Request, ref: str, body: IdmBody) -> Any:
        if body.base_url is None and body.token is None:
            raise ApiError(400, "invalid_input", "Give 'base_url', 'token' or both.")
        token = body.token.get_secret_value() if body.token is not None else None
        box = _engine(request).box
        return await _run(
            request,
            lambda s: _app(
                s, applications.configure_idm(s, ref, box, base_url=body.base_url, token=token)
            ),
            write=True,
        )

    @api.post(
        "/apps/{ref}/idm/activate",
        tags=["identity management"],
        summary="Verify the target, then start provisioning (502 with the cause if it fails)",
        responses={
            502: {"description": "Verification failed: token rejected, unreachable, TLS, not SCIM"}
        },
    )
    async def activate_idm(request: Request, ref: str) -> Any:
        result = await _run_engine(request, lambda e: idm.activate(e, ref))
        if not result.ok:
            return _error(502, "verification_failed", result.message)
        expires = result.token_expires_at
        return {
            "verified": True,
            "message": result.message,
            "update_method": result.update_method,
            "token_expires_at": expires.isoformat() if expires else None,
            "token_warning": idm.expiry_warning(expires),
        }

    @api.post(
        "/apps/{ref}/idm/deactivate",
        tags=["identity management"],
        summary="Stop provisioning; pending changes are kept for reactivation",
    )
    async def deactivate_idm(request: Request, ref: str) -> Any:
        pending = await _run_engine(request, lambda e: idm.deactivate(e.sessions, ref))
        return {"pending": pending}


def _provisioning_routes(api: FastAPI) -> None:
    @api.get(
        "/apps/{ref}/plan",
        tags=["provisioning"],
        summary="What a sync would do (a dry run: no call to the application)",
    )
    async def plan(
        request: Request,
        ref: str,
        examples: Annotated[int, Query(ge=0, le=1000, description="Usernames per kind.")] = 20,
    ) -> Any:
        return await _run_engine(
            request, lambda e: operations.plan(e, ref).to_dict(sample=examples)
        )

    @api.post(
        "/apps/{ref}/sync",
        tags=["provisioning"],
        summary="Bring the application to the desired state now (runs to completion)",
    )
    async def sync(request: Request, ref: str) -> Any:
        return await _run_engine(request, lambda e: operations.sync(e, ref))

    @api.post(
        "/apps/{ref}/provision/{user}",
        tags=["provisioning"],
        summary="Provision one user now and return each step",
    )
    async def provision(request: Request, ref: str, user: str) -> Any:
        return await _run_engine(
            request, lambda e: _outcome(operations.provision_one(e, ref, user))
        )

    @api.post(
        "/apps/{ref}/reconcile",
        tags=["provisioning"],
        summary="Re-read the application and repair drift (only differing users are written)",
    )
    async def reconcile(request: Request, ref: str) -> Any:
        def run(engine: Engine) -> dict[str, Any]:
            drift = operations.reconcile(engine, ref)
            with read_session(engine.sessions) as session:
                app_id = applications.find_app(session, ref).id
            return {
                "read": drift.read,
                "differing": drift.differing,
                "missing": drift.missing,
                "examples": drift.examples,
                "processed": engine.drain(app_id=app_id),
            }

        return await _run_engine(request, run)

    @api.get(
        "/apps/{ref}/links",
        tags=["provisioning"],
        summary="What the application holds per user, with the reason of any failure",
    )
    async def links(
        request: Request,
        ref: str,
        state: Literal["active", "inactive", "failed"] | None = None,
        limit: Limit = 100,
    ) -> Any:
        return await _run(request, lambda s: operations.links(s, ref, state=state, limit=limit))

    @api.get(
        "/apps/{ref}/log",
        tags=["provisioning"],
        summary="The provisioning log, newest first: cause, request, response, decision",
    )
    async def provisioning_log(
        request: Request,
        ref: str,
        user: Annotated[str | None, Query(description="Only this user.")] = None,
        before: Annotated[int | None, Query(description="Entries older than this id.")] = None,
        limit: Limit = 50,
    ) -> Any:
        return await _run(
            request,
            lambda s: operations.log_entries(s, ref, user=user, before=before, limit=limit),
        )


def _key_routes(api: FastAPI) -> None:
    @api.get("/api-keys", tags=["api keys"], summary="API keys (hints only), revoked ones too")
    async def list_keys(request: Request) -> Any:
        return await _run(request, lambda s: [k.as_dict() for k in keys.list_keys(s)])

    @api.post("/api-keys", tags=["api keys"], status_code=201, summary="Create a key (shown once)")
    async def create_key(request: Request, body: Annotated[KeyBody | None, Body()] = None) -> Any:
        name = body.name if body is not None else "API key"

        def create(session: Session) -> dict[str, Any]:
            secret, view = keys.create_key(session, name)
            return {"key": secret, **view.as_dict()}

        return _secret(await _run(request, create, write=True))

    @api.delete("/api-keys/{key_id}", tags=["api keys"], summary="Revoke a key")
    async def revoke_key(request: Request, key_id: int) -> Any:
        return await _run(request, lambda s: keys.revoke_key(s, key_id).as_dict(), write=True)
