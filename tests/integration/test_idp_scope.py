"""Scope, the mass-deactivation threshold, reconcile, concurrent workers and PUT-only targets:
the directory half against the live app half over real HTTP, on SQLite and on PostgreSQL.

* Users are implicitly denied: only members of a bound group are ever sent. Joining a bound
  group provisions, leaving it deactivates (the app half preserves the account, by the IdP)
  unless another bound group still grants access; deleting a directory user deactivates it;
  coming back reactivates the same app-half account.
* One action deactivating more users than the threshold is held until approved or rejected.
* A reconcile finds drift made behind the directory's back and the worker repairs it; a
  reconcile of an unchanged application only reads.
* Two engines draining one queue at once deliver each user exactly once.
* A target whose ServiceProviderConfig says PATCH is unsupported is updated with PUT.
* Editing how an application is presented (label, description, portal, logo) changes only the
  given fields and leaves provisioning alone: nothing is queued or sent, IdM and links stay.

Every request the directory makes passes through a recording transport (a real HTTP transport,
no rule programmed), so a test can say exactly which calls were made.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import httpx
import httpx2
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlalchemy import select

from scimlink.errors import ConflictError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.idp import applications
from scimlink.idp import directory
from scimlink.idp import idm
from scimlink.idp import outbox
from scimlink.idp import workers
from scimlink.idp.models import Application
from scimlink.idp.models import Link
from scimlink.idp.models import LogEntry
from scimlink.idp.models import OutboxRow
from scimlink.idp.provisioning import operations
from scimlink.idp.provisioning.engine import Engine as ProvisioningEngine
from scimlink.idp.provisioning.engine import EngineConfig
from scimlink.idp.provisioning.transport import KeptAliveTransport
from scimlink.idp.secrets import SecretBox
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from tests.conftest import PATCH_OP
from tests.conftest import AdminApi
from tests.conftest import Scim
from tests.conftest import make_admin
from tests.conftest import make_tenant
from tests.integration.faulty_transport import FaultyTransport


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


class PatchUnsupported(httpx2.BaseTransport):
    """The network between the directory and a target that does not offer PATCH: the target's
    ServiceProviderConfig arrives with ``patch.supported`` false; everything else is untouched."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith("/ServiceProviderConfig"):
            return response
        response.read()
        body = response.json()
        body["patch"] = {"supported": False}
        return httpx2.Response(
            response.status_code,
            headers={"Content-Type": "application/scim+json"},
            content=json.dumps(body).encode(),
            request=request,
        )

    def close(self) -> None:
        self.inner.close()


