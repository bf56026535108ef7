"""The provisioning engine: claim due (application, user) pairs, bring each application to the
desired state with the fewest SCIM calls, and record every step.

Per pair: the desired state (attribute mapping + scope) is compared with the link (what the
application last accepted). Unchanged pairs cost no call. Otherwise the connector looks up by
``userName`` before creating (the users of a claimed batch together, in one ``or`` filter),
adopts on 409, re-creates on 404, and sends ``active=false`` (or deletes) when the user leaves
scope. Transient failures (no response, 429, 5xx) retry with full
jitter and ``Retry-After``; a 401 pauses the application (no retry storm); any other 4xx
marks that user's link failed with the application's own message. An application whose recent
calls mostly fail is quarantined for a while: its rows wait instead of hammering it.

The outcomes of a claimed batch (log entries, links, outbox rows) commit in one transaction
after its calls. A crash before that commit leaves the rows to be claimed again once their lease
runs out, and the ``pending`` links written when they were claimed make the next pass look the
users up first, so nothing is created twice (security.md E4, E8).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import datetime
from datetime import timedelta
from typing import Any

import httpx2
import orjson
from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.idp import outbox
from scimlink.idp import workers
from scimlink.idp.directory import user_view
from scimlink.idp.models import Application
from scimlink.idp.models import DirectoryUser
from scimlink.idp.models import Link
from scimlink.idp.models import LogEntry
from scimlink.idp.provisioning import backoff
from scimlink.idp.provisioning.connector import Exchange
from scimlink.idp.provisioning.connector import ScimTarget
from scimlink.idp.provisioning.connector import lookup_part_url
from scimlink.idp.provisioning.desired import Desired
from scimlink.idp.provisioning.desired import desired
from scimlink.idp.secrets import SecretBox
from scimlink.storage.base import utcnow
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from scimlink.storage.upsert import upsert

log = logging.getLogger("scimlink.idp.engine")
_IN_CHUNK = 500
#: A batch's log rows: a Core executemany on the table (the ORM's bulk path costs more).
_LOGS: Table = LogEntry.__table__  # type: ignore[assignment]
#: Keeps a batched lookup's URL (about 1.6 times as long, encoded) under the 8 KiB many
#: servers accept, and its filter within the app half's 4 096 characters.
_FILTER_CHARS = 3800
TransportFactory = Callable[[Application], httpx2.BaseTransport | None]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    lease: timedelta = timedelta(minutes=2)
    #: Pairs claimed together. A batch's fixed cost (claim, reads, one commit: about 9 ms of a
    #: worker's CPU on SQLite) is shared by its pairs: 20 cost 1.37 ms a user, 100 cost 1.03.
    batch: int = 100
    timeout: float = 15.0
    #: Quarantine: of the last ``window`` calls, at least ``minimum`` made and ``ratio`` failed.
    window: int = 40
    minimum: int = 20
    ratio: float = 0.8
    quarantine: timedelta = timedelta(minutes=5)
    verify_tls: bool = True
    #: The smallest share of a backlog a claim takes when several claimers split it.
    min_claim: int = 20
    #: Users looked up together in one ``userName eq … or …`` filter (fewer when their names
    #: are long; a target that refuses it as too large is asked for half as many). The app
    #: half spends 3.4 ms of CPU on a 20-name lookup and 8.1 ms on a 100-name one.
    lookup_batch: int = 100
    #: Creates sent together in one bulk request, when the application has bulk creates on
    #: (and never more than the target's ``maxOperations``).
    bulk_batch: int = 100


@dataclass(slots=True)
class Step:
    """One call made for a pair, with what it meant."""

    name: str
    exchange: Exchange | None
    decision: str
    #: The call's own correlation id, when it was made for several pairs at once.
    correlation: str | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """One user's part of a lookup made for several users in one call."""

    step: Step
    remote_id: str | None


@dataclass(frozen=True, slots=True)
class BulkAnswer:
    """One user's create, answered by an operation of a bulk request (or by its failure)."""

    exchange: Exchange
    correlation: str
    together: str


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


