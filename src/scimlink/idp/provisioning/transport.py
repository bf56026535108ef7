"""The directory's HTTP/1.1 transport: the standard library's ``http.client`` under httpx2.

The engine makes one short call after another to the same target, so the client's own CPU per
call is part of what a sync costs the machine. httpx2's default transport (httpcore2 and h11,
both pure Python) spent about 0.25 ms of a call's 0.6 ms; ``http.client`` sends the headers and
a small body in one ``send`` and parses the answer in a fraction of that. httpx2 keeps
everything above the transport: URLs, headers, redirects, content decoding and the exceptions
callers see, which this transport raises as httpx2's own. (httpx2 applies proxies named in the
environment only to its own transport, so ``ScimTarget`` keeps that one for a target behind a
proxy.)

Connections are kept alive per origin and reused only when idle and not readable: a kept
connection that turned readable was closed (or written to) by the server, the same test
httpcore2 makes, so a request is never sent on a connection known to be dead.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2

_Origin = tuple[str, str, int]
#: Idle connections kept per origin (the engine's threads each hold their own client).
_KEEP = 8


class KeptAliveTransport(httpx2.BaseTransport):
    """HTTP/1.1 with keep-alive over ``http.client``; TLS as httpx2 would verify it."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True) -> None:
        self._tls = httpx2.create_ssl_context(verify=verify)
        self._idle: dict[_Origin, list[_Connection | _TlsConnection]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        body = request.read()
        connection = self._connection(origin, timeouts.get("connect"), request)
        try:
            with httpx_errors(request, "write"):
                connection.sock.settimeout(timeouts.get("write"))
                connection.putrequest(
                    request.method,
                    url.raw_path.decode("ascii"),
                    skip_host=True,
                    skip_accept_encoding=True,
                )
                for name, value in request.headers.raw:
                    connection.putheader(name, value)
                connection.send_request(body)
            with httpx_errors(request, "read"):
                connection.sock.settimeout(timeouts.get("read"))
                response = connection.getresponse()
                content = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._release(origin, connection)
        return httpx2.Response(
            response.status,
            headers=response.getheaders(),
            content=content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode()},
            request=request,
        )

    def _connection(
        self, origin: _Origin, timeout: float | None, request: httpx2.Request
    ) -> _Connection | _TlsConnection:
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                kept = idle.pop()
                if kept.sock is not None and not _readable(kept.sock):
                    return kept
                kept.close()
        scheme, host, port = origin
        connection: _Connection | _TlsConnection
        if scheme == "https":
            connection = _TlsConnection(host, port, timeout=timeout, context=self._tls)
        else:
            connection = _Connection(host, port, timeout=timeout)
        with httpx_errors(request, "connect"):
            connection.connect()
        assert connection.sock is not None
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _release(self, origin: _Origin, connection: _Connection | _TlsConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < _KEEP:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            kept = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in kept:
            connection.close()


class _EndOfHeaders:
    """The response's file while its head is read, noting whether the peer closed before the
    blank line that ends it (``http.client`` would take a cut-off head as complete)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.cut = False

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self.raw.readline(limit)
        self.cut = self.cut or not line
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _Response(http.client.HTTPResponse):
    """An answer whose head must arrive whole, as h11 requires of httpx2's own transport."""

    def begin(self) -> None:
        watched = _EndOfHeaders(self.fp)
        self.fp = watched  # type: ignore[assignment]
        try:
            super().begin()
        finally:
            self.fp = watched.raw
        if watched.cut:
            raise http.client.RemoteDisconnected("The answer ended before its headers did.")


class _OneWrite:
    """Sends a request's head and body in one write: one segment (and one wake-up of the
    server) for a small request instead of two."""

    body = b""

    def send_request(self, body: bytes) -> None:
        self.body = body
        try:
            self.endheaders()  # type: ignore[attr-defined]
        finally:
            self.body = b""

    def send(self, data: Any) -> None:
        if self.body:
            data, self.body = bytes(data) + self.body, b""
        super().send(data)  # type: ignore[misc]


class _Connection(_OneWrite, http.client.HTTPConnection):
    response_class = _Response


class _TlsConnection(_OneWrite, http.client.HTTPSConnection):
    response_class = _Response


def _readable(sock: socket.socket) -> bool:
    """An idle kept-alive connection that is readable was closed by the peer (or is out of
    step with it): either way it must not carry another request."""
    try:
        poller = select.poll()  # not select(): no limit on the descriptor's number
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


@contextmanager
def httpx_errors(request: httpx2.Request, phase: str) -> Iterator[None]:
    """The standard library's errors as the httpx2 exceptions callers handle."""
    try:
        yield
    except TimeoutError as exc:
        timeout = {
            "connect": httpx2.ConnectTimeout,
            "write": httpx2.WriteTimeout,
            "read": httpx2.ReadTimeout,
        }[phase]
        raise timeout(str(exc) or "timed out", request=request) from exc
    except http.client.HTTPException as exc:
        # RemoteDisconnected, BadStatusLine, IncompleteRead, LineTooLong ...
        text = str(exc) or type(exc).__name__
        raise httpx2.RemoteProtocolError(text, request=request) from exc
    except OSError as exc:  # refused, reset, unreachable, DNS, TLS (ssl.SSLError)
        error = {
            "connect": httpx2.ConnectError,
            "write": httpx2.WriteError,
            "read": httpx2.ReadError,
        }[phase]
        raise error(str(exc) or type(exc).__name__, request=request) from exc