class Scene:
    """One app-half tenant and one directory application (Druva preset) provisioning into it."""

    def __init__(
        self,
        idp_engine: Engine,
        sp_engine: Engine,
        live_server: str,
        http: httpx.Client,
        recorder: FaultyTransport,
    ) -> None:
        self.sessions = make_sessionmaker(idp_engine)
        self.http = http
        self.recorder = recorder
        self.box = SecretBox(Fernet.generate_key())
        self.tenant = make_tenant(sp_engine)
        self.admin = AdminApi(http, make_admin(sp_engine, self.tenant.id))
        self.scim = Scim(http, self.tenant.token)
        self.label = _unique("Druva-scope")
        self.base_url = f"{live_server}/insync/scim"
        self.engine = self.make_engine()
        with write_session(self.sessions) as session:
            self.app_id = applications.add_app(session, "druva", self.label).id
            applications.configure_idm(
                session, self.label, self.box, base_url=self.base_url, token=self.tenant.token
            )
            applications.settings(session, self.label, rate=10000)

    def make_engine(
        self, *, worker: str | None = None, config: EngineConfig | None = None
    ) -> ProvisioningEngine:
        recorder = self.recorder
        return ProvisioningEngine(
            self.sessions, self.box, config, transport=lambda app: recorder, worker=worker
        )

    def activate(self) -> idm.Verification:
        verified = idm.activate(self.engine, self.label)
        assert verified.ok, verified.message
        assert verified.message == "successfully verified"
        self.recorder.reset_counts()
        return verified

    # -- the directory ----------------------------------------------------------------------------

    def group(self, prefix: str) -> str:
        name = _unique(prefix)
        with write_session(self.sessions) as session:
            directory.create_group(session, name)
        return name

    def users(self, prefix: str, count: int, group: str | None = None) -> list[str]:
        names = [f"{prefix}-{uuid.uuid4().hex[:6]}-{i}" for i in range(1, count + 1)]
        with write_session(self.sessions) as session:
            for name in names:
                directory.add_user(session, self.properties(name))
            if group is not None:
                directory.add_members(session, group, names)
        return names

    @staticmethod
    def properties(name: str) -> dict[str, Any]:
        return {
            "username": name,
            "email": f"{name}@example.com",
            "displayname": f"Name {name}",
            "employeeIdentifier": f"E-{name}",
        }

    def bind(self, group: str) -> int:
        with write_session(self.sessions) as session:
            return applications.bind_group(session, self.label, group)

    def unbind(self, group: str) -> tuple[int, int]:
        with write_session(self.sessions) as session:
            return applications.unbind_group(session, self.label, group)

    def drain(self) -> int:
        return self.engine.drain(app_id=self.app_id)

    def pending(self) -> dict[str, int]:
        with read_session(self.sessions) as session:
            return outbox.pending(session, self.app_id)

    def link(self, username: str) -> Link | None:
        with read_session(self.sessions) as session:
            link = session.execute(
                select(Link).where(Link.app_id == self.app_id, Link.username == username)
            ).scalar_one_or_none()
            if link is not None:
                session.expunge(link)
            return link

    def app(self) -> Application:
        with read_session(self.sessions) as session:
            app = session.get(Application, self.app_id)
            assert app is not None
            session.expunge(app)
            return app

    def log(self, username: str) -> list[dict[str, Any]]:
        with read_session(self.sessions) as session:
            return operations.log_entries(session, self.label, user=username)

    # -- the app half -----------------------------------------------------------------------------

    def remote(self, username: str) -> list[dict[str, Any]]:
        """The app half's users under ``username`` (its own SCIM filter)."""
        response = self.scim.get("/Users", params={"filter": f'userName eq "{username}"'})
        assert response.status_code == 200, response.text
        resources: list[dict[str, Any]] = response.json().get("Resources") or []
        assert response.json()["totalResults"] == len(resources)
        return resources

    def remote_names(self) -> list[str]:
        """Every userName the tenant holds, duplicates included."""
        response = self.scim.get("/Users", params={"count": 1000})
        assert response.status_code == 200, response.text
        body = response.json()
        names = [r["userName"] for r in body.get("Resources") or []]
        assert body["totalResults"] == len(names)
        return sorted(names)

    def account(self, username: str) -> dict[str, Any]:
        """The app half's account (admin API): id, state, preserved_by, displayName."""
        email = f"{username}@example.com"
        response = self.admin.get("/users", params={"limit": 1000})
        assert response.status_code == 200, response.text
        found = [u for u in response.json()["users"] if u["email"] == email]
        assert len(found) == 1, found
        account: dict[str, Any] = found[0]
        return account

    def assert_active(self, username: str) -> dict[str, Any]:
        """Provisioned and active in the app half, and the link knows the same id."""
        [user] = self.remote(username)
        assert user["active"] is True
        account = self.account(username)
        assert (account["id"], account["state"]) == (user["id"], "active")
        link = self.link(username)
        assert link is not None
        assert (link.state, link.remote_id) == ("active", user["id"]), link.detail
        return account

    def assert_preserved(self, username: str) -> dict[str, Any]:
        """Deactivated by the directory: the app half preserved the account, by the IdP."""
        [user] = self.remote(username)
        assert user["active"] is False
        account = self.account(username)
        assert (account["state"], account["preserved_by"]) == ("preserved", "idp")
        link = self.link(username)
        assert link is not None
        assert (link.state, link.remote_id) == ("inactive", user["id"]), link.detail
        return account

    def mentions(self, username: str) -> list[str]:
        return [s.url for s in self.recorder.seen if username in s.url]

    def teardown(self) -> None:
        # Nothing of this application may linger for other tests' engines to claim.
        with write_session(self.sessions) as session:
            applications.delete_app(session, self.app_id)


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client


@pytest.fixture
def recorder() -> Iterator[FaultyTransport]:
    transport = FaultyTransport(KeptAliveTransport())
    yield transport
    transport.shutdown()


@pytest.fixture
def make_scene(
    idp_engine: Engine,
    engine: Engine,
    live_server: str,
    http: httpx.Client,
) -> Iterator[Callable[[FaultyTransport], Scene]]:
    made: list[Scene] = []

    def make(recorder: FaultyTransport) -> Scene:
        scene = Scene(idp_engine, engine, live_server, http, recorder)
        made.append(scene)
        return scene

    yield make
    for scene in made:
        scene.teardown()


@pytest.fixture
def scene(make_scene: Callable[[FaultyTransport], Scene], recorder: FaultyTransport) -> Scene:
    made = make_scene(recorder)
    made.activate()
    return made


# -- implicit deny and scope changes -------------------------------------------------------------