def load_pairs(session: Session, app_id: str, user_ids: list[str]) -> dict[str, PairState]:
    """The state of many pairs of one application in a few set-based queries (keyed by user)."""
    app = session.get(Application, app_id)
    assert app is not None
    rows: dict[str, DirectoryUser] = {}
    links: dict[str, Link] = {}
    for start in range(0, len(user_ids), _IN_CHUNK):
        chunk = user_ids[start : start + _IN_CHUNK]
        rows.update(
            (row.id, row)
            for row in session.execute(
                select(DirectoryUser).where(DirectoryUser.id.in_(chunk))
            ).scalars()
        )
        links.update(
            (link.user_id, link)
            for link in session.execute(
                select(Link).where(Link.app_id == app_id, Link.user_id.in_(chunk))
            ).scalars()
        )
    bound = outbox.in_scope(session, app_id, list(rows))
    mapping = list(app.attribute_map)
    pairs: dict[str, PairState] = {}
    for user_id in user_ids:
        row, link = rows.get(user_id), links.get(user_id)
        user = user_view(row) if row is not None else None
        want = desired(user, user_id in bound, mapping)
        username = row.username if row is not None else (link.username if link else user_id)
        pairs[user_id] = PairState(app, user, username, want, link)
    session.expunge_all()
    return pairs


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


def converge(
    target: ScimTarget,
    pair: PairState,
    lookup: Lookup | None = None,
    answer: BulkAnswer | None = None,
) -> Outcome:
    """The SCIM calls that bring the application to the desired state for one pair.

    ``lookup`` is this user's answer from a lookup already made for a batch (it stands in for
    the first lookup by ``userName``); ``answer`` is its create's answer from a bulk request
    (it stands in for the first create, and is judged as that create's answer would be).

    Raises :class:`Transient`, :class:`Unauthorized` or :class:`Permanent` on failure, with the
    steps made so far on the exception's ``outcome``.
    """
    out = Outcome()
    try:
        if not pair.desired.in_scope:
            assert pair.link is not None
            remote_id = pair.link.remote_id or _first_find(target, pair, out, lookup)
            if remote_id is None:
                out.state, out.digest = "inactive", pair.desired.digest
                return out
            _deprovision(target, pair, remote_id, out)
            return out
        remote_id = pair.link.remote_id if pair.link else None
        if remote_id is None:
            remote_id = _first_find(target, pair, out, lookup)
        if remote_id is None and _create(target, pair, out, answer):
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


def _first_find(
    target: ScimTarget, pair: PairState, out: Outcome, lookup: Lookup | None
) -> str | None:
    if lookup is None:
        return _find(target, pair.username, out)
    if lookup.step.name != "lookup":
        # The batched lookup got no usable answer: it fails this pair as a call would.
        assert lookup.step.exchange is not None
        classify(lookup.step.exchange, ok=())
    out.steps.append(lookup.step)
    return lookup.remote_id


def needs_lookup(pair: PairState) -> bool:
    """Whether :func:`converge` starts by looking the user up (no remote id is known)."""
    return pair.link is None or pair.link.remote_id is None


def _find(target: ScimTarget, username: str, out: Outcome) -> str | None:
    exchange = classify(target.find_by_user_name(username), ok=(200,))
    found = (exchange.response or {}).get("Resources") or []
    if found:
        out.steps.append(Step("lookup", exchange, f"found {username!r}: adopting it"))
        return str(found[0]["id"])
    out.steps.append(Step("lookup", exchange, f"{username!r} is not in the application yet"))
    return None


