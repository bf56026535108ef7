"""The app half's mail outbox and scheduled jobs, on both databases: activation e-mails queued in
the transaction that creates the user, delivery over real SMTP (aiosmtpd) with retry and
backoff, auto-delete of users preserved too long, SCIM token expiry reminders, and the token
rotation grace window.

The jobs work across every tenant of the database (the session-scoped engine is shared with
other tests), so each test asserts on its own tenant's rows, recipients and audit entries, and
passes explicit ``now`` values instead of waiting."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.scim.errors import ScimError
from scimlink.sp import admins
from scimlink.sp import audit
from scimlink.sp import jobs
from scimlink.sp import lifecycle
from scimlink.sp import mail
from scimlink.sp import profiles
from scimlink.sp import scim_mappings
from scimlink.sp import tenants
from scimlink.sp.models import MailMessage
from scimlink.sp.models import SpUser
from scimlink.sp.roles import DRUVA_CLOUD_ADMIN
from scimlink.sp.roles import INSYNC_CLOUD_ADMIN
from scimlink.sp.roles import PROFILE_ADMIN
from scimlink.sp.users import UserService
from scimlink.storage.base import utcnow
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from tests.conftest import Scim
from tests.conftest import SmtpServerUp
from tests.conftest import Tenant
from tests.conftest import create_user
from tests.conftest import make_tenant
from tests.conftest import patch_body
from tests.conftest import user_body

# -- helpers -------------------------------------------------------------------------------------


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def _outbox(engine: Engine, tenant_id: str, *, pending: bool = False) -> list[mail.MessageView]:
    with read_session(make_sessionmaker(engine)) as session:
        return mail.messages(session, tenant_id, pending=pending)


def _send_after(engine: Engine, message_id: int) -> datetime:
    with read_session(make_sessionmaker(engine)) as session:
        return session.execute(
            select(MailMessage.send_after).where(MailMessage.pk == message_id)
        ).scalar_one()


def _activation_tenant(engine: Engine, *, activation_email: bool = True) -> Tenant:
    """A tenant whose only SCIM mapping allows any user, with or without activation e-mail."""
    tenant = make_tenant(engine, allow_any=False)
    with write_session(make_sessionmaker(engine)) as session:
        scim_mappings.create_mapping(
            session, tenant.id, "Everyone", any_user=True, activation_email=activation_email
        )
    return tenant


def _deactivate(scim: Scim, user_id: str) -> None:
    response = scim.patch(
        f"/Users/{user_id}", json=patch_body({"op": "replace", "path": "active", "value": False})
    )
    assert response.status_code == 200, response.text


def _total(scim: Scim) -> int:
    response = scim.get("/Users", params={"count": 0})
    assert response.status_code == 200, response.text
    total: int = response.json()["totalResults"]
    return total


@pytest.fixture
def closed_smtp() -> Iterator[mail.SmtpSettings]:
    """SMTP settings for a port that refuses connections (bound, never listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))
        yield mail.SmtpSettings("127.0.0.1", bound.getsockname()[1], security="none", timeout=5)


# -- 1. activation e-mail ------------------------------------------------------------------------


def test_a_user_created_through_an_activation_mapping_gets_one_activation_email(
    client: TestClient, engine: Engine
) -> None:
    tenant = _activation_tenant(engine)
    scim = Scim(client, tenant.token)
    address = _unique("ada")
    user = create_user(
        scim,
        user_body(
            _unique("login"),
            displayName="Ada Lovelace",
            emails=[{"value": address, "type": "work", "primary": True}],
        ),
    )
    [message] = _outbox(engine, tenant.id)
    assert (message.kind, message.recipient, message.subject) == (
        "activation",
        address,  # the account's e-mail, not its userName
        "Activate your inSync account",
    )
    assert (message.sent_at, message.attempts, message.last_error) == (None, 0, None)
    # Later changes to the same account (even deactivation and reactivation) send no more.
    _deactivate(scim, user["id"])
    again = scim.patch(
        f"/Users/{user['id']}", json=patch_body({"op": "replace", "path": "active", "value": True})
    )
    assert again.status_code == 200, again.text
    assert [m.id for m in _outbox(engine, tenant.id)] == [message.id]


def test_a_user_created_inactive_gets_no_activation_email(
    client: TestClient, engine: Engine
) -> None:
    tenant = _activation_tenant(engine)
    create_user(Scim(client, tenant.token), user_body(active=False))
    assert _outbox(engine, tenant.id) == []