def test_users_outside_bound_groups_are_never_sent(scene: Scene) -> None:
    engineers = scene.group("Engineers")
    outsiders = scene.group("Outsiders")
    ann, ben = scene.users("ann", 2, engineers)
    [cid] = scene.users("cid", 1, outsiders)  # in a group, but not a bound one
    [dan] = scene.users("dan", 1)  # in no group at all

    # Nothing is bound yet: the application holds nobody, and nothing is queued for anyone.
    with write_session(scene.sessions) as session:
        directory.set_user(session, ann, {"displayname": "Ann Before"}, "test")
    assert scene.pending() == {"due": 0, "held": 0}
    assert scene.drain() == 0
    assert scene.recorder.seen == []

    assert scene.bind(engineers) == 2
    assert scene.drain() == 2
    scene.assert_active(ann)
    scene.assert_active(ben)
    assert scene.account(ann)["displayName"] == "Ann Before"
    assert scene.remote_names() == sorted([ann, ben])

    # The outsiders were never looked up, created or linked, and changing them queues nothing.
    with write_session(scene.sessions) as session:
        directory.set_user(session, cid, {"displayname": "Cid Changed"}, "test")
        directory.set_user(session, dan, {"displayname": "Dan Changed"}, "test")
        directory.add_members(session, outsiders, [dan])
    assert scene.pending() == {"due": 0, "held": 0}
    assert scene.drain() == 0
    for name in (cid, dan):
        assert scene.mentions(name) == []
        assert scene.link(name) is None
        assert scene.remote(name) == []
    assert operations.plan(scene.engine, scene.label).to_dict()["unchanged"] == 2

    # Joining the bound group provisions: a lookup, then a create.
    scene.recorder.reset_counts()
    with write_session(scene.sessions) as session:
        directory.add_members(session, engineers, [cid])
    assert scene.drain() == 1
    assert [s.method for s in scene.recorder.seen] == ["GET", "POST"]
    scene.assert_active(cid)
    assert scene.remote_names() == sorted([ann, ben, cid])
    assert scene.remote(dan) == []


def test_leaving_scope_deactivates_unless_another_bound_group_grants_access(
    scene: Scene,
) -> None:
    engineers = scene.group("Engineers")
    backup = scene.group("Backup")
    ann, ben, eve = scene.users("leave", 3, engineers)
    with write_session(scene.sessions) as session:
        directory.add_members(session, backup, [ben])
    scene.bind(engineers)
    scene.bind(backup)
    assert scene.drain() == 3
    accounts = {name: scene.assert_active(name) for name in (ann, ben, eve)}

    # Ben leaves Engineers but Backup (bound too) still grants him access: no call at all.
    scene.recorder.reset_counts()
    with write_session(scene.sessions) as session:
        directory.remove_members(session, engineers, [ben])
    assert scene.drain() == 1
    assert scene.recorder.seen == []
    scene.assert_active(ben)

    # Ann leaves the only group granting her access: deactivated (PATCH active=false).
    with write_session(scene.sessions) as session:
        directory.remove_members(session, engineers, [ann])
    assert scene.drain() == 1
    assert [s.method for s in scene.recorder.seen] == ["PATCH"]
    assert scene.assert_preserved(ann)["id"] == accounts[ann]["id"]
    [entry] = scene.log(ann)[:1]
    assert (entry["step"], entry["request"]["method"]) == ("deactivate", "PATCH")
    assert entry["request"]["body"]["Operations"][0]["value"]["active"] is False
    assert entry["cause"] == f"removed from group {engineers}"

    # Re-added: the same account is reactivated, not a new one created.
    scene.recorder.reset_counts()
    with write_session(scene.sessions) as session:
        directory.add_members(session, engineers, [ann])
    assert scene.drain() == 1
    assert [s.method for s in scene.recorder.seen] == ["PATCH"]
    assert scene.assert_active(ann)["id"] == accounts[ann]["id"]

    # Unbinding Engineers: Ann and Eve lose access, Ben keeps it through Backup.
    assert scene.unbind(engineers) == (2, 0)
    assert scene.drain() == 2
    scene.assert_preserved(ann)
    scene.assert_preserved(eve)
    scene.assert_active(ben)

    # Re-binding reactivates both, with the same app-half accounts.
    scene.bind(engineers)
    assert scene.drain() == 2
    for name in (ann, ben, eve):
        assert scene.assert_active(name)["id"] == accounts[name]["id"]
    assert scene.remote_names() == sorted([ann, ben, eve])


def test_deleting_a_directory_user_deactivates_it_and_recreating_it_reactivates(
    scene: Scene,
) -> None:
    engineers = scene.group("Engineers")
    gus, hal = scene.users("del", 2, engineers)
    scene.bind(engineers)
    assert scene.drain() == 2
    account = scene.assert_active(gus)

    scene.recorder.reset_counts()
    with write_session(scene.sessions) as session:
        directory.delete_user(session, gus)
    assert scene.drain() == 1
    # A deleted user is only deactivated: PATCH active=false, nothing else.
    assert [s.method for s in scene.recorder.seen] == ["PATCH"]
    assert scene.assert_preserved(gus)["id"] == account["id"]
    entry = scene.log(gus)[0]
    assert entry["step"] == "deactivate"
    assert entry["request"]["body"]["Operations"] == [{"op": "replace", "value": {"active": False}}]
    assert entry["cause"] == "user deleted"
    scene.assert_active(hal)

    # The same person comes back (a new directory user, same username): the lookup finds the
    # preserved account, which is adopted and reactivated, never duplicated.
    scene.recorder.reset_counts()
    with write_session(scene.sessions) as session:
        directory.add_user(session, scene.properties(gus))
        directory.add_members(session, engineers, [gus])
    assert scene.drain() == 1
    assert [s.method for s in scene.recorder.seen] == ["GET", "PATCH"]
    [user] = scene.remote(gus)
    assert (user["id"], user["active"]) == (account["id"], True)
    assert scene.account(gus)["state"] == "active"
    assert scene.remote_names() == sorted([gus, hal])


