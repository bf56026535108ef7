"""Outbound SCIM: the directory's calls to one application, through scim2-client.

Payloads are sent as the attribute mapping built them (``check_request_payload=False``), so
custom attributes a target's policies filter on (Druva's ``department``) reach it unchanged;
responses are read as plain JSON. Every call becomes an :class:`Exchange` (what was sent, what
came back, how long it took) for the provisioning log, with the correlation id sent in
``X-Correlation-Id``.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

import httpx2
from scim2_client import SCIMClientException
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import EnterpriseUser
from scim2_models import ListResponse
from scim2_models import User

from scimlink.idp.provisioning.transport import KeptAliveTransport

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
_OPTIONS: dict[str, Any] = {
    "check_request_payload": False,
    "check_response_payload": False,
    "raise_scim_errors": False,
    "expected_status_codes": None,
}
_SECRET_KEYS = {"password"}
#: The resource model, and the list answer scim2-client reads queries with. Pydantic caches a
#: parametrized class only while something holds it: without these references every lookup
#: rebuilt the list class (about 4 ms of CPU) once the garbage collector had run.
_USER = User[EnterpriseUser]
_USER_LIST = ListResponse[_USER]


@dataclass(slots=True)
class Exchange:
    """One HTTP call to the target. ``status`` is ``None`` when no response came back."""

    method: str
    url: str
    request: dict[str, Any] | None
    status: int | None = None
    response: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    duration_ms: float = 0.0
    error: str | None = None

    @property
    def detail(self) -> str:
        """The application's own words: its SCIM ``detail``, else the status or the error."""
        if isinstance(self.response, dict) and isinstance(self.response.get("detail"), str):
            return str(self.response["detail"])
        if self.error:
            return self.error
        return f"HTTP {self.status}"


def _redacted(body: dict[str, Any] | None) -> dict[str, Any] | None:
    if body is None:
        return None
    return {k: ("***" if k in _SECRET_KEYS else v) for k, v in body.items()}


