"""The provisioning engine: claim due (application, user) pairs, bring each application to the
desired state with the fewest SCIM calls, and record every step.

Per pair: the desired state (attribute mapping + scope) is compared with the link (what the
application last accepted). Unchanged pairs cost no call. Otherwise the connector looks up by
``userName`` before creating, adopts on 409, re-creates on 404, and sends ``active=false`` (or
deletes) when the user leaves scope. Transient failures (no response, 429, 5xx) retry with full
jitter and ``Retry-After``; a 401 pauses the application (no retry storm); any other 4xx
marks that user's link failed with the application's own message. An application whose recent
calls mostly fail is quarantined for a while: its rows wait instead of hammering it.

A pair's outcome (its log entries, its link and its outbox row) commits in one transaction
after its calls. A crash before that commit leaves the row to be claimed again once its lease
runs out, and the ``pending`` link written when it was claimed makes the next pass look the user
up first, so nothing is created twice (security.md E4, E8).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

import httpx2
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.idp import outbox
from scimlink.idp.directory import user_view
from scimlink.idp.models import Application
from scimlink.idp.models import DirectoryUser
from scimlink.idp.models import Link
from scimlink.idp.models import LogEntry
from scimlink.idp.provisioning import backoff
from scimlink.idp.provisioning.connector import Exchange
from scimlink.idp.provisioning.connector import ScimTarget
from scimlink.idp.provisioning.desired import Desired
from scimlink.idp.provisioning.desired import desired
from scimlink.idp.secrets import SecretBox
from scimlink.storage.base import utcnow
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session

log = logging.getLogger("scimlink.idp.engine")
TransportFactory = Callable[[Application], httpx2.BaseTransport | None]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    lease: timedelta = timedelta(minutes=2)
    batch: int = 20
    timeout: float = 15.0
    #: Quarantine: of the last ``window`` calls, at least ``minimum`` made and ``ratio`` failed.
    window: int = 40
    minimum: int = 20
    ratio: float = 0.8
    quarantine: timedelta = timedelta(minutes=5)
    verify_tls: bool = True


@dataclass(slots=True)
class Step:
    """One call made for a pair, with what it meant."""

    name: str
    exchange: Exchange | None
    decision: str


@dataclass(slots=True)
class Outcome:
    """What processing one pair did: the steps for the log and the link to store."""

    steps: list[Step] = field(default_factory=list)
    remote_id: str | None = None
    state: str | None = None
    digest: str | None = None
    detail: str | None = None


class Failure(Exception):
    """A call that did not succeed, with the steps made before it."""

    def __init__(self, exchange: Exchange) -> None:
        super().__init__(exchange.detail)
        self.exchange = exchange
        self.outcome = Outcome()


class Transient(Failure):
    """No answer, 429 or 5xx: try again later."""


class Unauthorized(Failure):
    """401: the application refused the token."""


class Permanent(Failure):
    """Any other refusal: this user's change cannot succeed as it is."""


def classify(exchange: Exchange, *, ok: tuple[int, ...]) -> Exchange:
    """Raise the failure class of a call, or return it when its status is one of ``ok``."""
    status = exchange.status
    if status in ok:
        return exchange
    if status is None or status == 429 or status >= 500:
        raise Transient(exchange)
    if status == 401:
        raise Unauthorized(exchange)
    # 403 is a refusal of this change (Druva: a user an administrator preserved), not of the
    # token: the token was accepted, or the answer would be 401 (RFC 6750 §3.1).
    raise Permanent(exchange)


@dataclass(frozen=True, slots=True)
class PairState:
    app: Application
    user: dict[str, Any] | None
    username: str
    desired: Desired
    link: Link | None


def load_pair(session: Session, app_id: str, user_id: str) -> PairState:
    app = session.get(Application, app_id)
    assert app is not None
    row = session.get(DirectoryUser, user_id)
    user = user_view(row) if row is not None else None
    bound = bool(outbox.in_scope(session, app_id, [user_id])) if row is not None else False
    link = session.get(Link, (app_id, user_id))
    want = desired(user, bound, list(app.attribute_map))
    username = row.username if row is not None else (link.username if link else user_id)
    session.expunge_all()
    return PairState(app, user, username, want, link)