def test_a_mapping_without_activation_email_queues_nothing(
    client: TestClient, engine: Engine
) -> None:
    tenant = _activation_tenant(engine, activation_email=False)
    create_user(Scim(client, tenant.token))
    assert _outbox(engine, tenant.id) == []


def test_a_refused_create_queues_nothing(client: TestClient, engine: Engine) -> None:
    tenant = make_tenant(engine, allow_any=False)
    with write_session(make_sessionmaker(engine)) as session:
        profiles.create_profile(session, tenant.id, "One seat", max_users=1)
        scim_mappings.create_mapping(
            session,
            tenant.id,
            "Engineering",
            attribute="title",
            values="Engineer",
            profile="One seat",
            activation_email=True,
        )
    scim = Scim(client, tenant.token)
    no_match = scim.post("/Users", json=user_body())
    assert no_match.status_code == 400, no_match.text
    assert _outbox(engine, tenant.id) == []
    first = user_body(title="Engineer")
    create_user(scim, first)
    full = scim.post("/Users", json=user_body(title="Engineer"))
    assert full.status_code == 400, full.text
    assert [m.recipient for m in _outbox(engine, tenant.id)] == [first["userName"]]
    assert _total(scim) == 1


def _create_then_fail(engine: Engine, tenant_id: str, body: dict[str, Any]) -> None:
    with write_session(make_sessionmaker(engine)) as session:
        UserService(session, tenant_id).create(body)
        assert len(mail.messages(session, tenant_id)) == 1
        raise RuntimeError("after the create")


def test_the_activation_email_rolls_back_with_the_create(engine: Engine) -> None:
    """The outbox row is written in the create's transaction: no user, no e-mail."""
    tenant = _activation_tenant(engine)
    with pytest.raises(RuntimeError, match="after the create"):
        _create_then_fail(engine, tenant.id, user_body())
    assert _outbox(engine, tenant.id) == []
    with read_session(make_sessionmaker(engine)) as session:
        assert session.execute(select(SpUser).where(SpUser.tenant_id == tenant.id)).all() == []


# -- 2. delivery over SMTP -----------------------------------------------------------------------


def test_send_due_delivers_over_smtp_and_sends_each_message_once(
    client: TestClient, engine: Engine, smtp_server: SmtpServerUp
) -> None:
    tenant = _activation_tenant(engine)
    sessions = make_sessionmaker(engine)
    address = _unique("grace")
    create_user(Scim(client, tenant.token), user_body(address, displayName="Grace Hopper"))
    notice = _unique("notice")
    with write_session(sessions) as session:
        mail.enqueue(session, tenant.id, "notice", notice, "A notice", "First line.\nSecond.\n")

    report = mail.send_due(sessions, smtp_server.settings)
    assert report.sent >= 2  # other tenants' due mail goes out too

    [activation] = smtp_server.inbox.received(address)
    assert activation["To"] == address
    assert activation["From"] == "insync@example.com"
    assert activation["Subject"] == "Activate your inSync account"
    text = activation.get_content()
    assert text.startswith("Hello Grace Hopper,")
    assert f"An inSync account has been created for you ({address})" in text
    [other] = smtp_server.inbox.received(notice)
    assert other["Subject"] == "A notice"
    assert other.get_content().splitlines() == ["First line.", "Second."]  # CRLF on the wire

    sent = _outbox(engine, tenant.id)
    assert {m.recipient for m in sent} == {address, notice}
    assert all(m.sent_at is not None for m in sent)
    assert all((m.attempts, m.last_error) == (1, None) for m in sent)
    assert _outbox(engine, tenant.id, pending=True) == []

    mail.send_due(sessions, smtp_server.settings)
    assert len(smtp_server.inbox.received(address)) == 1
    assert len(smtp_server.inbox.received(notice)) == 1
    assert _outbox(engine, tenant.id) == sent


