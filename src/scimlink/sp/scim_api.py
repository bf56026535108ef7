"""The SCIM 2.0 HTTP endpoint of the app half, at ``/insync/scim`` (RFC 7644).

Handlers are thin: read and check the request (size, media type, JSON shape, bearer token),
run one use case in a worker thread inside one database transaction, render the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
from functools import partial
from typing import Any
from typing import TypeVar

import orjson
from fastapi import APIRouter
from fastapi import Request
from fastapi import Response
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from scimlink.scim import bulk
from scimlink.scim import discovery
from scimlink.scim.errors import ScimError
from scimlink.scim.errors import invalid_syntax
from scimlink.scim.errors import invalid_value
from scimlink.scim.errors import not_found
from scimlink.scim.errors import too_large
from scimlink.scim.errors import unauthorized
from scimlink.scim.etag import matches as etag_matches
from scimlink.scim.projection import parse_attribute_list
from scimlink.scim.projection import project
from scimlink.scim.query import Limits
from scimlink.scim.query import ListQuery
from scimlink.scim.query import parse_list_query
from scimlink.scim.resources import LIST_RESPONSE_SCHEMA
from scimlink.scim.resources import SEARCH_REQUEST_SCHEMA
from scimlink.sp import bulk as bulk_run
from scimlink.sp import tokens
from scimlink.sp.audit import Actor
from scimlink.sp.audit import RefusedChange
from scimlink.sp.audit import new_correlation_id
from scimlink.sp.audit import record
from scimlink.sp.roles import SCIM_CLIENT
from scimlink.sp.tenants import authenticate
from scimlink.sp.users import StoredUser
from scimlink.sp.users import UserService
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session

SCIM_PREFIX = "/insync/scim"
SCIM_MEDIA_TYPE = "application/scim+json"
_ACCEPTED_MEDIA_TYPES = {"application/scim+json", "application/json"}
_MAX_JSON_DEPTH = 32
_MAX_ARRAY_ITEMS = 1000
#: ``startIndex`` beyond this is read as this: no result set is that large, and larger values
#: overflow PostgreSQL's OFFSET and the 64-bit integers of the JSON encoder.
_MAX_START_INDEX = 2**31 - 1

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ScimSettings:
    sessions: sessionmaker[Session]
    limits: Limits
    max_body_bytes: int
    public_url: str | None


def scim_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type=SCIM_MEDIA_TYPE, headers=headers
    )


def _settings(request: Request) -> ScimSettings:
    settings: ScimSettings = request.app.state.scim
    return settings


def _base_url(request: Request) -> str:
    public = _settings(request).public_url
    root = public.rstrip("/") if public else str(request.base_url).rstrip("/")
    return f"{root}{SCIM_PREFIX}"


def _bearer(request: Request) -> str:
    """Exactly one ``Authorization: Bearer <token>`` header (RFC 6750 §2.1); never a query token.

    Malformed tokens (wrong prefix, length or checksum) are refused here, before any database
    work: not even a transaction is opened for them (security.md A3). Handlers call this first,
    so an unauthenticated client gets 401 before its body or query is looked at.
    """
    values = request.headers.getlist("authorization")
    if len(values) != 1:
        raise unauthorized()
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not tokens.well_formed(token):
        raise unauthorized()
    return token


def _check_shape(value: Any, depth: int = 0) -> None:
    """Refuse pathological JSON early (security.md §3.4) and strings PostgreSQL cannot store."""
    if depth > _MAX_JSON_DEPTH:
        raise invalid_value(f"JSON nested deeper than {_MAX_JSON_DEPTH} levels is not accepted.")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_shape(item, depth + 1)
    elif isinstance(value, list):
        if len(value) > _MAX_ARRAY_ITEMS:
            raise invalid_value(f"Arrays of more than {_MAX_ARRAY_ITEMS} values are not accepted.")
        for item in value:
            _check_shape(item, depth + 1)
    elif isinstance(value, str):
        _check_text(value)


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 and c not in "\t\n\r" for c in text)


def _check_text(text: str) -> None:
    if _has_control(text):
        raise invalid_value("Strings must not contain control characters.")


def _user_id(user_id: str) -> str:
    """Ids are UUIDs: one with control characters names nobody (and PostgreSQL refuses NUL)."""
    if _has_control(user_id):
        raise not_found("User not found.")
    return user_id


def _list_query(request: Request, params: Any) -> ListQuery:
    query = parse_list_query(params, _settings(request).limits)
    if query.start_index > _MAX_START_INDEX:
        query = replace(query, start_index=_MAX_START_INDEX)
    return query


async def _json_body(request: Request, *, check_shape: bool = True) -> dict[str, Any]:
    _bearer(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type not in _ACCEPTED_MEDIA_TYPES:
        raise invalid_syntax(f"Send the body as {SCIM_MEDIA_TYPE}, not {media_type}.")
    limit = _settings(request).max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(f"The request body is larger than {limit} bytes.")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise invalid_syntax(f"The body is not valid UTF-8 JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise invalid_syntax("The body must be a JSON object.")
    if check_shape:
        _check_shape(body)
    return body


async def _in_tenant(
    request: Request, use_case: Callable[[UserService], T], *, write: bool = False
) -> T:
    """Authenticate, then run ``use_case`` in one transaction on a worker thread."""
    token = _bearer(request)
    sessions = _settings(request).sessions
    correlation_id = correlation(request)

    def run() -> T:
        identity = None
        try:
            with (write_session if write else read_session)(sessions) as session:
                identity = authenticate(session, token)
                actor = Actor(f"scim:{identity.hint}", SCIM_CLIENT, correlation_id)
                return use_case(UserService(session, identity.tenant_id, actor))
        except RefusedChange as refused:
            # The request's transaction rolled back; the refusal is recorded on its own.
            assert identity is not None
            with write_session(sessions) as session:
                record(session, identity.tenant_id, actor, refused.change)
            raise

    return await run_in_threadpool(run)


def correlation(request: Request) -> str:
    """The request's correlation id (set by the web layer's middleware, else a fresh one)."""
    value = getattr(request.state, "correlation_id", None)
    if not isinstance(value, str):
        value = new_correlation_id()
        request.state.correlation_id = value
    return value


async def _authenticated(request: Request) -> None:
    await _in_tenant(request, lambda _service: None)


#: Beyond inSync: discovery tells the directory when its token expires, so it can warn.
TOKEN_EXPIRY_HEADER = "X-Scim-Token-Expires-At"  # noqa: S105 - a header name


async def _token_expiry(request: Request) -> str:
    token = _bearer(request)
    sessions = _settings(request).sessions

    def run() -> str:
        with read_session(sessions) as session:
            expires_at = authenticate(session, token).expires_at
        assert expires_at is not None
        return expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")

    return await run_in_threadpool(run)


def _user_response(request: Request, user: StoredUser, status: int = 200) -> Response:
    base = _base_url(request)
    resource = user.resource(base)
    params = request.query_params
    resource = project(
        resource,
        parse_attribute_list(params.get("attributes")),
        parse_attribute_list(params.get("excludedAttributes")),
    )
    headers = {"ETag": user.etag}
    if status == 201:
        headers["Location"] = f"{base}/Users/{user.id}"
    return scim_response(resource, status, headers)


def _list_response(
    request: Request, query: ListQuery, total: int, users: list[StoredUser]
) -> Response:
    base = _base_url(request)
    resources = [
        project(u.resource(base), query.attributes, query.excluded_attributes) for u in users
    ]
    return scim_response(
        {
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": total,
            "itemsPerPage": len(resources),
            "startIndex": query.start_index,
            "Resources": resources,
        }
    )


router = APIRouter(prefix=SCIM_PREFIX)


# -- discovery (RFC 7644 §4); authenticated because it reveals tenant configuration (§7.6) -----


@router.get("/ServiceProviderConfig")
async def get_service_provider_config(request: Request) -> Response:
    expires_at = await _token_expiry(request)
    limits = _settings(request).limits
    return scim_response(
        discovery.service_provider_config(
            _base_url(request),
            max_results=limits.max_results,
            bulk_operations=bulk_run.MAX_OPERATIONS,
            bulk_payload=_settings(request).max_body_bytes,
        ),
        headers={TOKEN_EXPIRY_HEADER: expires_at},
    )


@router.get("/ResourceTypes")
async def list_resource_types(request: Request) -> Response:
    await _authenticated(request)
    return scim_response(
        discovery.list_response([discovery.user_resource_type(_base_url(request))])
    )


@router.get("/ResourceTypes/{name}")
async def get_resource_type(request: Request, name: str) -> Response:
    await _authenticated(request)
    if name != "User":
        raise not_found(f"Resource type {name} is not offered here; only User is.")
    return scim_response(discovery.user_resource_type(_base_url(request)))


@router.get("/Schemas")
async def list_schemas(request: Request) -> Response:
    await _authenticated(request)
    return scim_response(discovery.list_response(discovery.schemas(_base_url(request))))


@router.get("/Schemas/{schema_id}")
async def get_schema(request: Request, schema_id: str) -> Response:
    await _authenticated(request)
    for schema in discovery.schemas(_base_url(request)):
        if schema["id"] == schema_id:
            return scim_response(schema)
    raise not_found(f"Schema {schema_id} is not offered here.")


# -- users (RFC 7644 §3) -------------------------------------------------------------------------


@router.get("/Users")
async def list_users(request: Request) -> Response:
    _bearer(request)
    query = _list_query(request, request.query_params)
    total, users = await _in_tenant(request, lambda service: service.search(query))
    return _list_response(request, query, total, users)


@router.post("/.search")
@router.post("/Users/.search")
async def search_users(request: Request) -> Response:
    """RFC 7644 §3.4.3; at the root it searches users too, the only resource type offered."""
    body = await _json_body(request)
    if SEARCH_REQUEST_SCHEMA not in (body.get("schemas") or []):
        raise invalid_syntax(f"A search request names the schema {SEARCH_REQUEST_SCHEMA}.")
    query = _list_query(request, body)
    total, users = await _in_tenant(request, lambda service: service.search(query))
    return _list_response(request, query, total, users)


@router.post("/Users/.evaluate")
async def evaluate_user(request: Request) -> Response:
    """Beyond inSync: preview which SCIM mapping would place this user, before pushing it.

    The body is the SCIM user a directory is about to POST; nothing is created. The answer
    names the mapping, profile and storage, or says exactly why the create would be refused.
    """
    body = await _json_body(request)
    result = await _in_tenant(request, lambda service: service.preview(body))
    return Response(orjson.dumps(result), media_type="application/json")


@router.post("/Users")
async def create_user(request: Request) -> Response:
    body = await _json_body(request)
    user = await _in_tenant(request, lambda service: service.create(body), write=True)
    return _user_response(request, user, 201)


@router.get("/Users/{user_id}")
async def get_user(request: Request, user_id: str) -> Response:
    user = await _in_tenant(request, lambda service: service.get(_user_id(user_id)))
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and etag_matches(if_none_match, user.version):
        return Response(status_code=304, headers={"ETag": user.etag})
    return _user_response(request, user)


@router.put("/Users/{user_id}")
async def replace_user(request: Request, user_id: str) -> Response:
    body = await _json_body(request)
    if_match = request.headers.get("if-match")
    user = await _in_tenant(
        request, lambda service: service.replace(_user_id(user_id), body, if_match), write=True
    )
    return _user_response(request, user)


@router.patch("/Users/{user_id}")
async def patch_user(request: Request, user_id: str) -> Response:
    body = await _json_body(request)
    if_match = request.headers.get("if-match")
    user = await _in_tenant(
        request, lambda service: service.patch(_user_id(user_id), body, if_match), write=True
    )
    return _user_response(request, user)


@router.delete("/Users/{user_id}")
async def delete_user(request: Request, user_id: str) -> Response:
    if_match = request.headers.get("if-match")
    await _in_tenant(
        request, lambda service: service.delete(_user_id(user_id), if_match), write=True
    )
    return Response(status_code=204)


@router.post("/Bulk")
async def bulk_request(request: Request) -> Response:
    """RFC 7644 §3.7: many user operations, one request, one commit (see :mod:`scimlink.sp.bulk`).

    The body's size is capped by ``maxPayloadSize`` as it is read, and the operations are
    counted before anything else is looked at, so an oversized request gets 413 (§3.7.4).
    """
    body = await _json_body(request, check_shape=False)
    parsed = bulk.parse_request(body, max_operations=bulk_run.MAX_OPERATIONS)
    _check_shape(body)
    progress = bulk_run.Progress(parsed, f"{_base_url(request)}/Users")
    bind = _settings(request).sessions.kw["bind"]
    parts = progress.parts(bind.dialect.name) or [[]]
    for part in parts:
        if progress.stopped:
            break
        run = partial(bulk_run.run, progress=progress, operations=part)
        await _in_tenant(request, run, write=True)
    return scim_response(bulk.response(progress.results))


@router.api_route("/Groups", methods=["GET", "POST"])
@router.api_route("/Groups/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def groups_not_offered(request: Request) -> Response:
    await _authenticated(request)
    raise ScimError(404, "Groups are not supported: this service provider manages users only.")
