"""The admin REST API of the app half, at ``/insync/api/v1`` (JSON, OpenAPI at ``openapi.json``).

An admin API key (``Authorization: Bearer scimlink_admin_…`` or ``X-API-Key``) acts as its
administrator: it selects the tenant and carries the administrator's role. Every handler runs one
:class:`~scimlink.sp.administration.Administration` call in one transaction, the same call the
CLI makes, so both check the same roles and write the same audit entries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
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
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from scimlink.errors import ConflictError
from scimlink.errors import ForbiddenError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.errors import ScimLinkError
from scimlink.scim.errors import ScimError
from scimlink.sp.administration import Administration
from scimlink.sp.admins import authenticate_key
from scimlink.sp.audit import Actor
from scimlink.sp.audit import new_correlation_id
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session

ADMIN_API_PREFIX = "/insync/api/v1"
T = TypeVar("T")
log = logging.getLogger("scimlink.sp.admin_api")

_bearer = HTTPBearer(auto_error=False, description="An admin API key: scimlink_admin_…")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An admin API key.")


@dataclass(frozen=True, slots=True)
class AdminApiSettings:
    sessions: sessionmaker[Session]
    scim_urls: dict[str, str]


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class Credentials:
    """The admin API key a request presents (documented in OpenAPI as two schemes)."""

    def __init__(
        self,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_api_key)],
    ) -> None:
        self.key = header or (bearer.credentials if bearer else None)


Auth = Annotated[Credentials, Depends()]


def _secret(data: dict[str, Any]) -> JSONResponse:
    """A response that carries a secret shown once: no cache may keep it (security.md A5)."""
    return JSONResponse(
        data, status_code=201, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


async def _run(
    request: Request,
    credentials: Credentials,
    call: Callable[[Administration], T],
    *,
    write: bool = False,
) -> T:
    settings: AdminApiSettings = request.app.state.admin
    correlation = getattr(request.state, "correlation_id", None) or new_correlation_id()
    key = credentials.key

    def run() -> T:
        with (write_session if write else read_session)(settings.sessions) as session:
            identity = authenticate_key(session, key) if key else None
            if identity is None:
                raise ApiError(401, "unauthorized", "A valid admin API key is required.")
            actor = Actor(f"admin:{identity.email}", identity.role, correlation)
            administration = Administration(
                session,
                identity.tenant_id,
                actor,
                settings.scim_urls,
                admin_id=identity.admin_id,
            )
            return call(administration)

    return await run_in_threadpool(run)


# -- request bodies ------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraceBody(_Body):
    grace_hours: int = Field(ge=0, description="Hours the previous token works after rotation.")


class LdapAccountBody(_Body):
    name: str
    host: str


class LdapMappingBody(_Body):
    name: str
    account: str | None = None
    profile: str | None = None


class ProfileBody(_Body):
    name: str
    max_users: int | None = Field(default=None, ge=0)
    auto_delete_days: int | None = Field(default=None, ge=1)


class ProfileEditBody(_Body):
    name: str | None = None
    max_users: int | None = Field(default=None, ge=0)
    auto_delete_days: int | None = Field(default=None, ge=1)


class StorageBody(_Body):
    name: str
    region: str


class StorageEditBody(_Body):
    healthy: bool


class MappingBody(_Body):
    name: str
    any_user: bool = False
    attribute: str | None = None
    values: str | None = Field(
        default=None, description="Comma-separated, or semicolon-separated when values hold commas."
    )
    profile: str | None = None
    storage: str | None = None
    quota_gb: int | None = Field(default=None, ge=0)
    activation_email: bool = False


class MappingEditBody(_Body):
    name: str | None = None
    profile: str | None = None
    storage: str | None = None
    quota_gb: int | None = Field(default=None, ge=0)
    activation_email: bool | None = None
    any_user: bool | None = Field(default=None, description="Refused: criteria cannot change.")
    attribute: str | None = Field(default=None, description="Refused: criteria cannot change.")
    values: str | None = Field(default=None, description="Refused: criteria cannot change.")


class MoveBody(_Body):
    position: int = Field(ge=1, description="1 is the highest priority.")


class EvaluateBody(_Body):
    user: dict[str, Any] | None = Field(default=None, description="A SCIM user body.")
    existing: str | None = Field(default=None, description="An existing user's id or userName.")


class UserBody(_Body):
    email: str
    name: str
    profile: str | None = None
    storage: str | None = None
    quota_gb: int | None = Field(default=None, ge=0)
    managed_by: Literal["manual", "ldap"] = "manual"


class AdminBody(_Body):
    email: str
    role: Literal["druva-cloud-admin", "insync-cloud-admin", "profile-admin"]
    password: str | None = None


class AdminEditBody(_Body):
    role: Literal["druva-cloud-admin", "insync-cloud-admin", "profile-admin"] | None = None
    password: str | None = None


class KeyBody(_Body):
    name: str = "API key"
    admin: str | None = Field(default=None, description="Whose key (default: your own).")


# -- the application -----------------------------------------------------------------------------


def create_admin_api(settings: AdminApiSettings) -> FastAPI:
    api = FastAPI(
        title="scimlink app half: admin API",
        version="1",
        description="Administer one tenant of the app half. Authenticate with an admin API key; "
        "the key's administrator role decides what is allowed.",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.admin = settings
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
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"error": exc.code, "detail": exc.detail}, status_code=exc.status, headers=headers
        )

    async def scim_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ScimError)
        return _error(exc.status, exc.scim_type or "invalid_input", exc.detail)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
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

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        correlation = getattr(request.state, "correlation_id", None) or new_correlation_id()
        log.error("unexpected admin API error %s", correlation, exc_info=exc)
        return _error(
            500,
            "internal",
            f"Internal error; quote correlation id {correlation} to the operator.",
        )

    api.add_exception_handler(ScimLinkError, domain)
    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(ScimError, scim_error)
    api.add_exception_handler(RequestValidationError, validation)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(DataError, data_error)
    api.add_exception_handler(Exception, unexpected)


def _routes(api: FastAPI) -> None:
    # -- tenant, provisioning, tokens ------------------------------------------------------------

    @api.get("/tenant", tags=["tenant"], summary="The tenant: region, SCIM base URL, tokens")
    async def get_tenant(request: Request, auth: Auth) -> Any:
        return await _run(request, auth, lambda a: a.overview())

    @api.post(
        "/provisioning/{method}",
        tags=["provisioning"],
        summary="Switch the provisioning method (use-scim, use-manual, use-ldap)",
    )
    async def switch_provisioning(
        request: Request, auth: Auth, method: Literal["use-scim", "use-manual", "use-ldap"]
    ) -> Any:
        target = method.removeprefix("use-")
        return await _run(request, auth, lambda a: a.switch_provisioning(target), write=True)

    @api.get("/tokens", tags=["tokens"], summary="SCIM tokens that still work, with expiry")
    async def list_tokens(request: Request, auth: Auth) -> Any:
        return await _run(request, auth, lambda a: a.tokens())

    @api.post(
        "/tokens",
        tags=["tokens"],
        status_code=201,
        summary="Generate a SCIM token (shown once; the previous one stops working)",
    )
    async def generate_token(request: Request, auth: Auth) -> Any:
        return _secret(await _run(request, auth, lambda a: a.generate_token(), write=True))

    @api.put("/tokens/settings", tags=["tokens"], summary="Set the rotation grace window")
    async def token_settings(request: Request, auth: Auth, body: GraceBody) -> Any:
        return await _run(request, auth, lambda a: a.set_token_grace(body.grace_hours), write=True)

    # -- AD/LDAP ---------------------------------------------------------------------------------

    @api.get("/ldap/accounts", tags=["ldap"])
    async def ldap_accounts(request: Request, auth: Auth) -> Any:
        return await _run(request, auth, lambda a: a.ldap_accounts())

    @api.post("/ldap/accounts", tags=["ldap"], status_code=201)
    async def add_ldap_account(request: Request, auth: Auth, body: LdapAccountBody) -> Any:
        return await _run(
            request, auth, lambda a: a.add_ldap_account(body.name, body.host), write=True
        )

    @api.delete("/ldap/accounts/{ref}", tags=["ldap"])
    async def delete_ldap_account(request: Request, auth: Auth, ref: str) -> Any:
        return await _run(request, auth, lambda a: a.delete_ldap_account(ref), write=True)

    @api.get("/ldap/mappings", tags=["ldap"])
    async def ldap_mappings(request: Request, auth: Auth) -> Any:
        return await _run(request, auth, lambda a: a.ldap_mappings())

    @api.post("/ldap/mappings", tags=["ldap"], status_code=201)
    async def add_ldap_mapping(request: Request, auth: Auth, body: LdapMappingBody) -> Any:
        return await _run(
            request,
            auth,
            lambda a: a.add_ldap_mapping(body.name, body.account, body.profile),
            write=True,
        )

    @api.delete("/ldap/mappings/{ref}", tags=["ldap"])
    async def delete_ldap_mapping(request: Request, auth: Auth, ref: str) -> Any:
        return await _run(request, auth, lambda a: a.delete_ldap_mapping(ref), write=True)

    # -- profiles and storages -------------------------------------------------------------------

    @api.get("/profiles", tags=["profiles"], summary="Profiles with their licenses in use")
    async def list_profiles(request: Request, auth: Auth) -> Any:
        return await _run(request, auth, lambda a: a.profiles())

    @api.post("/profiles", tags=["profiles"], status_code=201)
    async def create_profile(request: Request, auth: Auth, body: ProfileBody) -> Any:
        return await _run(
            request,
            auth,
            lambda a: a.create_profile(body.name, body.max_users, body.auto_delete_days),
            write=True,
        )

    @api.patch("/profiles/{ref}", tags=["profiles"], summary="Rename, set or clear limits")
    async def edit_profile(request: Request, auth: Auth, ref: str, body: ProfileEditBody) -> Any:
        given = body.model_fields_set
        return await _run(
            request,
            auth,
            lambda a: a.edit_profile(
                ref,
                name=body.name,
                max_users=body.max_users,
                preserved_auto_delete_days=body.auto_delete_days,
                clear_max_users="max_users" in given and body.max_users is None,
                clear_auto_delete="auto_delete_days" in given and body.auto_delete_days is None,
            ),
            write=True,
        )

    @api.get("/storages", tags=["storages"])
    async def list_storages(request: Request, auth: Auth) -> Any:
        return await _run(request, auth, lambda a: a.storages())

    @api.post("/storages", tags=["storages"], status_code=201)
    async def create_storage(request: Request, auth: Auth, body: StorageBody) -> Any:
        return await _run(
            request, auth, lambda a: a.create_storage(body.name, body.region), write=True
        )

    @api.patch("/storages/{ref}", tags=["storages"], summary="Mark healthy or unhealthy")
    async def edit_storage(request: Request, auth: Auth, ref: str, body: StorageEditBody) -> Any:
        return await _run(
            request, auth, lambda a: a.set_storage_health(ref, body.healthy), write=True
        )

    # -- SCIM mappings ---------------------------------------------------------------------------

    @api.get("/mappings", tags=["mappings"], summary="SCIM mappings in priority order")
    async def list_mappings(request: Request, auth: Auth) -> Any:
        return await _run(request, auth, lambda a: a.mappings())

    @api.post("/mappings", tags=["mappings"], status_code=201, summary="Add at the bottom")
    async def create_mapping(request: Request, auth: Auth, body: MappingBody) -> Any:
        options = body.model_dump(exclude={"name"})
        return await _run(
            request, auth, lambda a: a.create_mapping(body.name, **options), write=True
        )

    @api.patch("/mappings/{ref}", tags=["mappings"], summary="Name and inSync configuration only")
    async def edit_mapping(request: Request, auth: Auth, ref: str, body: MappingEditBody) -> Any:
        changes = body.model_dump()
        return await _run(request, auth, lambda a: a.edit_mapping(ref, **changes), write=True)

    @api.post("/mappings/{ref}/move", tags=["mappings"], summary="Change a mapping's priority")
    async def move_mapping(request: Request, auth: Auth, ref: str, body: MoveBody) -> Any:
        return await _run(request, auth, lambda a: a.move_mapping(ref, body.position), write=True)

    @api.delete("/mappings/{ref}", tags=["mappings"], summary="Delete; its users stay")
    async def delete_mapping(request: Request, auth: Auth, ref: str) -> Any:
        return await _run(request, auth, lambda a: a.delete_mapping(ref), write=True)

    @api.post(
        "/mappings/evaluate",
        tags=["mappings"],
        summary="Which mapping would place a user, and why (nothing is created)",
    )
    async def evaluate(request: Request, auth: Auth, body: EvaluateBody) -> Any:
        if (body.user is None) == (body.existing is None):
            raise ApiError(400, "invalid_input", "Give either 'user' or 'existing'.")
        return await _run(request, auth, lambda a: a.evaluate(body.user, body.existing))

    # -- accounts --------------------------------------------------------------------------------

    @api.get("/users", tags=["users"], summary="Accounts and licenses in use")
    async def list_users(
        request: Request,
        auth: Auth,
        state: Literal["active", "preserved"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(description="The last id of the previous page.")] = None,
    ) -> Any:
        return await _run(request, auth, lambda a: a.users(state, limit, after))

    @api.post("/users", tags=["users"], status_code=201, summary="Add an account by hand")
    async def add_user(request: Request, auth: Auth, body: UserBody) -> Any:
        options = body.model_dump(exclude={"email", "name"})
        return await _run(
            request, auth, lambda a: a.add_user(body.email, body.name, **options), write=True
        )

    @api.get("/users/{ref}", tags=["users"])
    async def get_user(request: Request, auth: Auth, ref: str) -> Any:
        return await _run(request, auth, lambda a: a.user(ref))

    @api.post("/users/{ref}/preserve", tags=["users"], summary="Preserve (IdP cannot reactivate)")
    async def preserve_user(request: Request, auth: Auth, ref: str) -> Any:
        return await _run(request, auth, lambda a: a.preserve_user(ref), write=True)

    @api.post("/users/{ref}/activate", tags=["users"], summary="Make a preserved account Active")
    async def activate_user(request: Request, auth: Auth, ref: str) -> Any:
        return await _run(request, auth, lambda a: a.activate_user(ref), write=True)

    @api.delete("/users/{ref}", tags=["users"], summary="Delete an account and its data")
    async def delete_user(request: Request, auth: Auth, ref: str) -> Any:
        return await _run(request, auth, lambda a: a.delete_user(ref), write=True)

    # -- administrators and keys -----------------------------------------------------------------

    @api.get("/admins", tags=["admins"])
    async def list_admins(request: Request, auth: Auth) -> Any:
        return await _run(request, auth, lambda a: a.admins())

    @api.post("/admins", tags=["admins"], status_code=201)
    async def create_admin(request: Request, auth: Auth, body: AdminBody) -> Any:
        return await _run(
            request,
            auth,
            lambda a: a.create_admin(body.email, body.role, body.password),
            write=True,
        )

    @api.patch("/admins/{ref}", tags=["admins"], summary="Change a role or a password")
    async def edit_admin(request: Request, auth: Auth, ref: str, body: AdminEditBody) -> Any:
        def change(a: Administration) -> Any:
            data = a.set_admin_role(ref, body.role) if body.role else a.admin(ref)
            if body.password is not None:
                data = a.set_admin_password(ref, body.password)
            return data

        return await _run(request, auth, change, write=True)

    @api.delete("/admins/{ref}", tags=["admins"])
    async def delete_admin(request: Request, auth: Auth, ref: str) -> Any:
        return await _run(request, auth, lambda a: a.delete_admin(ref), write=True)

    @api.get("/api-keys", tags=["admins"], summary="API keys (yours, or all for admin managers)")
    async def list_keys(request: Request, auth: Auth) -> Any:
        return await _run(request, auth, lambda a: a.keys())

    @api.post("/api-keys", tags=["admins"], status_code=201, summary="Create a key (shown once)")
    async def create_key(request: Request, auth: Auth, body: Annotated[KeyBody, Body()]) -> Any:
        return _secret(
            await _run(request, auth, lambda a: a.create_key(body.admin, body.name), write=True)
        )

    @api.delete("/api-keys/{key_id}", tags=["admins"], summary="Revoke a key")
    async def revoke_key(request: Request, auth: Auth, key_id: int) -> Any:
        return await _run(request, auth, lambda a: a.revoke_key(key_id), write=True)

    # -- audit and mail --------------------------------------------------------------------------

    @api.get("/audit", tags=["audit"], summary="The audit trail, newest first")
    async def list_audit(
        request: Request,
        auth: Auth,
        actor: str | None = None,
        action: str | None = None,
        target_id: str | None = None,
        correlation_id: str | None = None,
        before_id: Annotated[int | None, Query(description="Page: the last id seen.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        filters = {
            "actor": actor,
            "action": action,
            "target_id": target_id,
            "correlation_id": correlation_id,
            "before_id": before_id,
            "limit": limit,
        }
        return await _run(request, auth, lambda a: a.audit(**filters))

    @api.get("/mail", tags=["audit"], summary="The mail outbox")
    async def list_mail(
        request: Request,
        auth: Auth,
        pending: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        return await _run(request, auth, lambda a: a.mail(pending, limit))