# -- the mass-deactivation threshold -------------------------------------------------------------


def _held_unbind(scene: Scene) -> tuple[str, list[str]]:
    """Five active users of a bound group, then the group unbound past a threshold of 3."""
    with write_session(scene.sessions) as session:
        applications.settings(session, scene.label, threshold=3)
    many = scene.group("Many")
    names = scene.users("mass", 5, many)
    scene.bind(many)
    assert scene.drain() == 5
    for name in names:
        scene.assert_active(name)

    scene.recorder.reset_counts()
    assert scene.unbind(many) == (5, 5)
    assert scene.pending() == {"due": 0, "held": 5}
    # Held: nothing is sent, however often the worker runs.
    assert scene.drain() == 0
    assert scene.drain() == 0
    assert scene.recorder.seen == []
    for name in names:
        scene.assert_active(name)
    with read_session(scene.sessions) as session:
        app = applications.find_app(session, scene.label)
        assert applications.app_view(session, app)["pending"] == {"due": 0, "held": 5}
    return many, names


def test_mass_deactivation_is_held_until_approved(scene: Scene) -> None:
    # At the threshold (3 leaving, threshold 3) nothing is held.
    few = scene.group("Few")
    small = scene.users("few", 3, few)
    with write_session(scene.sessions) as session:
        applications.settings(session, scene.label, threshold=3)
    scene.bind(few)
    assert scene.drain() == 3
    assert scene.unbind(few) == (3, 0)
    assert scene.pending() == {"due": 3, "held": 0}
    assert scene.drain() == 3
    for name in small:
        scene.assert_preserved(name)

    _, names = _held_unbind(scene)
    with write_session(scene.sessions) as session:
        assert outbox.approve(session, scene.app_id) == 5
    assert scene.pending() == {"due": 5, "held": 0}
    assert scene.drain() == 5
    assert scene.pending() == {"due": 0, "held": 0}
    assert [s.method for s in scene.recorder.seen] == ["PATCH"] * 5
    for name in names:
        scene.assert_preserved(name)


def test_mass_deactivation_holds_users_already_due_and_keeps_them_held(scene: Scene) -> None:
    """A user whose row was already due for another cause is held with the rest; a later
    change keeps it held; coming back into scope releases it; an approved row is never held
    again, even by the next mass action."""
    with write_session(scene.sessions) as session:
        applications.settings(session, scene.label, threshold=3)
    many = scene.group("Many")
    names = scene.users("due", 5, many)
    scene.bind(many)
    assert scene.drain() == 5
    first, second = names[0], names[1]
    with write_session(scene.sessions) as session:
        directory.set_user(session, first, {"displayname": "Renamed"}, "test")
    assert scene.pending() == {"due": 1, "held": 0}

    assert scene.unbind(many) == (5, 5)
    assert scene.pending() == {"due": 0, "held": 5}
    with write_session(scene.sessions) as session:
        directory.set_user(session, second, {"displayname": "Renamed too"}, "test")
    assert scene.pending() == {"due": 0, "held": 5}
    scene.recorder.reset_counts()
    assert scene.drain() == 0
    assert scene.recorder.seen == []

    # Back in scope through another bound group: nothing to deactivate, so not held.
    other = scene.group("Other")
    scene.bind(other)
    with write_session(scene.sessions) as session:
        directory.add_members(session, other, [first])
    assert scene.pending() == {"due": 1, "held": 4}
    assert scene.drain() == 1
    assert scene.assert_active(first)["displayName"] == "Renamed"

    with write_session(scene.sessions) as session:
        assert outbox.approve(session, scene.app_id) == 4
    with write_session(scene.sessions) as session:
        # A second mass action before the worker ran: the approved rows stay released.
        ids = [directory.find_user(session, name).id for name in names[1:]]
        assert outbox.enqueue(session, scene.app_id, ids, "another mass action") == 0
    assert scene.pending() == {"due": 4, "held": 0}
    assert scene.drain() == 4
    for name in names[1:]:
        scene.assert_preserved(name)


def test_mass_deactivation_rejected_leaves_users_active(scene: Scene) -> None:
    _, names = _held_unbind(scene)
    with write_session(scene.sessions) as session:
        assert outbox.reject(session, scene.app_id) == 5
    assert scene.pending() == {"due": 0, "held": 0}
    assert scene.drain() == 0
    assert scene.recorder.seen == []
    for name in names:
        scene.assert_active(name)
    # The directory still knows what a sync would do: deactivate them.
    assert operations.plan(scene.engine, scene.label).to_dict()["deactivate"] == 5


# -- reconcile -----------------------------------------------------------------------------------