def test_an_unreachable_server_leaves_the_message_pending_until_its_backoff(
    engine: Engine, smtp_server: SmtpServerUp, closed_smtp: mail.SmtpSettings
) -> None:
    tenant = make_tenant(engine)
    sessions = make_sessionmaker(engine)
    recipient = _unique("retry")
    with write_session(sessions) as session:
        mail.enqueue(session, tenant.id, "notice", recipient, "Retried", "Body.\n")

    before = utcnow()
    report = mail.send_due(sessions, closed_smtp, now=before)
    after = utcnow()
    assert report.failed >= 1
    [pending] = _outbox(engine, tenant.id, pending=True)
    assert (pending.sent_at, pending.attempts) == (None, 1)
    assert pending.last_error is not None
    assert pending.last_error.startswith(f"cannot reach 127.0.0.1:{closed_smtp.port}")
    # The first failure waits 2**0 = 1 minute.
    assert before + timedelta(minutes=1) <= _send_after(engine, pending.id)
    assert _send_after(engine, pending.id) <= after + timedelta(minutes=1)

    # Not due before the backoff passes, even with the server up.
    mail.send_due(sessions, smtp_server.settings, now=before + timedelta(seconds=59))
    assert smtp_server.inbox.received(recipient) == []
    assert _outbox(engine, tenant.id, pending=True) == [pending]

    # Due after it; a second failure waits 2**1 = 2 minutes from the sender's clock (the
    # ``now`` it was given, which is later than the real time here).
    retry = after + timedelta(seconds=61)
    mail.send_due(sessions, closed_smtp, now=retry)
    [again] = _outbox(engine, tenant.id, pending=True)
    assert again.attempts == 2
    assert _send_after(engine, again.id) == retry + timedelta(minutes=2)
    mail.send_due(sessions, smtp_server.settings, now=retry + timedelta(seconds=119))
    assert smtp_server.inbox.received(recipient) == []

    # With the server up and the backoff over, it is delivered.
    mail.send_due(sessions, smtp_server.settings, now=retry + timedelta(minutes=2, seconds=1))
    [delivered] = smtp_server.inbox.received(recipient)
    assert delivered["Subject"] == "Retried"
    [message] = _outbox(engine, tenant.id)
    assert message.sent_at is not None
    assert (message.attempts, message.last_error) == (3, None)
    assert _outbox(engine, tenant.id, pending=True) == []


def test_the_backoff_is_capped_at_six_hours(engine: Engine, closed_smtp: mail.SmtpSettings) -> None:
    tenant = make_tenant(engine)
    sessions = make_sessionmaker(engine)
    with write_session(sessions) as session:
        mail.enqueue(session, tenant.id, "notice", _unique("capped"), "Capped", "Body.\n")
    [message] = _outbox(engine, tenant.id)
    with write_session(sessions) as session:  # as if it had already failed 20 times
        session.execute(update(MailMessage).where(MailMessage.pk == message.id).values(attempts=20))
    before = utcnow()
    mail.send_due(sessions, closed_smtp, now=before)
    after = utcnow()
    assert _outbox(engine, tenant.id, pending=True)[0].attempts == 21
    assert before + mail.MAX_BACKOFF <= _send_after(engine, message.id)
    assert _send_after(engine, message.id) <= after + mail.MAX_BACKOFF


# -- 3. auto-delete of preserved users -----------------------------------------------------------


def _preserved_at(engine: Engine, user_id: str) -> datetime:
    with read_session(make_sessionmaker(engine)) as session:
        at = session.execute(select(SpUser.preserved_at).where(SpUser.id == user_id)).scalar_one()
    assert at is not None
    return at


def _exists(engine: Engine, user_id: str) -> bool:
    with read_session(make_sessionmaker(engine)) as session:
        return session.execute(select(SpUser.pk).where(SpUser.id == user_id)).first() is not None


