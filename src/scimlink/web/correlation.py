"""Correlation ids: one per request, taken from ``X-Correlation-Id`` (or ``X-Request-Id``) when
the client sends a sane one, echoed in the response, written to the audit trail and the logs."""

from __future__ import annotations

from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from scimlink.sp.audit import new_correlation_id

HEADER = "X-Correlation-Id"
_INCOMING = (b"x-correlation-id", b"x-request-id")


class CorrelationMiddleware:
    """A plain ASGI middleware: no per-request task or body buffering (it is on every call)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = None
        for name, value in scope["headers"]:
            if name in _INCOMING:
                offered = value.decode("latin-1")
                break
        correlation_id = new_correlation_id(offered)
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        header = (HEADER.lower().encode(), correlation_id.encode())

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_header)