def test_reconcile_repairs_drift_and_only_reads_when_nothing_drifted(scene: Scene) -> None:
    engineers = scene.group("Engineers")
    ann, ben, cid, dan, eve = scene.users("rec", 5, engineers)
    scene.bind(engineers)
    assert scene.drain() == 5
    # Two users the application holds deactivated: one left scope, one was deleted.
    with write_session(scene.sessions) as session:
        directory.remove_members(session, engineers, [dan])
        directory.delete_user(session, eve)
    assert scene.drain() == 2
    scene.assert_preserved(dan)
    scene.assert_preserved(eve)

    # Nothing drifted: a reconcile reads the application and writes nothing.
    scene.recorder.reset_counts()
    drift = operations.reconcile(scene.engine, scene.label)
    assert (drift.read, drift.differing, drift.missing) == (5, 0, 0), drift
    assert scene.drain() == 0
    assert {s.method for s in scene.recorder.seen} == {"GET"}
    assert all("/Users?" in s.url for s in scene.recorder.seen)

    # Someone changes Ann in the app half directly, and deletes Ben there.
    ann_id = scene.assert_active(ann)["id"]
    changed = scene.scim.patch(
        f"/Users/{ann_id}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Changed Behind"}],
        },
    )
    assert changed.status_code == 200, changed.text
    assert scene.account(ann)["displayName"] == "Changed Behind"
    ben_id = scene.assert_active(ben)["id"]
    assert scene.scim.delete(f"/Users/{ben_id}").status_code == 204

    scene.recorder.reset_counts()
    drift = operations.reconcile(scene.engine, scene.label)
    assert (drift.differing, drift.missing, drift.examples) == (1, 1, [ann]), drift
    assert {s.method for s in scene.recorder.seen} == {"GET"}
    assert scene.pending() == {"due": 2, "held": 0}
    assert scene.drain() == 2
    assert scene.account(ann)["displayName"] == f"Name {ann}"
    assert scene.assert_active(ann)["id"] == ann_id
    scene.assert_active(ben)  # re-created (its old account is gone)
    scene.assert_active(cid)
    assert scene.remote_names() == sorted([ann, ben, cid, dan, eve])

    # Repaired: the next reconcile only reads again.
    scene.recorder.reset_counts()
    drift = operations.reconcile(scene.engine, scene.label)
    assert (drift.differing, drift.missing) == (0, 0), drift
    assert scene.drain() == 0
    assert {s.method for s in scene.recorder.seen} == {"GET"}


# -- two workers, one queue ----------------------------------------------------------------------


