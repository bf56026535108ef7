"""The directory's HTTP transport against real loopback servers that misbehave on purpose.

Each server is a plain socket server whose behaviour per connection is a function, so a test
can close idle connections, cut an answer short, never answer, chunk and compress, or speak
TLS with a certificate nobody trusts, and count the connections the client opened.
"""

from __future__ import annotations

import datetime
import gzip
import http.client
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scimlink.idp.provisioning.connector import ScimTarget
from scimlink.idp.provisioning.transport import KeptAliveTransport
from scimlink.idp.provisioning.transport import httpx_errors

CREATED = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u-1", "userName": "a"}
BODY = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", "active": True}


class Request:
    def __init__(self, head: bytes, body: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.line = lines[0]
        self.headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
        }
        self.body = body


def read_request(conn: socket.socket, buffer: bytearray) -> Request | None:
    """One request from ``conn`` (``buffer`` keeps what was read past it), or None at EOF."""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    request = Request(head, b"")
    length = int(request.headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        rest += chunk
    request.body = rest[:length]
    buffer[:] = rest[length:]
    return request


def answer(status: int = 201, body: Any = CREATED, headers: dict[str, str] | None = None) -> bytes:
    content = json.dumps(body).encode()
    lines = [
        f"HTTP/1.1 {status} Whatever",
        "Content-Type: application/scim+json",
        f"Content-Length: {len(content)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


Behaviour = Callable[[socket.socket, "Server"], None]


class Server:
    """Accepts connections on a loopback port; ``behaviour`` serves each in its own thread."""

    def __init__(self, behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> None:
        self.behaviour = behaviour
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[Request] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/scim/v2"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.behaviour(conn, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(behaviour, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def keep_alive(conn: socket.socket, server: Server) -> None:
    """A well-behaved HTTP/1.1 server: answers every request on the connection."""
    buffer = bytearray()
    while (request := read_request(conn, buffer)) is not None:
        server.requests.append(request)
        conn.sendall(answer())


def one_request_then_close(conn: socket.socket, server: Server) -> None:
    """Answers one request as if it would keep the connection, then closes it while idle."""
    request = read_request(conn, bytearray())
    if request is not None:
        server.requests.append(request)
        conn.sendall(answer())


def test_calls_reuse_one_connection_and_send_each_request_whole(
    serve: Callable[..., Server],
) -> None:
    server = serve(keep_alive)
    with ScimTarget(server.url, "secret-token") as target:
        target.correlation_id = "corr-1"
        first = target.create(BODY)
        target.correlation_id = "corr-2"
        second = target.create(BODY)

    assert (first.status, second.status) == (201, 201)
    assert first.response == CREATED
    assert server.connections == 1
    sent = server.requests[0]
    assert sent.line == "POST /scim/v2/Users HTTP/1.1"
    assert sent.headers["host"] == f"127.0.0.1:{server.port}"
    assert sent.headers["authorization"] == "Bearer secret-token"
    assert sent.headers["x-correlation-id"] == "corr-1"
    assert json.loads(sent.body) == BODY
    assert server.requests[1].headers["x-correlation-id"] == "corr-2"


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Callable[..., Server],
) -> None:
    server = serve(one_request_then_close)
    with ScimTarget(server.url, "t") as target:
        first = target.create(BODY)
        # Give the server's close time to arrive: the kept connection is now readable (EOF).
        threading.Event().wait(0.2)
        second = target.create(BODY)

    assert (first.status, second.status) == (201, 201)
    assert server.connections == 2
    assert len(server.requests) == 2


def test_an_answer_that_says_close_is_not_kept(serve: Callable[..., Server]) -> None:
    def close_after(conn: socket.socket, server: Server) -> None:
        buffer = bytearray()
        while (request := read_request(conn, buffer)) is not None:
            server.requests.append(request)
            conn.sendall(answer(headers={"Connection": "close"}))

    server = serve(close_after)
    with ScimTarget(server.url, "t") as target:
        assert target.create(BODY).status == 201
        assert target.create(BODY).status == 201
    assert server.connections == 2


def test_a_refused_connection_is_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with ScimTarget(f"http://127.0.0.1:{port}/scim/v2", "t") as target:
        exchange = target.create(BODY)
    assert exchange.status is None
    assert exchange.error is not None
    assert exchange.error.startswith("unreachable:")


def test_a_server_that_never_answers_is_a_timeout(serve: Callable[..., Server]) -> None:
    release = threading.Event()

    def silent(conn: socket.socket, server: Server) -> None:
        read_request(conn, bytearray())
        release.wait(10)

    server = serve(silent)
    try:
        with ScimTarget(server.url, "t", timeout=0.3) as target:
            exchange = target.create(BODY)
    finally:
        release.set()
    assert exchange.status is None
    assert exchange.error is not None
    assert exchange.error.startswith("timeout:")


def test_an_answer_cut_short_is_no_answer_and_the_connection_is_dropped(
    serve: Callable[..., Server],
) -> None:
    def cut_first(conn: socket.socket, server: Server) -> None:
        buffer = bytearray()
        while (request := read_request(conn, buffer)) is not None:
            server.requests.append(request)
            if server.connections == 1:
                conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Len")
                return
            conn.sendall(answer())

    server = serve(cut_first)
    with ScimTarget(server.url, "t") as target:
        cut = target.create(BODY)
        again = target.create(BODY)
    assert cut.status is None
    assert cut.error is not None
    assert "RemoteProtocolError" in cut.error
    assert again.status == 201
    assert server.connections == 2


def test_chunked_and_compressed_answers_are_read_whole(serve: Callable[..., Server]) -> None:
    def chunked_gzip(conn: socket.socket, server: Server) -> None:
        buffer = bytearray()
        while (request := read_request(conn, buffer)) is not None:
            server.requests.append(request)
            packed = gzip.compress(json.dumps(CREATED).encode())
            halves = [packed[: len(packed) // 2], packed[len(packed) // 2 :]]
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in halves) + b"0\r\n\r\n"
            conn.sendall(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/scim+json\r\n"
                b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
            )

    server = serve(chunked_gzip)
    with ScimTarget(server.url, "t") as target:
        first = target.create(BODY)
        second = target.create(BODY)
    assert first.response == CREATED
    assert second.response == CREATED
    assert server.connections == 1


def _self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scimlink test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return context


def test_tls_is_verified_and_an_untrusted_certificate_is_a_tls_error(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(keep_alive, tls=_self_signed(tmp_path))

    with ScimTarget(server.url, "t") as target:
        refused = target.create(BODY)
    assert refused.status is None
    assert refused.error is not None
    assert refused.error.startswith("TLS error:"), refused.error
    assert server.requests == []

    trusted = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    with httpx2.Client(transport=KeptAliveTransport(verify=trusted)) as client:
        assert client.get(f"{server.url}/Users").status_code == 201
        assert client.get(f"{server.url}/Users").status_code == 201
    with ScimTarget(server.url, "t", verify=False) as target:
        assert target.create(BODY).status == 201
    assert len(server.requests) == 3


def test_a_proxy_named_in_the_environment_is_used(
    serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx2 applies HTTP_PROXY only to its own transport, so a target behind one gets it."""
    proxy = serve(keep_alive)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with ScimTarget("http://scim.invalid/scim/v2", "t") as target:
        exchange = target.create(BODY)
    assert exchange.status == 201
    [request] = proxy.requests
    assert request.line == "POST http://scim.invalid/scim/v2/Users HTTP/1.1"


@pytest.mark.parametrize(
    ("phase", "raised", "expected"),
    [
        ("connect", TimeoutError(), httpx2.ConnectTimeout),
        ("write", TimeoutError(), httpx2.WriteTimeout),
        ("read", TimeoutError("timed out"), httpx2.ReadTimeout),
        ("connect", ConnectionRefusedError(111, "Connection refused"), httpx2.ConnectError),
        ("write", BrokenPipeError(32, "Broken pipe"), httpx2.WriteError),
        ("read", ConnectionResetError(104, "Connection reset"), httpx2.ReadError),
        ("read", http.client.IncompleteRead(b"", 10), httpx2.RemoteProtocolError),
    ],
)
def test_standard_library_errors_become_the_httpx2_errors_callers_handle(
    phase: str, raised: BaseException, expected: type[httpx2.HTTPError]
) -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:1/scim/v2/Users")
    with pytest.raises(expected) as caught, httpx_errors(request, phase):
        raise raised
    assert caught.value.request is request
    assert str(caught.value)