class ScimTarget:
    """A SCIM 2.0 service provider reached with a bearer token.

    ``transport`` lets tests and benchmarks hand in any httpx2 transport. By default calls go
    through :class:`KeptAliveTransport`, unless the environment names a proxy for this URL
    (``HTTPS_PROXY``, ``NO_PROXY`` …): httpx2 applies those only to its own transport.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 15.0,
        transport: httpx2.BaseTransport | None = None,
        verify: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx2.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/scim+json",
                "User-Agent": "scimlink-directory",
            },
            timeout=timeout,
            transport=transport
            or (None if proxied(base_url) else KeptAliveTransport(verify=verify)),
            verify=verify,
        )
        self.scim = SyncSCIMClient(self.http, resource_models=(_USER,))
        self.correlation_id = ""

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ScimTarget:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None, send: Any) -> Exchange:
        exchange = Exchange(method, f"{self.base_url}{path}", _redacted(body))
        started = time.perf_counter()
        captured: list[httpx2.Response] = []

        def keep(response: httpx2.Response) -> None:
            response.read()
            captured.append(response)

        self.http.event_hooks = {"request": [], "response": [keep]}
        self.http.headers["X-Correlation-Id"] = self.correlation_id or "-"
        try:
            send()
        except SCIMClientException as exc:
            cause = exc.__cause__ or exc
            exchange.error = _describe(cause)
        except httpx2.HTTPError as exc:
            exchange.error = _describe(exc)
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            self.http.event_hooks = {"request": [], "response": []}
        if captured:
            response = captured[-1]
            exchange.status = response.status_code
            exchange.headers = {k.lower(): v for k, v in response.headers.items()}
            if response.content:
                try:
                    parsed = response.json()
                except ValueError:
                    parsed = {"text": response.text[:500]}
                exchange.response = parsed if isinstance(parsed, dict) else {"json": parsed}
            exchange.error = None if exchange.status is not None else exchange.error
        return exchange

    # -- the calls the engine makes --------------------------------------------------------------

    def service_provider_config(self) -> Exchange:
        return self._call(
            "GET", "/ServiceProviderConfig", None, lambda: self.http.get("/ServiceProviderConfig")
        )

    def find_by_user_name(self, user_name: str) -> Exchange:
        return self.find_many([user_name])

    def find_many(self, user_names: list[str]) -> Exchange:
        """Look several users up in one call: ``userName eq "a" or userName eq "b"``.

        ``or`` is part of every filter grammar (RFC 7644 §3.4.2.2), and ``userName``
        comparisons ignore case (RFC 7643 §4.1.1), so callers match answers case-insensitively.
        """
        clause = " or ".join(f'userName eq "{_quoted(name)}"' for name in user_names)
        params = {"filter": clause, "count": max(2, len(user_names))}
        return self._call(
            "GET",
            f"/Users?filter={clause}",
            None,
            lambda: self.scim.query("User", query_parameters=params, **_OPTIONS),
        )

    def get(self, remote_id: str) -> Exchange:
        return self._call(
            "GET",
            f"/Users/{remote_id}",
            None,
            lambda: self.scim.query("User", remote_id, **_OPTIONS),
        )

    def list_page(self, start_index: int, count: int) -> Exchange:
        params = {"startIndex": start_index, "count": count}
        return self._call(
            "GET",
            f"/Users?startIndex={start_index}&count={count}",
            None,
            lambda: self.scim.query("User", query_parameters=params, **_OPTIONS),
        )

    def create(self, body: dict[str, Any]) -> Exchange:
        return self._call(
            "POST", "/Users", body, lambda: self.scim.create("User", body, url="/Users", **_OPTIONS)
        )

    def bulk(self, operations: list[dict[str, Any]]) -> Exchange:
        """One bulk request (RFC 7644 §3.7); the log keeps each operation, not this body."""
        body = {"schemas": [BULK_REQUEST], "Operations": operations}
        return self._call("POST", "/Bulk", None, lambda: self.scim.bulk(body, **_OPTIONS))

    def replace(self, remote_id: str, body: dict[str, Any]) -> Exchange:
        path = f"/Users/{remote_id}"
        return self._call(
            "PUT", path, body, lambda: self.scim.replace("User", body, url=path, **_OPTIONS)
        )

    def patch(self, remote_id: str, values: dict[str, Any]) -> Exchange:
        """One path-less ``replace`` of the given attributes (RFC 7644 §3.5.2.3)."""
        body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": values}]}
        path = f"/Users/{remote_id}"
        return self._call(
            "PATCH", path, body, lambda: self.scim.modify("User", remote_id, body, **_OPTIONS)
        )

    def delete(self, remote_id: str) -> Exchange:
        return self._call(
            "DELETE",
            f"/Users/{remote_id}",
            None,
            lambda: self.scim.delete(
                "User", remote_id, raise_scim_errors=False, expected_status_codes=None
            ),
        )


def proxied(url: str) -> bool:
    """Whether the environment names a proxy for ``url``'s scheme (``HTTPS_PROXY``,
    ``ALL_PROXY`` …, read as httpx2 reads them); httpx2 then decides, ``NO_PROXY`` included."""
    proxies = urllib.request.getproxies()
    return bool(proxies.get(urlsplit(url).scheme) or proxies.get("all"))


def lookup_part_url(url: str, user_name: str, together: int) -> str:
    """How one user's part of a batched lookup is logged: its own clause of the shared filter.

    The shared URL names every user of the call (up to 8 KiB): stored in each user's row (cut
    at 2 000 characters) it was a third of the directory's database after an initial sync,
    and the correlation id already ties the parts to the one call.
    """
    base = url.split("?", 1)[0]
    return f'{base}?filter=userName eq "{_quoted(user_name)}" or … ({together} users in one filter)'


def _quoted(value: str) -> str:
    """A JSON string's escapes, as SCIM filter literals use them (RFC 7644 §3.4.2.2)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _describe(exc: BaseException) -> str:
    """A readable cause for a call that got no HTTP response."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx2.TimeoutException):
        return f"timeout: {text}"
    if isinstance(exc, httpx2.ConnectError):
        lowered = text.lower()
        if "certificate" in lowered or "ssl" in lowered or "tls" in lowered:
            return f"TLS error: {text}"
        return f"unreachable: {text}"
    return f"{type(exc).__name__}: {text}"