def test_two_engines_draining_concurrently_deliver_each_user_exactly_once(
    scene: Scene, idp_engine: Engine
) -> None:
    count = 40
    crowd = scene.group("Crowd")
    names = scene.users("crowd", count, crowd)
    scene.bind(crowd)
    config = EngineConfig(batch=4)
    workers = [scene.make_engine(worker=name, config=config) for name in ("alpha", "beta")]
    start = threading.Barrier(len(workers))
    processed: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(worker: ProvisioningEngine) -> None:
        try:
            start.wait(10)
            processed[worker.worker] = worker.drain(app_id=scene.app_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)

    # Every row was processed once, by one of the two, and both took a share of the queue.
    assert sum(processed.values()) == count, processed
    assert all(done > 0 for done in processed.values()), processed
    assert scene.pending() == {"due": 0, "held": 0}
    # Each user was created once: one POST each, no duplicate in the app half.
    assert scene.recorder.count("POST") == count
    # Each user was looked up once, together with the others of its claimed batch.
    looked_up = [
        name
        for seen in scene.recorder.seen
        if seen.method == "GET"
        for name in re.findall(r'userName\+eq\+"([^"]+)"', seen.url)
    ]
    assert sorted(looked_up) == sorted(names)
    assert count // config.batch <= scene.recorder.count("GET") < count
    assert scene.remote_names() == sorted(names)
    with read_session(scene.sessions) as session:
        creates = session.execute(
            select(LogEntry.username).where(
                LogEntry.app_id == scene.app_id, LogEntry.step == "create"
            )
        ).scalars()
        assert sorted(creates) == sorted(names)
        assert (
            session.execute(select(OutboxRow.pk).where(OutboxRow.app_id == scene.app_id)).first()
            is None
        )
    for name in names[:: count // 8]:
        scene.assert_active(name)


# -- PATCH or PUT --------------------------------------------------------------------------------


def test_claims_share_a_burst_among_all_claimers_and_take_full_batches_of_a_backlog(
    scene: Scene,
) -> None:
    """Each claim takes an equal share of what is due (at least ``min_claim``), so a burst
    of a few hundred keeps every thread busy; a backlog of a batch each gives full batches."""
    burst = scene.group("Burst")
    names = scene.users("burst", 30, burst)
    scene.bind(burst)
    engine = scene.make_engine(config=EngineConfig(batch=10, min_claim=3))
    engine.claimers = 2
    assert engine.run_once(app_id=scene.app_id) == 10  # 30 due: a full batch each
    engine.claimers = 4
    assert engine.run_once(app_id=scene.app_id) == 5  # 20 due, 4 claimers
    engine.peers = 2  # two engines alive: 8 claimers in all
    assert engine.run_once(app_id=scene.app_id) == 3  # 15 due: 2 each, but min_claim
    engine.claimers = engine.peers = 1
    assert engine.run_once(app_id=scene.app_id) == 10  # alone: full batches, no count
    engine.claimers = 4
    assert engine.run_once(app_id=scene.app_id) == 2
    assert engine.run_once(app_id=scene.app_id) == 0
    assert {getattr(scene.link(name), "state", None) for name in names} == {"active"}


def test_one_applications_backlog_does_not_hold_back_anothers_change(
    make_scene: Callable[[FaultyTransport], Scene], recorder: FaultyTransport
) -> None:
    """Claims pick an application with due rows at random, then its first rows: a change for
    one application, queued after another's initial sync, goes out beside that sync."""
    busy, other = make_scene(recorder), make_scene(recorder)
    # One directory, one master key: the engine serves both applications.
    other.box = busy.box
    with write_session(other.sessions) as session:
        applications.configure_idm(
            session, other.label, other.box, base_url=other.base_url, token=other.tenant.token
        )
    other.engine = other.make_engine()
    busy.activate()
    other.activate()
    everyone = busy.group("backlog")
    backlog = busy.users("backlog", 60, everyone)
    assert busy.bind(everyone) == 60
    late = other.group("late")
    [newcomer] = other.users("late", 1, late)
    assert other.bind(late) == 1

    engine = busy.make_engine()
    claims = 0
    while getattr(other.link(newcomer), "state", None) != "active":
        # Oldest first across applications, it would come 61st; each claim picks it or the
        # backlog with even odds (for it to wait 30 claims: a chance under one in 10^9).
        assert claims < 30
        engine.run_once(limit=1)
        claims += 1
    assert busy.pending()["due"] >= 30
    other.assert_active(newcomer)
    assert busy.drain() >= 30
    assert busy.remote_names() == sorted(backlog)


def test_a_target_without_patch_is_updated_with_put(
    make_scene: Callable[[FaultyTransport], Scene],
) -> None:
    recorder = FaultyTransport(PatchUnsupported(KeptAliveTransport()))
    try:
        scene = make_scene(recorder)
        verified = scene.activate()
        assert verified.update_method == "put"
        app = scene.app()
        assert (app.idm_state, app.update_method) == ("active", "put")
        assert app.idm_detail is not None
        assert app.idm_detail.endswith("updates use PUT; bulk offered, up to 100 operations")

        engineers = scene.group("Engineers")
        [ivy] = scene.users("put", 1, engineers)
        scene.bind(engineers)
        assert scene.drain() == 1
        account = scene.assert_active(ivy)

        # A display name change is sent as a whole resource with PUT.
        scene.recorder.reset_counts()
        with write_session(scene.sessions) as session:
            directory.set_user(session, ivy, {"displayname": "Ivy Put"}, "test")
        assert scene.drain() == 1
        assert [s.method for s in scene.recorder.seen] == ["PUT"]
        entry = scene.log(ivy)[0]
        assert (entry["step"], entry["request"]["method"]) == ("update", "PUT")
        assert entry["request"]["body"]["displayName"] == "Ivy Put"
        assert entry["request"]["body"]["userName"] == ivy
        assert entry["response"]["status"] == 200
        assert scene.account(ivy)["displayName"] == "Ivy Put"
        assert scene.assert_active(ivy)["id"] == account["id"]

        # Suspension and reactivation go as PUT too, with the same account throughout.
        with write_session(scene.sessions) as session:
            directory.set_state(session, ivy, "suspended")
        assert scene.drain() == 1
        entry = scene.log(ivy)[0]
        assert (entry["step"], entry["request"]["method"]) == ("deactivate", "PUT")
        assert entry["request"]["body"]["active"] is False
        assert scene.assert_preserved(ivy)["id"] == account["id"]
        with write_session(scene.sessions) as session:
            directory.set_state(session, ivy, "activated")
        assert scene.drain() == 1
        assert scene.assert_active(ivy)["id"] == account["id"]
        assert [s.method for s in scene.recorder.seen] == ["PUT"] * 3
    finally:
        recorder.shutdown()


def test_a_target_with_patch_is_updated_with_patch(scene: Scene) -> None:
    app = scene.app()
    assert app.update_method == "patch"
    assert app.idm_detail is not None
    assert app.idm_detail.endswith("updates use PATCH; bulk offered, up to 100 operations")
    assert (app.bulk_max_operations, app.bulk_max_payload) == (100, 1024 * 1024)
    engineers = scene.group("Engineers")
    [joe] = scene.users("patch", 1, engineers)
    scene.bind(engineers)
    assert scene.drain() == 1
    scene.recorder.reset_counts()
    with write_session(scene.sessions) as session:
        directory.set_user(session, joe, {"displayname": "Joe Patch"}, "test")
    assert scene.drain() == 1
    assert [s.method for s in scene.recorder.seen] == ["PATCH"]
    entry = scene.log(joe)[0]
    assert (entry["step"], entry["request"]["method"]) == ("update", "PATCH")
    assert scene.account(joe)["displayName"] == "Joe Patch"


# -- presentation: label, description, portal, logo ----------------------------------------------


def test_editing_an_application_changes_only_the_given_fields(idp_engine: Engine) -> None:
    sessions = make_sessionmaker(idp_engine)
    label, other = _unique("Edit"), _unique("Other")
    with write_session(sessions) as session:
        app_id = applications.add_app(session, "druva", label).id
        other_id = applications.add_app(session, "scim", other).id
    try:
        renamed = _unique("Renamed")
        with write_session(sessions) as session:
            view = applications.app_view(
                session,
                applications.edit_app(
                    session,
                    label,
                    label=f"  {renamed}  ",
                    description="Backups",
                    show_in_portal=False,
                    logo_url="https://logo.example/druva.png",
                ),
            )
        assert (view["id"], view["label"], view["kind"], view["region"]) == (
            app_id,
            renamed,
            "druva",
            "cloud",
        )
        assert (view["description"], view["show_in_portal"], view["logo_url"]) == (
            "Backups",
            False,
            "https://logo.example/druva.png",
        )

        # Found by its new label only; each field changes alone; an empty description or logo
        # restores the catalog's; changing the case of its own label is no clash.
        with write_session(sessions) as session:
            with pytest.raises(NotFoundError):
                applications.find_app(session, label)
            app = applications.edit_app(session, renamed.upper(), logo_url="")
            assert (app.label, app.description, app.show_in_portal, app.logo_url) == (
                renamed,
                "Backups",
                False,
                applications.DRUVA.logo_url,
            )
            app = applications.edit_app(session, app_id, label=renamed.upper(), description="")
            assert (app.label, app.description) == (renamed.upper(), applications.DRUVA.description)

        # Nothing given: nothing changes.
        with write_session(sessions) as session:
            app = applications.find_app(session, app_id)
            before = applications.app_view(session, app)
            assert applications.app_view(session, applications.edit_app(session, app_id)) == before

        # Refused with add_app's errors, and nothing is changed.
        refused: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"label": other.lower()}, ConflictError, "already exists"),
            ({"label": "   "}, InvalidInputError, "1 to 255 characters"),
            ({"label": "x" * 256}, InvalidInputError, "1 to 255 characters"),
            ({"description": "x" * 1001}, InvalidInputError, "longer than 1000"),
            ({"logo_url": "x" * 1001}, InvalidInputError, "longer than 1000"),
        ]
        for fields, error, message in refused:
            with write_session(sessions) as session, pytest.raises(error, match=message):
                applications.edit_app(session, app_id, show_in_portal=True, **fields)
        with write_session(sessions) as session, pytest.raises(NotFoundError, match="No appl"):
            applications.edit_app(session, _unique("nowhere"), label=_unique("x"))
        with read_session(sessions) as session:
            app = applications.find_app(session, app_id)
            assert applications.app_view(session, app) == before
    finally:
        with write_session(sessions) as session:
            applications.delete_app(session, app_id)
            applications.delete_app(session, other_id)


