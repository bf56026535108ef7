"""Fault injection between the provisioning engine and the app half (security.md §5, E1-E7).

The directory's engine talks to the real app half over real HTTP through a fault-injecting
transport (a double of the network, never of our code): connections refused, 429 with
``Retry-After``, 500s, answers lost after the target committed, revoked tokens, a user the
target's policy refuses. Time is a :class:`FakeClock` the engine reads, so backoff and
quarantine are exercised by moving the clock, without sleeping.

Every test ends with the app half exactly in the desired state: each user once (``totalResults``
of a ``userName`` filter is 1), with the directory's values, and nothing left in the outbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import httpx2
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlalchemy import select

from scimlink.errors import ConflictError
from scimlink.idp import applications
from scimlink.idp import directory
from scimlink.idp import idm
from scimlink.idp import outbox
from scimlink.idp.models import Application
from scimlink.idp.models import DirectoryUser
from scimlink.idp.models import Link
from scimlink.idp.models import LogEntry
from scimlink.idp.models import OutboxRow
from scimlink.idp.provisioning import backoff
from scimlink.idp.provisioning import operations
from scimlink.idp.provisioning.engine import Engine as ProvisioningEngine
from scimlink.idp.provisioning.engine import EngineConfig
from scimlink.idp.provisioning.transport import KeptAliveTransport
from scimlink.idp.secrets import SecretBox
from scimlink.sp import tenants
from scimlink.sp.mappings import NO_MATCH
from scimlink.storage.base import utcnow
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from tests.conftest import CORE
from tests.conftest import Scim
from tests.conftest import make_tenant
from tests.integration.faulty_transport import FaultyTransport

SECOND = timedelta(seconds=1)


class FakeClock:
    """The engine's clock: frozen until a test moves it.

    It starts a minute ahead of real time, on a whole second: rows the directory enqueues (due
    at the real now) are due for the engine, and HTTP-dates (second precision) compare exactly.
    """

    def __init__(self) -> None:
        self.now = (utcnow() + timedelta(minutes=1)).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Row:
    attempts: int
    due_at: datetime
    last_error: str | None


class World:
    """One app-half tenant and one directory application pointing at it through ``faulty``."""

    def __init__(
        self,
        idp_engine: Engine,
        sp_engine: Engine,
        live_server: str,
        http: httpx.Client,
        faulty: FaultyTransport,
        clock: FakeClock,
        config: EngineConfig | None = None,
    ) -> None:
        self.sessions = make_sessionmaker(idp_engine)
        self.sp_engine = sp_engine
        self.http = http
        self.faulty = faulty
        self.clock = clock
        self.box = SecretBox(Fernet.generate_key())
        self.tenant = make_tenant(sp_engine)
        self.label = _unique("Druva-faults")
        self.group = _unique("Provisioned")
        self.base_url = f"{live_server}/insync/scim"
        self.engine = ProvisioningEngine(
            self.sessions, self.box, config, transport=lambda app: faulty, clock=clock
        )
        with write_session(self.sessions) as session:
            directory.create_group(session, self.group)
            self.app_id = applications.add_app(session, "druva", self.label).id
            applications.configure_idm(
                session, self.label, self.box, base_url=self.base_url, token=self.tenant.token
            )
            # No waiting on the per-application token bucket: these tests are about faults.
            applications.settings(session, self.label, rate=10000)
        verified = idm.activate(self.engine, self.label)
        assert verified.ok, verified.message
        faulty.reset_counts()

    # -- the directory ----------------------------------------------------------------------------

    def add_users(self, prefix: str, count: int, **overrides: dict[str, Any]) -> list[str]:
        """``count`` activated members of the group; ``overrides`` by index (1-based)."""
        names = [f"{prefix}-{uuid.uuid4().hex[:6]}-{i:03d}" for i in range(1, count + 1)]
        with write_session(self.sessions) as session:
            for i, name in enumerate(names, start=1):
                properties: dict[str, Any] = {
                    "username": name,
                    "email": f"{name}@example.com",
                    "displayname": f"User {i}",
                    "employeeIdentifier": f"E-{name}",
                }
                properties.update(overrides.get(str(i), {}))
                directory.add_user(session, properties)
            directory.add_members(session, self.group, names)
        return names

    def bind(self) -> None:
        with write_session(self.sessions) as session:
            applications.bind_group(session, self.label, self.group)

    def run_once(self) -> int:
        return self.engine.run_once(app_id=self.app_id)

    def drain(self) -> int:
        return self.engine.drain(app_id=self.app_id)

    def app(self) -> Application:
        with read_session(self.sessions) as session:
            app = session.get(Application, self.app_id)
            assert app is not None
            session.expunge(app)
            return app

    def rows(self) -> dict[str, Row]:
        """The outbox, by username."""
        with read_session(self.sessions) as session:
            found = session.execute(
                select(DirectoryUser.username, OutboxRow)
                .join(DirectoryUser, DirectoryUser.id == OutboxRow.user_id)
                .where(OutboxRow.app_id == self.app_id)
            ).all()
            return {name: Row(r.attempts, r.due_at, r.last_error) for name, r in found}

    def link(self, username: str) -> Link:
        with read_session(self.sessions) as session:
            link = session.execute(
                select(Link).where(Link.app_id == self.app_id, Link.username == username)
            ).scalar_one()
            session.expunge(link)
            return link

    def log(self, username: str) -> list[dict[str, Any]]:
        with read_session(self.sessions) as session:
            return operations.log_entries(session, self.label, user=username)

    def failures_logged(self) -> int:
        with read_session(self.sessions) as session:
            return len(
                session.execute(
                    select(LogEntry.pk).where(
                        LogEntry.app_id == self.app_id, LogEntry.step == "retry"
                    )
                ).all()
            )

    # -- the app half -----------------------------------------------------------------------------

    @property
    def scim(self) -> Scim:
        return Scim(self.http, self.tenant.token)

    def remote(self, username: str) -> list[dict[str, Any]]:
        """What the app half holds under ``username`` (its own SCIM filter)."""
        response = self.scim.get("/Users", params={"filter": f'userName eq "{username}"'})
        assert response.status_code == 200, response.text
        body = response.json()
        resources: list[dict[str, Any]] = body.get("Resources") or []
        assert body["totalResults"] == len(resources)
        return resources

    def assert_delivered(self, username: str, display_name: str | None = None) -> dict[str, Any]:
        """Exactly one active user at the target, and the link knows its id."""
        found = self.remote(username)
        assert len(found) == 1, found
        [user] = found
        assert user["active"] is True
        assert user["emails"][0]["value"] == f"{username}@example.com"
        assert user["externalId"] == f"E-{username}"
        if display_name is not None:
            assert user["displayName"] == display_name
        link = self.link(username)
        assert (link.state, link.remote_id) == ("active", user["id"]), link.detail
        assert link.accepted_hash is not None
        return user

    def assert_all_delivered(self, usernames: list[str]) -> None:
        """The tenant holds exactly these users, once each, and the outbox is empty."""
        response = self.scim.get("/Users", params={"count": 1000})
        assert response.status_code == 200, response.text
        body = response.json()
        held = sorted(r["userName"] for r in body["Resources"])
        assert body["totalResults"] == len(usernames)
        assert held == sorted(usernames)
        assert self.rows() == {}

    def teardown(self) -> None:
        # Nothing of this application may linger for other tests' engines to claim.
        with write_session(self.sessions) as session:
            applications.delete_app(session, self.app_id)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def faulty() -> Iterator[FaultyTransport]:
    transport = FaultyTransport(KeptAliveTransport())
    yield transport
    transport.shutdown()


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client


@pytest.fixture
def make_world(
    idp_engine: Engine,
    engine: Engine,
    live_server: str,
    http: httpx.Client,
    faulty: FaultyTransport,
    clock: FakeClock,
) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(config: EngineConfig | None = None) -> World:
        world = World(idp_engine, engine, live_server, http, faulty, clock, config)
        made.append(world)
        return world

    yield make
    for world in made:
        world.teardown()


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


# -- E1 ------------------------------------------------------------------------------------------


def test_e1_target_down_backs_off_quarantines_and_delivers_after_recovery(
    make_world: Callable[..., World], faulty: FaultyTransport, clock: FakeClock
) -> None:
    config = EngineConfig()  # the defaults: quarantine after >= 20 calls, >= 80 % failed
    world = make_world(config)
    names = world.add_users("e1", 6)
    world.bind()
    faulty.refuse()

    # Rounds 1-3: every call refused; each row backs off with full jitter under a growing cap.
    # The six users are looked up together, so a round costs the dead target one call.
    for attempt in (1, 2, 3):
        before = len(faulty.seen)
        assert world.run_once() == 6
        assert len(faulty.seen) - before == 1
        assert "+or+userName+eq+" in faulty.seen[-1].url
        assert faulty.forwarded == []
        rows = world.rows()
        assert set(rows) == set(names)
        ceiling = backoff.BASE * 2 ** (attempt - 1)
        for row in rows.values():
            assert row.attempts == attempt
            assert clock.now <= row.due_at <= clock.now + ceiling
            assert row.last_error is not None
            assert row.last_error.startswith("unreachable:")
        # Jittered: the six retries are spread, not synchronised.
        assert len({row.due_at for row in rows.values()}) > 1
        # Not due yet: a pass now sends nothing (unless jitter drew ~0 for a row).
        if all(row.due_at > clock.now for row in rows.values()):
            sent = len(faulty.seen)
            assert world.run_once() == 0
            assert len(faulty.seen) == sent
        assert world.app().quarantined_until is None
        clock.advance(ceiling)

    # Round 4: the 20th failure opens the circuit; the rest of the batch waits unsent.
    before = len(faulty.seen)
    assert world.run_once() == 6
    assert len(faulty.seen) - before == 1
    assert world.failures_logged() == config.minimum
    app = world.app()
    assert app.quarantined_until == clock.now + config.quarantine
    assert app.quarantine_reason is not None
    assert app.quarantine_reason.startswith("20 of the last 20 calls failed")
    assert sorted(row.attempts for row in world.rows().values()) == [3, 3, 3, 3, 4, 4]

    # Quarantined: claim skips the application, however due its rows are.
    sent = len(faulty.seen)
    clock.advance(config.quarantine - SECOND)
    assert world.run_once() == 0
    assert len(faulty.seen) == sent
    with read_session(world.sessions) as session:
        assert outbox.pending(session, world.app_id) == {"due": 6, "held": 0}

    # The quarantine ends while the target is still down: one probe, and the circuit reopens.
    clock.advance(SECOND)
    assert world.run_once() == 6
    assert len(faulty.seen) - sent == 1
    app = world.app()
    assert app.quarantined_until == clock.now + config.quarantine

    # Recovery: after the quarantine everything is delivered, once each.
    faulty.heal()
    clock.advance(config.quarantine)
    assert world.drain() == 6
    for name in names:
        world.assert_delivered(name)
    world.assert_all_delivered(names)
    app = world.app()
    assert (app.quarantined_until, app.quarantine_reason) == (None, None)
    assert faulty.count("POST", outcome="forwarded") == 6


# -- E2 ------------------------------------------------------------------------------------------


RETRY_AFTER: dict[str, Callable[[datetime], tuple[str, timedelta]]] = {
    "seconds": lambda now: ("7", timedelta(seconds=7)),
    "http-date": lambda now: (
        format_datetime(now + timedelta(seconds=90), usegmt=True),
        timedelta(seconds=90),
    ),
    "huge seconds, capped": lambda now: ("999999", backoff.RETRY_AFTER_CAP),
    "far http-date, capped": lambda now: (
        format_datetime(now + timedelta(days=30), usegmt=True),
        backoff.RETRY_AFTER_CAP,
    ),
}


@pytest.mark.parametrize("kind", list(RETRY_AFTER))
def test_e2_429_waits_for_retry_after(
    world: World, faulty: FaultyTransport, clock: FakeClock, kind: str
) -> None:
    [name] = world.add_users("e2", 1)
    world.bind()
    header, wait = RETRY_AFTER[kind](clock.now)
    faulty.answer(
        429, headers={"Retry-After": header}, detail="Too many requests", times=1, mentions=name
    )

    assert world.run_once() == 1
    [seen] = faulty.seen
    assert (seen.outcome, seen.status) == ("answered", 429)
    row = world.rows()[name]
    assert row.attempts == 1
    assert row.last_error == "Too many requests"
    # The header is a floor over the jitter (at most 2 s on a first retry, less than any wait
    # here), so the row is due exactly then; an absurd value is capped at an hour.
    assert clock.now + wait <= row.due_at <= clock.now + max(wait, backoff.BASE)
    assert row.due_at <= clock.now + backoff.RETRY_AFTER_CAP
    [entry] = world.log(name)
    assert entry["step"] == "retry"
    assert entry["response"]["status"] == 429

    # A second before the header's time nothing is sent; at it, the user is delivered.
    clock.advance(wait - SECOND)
    assert world.run_once() == 0
    assert len(faulty.seen) == 1
    clock.advance(SECOND)
    assert world.run_once() == 1
    world.assert_delivered(name, "User 1")
    world.assert_all_delivered([name])


# -- E3 ------------------------------------------------------------------------------------------


def test_e3_three_500s_then_created_once(
    world: World, faulty: FaultyTransport, clock: FakeClock
) -> None:
    [name] = world.add_users("e3", 1)
    world.bind()
    faulty.answer(500, detail="Internal Server Error", times=3, method="POST")

    for attempt in (1, 2, 3):
        assert world.run_once() == 1
        row = world.rows()[name]
        assert (row.attempts, row.last_error) == (attempt, "Internal Server Error")
        assert world.remote(name) == []
        clock.advance(backoff.BASE * 2 ** (attempt - 1))
    assert world.run_once() == 1

    user = world.assert_delivered(name, "User 1")
    world.assert_all_delivered([name])
    assert faulty.count("POST", outcome="answered") == 3
    assert faulty.count("POST", outcome="forwarded") == 1
    assert world.link(name).remote_id == user["id"]
    steps = [e["step"] for e in reversed(world.log(name))]
    assert steps == ["lookup", "retry"] * 3 + ["lookup", "create"]


# -- E4 ------------------------------------------------------------------------------------------


def test_e4_lost_answer_after_commit_is_adopted_not_duplicated(
    world: World, faulty: FaultyTransport, clock: FakeClock
) -> None:
    [name] = world.add_users("e4", 1)
    world.bind()
    faulty.lose_response(method="POST", mentions=name)

    assert world.run_once() == 1
    row = world.rows()[name]
    assert row.attempts == 1
    assert row.last_error is not None
    assert row.last_error.startswith("timeout:")
    # The target committed the create; the engine does not know its id yet, only that a create
    # was attempted (a pending link written before the call).
    [committed] = world.remote(name)
    with read_session(world.sessions) as session:
        [link] = session.execute(select(Link).where(Link.app_id == world.app_id)).scalars()
        assert (link.state, link.remote_id) == ("pending", None)

    clock.advance(backoff.BASE)
    assert world.run_once() == 1
    user = world.assert_delivered(name, "User 1")
    assert user["id"] == committed["id"]
    world.assert_all_delivered([name])
    assert faulty.count("POST") == 1
    latest = world.log(name)
    assert [e["step"] for e in reversed(latest)][-2:] == ["lookup", "update"]
    assert "adopting it" in latest[1]["decision"]


def test_e4_lost_answer_then_leaving_scope_still_deactivates(
    world: World, faulty: FaultyTransport, clock: FakeClock
) -> None:
    """The create committed but its answer was lost, then the user was suspended before the
    retry: the pending link makes the engine look the user up and deactivate it (found by the
    kill -9 test: without it, the app kept an active user the directory had suspended)."""
    [name] = world.add_users("e4s", 1)
    world.bind()
    faulty.lose_response(method="POST", mentions=name)
    assert world.run_once() == 1
    [committed] = world.remote(name)
    assert committed["active"] is True
    with write_session(world.sessions) as session:
        directory.set_state(session, name, "suspended")
    clock.advance(backoff.BASE)
    world.drain()
    [after] = world.remote(name)
    assert (after["id"], after["active"]) == (committed["id"], False)
    link = world.link(name)
    assert (link.state, link.remote_id) == ("inactive", committed["id"])
    assert [e["step"] for e in reversed(world.log(name))][-2:] == ["lookup", "deactivate"]


# -- E5 ------------------------------------------------------------------------------------------


def _scim_user(name: str, display_name: str) -> dict[str, Any]:
    return {
        "schemas": [CORE],
        "userName": name,
        "displayName": display_name,
        "active": True,
        "emails": [{"value": f"{name}@example.com", "type": "work", "primary": True}],
    }


def test_e5_409_on_create_adopts_and_patches_404_on_deactivate_is_done(
    world: World, faulty: FaultyTransport, clock: FakeClock
) -> None:
    raced, existing = world.add_users("e5", 2)
    # ``existing`` was created at the target before the directory ever sent it.
    response = world.scim.post("/Users", json=_scim_user(existing, "Old Existing"))
    assert response.status_code == 201, response.text
    existing_id = response.json()["id"]

    # ``raced`` is created at the target between the engine's lookup and its POST: a real 409.
    def someone_creates_it(_: httpx2.Request) -> None:
        created = world.scim.post("/Users", json=_scim_user(raced, "Old Raced"))
        assert created.status_code == 201, created.text

    faulty.before(someone_creates_it, method="POST", mentions=raced)
    world.bind()
    assert world.drain() == 2

    assert [(s.method, s.status) for s in faulty.seen if s.method == "POST"] == [("POST", 409)]
    user = world.assert_delivered(raced, "User 1")  # the directory's displayName wins
    steps = [(e["step"], e["response"]["status"]) for e in reversed(world.log(raced))]
    assert steps == [("lookup", 200), ("create", 409), ("lookup", 200), ("update", 200)]
    assert world.assert_delivered(existing, "User 2")["id"] == existing_id
    assert faulty.count("POST") == 1  # ``existing`` was found by the lookup, never POSTed
    world.assert_all_delivered([raced, existing])

    # Deleted at the target behind the directory's back: deactivating it answers 404 = done.
    deleted = world.scim.delete(f"/Users/{user['id']}")
    assert deleted.status_code == 204, deleted.text
    with write_session(world.sessions) as session:
        directory.remove_members(session, world.group, [raced])
    faulty.reset_counts()
    assert world.drain() == 1
    [patch] = faulty.seen
    assert (patch.method, patch.status) == ("PATCH", 404)
    link = world.link(raced)
    assert (link.state, link.remote_id) == ("inactive", None)
    assert link.detail == "already gone (404): counts as done"
    assert world.remote(raced) == []
    assert world.rows() == {}
    # Nothing left to do for either user.
    assert operations.enqueue_all(world.engine, world.label, "sync") == 2
    faulty.reset_counts()
    assert world.drain() == 2
    assert faulty.seen == []


# -- E6 ------------------------------------------------------------------------------------------


def test_e6_revoked_token_pauses_without_a_retry_storm_and_resumes_with_a_new_one(
    world: World, faulty: FaultyTransport, clock: FakeClock
) -> None:
    [first] = world.add_users("e6", 1)
    world.bind()
    assert world.drain() == 1
    world.assert_delivered(first)

    # An inSync administrator generates a new token: the directory's one is revoked at once.
    with write_session(make_sessionmaker(world.sp_engine)) as session:
        new_token = tenants.generate_token(session, world.tenant.id).token
    later = world.add_users("e6", 5)  # joining the bound group enqueues them
    faulty.reset_counts()

    assert world.run_once() == 5
    [refused] = faulty.seen
    assert (refused.outcome, refused.status) == ("forwarded", 401)
    app = world.app()
    assert app.idm_state == "paused"
    assert app.idm_detail is not None
    assert app.idm_detail.startswith("paused: the application answered 401")
    assert "configure a new token" in app.idm_detail
    entries = [e for name in later for e in world.log(name)]
    assert [(e["step"], e["response"]["status"]) for e in entries] == [("paused", 401)]
    assert "Identity Management paused" in entries[0]["decision"]

    # Paused: no pass sends anything, whatever the time; every change is kept.
    for _ in range(3):
        assert world.drain() == 0
        clock.advance(timedelta(hours=1))
    assert faulty.seen == [refused]
    rows = world.rows()
    assert set(rows) == set(later)
    assert all(row.attempts == 0 for row in rows.values())

    # The token is changed only while deactivated; then activation verifies and resumes.
    with write_session(world.sessions) as session, pytest.raises(ConflictError):
        applications.configure_idm(session, world.label, world.box, base_url=None, token=new_token)
    assert idm.deactivate(world.sessions, world.label) == 5
    with write_session(world.sessions) as session:
        applications.configure_idm(session, world.label, world.box, base_url=None, token=new_token)
    verified = idm.activate(world.engine, world.label)
    assert verified.ok, verified.message
    assert world.drain() == 5
    world.tenant.token = new_token
    for name in [first, *later]:
        world.assert_delivered(name)
    world.assert_all_delivered([first, *later])
    assert all(s.status != 401 for s in faulty.seen[1:])


# -- E7 ------------------------------------------------------------------------------------------


def test_e7_one_refused_user_of_100_is_dead_lettered_and_redriven(
    world: World, faulty: FaultyTransport, clock: FakeClock
) -> None:
    # #37 has no display name: the tenant's SCIM mapping refuses to create it (Druva's 400).
    names = world.add_users("e7", 100, **{"37": {"displayname": None}})
    refused = names[36]
    world.bind()

    assert world.drain() == 100
    # A create each, no retry of the 400, and one lookup for the batch's 100 users.
    assert (faulty.count("POST"), faulty.count("GET"), len(faulty.seen)) == (100, 1, 101)
    with read_session(world.sessions) as session:
        failed = operations.links(session, world.label, state="failed")
        active = operations.links(session, world.label, state="active", limit=1000)
    assert len(active) == 99
    assert [(f["user"], f["detail"]) for f in failed] == [(refused, NO_MATCH)]
    entries = world.log(refused)
    assert entries[0]["step"] == "failed"
    assert entries[0]["response"]["status"] == 400
    assert entries[0]["decision"] == f"refused by the application (400): {NO_MATCH}"
    assert world.remote(refused) == []
    assert world.rows() == {}  # dead-lettered: the link says why, nothing retries it
    plan = operations.plan(world.engine, world.label)
    assert (plan.retry_failed, plan.create, plan.unchanged) == ([refused], [], 99)
    for name in names[:3] + names[98:]:
        world.assert_delivered(name)

    # Fixing the user in the directory re-drives it.
    with write_session(world.sessions) as session:
        directory.set_user(session, refused, {"displayname": "Thirty Seven"}, "fixed")
    faulty.reset_counts()
    assert world.drain() == 1
    assert [s.method for s in faulty.seen] == ["GET", "POST"]
    world.assert_delivered(refused, "Thirty Seven")
    world.assert_all_delivered(names)


# -- batched lookups -----------------------------------------------------------------------------

BATCHED = "+or+userName+eq+"


@pytest.mark.parametrize("status", [400, 403])
def test_a_refused_batched_lookup_falls_back_to_one_lookup_per_user(
    world: World, faulty: FaultyTransport, status: int
) -> None:
    """A target whose filter grammar lacks ``or`` (400) is asked one user at a time from then
    on; any other refusal of the batch costs that batch its single lookups only."""
    names = world.add_users("fb", 3)
    faulty.answer(status, method="GET", mentions=BATCHED)
    world.bind()
    assert world.drain() == 3
    gets = [s for s in faulty.seen if s.method == "GET"]
    assert [(BATCHED in s.url, s.status) for s in gets] == [(True, status)] + [(False, 200)] * 3
    assert faulty.count("POST") == 3
    world.assert_all_delivered(names)
    for name in names:
        [lookup, create] = reversed(world.log(name))
        assert (lookup["step"], lookup["decision"]) == (
            "lookup",
            f"{name!r} is not in the application yet",
        )
        assert create["step"] == "create"

    faulty.reset_counts()
    more = world.add_users("fb2", 2)  # joining the bound group enqueues them
    assert world.drain() == 2
    batched = [s for s in faulty.seen if s.method == "GET" and BATCHED in s.url]
    # 400: never batched again in this engine; 403: tried again (and refused again).
    assert len(batched) == (0 if status == 400 else 1)
    world.assert_all_delivered(names + more)


def _names_per_lookup(faulty: FaultyTransport) -> list[tuple[int, int | None]]:
    """How many users each ``GET /Users?filter=`` asked for, and its status."""
    return [
        (s.url.count("userName+eq"), s.status)
        for s in faulty.seen
        if s.method == "GET" and "filter=" in s.url
    ]


@pytest.mark.parametrize("status", [400, 414])
def test_a_filter_too_long_for_the_target_is_asked_again_for_half_as_many(
    make_world: Callable[..., World], faulty: FaultyTransport, status: int
) -> None:
    """A 400 to a batched lookup (a target's filter limits), or 414 (its URL limit), halves it
    at once and for later batches; the users still get one shared lookup, not one call each."""
    world = make_world(EngineConfig(lookup_batch=8))
    names = world.add_users("half", 8)
    faulty.answer(status, method="GET", mentions=BATCHED, times=1)
    world.bind()
    assert world.drain() == 8
    assert _names_per_lookup(faulty) == [(8, status), (4, 200), (4, 200)]
    world.assert_all_delivered(names)

    faulty.reset_counts()
    more = world.add_users("half2", 6)
    assert world.drain() == 6
    assert _names_per_lookup(faulty) == [(4, 200), (2, 200)]
    world.assert_all_delivered(names + more)


def test_a_target_without_filtering_is_asked_one_user_at_a_time(
    world: World, faulty: FaultyTransport
) -> None:
    """501 (RFC 7644 §3.12): filtering is not implemented, so batching is not tried again."""
    names = world.add_users("nofilter", 3)
    faulty.answer(501, method="GET", mentions=BATCHED)
    world.bind()
    assert world.drain() == 3
    assert _names_per_lookup(faulty) == [(3, 501), (1, 200), (1, 200), (1, 200)]
    faulty.reset_counts()
    more = world.add_users("nofilter2", 2)
    assert world.drain() == 2
    assert _names_per_lookup(faulty) == [(1, 200), (1, 200)]
    world.assert_all_delivered(names + more)


def test_a_batch_past_half_its_lease_releases_the_pairs_it_has_not_started(
    world: World, faulty: FaultyTransport, clock: FakeClock
) -> None:
    """A slow application must not keep pairs claimed past their lease, or another worker
    would take them while this one still holds them: the rest go back, unsent, due now."""
    names = world.add_users("lease", 4)
    slow = world.engine.config.lease / 2 + timedelta(seconds=1)
    faulty.before(lambda _: clock.advance(slow), method="POST", times=1)
    world.bind()
    assert world.run_once() == 4

    assert faulty.count("POST") == 1
    [created] = [name for name in names if world.link(name).state == "active"]
    rows = world.rows()
    assert set(rows) == set(names) - {created}
    assert all(row.attempts == 0 and row.last_error is None for row in rows.values())
    assert all(row.due_at <= clock() for row in rows.values())
    with read_session(world.sessions) as session:
        leased = session.execute(
            select(OutboxRow.claimed_until).where(OutboxRow.app_id == world.app_id)
        ).scalars()
        assert set(leased) == {None}
    assert {world.link(name).state for name in rows} == {"pending"}

    assert world.drain() == 3
    assert faulty.count("POST") == 4
    world.assert_all_delivered(names)


def test_a_capped_batched_answer_counts_only_what_it_shows(
    world: World, faulty: FaultyTransport
) -> None:
    """A target that answers a page smaller than ``totalResults`` proves nothing about the
    users it left out: they are looked up one by one. What it did show is adopted, matched by
    ``userName`` ignoring case (RFC 7643 §4.1.1)."""
    shown, left_out, also_left_out = world.add_users("cap", 3)
    existing = world.scim.post("/Users", json=_scim_user(shown.upper(), "Held Already"))
    assert existing.status_code == 201, existing.text
    capped = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 3,
        "itemsPerPage": 1,
        "startIndex": 1,
        "Resources": [existing.json()],
    }
    faulty.answer(200, method="GET", mentions=BATCHED, body=capped, times=1)
    world.bind()
    assert world.drain() == 3

    assert world.assert_delivered(shown, "User 1")["id"] == existing.json()["id"]
    world.assert_all_delivered([shown, left_out, also_left_out])
    singles = [s.url for s in faulty.seen if s.method == "GET" and BATCHED not in s.url]
    assert sorted(singles) == sorted(
        f'{world.base_url}/Users?filter=userName+eq+"{name}"&count=2'
        for name in (left_out, also_left_out)
    )
    assert sorted(s.method for s in faulty.seen if s.method != "GET") == ["PATCH", "POST", "POST"]
    lookup = world.log(shown)[-1]
    assert lookup["decision"] == f"found {shown!r}: adopting it (one lookup for 3 users)"
    # Each user's row names its own clause of the shared filter, not the whole URL.
    assert lookup["request"]["url"] == (
        f'{world.base_url}/Users?filter=userName eq "{shown}" or … (3 users in one filter)'
    )
    assert [r["id"] for r in lookup["response"]["body"]["Resources"]] == [existing.json()["id"]]
    # Each user's part of the shared answer, under the shared call's own correlation id.
    assert world.log(left_out)[-1]["correlation_id"] != lookup["correlation_id"]


def test_an_unanswered_batched_lookup_fails_only_the_users_not_yet_answered(
    make_world: Callable[..., World], faulty: FaultyTransport, clock: FakeClock
) -> None:
    world = make_world(EngineConfig(lookup_batch=2))
    names = world.add_users("chunk", 4)
    # The batch's first lookup (two users) is answered; its second finds the target failing.
    faulty.before(lambda request: None, method="GET", mentions=BATCHED, times=1)
    faulty.answer(503, method="GET", mentions=BATCHED, times=1)
    world.bind()
    assert world.run_once() == 4

    assert faulty.count("GET") == 2  # nobody was asked again one by one
    assert faulty.count("POST") == 2  # the two answered users were created
    rows = world.rows()
    assert len(rows) == 2  # the two of the unanswered lookup wait for their retry
    assert all(row.attempts == 1 and row.last_error == "injected 503" for row in rows.values())
    clock.advance(timedelta(hours=1))
    assert world.drain() == 2
    world.assert_all_delivered(names)


# -- bulk creates (RFC 7644 §3.7) ----------------------------------------------------------------


def _bulk_world(make_world: Callable[..., World], config: EngineConfig | None = None) -> World:
    world = make_world(config)
    with write_session(world.sessions) as session:
        applications.settings(session, world.label, bulk_creates=True)
    assert world.app().bulk_max_operations == 100  # read from the app half's discovery
    return world


def test_bulk_creates_are_one_request_for_the_users_a_lookup_did_not_find(
    make_world: Callable[..., World], faulty: FaultyTransport
) -> None:
    world = _bulk_world(make_world, EngineConfig(batch=50))
    names = world.add_users("bulk", 60)
    # One user exists already: its lookup adopts it, so it is not in the bulk request.
    body = {"schemas": [CORE], "userName": names[4], "displayName": "Earlier"}
    existing = world.scim.post("/Users", json=body)
    assert existing.status_code == 201, existing.text
    world.bind()

    assert world.drain() == 60
    world.assert_all_delivered(names)
    # Batches of 50 and 10: a lookup and a bulk request each (59 creates), 1 update.
    assert faulty.count("POST") == 2
    assert all(s.url.endswith("/insync/scim/Bulk") for s in faulty.seen if s.method == "POST")
    assert (faulty.count("GET"), faulty.count("PATCH")) == (2, 1)
    for name in names[:3] + names[58:]:
        world.assert_delivered(name)
    # Users of one bulk request share its correlation id; the other request has its own.
    requests: dict[str, list[str]] = {}
    for name in names:
        entries = world.log(name)
        assert [e["step"] for e in reversed(entries)] == (
            ["lookup", "update"] if name == names[4] else ["lookup", "create"]
        )
        if name != names[4]:
            requests.setdefault(entries[0]["correlation_id"], []).append(entries[0]["decision"])
    assert sorted(len(d) for d in requests.values()) in ([9, 50], [10, 49])
    for decisions in requests.values():
        assert all(d.endswith(f"(one bulk request for {len(decisions)} users)") for d in decisions)
    create = world.log(names[0])[0]
    assert create["request"]["url"].endswith("/Bulk")
    assert create["request"]["body"]["bulkId"] == world.link(names[0]).user_id
    assert create["request"]["body"]["data"]["userName"] == names[0]
    assert create["response"]["status"] == 201
    assert create["response"]["body"]["id"] == world.link(names[0]).remote_id
    assert world.link(names[4]).remote_id == existing.json()["id"]


def test_each_bulk_operation_is_judged_as_its_own_create(
    make_world: Callable[..., World], faulty: FaultyTransport
) -> None:
    world = _bulk_world(make_world)
    # #2 has no display name: the tenant's SCIM mapping refuses it (Druva's 400).
    names = world.add_users("judged", 4, **{"2": {"displayname": None}})
    # #3 appears at the target between the lookup and the bulk request: 409, adopted.
    raced = names[2]

    def create_raced(request: httpx2.Request) -> None:
        body = {"schemas": [CORE], "userName": raced, "displayName": "Raced"}
        assert world.scim.post("/Users", json=body).status_code == 201

    faulty.before(create_raced, method="POST", mentions="/Bulk")
    world.bind()
    assert world.drain() == 4

    refused = world.link(names[1])
    assert (refused.state, refused.detail) == ("failed", NO_MATCH)
    assert world.log(names[1])[0]["decision"] == f"refused by the application (400): {NO_MATCH}"
    steps = [e["step"] for e in reversed(world.log(raced))]
    assert steps == ["lookup", "create", "lookup", "update"]
    assert "already exists (409): adopting it" in world.log(raced)[2]["decision"]
    for name in (names[0], raced, names[3]):
        world.assert_delivered(name)
    assert (faulty.count("POST"), faulty.count("PATCH")) == (1, 1)
    assert world.rows() == {}


@pytest.mark.parametrize("fault", ["503", "lost", "down"])
def test_a_bulk_request_without_an_answer_retries_every_create_it_carried(
    make_world: Callable[..., World], faulty: FaultyTransport, clock: FakeClock, fault: str
) -> None:
    world = _bulk_world(make_world)
    names = world.add_users("bulk-fault", 5)
    if fault == "503":
        faulty.answer(503, method="POST", mentions="/Bulk", times=1, headers={"Retry-After": "7"})
    elif fault == "lost":
        faulty.lose_response(method="POST", mentions="/Bulk")
    else:
        faulty.refuse(method="POST", mentions="/Bulk", times=1)
    world.bind()

    assert world.run_once() == 5
    rows = world.rows()
    assert set(rows) == set(names)
    assert all(row.attempts == 1 for row in rows.values())
    entry = world.log(names[0])[0]
    assert entry["step"] == "retry"
    assert entry["request"]["url"].endswith("/Bulk")
    if fault == "503":
        assert all(row.due_at >= clock.now + 7 * SECOND for row in rows.values())

    clock.advance(timedelta(hours=1))
    assert world.drain() == 5
    world.assert_all_delivered(names)
    if fault == "lost":
        # The target committed the lost request: the users are looked up and adopted, once.
        assert faulty.count("POST") == 1
        assert [e["step"] for e in reversed(world.log(names[0]))][-2:] == ["lookup", "update"]
    else:
        assert faulty.count("POST") == 2


def test_a_bulk_request_refused_for_its_token_pauses_the_application(
    make_world: Callable[..., World], faulty: FaultyTransport
) -> None:
    world = _bulk_world(make_world)
    names = world.add_users("bulk-401", 3)
    faulty.answer(401, method="POST", mentions="/Bulk", detail="token revoked")
    world.bind()
    assert world.run_once() == 3
    assert world.app().idm_state == "paused"
    assert faulty.count("POST") == 1
    assert set(world.rows()) == set(names)


@pytest.mark.parametrize("status", [404, 501, 413])
def test_a_target_refusing_bulk_gets_one_create_per_user(
    make_world: Callable[..., World], faulty: FaultyTransport, status: int
) -> None:
    world = _bulk_world(make_world)
    names = world.add_users("no-bulk", 4)
    faulty.answer(status, method="POST", mentions="/Bulk", times=1)
    world.bind()
    assert world.drain() == 4
    world.assert_all_delivered(names)
    posts = [s.url.rsplit("/", 1)[1] for s in faulty.seen if s.method == "POST"]
    assert posts == ["Bulk", "Users", "Users", "Users", "Users"]
    # 413 halves the requests from then on; anything else turns bulk off in this engine.
    assert world.engine._bulk_sizes[world.app_id] == (2 if status == 413 else 0)
    more = world.add_users("no-bulk-later", 4)
    faulty.reset_counts()
    assert world.drain() == 4
    posts = [s.url.rsplit("/", 1)[1] for s in faulty.seen if s.method == "POST"]
    assert posts == (["Bulk", "Bulk"] if status == 413 else ["Users"] * 4)
    world.assert_all_delivered(names + more)


def test_an_operation_missing_from_the_answer_is_created_on_its_own(
    make_world: Callable[..., World], faulty: FaultyTransport
) -> None:
    world = _bulk_world(make_world)
    names = world.add_users("partial", 3)
    world.bind()
    with read_session(world.sessions) as session:
        ids = {u.username: u.id for u in session.execute(select(DirectoryUser)).scalars()}
    answer = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"],
        "Operations": [
            {"method": "POST", "bulkId": ids[names[0]], "status": "503"},
            {"method": "POST", "bulkId": ids[names[1]], "status": "201"},  # no location
            {"method": "POST", "bulkId": "someone-else", "status": "201", "location": "x/1"},
        ],
    }
    faulty.answer(200, method="POST", mentions="/Bulk", times=1, body=answer)
    assert world.run_once() == 3
    # #1 retries later (its operation's 503); #2 and #3 were created one at a time.
    assert set(world.rows()) == {names[0]}
    posts = [s.url.rsplit("/", 1)[1] for s in faulty.seen if s.method == "POST"]
    assert posts == ["Bulk", "Users", "Users"]
    for name in names[1:]:
        world.assert_delivered(name)


def test_bulk_creates_are_off_unless_chosen(world: World, faulty: FaultyTransport) -> None:
    assert world.app().bulk_max_operations == 100
    names = world.add_users("off", 3)
    world.bind()
    assert world.drain() == 3
    world.assert_all_delivered(names)
    assert [s.url.rsplit("/", 1)[1] for s in faulty.seen if s.method == "POST"] == ["Users"] * 3


def test_a_failed_bulk_request_answers_the_creates_of_the_requests_after_it_too(
    make_world: Callable[..., World], faulty: FaultyTransport, clock: FakeClock
) -> None:
    world = _bulk_world(make_world, EngineConfig(bulk_batch=2))
    names = world.add_users("bulk-later", 5)
    faulty.answer(503, method="POST", mentions="/Bulk", times=1)
    world.bind()
    assert world.run_once() == 5
    # Three requests were due (2, 2 and 1 creates); the first failed, nothing else was sent.
    assert [s.method for s in faulty.seen] == ["GET", "POST"]
    assert all(row.attempts == 1 for row in world.rows().values())
    clock.advance(timedelta(hours=1))
    assert world.drain() == 5
    world.assert_all_delivered(names)
    posts = [s.url.rsplit("/", 1)[1] for s in faulty.seen if s.method == "POST"]
    assert posts == ["Bulk", "Bulk", "Bulk", "Users"]  # the last one's request holds one create
