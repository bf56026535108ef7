"""A fault-injecting httpx2 transport: a test double of the network, never of our own code.

It wraps the directory's real transport (:class:`KeptAliveTransport`) to a live server and
applies programmable rules to the requests that match them, first match wins:

* ``refuse`` - the connection is refused (:class:`httpx2.ConnectError`), nothing is sent;
* ``answer`` - a canned response (429 with ``Retry-After``, 500, 401, ...), nothing is sent;
* ``lose_response`` - the request reaches the real server (which commits it), then the answer
  is lost (:class:`httpx2.ReadTimeout`);
* ``before`` - run a side effect (another actor's write at the target), then forward.

A rule applies ``times`` times (or forever) to requests matching its ``method`` and whose URL
or body mentions ``mentions``. Every request that reaches the transport is recorded with what
happened to it, so a test can count requests (``len(transport.seen)``) and those that reached
the real server (``transport.forwarded``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import unquote

import httpx2

from scimlink.idp.provisioning.transport import KeptAliveTransport

SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@dataclass(frozen=True, slots=True)
class Seen:
    """One request that reached the transport, and what the transport did with it."""

    method: str
    url: str
    outcome: str
    status: int | None = None

    @property
    def forwarded(self) -> bool:
        return self.outcome in ("forwarded", "lost")


@dataclass(slots=True)
class Rule:
    kind: str
    method: str | None = None
    mentions: str | None = None
    times: int | None = None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    action: Callable[[httpx2.Request], None] | None = None
    hits: int = 0

    def matches(self, request: httpx2.Request) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and request.method != self.method:
            return False
        if self.mentions is not None:
            text = unquote(str(request.url)) + request.content.decode("utf-8", "replace")
            if self.mentions not in text:
                return False
        return True


class FaultyTransport(httpx2.BaseTransport):
    """A real transport with programmable faults in front of it.

    ``close`` is a no-op (every ``ScimTarget`` closes its client, and with it its transport,
    after each pair); the owner calls :meth:`shutdown` at the end.
    """

    def __init__(self, inner: httpx2.BaseTransport | None = None) -> None:
        self.inner = inner or KeptAliveTransport()
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    # -- programming ------------------------------------------------------------------------------

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def refuse(
        self, *, times: int | None = None, method: str | None = None, mentions: str | None = None
    ) -> Rule:
        """Refuse the connection (the target is down)."""
        return self._add(Rule("refuse", method, mentions, times))

    def answer(
        self,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
        times: int | None = None,
        method: str | None = None,
        mentions: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> Rule:
        """Answer ``status`` with ``body`` (by default a SCIM error) without reaching the server."""
        body = body or {
            "schemas": [SCIM_ERROR],
            "status": str(status),
            "detail": detail or f"injected {status}",
        }
        return self._add(Rule("answer", method, mentions, times, status, dict(headers or {}), body))

    def lose_response(
        self, *, times: int | None = 1, method: str | None = None, mentions: str | None = None
    ) -> Rule:
        """Forward to the server (it commits), then lose the answer: a read timeout."""
        return self._add(Rule("lose", method, mentions, times))

    def before(
        self,
        action: Callable[[httpx2.Request], None],
        *,
        times: int | None = 1,
        method: str | None = None,
        mentions: str | None = None,
    ) -> Rule:
        """Run ``action`` (another actor's write at the target), then forward the request."""
        return self._add(Rule("before", method, mentions, times, action=action))

    def heal(self) -> None:
        """Drop every rule: the network is healthy again."""
        with self._lock:
            self.rules.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.seen.clear()

    # -- observing --------------------------------------------------------------------------------

    @property
    def forwarded(self) -> list[Seen]:
        """The requests that reached the real server."""
        return [s for s in self.seen if s.forwarded]

    def count(self, method: str | None = None, *, outcome: str | None = None) -> int:
        return sum(
            1
            for s in self.seen
            if (method is None or s.method == method) and (outcome is None or s.outcome == outcome)
        )

    # -- the transport ----------------------------------------------------------------------------

    def _rule_for(self, request: httpx2.Request) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(request):
                    rule.hits += 1
                    return rule
        return None

    def _record(self, request: httpx2.Request, outcome: str, status: int | None = None) -> None:
        with self._lock:
            self.seen.append(Seen(request.method, unquote(str(request.url)), outcome, status))

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        rule = self._rule_for(request)
        if rule is not None and rule.kind == "refuse":
            self._record(request, "refused")
            raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)
        if rule is not None and rule.kind == "answer":
            self._record(request, "answered", rule.status)
            return httpx2.Response(
                rule.status,
                headers={"Content-Type": "application/scim+json", **rule.headers},
                content=json.dumps(rule.body).encode(),
                request=request,
            )
        if rule is not None and rule.kind == "before":
            assert rule.action is not None
            rule.action(request)
        response = self.inner.handle_request(request)
        if rule is not None and rule.kind == "lose":
            response.read()
            response.close()
            self._record(request, "lost", response.status_code)
            raise httpx2.ReadTimeout("The read operation timed out", request=request)
        self._record(request, "forwarded", response.status_code)
        return response

    def close(self) -> None:
        """Kept open: each ``ScimTarget`` closes its client after one pair."""

    def shutdown(self) -> None:
        self.inner.close()