def test_relabelling_an_active_application_leaves_provisioning_untouched(scene: Scene) -> None:
    engineers = scene.group("Engineers")
    kim, lou = scene.users("relabel", 2, engineers)
    scene.bind(engineers)
    assert scene.drain() == 2
    accounts = {name: scene.assert_active(name) for name in (kim, lou)}
    before = scene.app()
    links = {name: scene.link(name) for name in (kim, lou)}

    scene.recorder.reset_counts()
    renamed = _unique("Druva-renamed")
    with write_session(scene.sessions) as session:
        applications.edit_app(
            session,
            scene.label,
            label=renamed,
            description="Backups",
            show_in_portal=False,
            logo_url="https://logo.example/druva.png",
        )
    scene.label = renamed

    # Nothing is queued or sent, and the connector and every link are exactly as they were.
    assert scene.pending() == {"due": 0, "held": 0}
    assert scene.drain() == 0
    assert scene.recorder.seen == []
    after = scene.app()
    assert (after.label, after.show_in_portal) == (renamed, False)
    provisioning = [
        "base_url",
        "token_encrypted",
        "token_hint",
        "token_expires_at",
        "idm_state",
        "idm_detail",
        "update_method",
        "deprovision",
        "attribute_map",
        "mass_deactivation_threshold",
        "max_concurrency",
        "rate_per_second",
        "quarantined_until",
    ]
    assert [getattr(after, c) for c in provisioning] == [getattr(before, c) for c in provisioning]
    columns = [c.key for c in Link.__table__.columns]
    for name, link in links.items():
        now = scene.link(name)
        assert now is not None
        assert link is not None
        assert [getattr(now, c) for c in columns] == [getattr(link, c) for c in columns]

    # Provisioning goes on under the new label, into the same accounts.
    with write_session(scene.sessions) as session:
        directory.set_user(session, kim, {"displayname": "Kim Renamed"}, "test")
    assert scene.drain() == 1
    assert [s.method for s in scene.recorder.seen] == ["PATCH"]
    assert scene.account(kim)["displayName"] == "Kim Renamed"
    for name, account in accounts.items():
        assert scene.assert_active(name)["id"] == account["id"]