def test_users_preserved_longer_than_their_profiles_period_are_deleted(
    client: TestClient, engine: Engine
) -> None:
    tenant = make_tenant(engine, allow_any=False)
    sessions = make_sessionmaker(engine)
    with write_session(sessions) as session:
        profiles.create_profile(session, tenant.id, "Leavers", preserved_auto_delete_days=30)
        scim_mappings.create_mapping(
            session, tenant.id, "Leavers", attribute="title", values="Leaver", profile="Leavers"
        )
        scim_mappings.create_mapping(session, tenant.id, "Everyone else", any_user=True)
    scim = Scim(client, tenant.token)
    by_idp, by_admin, deleted_in_idp, active, recent = (
        create_user(scim, user_body(title="Leaver"))["id"] for _ in range(5)
    )
    no_period = create_user(scim)["id"]  # the Default profile has no auto-delete period

    _deactivate(scim, no_period)
    _deactivate(scim, by_idp)
    with write_session(sessions) as session:
        lifecycle.preserve(session, tenant.id, by_admin)
    assert scim.delete(f"/Users/{deleted_in_idp}").status_code == 204
    _deactivate(scim, recent)  # preserved last: a moment less than the others
    assert _total(scim) == 5

    oldest = _preserved_at(engine, no_period)
    last_expired = _preserved_at(engine, deleted_in_idp)
    gap = _preserved_at(engine, recent) - last_expired
    assert gap > timedelta(0)

    # 29 days on, nobody has been preserved for 30 days.
    jobs.delete_expired_preserved(sessions, now=oldest + timedelta(days=29))
    assert _total(scim) == 5
    for user_id in (by_idp, by_admin, deleted_in_idp, active, recent, no_period):
        assert _exists(engine, user_id)

    # Just past 30 days for every one but the one preserved last.
    due = last_expired + timedelta(days=30) + gap / 2
    assert jobs.delete_expired_preserved(sessions, now=due) >= 3
    expired = {by_idp, by_admin, deleted_in_idp}
    for user_id in expired:
        assert not _exists(engine, user_id)
        assert scim.get(f"/Users/{user_id}").status_code == 404
    for user_id in (active, recent, no_period):
        assert _exists(engine, user_id)
        assert scim.get(f"/Users/{user_id}").status_code == 200
    # The count SCIM reports (kept with the tenant) matches the users SCIM still lists; the user
    # already deleted in the IdP was no longer counted.
    assert _total(scim) == 3
    listed = scim.get("/Users", params={"filter": "userName pr", "count": 0}).json()
    assert listed["totalResults"] == 3

    with read_session(sessions) as session:
        entries = audit.entries(session, tenant.id, action="user.auto-delete")
    assert {e.target_id for e in entries} == expired
    assert {e.actor for e in entries} == {"system:auto-delete"}
    by_target = {e.target_id: e.before for e in entries}
    assert by_target[by_idp] == {"state": "preserved", "preservedBy": "idp"}
    assert by_target[by_admin] == {"state": "preserved", "preservedBy": "admin"}
    assert by_target[deleted_in_idp] == {"state": "preserved", "preservedBy": "idp"}

    # Running it again (late, or on a second server) deletes nothing more.
    assert jobs.delete_expired_preserved(sessions, now=due) == 0
    assert _total(scim) == 3
    with read_session(sessions) as session:
        assert len(audit.entries(session, tenant.id, action="user.auto-delete")) == 3


# -- 4. token expiry reminders -------------------------------------------------------------------


def _reminders(engine: Engine, tenant_id: str) -> list[mail.MessageView]:
    return [m for m in _outbox(engine, tenant_id) if m.kind == "token-reminder"]


def _reminder_entries(engine: Engine, tenant_id: str) -> list[audit.EntryView]:
    with read_session(make_sessionmaker(engine)) as session:
        return audit.entries(session, tenant_id, action="token.reminder")


def _expires_at(engine: Engine, tenant_id: str) -> datetime:
    with read_session(make_sessionmaker(engine)) as session:
        token = tenants.active_token(session, tenant_id)
    assert token is not None
    return token.expires_at


def test_token_reminders_go_to_cloud_admins_30_7_and_1_days_before_expiry(
    engine: Engine,
) -> None:
    tenant = make_tenant(engine)
    sessions: sessionmaker[Session] = make_sessionmaker(engine)
    druva, insync, profile_admin = _unique("druva"), _unique("insync"), _unique("profile")
    with write_session(sessions) as session:
        admins.create_admin(session, tenant.id, druva, DRUVA_CLOUD_ADMIN)
        admins.create_admin(session, tenant.id, insync, INSYNC_CLOUD_ADMIN)
        admins.create_admin(session, tenant.id, profile_admin, PROFILE_ADMIN)
    expires_at = _expires_at(engine, tenant.id)
    cloud_admins = sorted([druva, insync])

    jobs.send_token_reminders(sessions, now=expires_at - timedelta(days=31))
    assert _reminders(engine, tenant.id) == []

    seen: list[mail.MessageView] = []
    for left, days in (
        (timedelta(days=29), 30),
        (timedelta(days=6), 7),
        (timedelta(hours=12), 1),
    ):
        now = expires_at - left
        assert jobs.send_token_reminders(sessions, now=now) >= 1
        new = [m for m in _reminders(engine, tenant.id) if m not in seen]
        assert sorted(m.recipient for m in new) == cloud_admins
        assert {m.subject for m in new} == {f"Your inSync SCIM token expires in {days} day(s)"}
        seen += new
        # The same threshold is not sent twice.
        jobs.send_token_reminders(sessions, now=now)
        assert len(_reminders(engine, tenant.id)) == len(seen)
        [entry, *_] = _reminder_entries(engine, tenant.id)
        assert entry.actor == "system:token-reminder"
        assert entry.after is not None
        assert entry.after["daysLeft"] == days
        assert sorted(entry.after["recipients"]) == cloud_admins

    for after_expiry in (expires_at, expires_at + timedelta(days=1)):
        jobs.send_token_reminders(sessions, now=after_expiry)
    assert len(_reminders(engine, tenant.id)) == 6
    assert [e.after["daysLeft"] for e in _reminder_entries(engine, tenant.id) if e.after] == [
        1,
        7,
        30,
    ]