def unchanged(pair: PairState) -> bool:
    """Nothing to send: the application accepted exactly this, or never had an absent user.

    A ``pending`` link without a remote id means a create was attempted and its outcome is
    unknown (the answer was lost, or the worker died): the application may hold the user.
    """
    link = pair.link
    if not pair.desired.in_scope and (
        link is None or (link.remote_id is None and link.state != "pending")
    ):
        return True
    return (
        link is not None
        and link.remote_id is not None
        and link.state in ("active", "inactive")
        and link.accepted_hash == pair.desired.digest
        and (link.state == "active") == pair.desired.in_scope
    )


def _values(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "schemas"}


def converge(target: ScimTarget, pair: PairState) -> Outcome:
    """The SCIM calls that bring the application to the desired state for one pair.

    Raises :class:`Transient`, :class:`Unauthorized` or :class:`Permanent` on failure, with the
    steps made so far on the exception's ``outcome``.
    """
    out = Outcome()
    try:
        if not pair.desired.in_scope:
            assert pair.link is not None
            remote_id = pair.link.remote_id or _find(target, pair.username, out)
            if remote_id is None:
                out.state, out.digest = "inactive", pair.desired.digest
                return out
            _deprovision(target, pair, remote_id, out)
            return out
        remote_id = pair.link.remote_id if pair.link else None
        if remote_id is None:
            remote_id = _find(target, pair.username, out)
        if remote_id is None and _create(target, pair, out):
            return out
        if remote_id is None:
            # 409 on create: the user exists after all (a create whose answer was lost).
            remote_id = _find(target, pair.username, out)
            if remote_id is None:
                raise Permanent(out.steps[-2].exchange or Exchange("POST", "", None))
        _update(target, pair, remote_id, out)
        return out
    except Failure as failure:
        failure.outcome = out
        raise


def _find(target: ScimTarget, username: str, out: Outcome) -> str | None:
    exchange = classify(target.find_by_user_name(username), ok=(200,))
    found = (exchange.response or {}).get("Resources") or []
    if found:
        out.steps.append(Step("lookup", exchange, f"found {username!r}: adopting it"))
        return str(found[0]["id"])
    out.steps.append(Step("lookup", exchange, f"{username!r} is not in the application yet"))
    return None


def _create(target: ScimTarget, pair: PairState, out: Outcome) -> bool:
    """POST the user; ``False`` when it already exists (409: adopt it instead)."""
    exchange = target.create(pair.desired.resource)
    if exchange.status == 409:
        out.steps.append(Step("create", exchange, "already exists (409): adopting it"))
        return False
    classify(exchange, ok=(200, 201))
    remote_id = (exchange.response or {}).get("id")
    if not isinstance(remote_id, str):
        raise Permanent(exchange)
    out.steps.append(Step("create", exchange, f"created with id {remote_id}"))
    out.remote_id, out.state, out.digest = remote_id, "active", pair.desired.digest
    return True


def _update(target: ScimTarget, pair: PairState, remote_id: str, out: Outcome) -> None:
    want = pair.desired
    if pair.app.update_method == "put":
        exchange = target.replace(remote_id, want.resource)
    else:
        exchange = target.patch(remote_id, _values(want.resource))
    if exchange.status == 404:
        out.steps.append(Step("update", exchange, "gone from the application (404): re-creating"))
        if not _create(target, pair, out):
            raise Permanent(exchange)
        return
    classify(exchange, ok=(200, 204))
    out.steps.append(Step("update", exchange, "updated to the desired state"))
    out.remote_id, out.state, out.digest = remote_id, "active", want.digest


