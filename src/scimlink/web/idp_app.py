"""The directory half's ASGI application: the admin API at ``/api/v1`` (and, later, the
portals), with correlation ids and JSON errors for everything outside the API."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from scimlink.idp.admin_api import create_idp_admin_api
from scimlink.idp.provisioning.engine import Engine
from scimlink.web.correlation import CorrelationMiddleware

IDP_ADMIN_API_PREFIX = "/api/v1"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code)


def create_idp_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="scimlink directory half", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount(IDP_ADMIN_API_PREFIX, create_idp_admin_api(engine))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(CorrelationMiddleware)
    return app