def test_a_token_reminder_without_cloud_admins_is_audited(engine: Engine) -> None:
    tenant = make_tenant(engine)
    sessions = make_sessionmaker(engine)
    with write_session(sessions) as session:
        admins.create_admin(session, tenant.id, _unique("profile"), PROFILE_ADMIN)
    jobs.send_token_reminders(sessions, now=_expires_at(engine, tenant.id) - timedelta(days=3))
    assert _reminders(engine, tenant.id) == []
    [entry] = _reminder_entries(engine, tenant.id)
    assert entry.after == {"daysLeft": 7, "recipients": []}
    assert entry.detail == "no Druva or inSync Cloud administrator to remind"


# -- 5. token rotation grace window --------------------------------------------------------------


def _authenticates(engine: Engine, token: str, now: datetime) -> str | None:
    """The tenant ``token`` authenticates at ``now``, or ``None`` when it is refused."""
    with read_session(make_sessionmaker(engine)) as session:
        try:
            return tenants.authenticate(session, token, now=now).tenant_id
        except ScimError as error:
            status = error.status
    assert status == 401
    return None


def _rotate(engine: Engine, tenant_id: str, now: datetime, grace_hours: int) -> Any:
    with write_session(make_sessionmaker(engine)) as session:
        tenants.set_token_grace(session, tenant_id, grace_hours)
        return tenants.generate_token(session, tenant_id, now=now)


def test_the_previous_token_works_during_the_grace_window(engine: Engine) -> None:
    tenant = make_tenant(engine)
    now = utcnow()
    issued = _rotate(engine, tenant.id, now, 2)
    assert issued.previous_valid_until == now + timedelta(hours=2)
    assert _authenticates(engine, tenant.token, now + timedelta(hours=1)) == tenant.id
    assert _authenticates(engine, tenant.token, now + timedelta(hours=3)) is None
    assert _authenticates(engine, issued.token, now + timedelta(hours=3)) == tenant.id
    with read_session(make_sessionmaker(engine)) as session:
        listed = tenants.list_tokens(session, tenant.id, now=now + timedelta(hours=1))
        assert [t.current for t in listed] == [True, False]
        later = tenants.list_tokens(session, tenant.id, now=now + timedelta(hours=3))
        assert [t.current for t in later] == [True]


def test_without_grace_the_previous_token_stops_at_once(engine: Engine) -> None:
    tenant = make_tenant(engine)
    now = utcnow()
    issued = _rotate(engine, tenant.id, now, 0)
    assert issued.previous_valid_until is None
    assert _authenticates(engine, tenant.token, now) is None
    assert _authenticates(engine, issued.token, now) == tenant.id


def test_a_rotation_without_grace_ends_an_earlier_grace_window(engine: Engine) -> None:
    tenant = make_tenant(engine)
    now = utcnow()
    second = _rotate(engine, tenant.id, now, 2)
    later = now + timedelta(minutes=10)
    third = _rotate(engine, tenant.id, later, 0)
    assert _authenticates(engine, tenant.token, later) is None
    assert _authenticates(engine, second.token, later) is None
    assert _authenticates(engine, third.token, later) == tenant.id


def test_over_http_the_previous_token_works_right_after_a_rotation_with_grace(
    client: TestClient, engine: Engine
) -> None:
    tenant = make_tenant(engine)
    with_grace = _rotate(engine, tenant.id, utcnow(), 2)
    assert Scim(client, tenant.token).get("/Users").status_code == 200
    assert Scim(client, with_grace.token).get("/Users").status_code == 200
    without_grace = _rotate(engine, tenant.id, utcnow(), 0)
    assert Scim(client, with_grace.token).get("/Users").status_code == 401
    assert Scim(client, tenant.token).get("/Users").status_code == 401
    assert Scim(client, without_grace.token).get("/Users").status_code == 200
