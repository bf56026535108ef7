"""The app half's ASGI application: the SCIM endpoint, the admin API, and error handling.

No traceback ever reaches a client: SCIM paths answer RFC 7644 §3.12 error bodies for every
failure, including unknown routes, wrong methods and unexpected exceptions (logged with a
correlation id that the client also receives).
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI
from fastapi import Request
from fastapi import Response
from sqlalchemy import Engine
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from scimlink.config import Settings
from scimlink.scim.errors import ScimError
from scimlink.scim.errors import invalid_value
from scimlink.scim.query import Limits
from scimlink.sp.admin_api import ADMIN_API_PREFIX
from scimlink.sp.admin_api import AdminApiSettings
from scimlink.sp.admin_api import create_admin_api
from scimlink.sp.scim_api import ScimSettings
from scimlink.sp.scim_api import router as scim_router
from scimlink.sp.scim_api import scim_response
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.web.correlation import CorrelationMiddleware

log = logging.getLogger("scimlink.sp")


def _scim_error(request: Request, error: ScimError) -> Response:
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="scimlink", error="invalid_token"'
    return scim_response(error.to_body(), error.status, headers)


def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}."
    elif exc.status_code == 404:
        detail = f"Nothing is served at {request.url.path}."
    else:
        detail = str(exc.detail)
    return scim_response(ScimError(exc.status_code, detail).to_body(), exc.status_code)


def _data_error(request: Request, exc: DataError) -> Response:
    """A value the database refuses (too long for its column, say) is the client's 400, not a 500.

    The use case rolled back. The database's message names columns and may quote the value, so
    only its class is logged and the client gets a generic detail.
    """
    log.warning(
        "database refused a value on %s %s: %s",
        request.method,
        request.url.path,
        type(exc.orig).__name__,
    )
    detail = "A value is too long or otherwise cannot be stored."
    return scim_response(invalid_value(detail).to_body(), 400)


def _unexpected(request: Request, exc: Exception) -> Response:
    correlation = getattr(request.state, "correlation_id", None) or uuid.uuid4().hex
    log.error(
        "unexpected error %s on %s %s",
        correlation,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    detail = f"Internal error; quote correlation id {correlation} to the administrator."
    return scim_response(ScimError(500, detail).to_body(), 500)


def create_sp_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    default_root: str = "http://127.0.0.1:8000",
) -> FastAPI:
    """Build the app half: SCIM at ``/insync/scim``, the admin API at ``/insync/api/v1``.

    The schema must already be migrated (``sp serve`` does it). ``default_root`` is where the
    server listens, for the SCIM base URLs shown to administrators when no public URL is set.
    """
    settings = settings or Settings()
    engine = engine or make_engine(settings.sp_database)
    sessions = make_sessionmaker(engine)
    app = FastAPI(
        title="scimlink app half (SCIM service provider)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.engine = engine
    app.state.scim = ScimSettings(
        sessions=sessions,
        limits=Limits(
            max_results=settings.sp_max_results,
            max_filter_length=settings.sp_max_filter_length,
            max_filter_nodes=settings.sp_max_filter_nodes,
            max_filter_values=settings.sp_max_filter_values,
            max_filter_depth=settings.sp_max_filter_depth,
        ),
        max_body_bytes=settings.sp_max_body_bytes,
        public_url=settings.sp_public_url,
    )
    app.include_router(scim_router)
    app.mount(
        ADMIN_API_PREFIX,
        create_admin_api(AdminApiSettings(sessions, settings.sp_scim_urls(default_root))),
    )
    app.add_middleware(CorrelationMiddleware)
    app.add_exception_handler(ScimError, _scim_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DataError, _data_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    return app