def _deprovision(target: ScimTarget, pair: PairState, remote_id: str, out: Outcome) -> None:
    if pair.app.deprovision == "delete":
        exchange = classify(target.delete(remote_id), ok=(200, 204, 404))
        out.steps.append(Step("delete", exchange, "deleted in the application"))
        out.remote_id, out.state, out.digest = None, "inactive", pair.desired.digest
        return
    # A user still in the directory is sent whole with active=false, so what changed while it
    # was out of scope (a new display name) arrives too; a deleted user is only deactivated.
    if pair.user is None:
        exchange = target.patch(remote_id, {"active": False})
    elif pair.app.update_method == "put":
        exchange = target.replace(remote_id, pair.desired.resource)
    else:
        exchange = target.patch(remote_id, _values(pair.desired.resource))
    if exchange.status == 404:
        out.steps.append(Step("deactivate", exchange, "already gone (404): counts as done"))
        out.remote_id, out.state, out.digest = None, "inactive", pair.desired.digest
        return
    classify(exchange, ok=(200, 204))
    out.steps.append(Step("deactivate", exchange, "deactivated (active=false)"))
    out.remote_id, out.state, out.digest = remote_id, "inactive", pair.desired.digest


# -- the worker ----------------------------------------------------------------------------------


class _RateLimiter:
    """A token bucket per application (per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait(self, app_id: str, rate: float) -> None:
        while True:
            with self._lock:
                tokens, last = self._buckets.get(app_id, (rate, time.monotonic()))
                now = time.monotonic()
                tokens = min(rate, tokens + (now - last) * rate)
                if tokens >= 1:
                    self._buckets[app_id] = (tokens - 1, now)
                    return
                self._buckets[app_id] = (tokens, now)
                pause = (1 - tokens) / rate
            time.sleep(pause)


class Engine:
    """Claims and processes outbox rows; safe to run in any number of processes on PostgreSQL."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        config: EngineConfig | None = None,
        *,
        transport: TransportFactory | None = None,
        worker: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.config = config or EngineConfig()
        self.transport = transport
        self.worker = worker or f"worker-{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self._limits = _RateLimiter()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()
        self._targets = threading.local()

    def target(self, app: Application) -> ScimTarget:
        base_url, token = app.base_url or "", ""
        if app.token_encrypted:
            token = self.box.decrypt(app.token_encrypted)
        return ScimTarget(
            base_url,
            token,
            timeout=self.config.timeout,
            transport=self.transport(app) if self.transport else None,
            verify=self.config.verify_tls,
        )

    def _cached_target(self, app: Application) -> ScimTarget:
        """This thread's connection to the application, kept between pairs.

        Building a client costs far more than a call (a TLS context, a connection): reusing
        it keeps the connection alive. A new base URL or token builds a new one.
        """
        cache: dict[str, tuple[tuple[str | None, str | None], ScimTarget]] = (
            getattr(self._targets, "cache", None) or {}
        )
        self._targets.cache = cache
        key = (app.base_url, app.token_encrypted)
        cached = cache.get(app.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        if cached is not None:
            cached[1].close()
        target = self.target(app)
        cache[app.id] = (key, target)
        return target

    def close(self) -> None:
        """Close this thread's connections (other threads' close with their thread)."""
        cache = getattr(self._targets, "cache", None) or {}
        for _, target in cache.values():
            target.close()
        cache.clear()

    def _slot(self, app: Application) -> threading.BoundedSemaphore:
        with self._slots_lock:
            slot = self._slots.get(app.id)
            if slot is None:
                slot = threading.BoundedSemaphore(app.max_concurrency)
                self._slots[app.id] = slot
            return slot

    # -- one pass ---------------------------------------------------------------------------------

    def run_once(self, *, app_id: str | None = None, limit: int | None = None) -> int:
        """Claim and process one batch; returns how many pairs were processed."""
        with write_session(self.sessions) as session:
            claimed = outbox.claim(
                session,
                self.worker,
                now=self.clock(),
                limit=limit or self.config.batch,
                lease=self.config.lease,
                app_id=app_id,
            )
            outbox.mark_pending(session, claimed)
        for item in claimed:
            self.process(item)
        return len(claimed)

    def drain(
        self, *, app_id: str | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Process until nothing is due (rows waiting for a retry time stay)."""
        total = 0
        while True:
            done = self.run_once(app_id=app_id)
            if not done:
                return total
            total += done
            if progress is not None:
                progress(done)

    def run_forever(self, stop: threading.Event, *, threads: int = 4, idle: float = 0.2) -> None:
        """Process until ``stop`` is set, with ``threads`` concurrent claimers."""

        def loop() -> None:
            try:
                while not stop.is_set():
                    try:
                        if self.run_once() == 0:
                            stop.wait(idle)
                    except Exception:
                        log.exception("provisioning pass failed; retrying (rows are re-leased)")
                        stop.wait(1.0)
            finally:
                self.close()

        workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()

    def process(self, claimed: outbox.Claimed, *, correlation_id: str | None = None) -> Outcome:
        correlation = correlation_id or uuid.uuid4().hex
        with read_session(self.sessions) as session:
            pair = load_pair(session, claimed.app_id, claimed.user_id)
        if unchanged(pair):
            with write_session(self.sessions) as session:
                outbox.complete(session, claimed)
            return Outcome()
        app = pair.app
        if app.idm_state != "active" or (
            app.quarantined_until is not None and app.quarantined_until > self.clock()
        ):
            # Paused (401), deactivated or quarantined since this batch was claimed: the rest
            # of the batch waits, unsent, as claim would have left it (no retry storm).
            with write_session(self.sessions) as session:
                outbox.release(session, claimed)
            return Outcome()
        if pair.link is None:
            # Write ahead (``run_once`` does it for a whole batch when it claims): a create
            # whose answer is lost, or whose worker dies, leaves this ``pending`` link, so a
            # later pass looks the user up even if it left scope.
            with write_session(self.sessions) as session:
                self._store_link(session, claimed, pair, state="pending", remote_id=None)
        slot = self._slot(pair.app)
        with slot:
            self._limits.wait(pair.app.id, pair.app.rate_per_second)
            target = self._cached_target(pair.app)
            target.correlation_id = correlation
            try:
                outcome = converge(target, pair)
            except Transient as failure:
                self._transient(claimed, pair, failure, correlation)
                return failure.outcome
            except Unauthorized as failure:
                self._pause(claimed, pair, failure, correlation)
                return failure.outcome
            except Permanent as failure:
                self._failed(claimed, pair, failure, correlation)
                return failure.outcome
        self._done(claimed, pair, outcome, correlation)
        return outcome

    # -- recording outcomes ---------------------------------------------------------------------

    def _log(
        self,
        session: Session,
        pair: PairState,
        cause: str,
        steps: list[Step],
        correlation: str,
    ) -> None:
        for step in steps:
            exchange = step.exchange
            session.add(
                LogEntry(
                    app_id=pair.app.id,
                    user_id=pair.link.user_id if pair.link else (pair.user or {}).get("id", ""),
                    username=pair.username,
                    at=self.clock(),
                    cause=cause[:255],
                    step=step.name,
                    method=exchange.method if exchange else None,
                    url=exchange.url[:2000] if exchange else None,
                    request=exchange.request if exchange else None,
                    status=exchange.status if exchange else None,
                    response=exchange.response if exchange else None,
                    decision=step.decision[:2000],
                    duration_ms=exchange.duration_ms if exchange else None,
                    correlation_id=correlation,
                )
            )

    def _store_link(
        self, session: Session, claimed: outbox.Claimed, pair: PairState, **values: Any
    ) -> None:
        link = session.get(Link, (claimed.app_id, claimed.user_id))
        if link is None:
            link = Link(app_id=claimed.app_id, user_id=claimed.user_id, username=pair.username)
            session.add(link)
        link.username = pair.username
        for key, value in values.items():
            setattr(link, key, value)
        link.updated = self.clock()

    def _done(
        self, claimed: outbox.Claimed, pair: PairState, outcome: Outcome, correlation: str
    ) -> None:
        with write_session(self.sessions) as session:
            self._log(session, pair, claimed.cause, outcome.steps, correlation)
            self._store_link(
                session,
                claimed,
                pair,
                remote_id=outcome.remote_id,
                state=outcome.state or ("active" if pair.desired.in_scope else "inactive"),
                accepted_hash=outcome.digest,
                detail=outcome.steps[-1].decision if outcome.steps else None,
            )
            outbox.complete(session, claimed)
            app = session.get(Application, claimed.app_id)
            if (
                app is not None
                and app.quarantine_reason
                and (app.quarantined_until is None or app.quarantined_until <= self.clock())
            ):
                app.quarantined_until, app.quarantine_reason = None, None

    def _steps(self, failure: Failure, name: str, decision: str) -> list[Step]:
        return [*failure.outcome.steps, Step(name, failure.exchange, decision)]

    def _transient(
        self, claimed: outbox.Claimed, pair: PairState, failure: Transient, correlation: str
    ) -> None:
        exchange = failure.exchange
        now = self.clock()
        due = backoff.next_attempt(
            claimed.attempts, now, header=exchange.headers.get("retry-after")
        )
        decision = f"{exchange.detail}; retrying at {due.isoformat(timespec='seconds')}"
        with write_session(self.sessions) as session:
            self._log(
                session, pair, claimed.cause, self._steps(failure, "retry", decision), correlation
            )
            outbox.retry(session, claimed, due, exchange.detail)
            self._maybe_quarantine(session, claimed.app_id, now)

    def _maybe_quarantine(self, session: Session, app_id: str, now: datetime) -> None:
        config = self.config
        session.flush()  # the sessions do not autoflush: count the failure just logged too
        statuses = list(
            session.execute(
                select(LogEntry.status, LogEntry.step)
                .where(LogEntry.app_id == app_id, LogEntry.method.is_not(None))
                .order_by(LogEntry.pk.desc())
                .limit(config.window)
            ).all()
        )
        if len(statuses) < config.minimum:
            return
        failed = sum(1 for status, step in statuses if step == "retry")
        if failed / len(statuses) < config.ratio:
            return
        app = session.get(Application, app_id)
        assert app is not None
        if app.quarantined_until is not None and app.quarantined_until > now:
            return
        app.quarantined_until = now + config.quarantine
        app.quarantine_reason = (
            f"{failed} of the last {len(statuses)} calls failed; provisioning paused until "
            f"{app.quarantined_until.isoformat(timespec='seconds')}"
        )
        log.warning("application %s quarantined: %s", app.label, app.quarantine_reason)

    def _pause(
        self, claimed: outbox.Claimed, pair: PairState, failure: Unauthorized, correlation: str
    ) -> None:
        """The target refused the token: stop this application, keep the work, raise an alert."""
        exchange = failure.exchange
        decision = (
            f"the application refused the token ({exchange.status}: {exchange.detail}); "
            "Identity Management paused until the token is replaced"
        )
        with write_session(self.sessions) as session:
            self._log(
                session, pair, claimed.cause, self._steps(failure, "paused", decision), correlation
            )
            outbox.release(session, claimed)
            app = session.get(Application, claimed.app_id)
            assert app is not None
            app.idm_state = "paused"
            app.idm_detail = (
                f"paused: the application answered {exchange.status} ({exchange.detail}). "
                "Deactivate, configure a new token, and activate again."
            )
        log.warning("application %s paused: %s", pair.app.label, exchange.detail)

    def _failed(
        self, claimed: outbox.Claimed, pair: PairState, failure: Permanent, correlation: str
    ) -> None:
        """A permanent refusal for this user: its link shows the application's own message."""
        exchange = failure.exchange
        decision = f"refused by the application ({exchange.status}): {exchange.detail}"
        with write_session(self.sessions) as session:
            self._log(
                session, pair, claimed.cause, self._steps(failure, "failed", decision), correlation
            )
            outcome = failure.outcome
            self._store_link(
                session,
                claimed,
                pair,
                remote_id=outcome.remote_id or (pair.link.remote_id if pair.link else None),
                state="failed",
                accepted_hash=None,
                detail=exchange.detail,
            )
            outbox.complete(session, claimed)