def _create(
    target: ScimTarget, pair: PairState, out: Outcome, answer: BulkAnswer | None = None
) -> bool:
    """POST the user; ``False`` when it already exists (409: adopt it instead)."""
    if answer is not None:
        exchange, together = answer.exchange, f" ({answer.together})"
    else:
        exchange, together = target.create(pair.desired.resource), ""
    if exchange.status == 409:
        out.steps.append(Step("create", exchange, f"already exists (409): adopting it{together}"))
        return False
    classify(exchange, ok=(200, 201))
    remote_id = (exchange.response or {}).get("id")
    if not isinstance(remote_id, str):
        raise Permanent(exchange)
    out.steps.append(Step("create", exchange, f"created with id {remote_id}{together}"))
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
        self._slots: dict[str, tuple[int, threading.BoundedSemaphore]] = {}
        #: Engines alive, this one included (1 until ``run_forever`` learns otherwise).
        self.peers = 1
        #: Threads claiming in this engine (``run_forever``'s; 1 for ``drain``).
        self.claimers = 1
        self._slots_lock = threading.Lock()
        self._targets = threading.local()
        #: Users per batched lookup, for applications that refused a larger one (400: their
        #: filter limits); below 2, they are asked one user at a time.
        self._lookup_sizes: dict[str, int] = {}
        #: Creates per bulk request, for applications that refused a larger one (413), or 0
        #: for those that refused bulk itself.
        self._bulk_sizes: dict[str, int] = {}

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

    def limits(self, app: Application) -> tuple[int, float]:
        """This process's share of the application's concurrency and rate: each of the
        engines alive (:mod:`scimlink.idp.workers`) takes 1/N, at least one call at a time."""
        share = max(1, self.peers)
        return max(1, app.max_concurrency // share), app.rate_per_second / share

    def _slot(self, app: Application) -> threading.BoundedSemaphore:
        size, _ = self.limits(app)
        with self._slots_lock:
            current = self._slots.get(app.id)
            if current is None or current[0] != size:
                # Threads inside the old semaphore release it; new calls queue on this one.
                current = (size, threading.BoundedSemaphore(size))
                self._slots[app.id] = current
            return current[1]

    def _wait_for_rate(self, app: Application) -> None:
        _, rate = self.limits(app)
        self._limits.wait(app.id, rate)

    def heartbeat(self) -> int:
        """Report this engine alive and learn how many share the limits (``run_forever``)."""
        with write_session(self.sessions) as session:
            self.peers = workers.heartbeat(session, self.worker, self.clock())
        return self.peers

    # -- one pass ---------------------------------------------------------------------------------

    def run_once(self, *, app_id: str | None = None, limit: int | None = None) -> int:
        """Claim and process one batch; returns how many pairs were processed."""
        now = self.clock()
        claimed: list[outbox.Claimed] = []
        with write_session(self.sessions) as session:
            # One application a batch, in random order among those waiting (see outbox).
            apps = [app_id] if app_id is not None else outbox.due_apps(session, now=now)
            for candidate in apps:
                # Empty when other workers took its last rows since: then try the next one.
                claimed = outbox.claim(
                    session,
                    self.worker,
                    now=now,
                    limit=limit or self._claim_size(session, now, candidate),
                    lease=self.config.lease,
                    app_id=candidate,
                )
                if claimed:
                    break
            outbox.mark_pending(session, claimed)
        self.process_batch(claimed, deadline=now + self.config.lease / 2)
        return len(claimed)

    def _claim_size(self, session: Session, now: datetime, app_id: str) -> int:
        """A full batch when the backlog has one for every claimer (this engine's threads,
        times the engines alive); otherwise an equal share, at least ``min_claim``, so a burst
        of a few hundred pairs is spread over all of them, not taken by the first."""
        batch = self.config.batch
        claimers = self.claimers * max(1, self.peers)
        if claimers <= 1:
            return batch
        backlog = outbox.due_count(session, now=now, cap=batch * claimers, app_id=app_id)
        share = -(-backlog // claimers)
        return min(batch, max(self.config.min_claim, share))

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

        self.claimers = threads
        claimers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
        for thread in claimers:
            thread.start()
        try:
            while not stop.is_set():
                try:
                    self.heartbeat()
                except Exception:
                    log.exception("heartbeat failed; keeping the last known share")
                stop.wait(workers.HEARTBEAT.total_seconds())
        finally:
            stop.set()
            for thread in claimers:
                thread.join()
            try:
                with write_session(self.sessions) as session:
                    workers.forget(session, self.worker)
            except Exception:
                log.exception("could not unregister; the registry forgets it soon")

    def process(self, claimed: outbox.Claimed, *, correlation_id: str | None = None) -> Outcome:
        """Process one claimed pair now (``idp provision``)."""
        return self.process_batch([claimed], correlation_id=correlation_id)[0]

    def process_batch(
        self,
        claimed: list[outbox.Claimed],
        *,
        correlation_id: str | None = None,
        deadline: datetime | None = None,
    ) -> list[Outcome]:
        """Process claimed pairs application by application; outcomes in claim order.

        Each application's pairs are read in a few set-based queries, the users that need a
        lookup are looked up together, and the outcomes are written in one transaction.
        Pairs not started by ``deadline`` (half the lease, for a slow application) are
        released unsent, so no other worker claims a pair this one is still working on.
        """
        by_app: dict[str, list[outbox.Claimed]] = {}
        for item in claimed:
            by_app.setdefault(item.app_id, []).append(item)
        outcomes: dict[int, Outcome] = {}
        for app_id, items in by_app.items():
            with read_session(self.sessions) as session:
                pairs = load_pairs(session, app_id, [item.user_id for item in items])
            outcomes.update(self._process_app(items, pairs, correlation_id, deadline))
        return [outcomes[item.pk] for item in claimed]

    def _open(self, app: Application) -> bool:
        return app.idm_state == "active" and (
            app.quarantined_until is None or app.quarantined_until <= self.clock()
        )

    def _still_open(self, app_id: str) -> bool:
        with read_session(self.sessions) as session:
            app = session.get(Application, app_id)
            return app is not None and self._open(app)

    def _process_app(
        self,
        items: list[outbox.Claimed],
        pairs: dict[str, PairState],
        correlation_id: str | None,
        deadline: datetime | None = None,
    ) -> dict[int, Outcome]:
        writes = _Writes()
        outcomes = {item.pk: Outcome() for item in items}
        todo: list[tuple[outbox.Claimed, PairState]] = []
        for item in items:
            pair = pairs[item.user_id]
            if unchanged(pair):
                writes.completed.append(item)
            else:
                todo.append((item, pair))
        if todo and not self._open(todo[0][1].app):
            # Paused (401), deactivated or quarantined since this batch was claimed: the rest
            # waits, unsent, as claim would have left it (no retry storm).
            writes.released.extend(item for item, _ in todo)
            todo = []
        self._write_ahead([(item, pair) for item, pair in todo if pair.link is None])
        lookups = self._lookup_many([(i.user_id, p) for i, p in todo if needs_lookup(p)])
        answers = self._bulk_creates(todo, lookups, deadline)
        stopped = False
        for item, pair in todo:
            if not stopped and deadline is not None and self.clock() >= deadline:
                log.info("%s: batch past half its lease; releasing the rest", pair.app.label)
                stopped = True
            answer = answers.get(item.user_id)
            if stopped and answer is None:
                writes.released.append(item)
                continue
            # A user created in bulk is recorded even past the deadline: the call was made.
            correlation = answer.correlation if answer else (correlation_id or uuid.uuid4().hex)
            try:
                outcomes[item.pk] = self._converge(
                    pair, lookups.get(item.user_id), correlation, answer
                )
            except Transient as failure:
                outcomes[item.pk] = failure.outcome
                self._transient(writes, item, pair, failure, correlation)
                writes = _Writes()
                stopped = not self._still_open(pair.app.id)
            except Unauthorized as failure:
                outcomes[item.pk] = failure.outcome
                self._pause(writes, item, pair, failure, correlation)
                writes = _Writes()
                stopped = True
            except Permanent as failure:
                outcomes[item.pk] = failure.outcome
                self._failed(writes, item, pair, failure, correlation)
            else:
                self._done(writes, item, pair, outcomes[item.pk], correlation)
        self._commit(writes)
        return outcomes

    def _write_ahead(self, new: list[tuple[outbox.Claimed, PairState]]) -> None:
        """A pending link before the first create (``run_once`` writes them when it claims;
        this covers a user who came into scope since): a create whose answer is lost, or
        whose worker dies, leaves it, so a later pass looks the user up even if it left scope.
        """
        if not new:
            return
        writes = _Writes()
        for item, pair in new:
            self._link(writes, item, pair, remote_id=None, state="pending", accepted_hash=None)
        self._commit(writes)

    def _converge(
        self,
        pair: PairState,
        lookup: Lookup | None,
        correlation: str,
        answer: BulkAnswer | None = None,
    ) -> Outcome:
        if answer is not None and answer.exchange.status != 409:
            # Answered by a bulk request: no call is made (a 409 adopts, with two calls).
            return converge(self._cached_target(pair.app), pair, lookup, answer)
        with self._slot(pair.app):
            self._wait_for_rate(pair.app)
            target = self._cached_target(pair.app)
            target.correlation_id = correlation
            return converge(target, pair, lookup, answer)

    def _lookup_many(self, wanted: list[tuple[str, PairState]]) -> dict[str, Lookup]:
        """Look up the users of a batch a few at a time (``userName eq … or …``).

        Only an answer that is certainly complete counts as "not there"; anything else (an
        error, a filter the target refuses, a capped page) leaves those users to the
        one-by-one lookup, which handles failures as any call does. A target that finds the
        filter too long or complex (400) is asked again for half as many, from then on.
        """
        if len(wanted) < 2:
            return {}
        app = wanted[0][1].app
        found: dict[str, Lookup] = {}
        left = wanted
        while left:
            size = self._lookup_sizes.get(app.id, self.config.lookup_batch)
            if size < 2:
                return found
            chunk = next(_lookup_chunks(left, size))
            correlation = uuid.uuid4().hex
            with self._slot(app):
                self._wait_for_rate(app)
                target = self._cached_target(app)
                target.correlation_id = correlation
                exchange = target.find_many([pair.username for _, pair in chunk])
            status = exchange.status
            if status == 501:
                # Filtering not implemented at all (RFC 7644 §3.12): one user at a time.
                log.info("batched lookup in %s not implemented (%s)", app.label, exchange.detail)
                self._lookup_sizes[app.id] = 1
                return found
            if status is None or status in (401, 429) or status >= 500:
                # Down, throttled or refusing the token: every user of the batch fails as
                # its own lookup would have, without asking the target again.
                # Users answered by an earlier chunk keep their answer.
                failed = Lookup(Step("unanswered", exchange, exchange.detail, correlation), None)
                found.update((user_id, failed) for user_id, _ in left)
                return found
            if status != 200 or not isinstance(exchange.response, dict):
                log.info("batched lookup in %s refused (%s)", app.label, exchange.detail)
                if status in (400, 413, 414, 431):
                    # Too long or too complex for the target's filter limits (or no ``or``).
                    self._lookup_sizes[app.id] = len(chunk) // 2
                    continue
                return found
            found.update(_answers(exchange, chunk, correlation))
            left = left[len(chunk) :]
        return found

    def _bulk_creates(
        self,
        todo: list[tuple[outbox.Claimed, PairState]],
        lookups: dict[str, Lookup],
        deadline: datetime | None,
    ) -> dict[str, BulkAnswer]:
        """Create the users a batched lookup did not find in bulk requests (RFC 7644 §3.7),
        when the application has bulk creates on and its target offers bulk.

        Each operation's answer is judged as that user's own create would be (created, 409
        adopts, 4xx fails, 5xx retries). A request without an answer, or answered 401, 429 or
        5xx, answers every create it carried that way. A target that refuses the request as a
        whole otherwise (no ``/Bulk``, 400) gets one create per user from then on; 413 halves
        the requests. Users whose operation is missing from the answer are created on their
        own (a lookup first, so none is created twice).
        """
        if not todo:
            return {}
        app = todo[0][1].app
        size = min(app.bulk_max_operations, self._bulk_sizes.get(app.id, self.config.bulk_batch))
        if not app.bulk_creates or size < 2:
            return {}
        creates: list[tuple[str, PairState]] = []
        for item, pair in todo:
            found = lookups.get(item.user_id)
            # Only users the lookup certainly did not find (and that should exist) are new.
            new = found is not None and found.step.name == "lookup" and found.remote_id is None
            if new and pair.desired.in_scope and needs_lookup(pair):
                creates.append((item.user_id, pair))
        answers: dict[str, BulkAnswer] = {}
        chunks = list(_bulk_chunks(creates, size, app.bulk_max_payload))
        for index, chunk in enumerate(chunks):
            if len(chunk) < 2 or (deadline is not None and self.clock() >= deadline):
                break
            correlation = uuid.uuid4().hex
            operations = [_bulk_operation(user_id, pair) for user_id, pair in chunk]
            with self._slot(app):
                self._wait_for_rate(app)
                target = self._cached_target(app)
                target.correlation_id = correlation
                exchange = target.bulk(operations)
            together = f"one bulk request for {len(chunk)} users"
            status = exchange.status
            if status is None or status in (401, 429) or (status >= 500 and status != 501):
                # No usable answer: every create it carried got this answer, and so do the
                # creates of later requests, unsent (501 is "no bulk here", handled below).
                for user_id, pair in (entry for later in chunks[index:] for entry in later):
                    part = replace(exchange, request=_bulk_operation(user_id, pair))
                    answers[user_id] = BulkAnswer(part, correlation, together)
                return answers
            results = _bulk_results(exchange)
            if results is None:
                if status == 413:
                    self._bulk_sizes[app.id] = len(chunk) // 2
                else:
                    self._bulk_sizes[app.id] = 0
                log.warning(
                    "bulk request to %s refused (%s); creating users one at a time",
                    app.label,
                    exchange.detail,
                )
                return answers
            for (user_id, _), operation in zip(chunk, operations, strict=True):
                result = results.get(user_id)
                if result is not None:
                    part = replace(
                        exchange, request=operation, status=result[0], response=result[1]
                    )
                    answers[user_id] = BulkAnswer(part, correlation, together)
        return answers

    def _commit(self, writes: _Writes, then: Callable[[Session], None] | None = None) -> None:
        """Write a batch's outcomes in one transaction (bulk statements, no ORM objects)."""
        if not writes and then is None:
            return
        with write_session(self.sessions) as session:
            if writes.logs:
                session.connection().execute(insert(_LOGS), writes.logs)
            upsert(session, Link, writes.links, keys=["app_id", "user_id"])
            outbox.complete_many(session, writes.completed)
            for item, due, error in writes.retries:
                outbox.retry(session, item, due, error)
            outbox.release_many(session, writes.released)
            for app_id in writes.recovered:
                session.execute(
                    update(Application)
                    .where(
                        Application.id == app_id,
                        or_(
                            Application.quarantined_until.is_(None),
                            Application.quarantined_until <= self.clock(),
                        ),
                    )
                    .values(quarantined_until=None, quarantine_reason=None)
                )
            if then is not None:
                then(session)

    # -- recording outcomes ---------------------------------------------------------------------

    def _log(
        self,
        writes: _Writes,
        claimed: outbox.Claimed,
        pair: PairState,
        steps: list[Step],
        correlation: str,
    ) -> None:
        now = self.clock()
        for step in steps:
            exchange = step.exchange
            writes.logs.append(
                {
                    "app_id": claimed.app_id,
                    "user_id": claimed.user_id,
                    "username": pair.username,
                    "at": now,
                    "cause": claimed.cause[:255],
                    "step": step.name,
                    "method": exchange.method if exchange else None,
                    "url": exchange.url[:2000] if exchange else None,
                    "request": exchange.request if exchange else None,
                    "status": exchange.status if exchange else None,
                    "response": exchange.response if exchange else None,
                    "decision": step.decision[:2000],
                    "duration_ms": exchange.duration_ms if exchange else None,
                    "correlation_id": step.correlation or correlation,
                }
            )

    def _link(
        self,
        writes: _Writes,
        claimed: outbox.Claimed,
        pair: PairState,
        *,
        remote_id: str | None,
        state: str,
        accepted_hash: str | None,
        detail: str | None = None,
    ) -> None:
        writes.links.append(
            {
                "app_id": claimed.app_id,
                "user_id": claimed.user_id,
                "username": pair.username,
                "remote_id": remote_id,
                "state": state,
                "accepted_hash": accepted_hash,
                "detail": detail,
                "updated": self.clock(),
            }
        )

    def _done(
        self,
        writes: _Writes,
        claimed: outbox.Claimed,
        pair: PairState,
        outcome: Outcome,
        correlation: str,
    ) -> None:
        self._log(writes, claimed, pair, outcome.steps, correlation)
        self._link(
            writes,
            claimed,
            pair,
            remote_id=outcome.remote_id,
            state=outcome.state or ("active" if pair.desired.in_scope else "inactive"),
            accepted_hash=outcome.digest,
            detail=outcome.steps[-1].decision if outcome.steps else None,
        )
        writes.completed.append(claimed)
        if pair.app.quarantine_reason:
            writes.recovered.add(claimed.app_id)

    def _steps(self, failure: Failure, name: str, decision: str) -> list[Step]:
        return [*failure.outcome.steps, Step(name, failure.exchange, decision)]

    def _transient(
        self,
        writes: _Writes,
        claimed: outbox.Claimed,
        pair: PairState,
        failure: Transient,
        correlation: str,
    ) -> None:
        """Try again later; commits what the batch did so far, with this failure."""
        exchange = failure.exchange
        now = self.clock()
        due = backoff.next_attempt(
            claimed.attempts, now, header=exchange.headers.get("retry-after")
        )
        decision = f"{exchange.detail}; retrying at {due.isoformat(timespec='seconds')}"
        self._log(writes, claimed, pair, self._steps(failure, "retry", decision), correlation)
        writes.retries.append((claimed, due, exchange.detail))
        self._commit(writes, lambda session: self._maybe_quarantine(session, claimed.app_id, now))

    def _maybe_quarantine(self, session: Session, app_id: str, now: datetime) -> None:
        config = self.config
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
        self,
        writes: _Writes,
        claimed: outbox.Claimed,
        pair: PairState,
        failure: Unauthorized,
        correlation: str,
    ) -> None:
        """The target refused the token: stop this application, keep the work, raise an alert."""
        exchange = failure.exchange
        decision = (
            f"the application refused the token ({exchange.status}: {exchange.detail}); "
            "Identity Management paused until the token is replaced"
        )
        self._log(writes, claimed, pair, self._steps(failure, "paused", decision), correlation)
        writes.released.append(claimed)

        def pause(session: Session) -> None:
            app = session.get(Application, claimed.app_id)
            assert app is not None
            app.idm_state = "paused"
            app.idm_detail = (
                f"paused: the application answered {exchange.status} ({exchange.detail}). "
                "Deactivate, configure a new token, and activate again."
            )

        self._commit(writes, pause)
        log.warning("application %s paused: %s", pair.app.label, exchange.detail)

    def _failed(
        self,
        writes: _Writes,
        claimed: outbox.Claimed,
        pair: PairState,
        failure: Permanent,
        correlation: str,
    ) -> None:
        """A permanent refusal for this user: its link shows the application's own message."""
        exchange = failure.exchange
        decision = f"refused by the application ({exchange.status}): {exchange.detail}"
        self._log(writes, claimed, pair, self._steps(failure, "failed", decision), correlation)
        outcome = failure.outcome
        self._link(
            writes,
            claimed,
            pair,
            remote_id=outcome.remote_id or (pair.link.remote_id if pair.link else None),
            state="failed",
            accepted_hash=None,
            detail=exchange.detail,
        )
        writes.completed.append(claimed)


@dataclass(slots=True)
class _Writes:
    """What a batch will write when it commits."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    completed: list[outbox.Claimed] = field(default_factory=list)
    released: list[outbox.Claimed] = field(default_factory=list)
    retries: list[tuple[outbox.Claimed, datetime, str]] = field(default_factory=list)
    #: Applications that answered again after a quarantine.
    recovered: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.logs or self.links or self.completed or self.released or self.retries)


def _bulk_operation(user_id: str, pair: PairState) -> dict[str, Any]:
    """One user's create in a bulk request; its bulkId is the directory's user id."""
    return {"method": "POST", "path": "/Users", "bulkId": user_id, "data": pair.desired.resource}


def _bulk_results(exchange: Exchange) -> dict[str, tuple[int, dict[str, Any]]] | None:
    """Each operation's status and what the log keeps of it, by bulkId; ``None`` when the
    answer is not a bulk response. A create's id comes from its ``location`` (§3.7.3); an
    operation whose status or location cannot be read counts as unanswered."""
    body = exchange.response
    if exchange.status != 200 or not isinstance(body, dict):
        return None
    operations = body.get("Operations")
    if not isinstance(operations, list):
        return None
    results: dict[str, tuple[int, dict[str, Any]]] = {}
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("bulkId"), str):
            continue
        try:
            status = int(operation.get("status", ""))
        except (TypeError, ValueError):
            continue
        if status in (200, 201):
            location = operation.get("location")
            if not isinstance(location, str) or not location.rstrip("/"):
                continue
            remote_id = location.rstrip("/").rsplit("/", 1)[-1]
            results[operation["bulkId"]] = (status, {"id": remote_id, **operation})
        else:
            response = operation.get("response")
            results[operation["bulkId"]] = (
                status,
                response if isinstance(response, dict) else dict(operation),
            )
    return results


def _chunks(
    entries: list[tuple[str, PairState]],
    size: int,
    cost: Callable[[tuple[str, PairState]], int],
    budget: int | None,
) -> Iterator[list[tuple[str, PairState]]]:
    """Groups of at most ``size`` entries whose summed ``cost`` stays within ``budget``."""
    chunk: list[tuple[str, PairState]] = []
    length = 0
    for entry in entries:
        spent = cost(entry)
        if chunk and (len(chunk) >= size or (budget is not None and length + spent > budget)):
            yield chunk
            chunk, length = [], 0
        chunk.append(entry)
        length += spent
    if chunk:
        yield chunk


def _lookup_chunks(
    wanted: list[tuple[str, PairState]], size: int
) -> Iterator[list[tuple[str, PairState]]]:
    """Groups of at most ``size`` users whose filter stays short enough for any URL limit."""
    return _chunks(wanted, size, lambda entry: len(entry[1].username) + 24, _FILTER_CHARS)


def _bulk_chunks(
    creates: list[tuple[str, PairState]], size: int, max_payload: int
) -> Iterator[list[tuple[str, PairState]]]:
    """Groups of at most ``size`` creates whose request stays within the target's
    ``maxPayloadSize`` (with a margin for the envelope)."""

    def cost(entry: tuple[str, PairState]) -> int:
        return len(orjson.dumps(entry[1].desired.resource)) + len(entry[0]) + 64

    return _chunks(creates, size, cost, max_payload - 1024 if max_payload > 0 else None)


def _answers(
    exchange: Exchange, chunk: list[tuple[str, PairState]], correlation: str
) -> dict[str, Lookup]:
    """Each user's part of a batched lookup, matched by ``userName`` ignoring case."""
    response = exchange.response or {}
    resources = [r for r in response.get("Resources") or [] if isinstance(r, dict)]
    total = response.get("totalResults")
    complete = isinstance(total, int) and total <= len(resources)
    by_name = {str(r.get("userName", "")).casefold(): r for r in resources}
    answers: dict[str, Lookup] = {}
    together = f"one lookup for {len(chunk)} users"
    for user_id, pair in chunk:
        match = by_name.get(pair.username.casefold())
        url = lookup_part_url(exchange.url, pair.username, len(chunk))
        if match is not None and isinstance(match.get("id"), str):
            part = replace(exchange, url=url, response={**response, "Resources": [match]})
            decision = f"found {pair.username!r}: adopting it ({together})"
            answers[user_id] = Lookup(Step("lookup", part, decision, correlation), match["id"])
        elif match is None and complete:
            part = replace(exchange, url=url, response={**response, "Resources": []})
            decision = f"{pair.username!r} is not in the application yet ({together})"
            answers[user_id] = Lookup(Step("lookup", part, decision, correlation), None)
    return answers