# -- limits shared by the engines alive ----------------------------------------------------------


def test_engines_alive_share_each_applications_limits(scene: Scene) -> None:
    with write_session(scene.sessions) as session:
        applications.settings(session, scene.label, concurrency=4, rate=20)
    # Far from now, so that rows other tests left behind are long dead.
    start = datetime.now(UTC) + timedelta(days=1)
    times = {"alpha": start, "beta": start}
    engines = {
        name: ProvisioningEngine(
            scene.sessions, scene.box, worker=name, clock=lambda name=name: times[name]
        )
        for name in times
    }
    app = scene.app()
    assert engines["alpha"].limits(app) == (4, 20.0)  # alone until it hears otherwise
    assert engines["alpha"].heartbeat() == 1
    assert engines["beta"].heartbeat() == 2
    assert engines["alpha"].heartbeat() == 2
    assert engines["alpha"].limits(app) == (2, 10.0)
    assert engines["beta"].limits(app) == (2, 10.0)
    with read_session(scene.sessions) as session:
        assert workers.alive(session, start) == 2
        listed = {row["id"]: row["alive"] for row in workers.listing(session, start)}
        assert listed == {"alpha": True, "beta": True}

    # beta stops reporting (killed): after ALIVE_FOR alpha has the whole limits again.
    times["alpha"] = start + workers.ALIVE_FOR + timedelta(seconds=1)
    assert engines["alpha"].heartbeat() == 1
    assert engines["alpha"].limits(app) == (4, 20.0)
    # Three engines and a concurrency of 4: each still makes one call at a time.
    times["beta"] = times["gamma"] = times["alpha"]
    engines["gamma"] = ProvisioningEngine(
        scene.sessions, scene.box, worker="gamma", clock=lambda: times["gamma"]
    )
    engines["beta"].heartbeat()
    assert engines["gamma"].heartbeat() == 3
    assert engines["gamma"].limits(app) == (1, 20 / 3)
    with write_session(scene.sessions) as session:
        workers.forget(session, "beta")
        workers.forget(session, "gamma")
    assert engines["alpha"].heartbeat() == 1
    with write_session(scene.sessions) as session:
        workers.forget(session, "alpha")


class InFlight(httpx2.BaseTransport):
    """Counts the calls in flight at once, each held a little so that overlaps show."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            threading.Event().wait(0.02)
            return self.inner.handle_request(request)
        finally:
            with self._lock:
                self.now -= 1


def test_more_claimers_than_the_concurrency_limit_never_exceed_it(scene: Scene) -> None:
    """Claimers that outnumber an application's concurrency (``--threads`` above it, or a
    lowered limit) wait for a slot with their batch claimed: the calls in flight reach the
    limit and never pass it."""
    with write_session(scene.sessions) as session:
        applications.settings(session, scene.label, concurrency=2)
    gauge = InFlight(scene.recorder)
    engine = ProvisioningEngine(scene.sessions, scene.box, transport=lambda app: gauge)
    engine.claimers = 6
    group = scene.group("inflight")
    names = scene.users("inflight", 60, group)
    assert scene.bind(group) == 60

    def claimer() -> None:
        # run_forever's loop without its heartbeat: this engine alone shares nothing.
        while engine.run_once(app_id=scene.app_id):
            pass
        engine.close()

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert scene.pending() == {"due": 0, "held": 0}
    # Three batches of 20 were claimed by three threads at once; two calls at a time.
    assert gauge.peak == 2
    assert scene.remote_names() == sorted(names)
    for name in names[:3]:
        scene.assert_active(name)


def test_a_running_engine_registers_and_unregisters(scene: Scene) -> None:
    engine = scene.make_engine(worker=f"runner-{uuid.uuid4().hex[:6]}")
    stop = threading.Event()
    runner = threading.Thread(target=engine.run_forever, args=(stop,), kwargs={"threads": 1})
    runner.start()
    try:
        for _ in range(200):
            with read_session(scene.sessions) as session:
                ids = {row["id"] for row in workers.listing(session, datetime.now(UTC))}
            if engine.worker in ids:
                break
            threading.Event().wait(0.05)
        assert engine.worker in ids
        with read_session(scene.sessions) as session:
            app = applications.find_app(session, scene.label)
            assert applications.app_view(session, app)["engines_alive"] >= 1
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    with read_session(scene.sessions) as session:
        ids = {row["id"] for row in workers.listing(session, datetime.now(UTC))}
    assert engine.worker not in ids
