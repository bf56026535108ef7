"""The durable mail outbox and its sender.

A message is a row committed in the same transaction as the change that asks for it (a user
created by a mapping that sends activation e-mails, a token nearing expiry), so a crash can
neither lose one nor send one for a change that rolled back. The sender claims due rows with a
lease, sends them over SMTP outside any transaction, then marks them sent; a failure is retried
with exponential backoff. Delivery is at least once: a crash between sending and marking sends
that message again after the lease.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.sp.models import MailMessage
from scimlink.storage.base import utcnow
from scimlink.storage.db import write_session

LEASE = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "scimlink@localhost"
    username: str | None = None
    password: str | None = None
    #: ``starttls`` upgrades a plain connection, ``tls`` connects with TLS, ``none`` sends plain.
    security: str = "starttls"
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class MessageView:
    id: int
    kind: str
    recipient: str
    subject: str
    created: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class SendReport:
    sent: int
    failed: int


def enqueue(
    session: Session, tenant_id: str, kind: str, recipient: str, subject: str, body: str
) -> None:
    now = utcnow()
    session.add(
        MailMessage(
            tenant_id=tenant_id,
            kind=kind,
            recipient=recipient,
            subject=subject[:300],
            body=body,
            created=now,
            send_after=now,
        )
    )
    session.flush()


def enqueue_activation(
    session: Session, tenant_id: str, email: str, document: dict[str, Any]
) -> None:
    name = document.get("displayName") or document.get("userName")
    enqueue(
        session,
        tenant_id,
        "activation",
        email,
        "Activate your inSync account",
        f"Hello {name},\n\n"
        f"An inSync account has been created for you ({email}) by your organisation's "
        "identity provider. Install the inSync client and sign in with your organisation's "
        "single sign-on to activate it and start protecting your data.\n",
    )


def messages(
    session: Session, tenant_id: str, *, pending: bool = False, limit: int = 100
) -> list[MessageView]:
    query = select(MailMessage).where(MailMessage.tenant_id == tenant_id)
    if pending:
        query = query.where(MailMessage.sent_at.is_(None))
    rows = session.execute(query.order_by(MailMessage.pk.desc()).limit(limit)).scalars()
    return [
        MessageView(
            r.pk, r.kind, r.recipient, r.subject, r.created, r.sent_at, r.attempts, r.last_error
        )
        for r in rows
    ]


def _claim(sessions: sessionmaker[Session], now: datetime, batch: int) -> list[MailMessage]:
    """Lease due messages so that concurrent senders never pick the same one."""
    with write_session(sessions) as session:
        rows = list(
            session.execute(
                select(MailMessage)
                .where(MailMessage.sent_at.is_(None), MailMessage.send_after <= now)
                .order_by(MailMessage.send_after, MailMessage.pk)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        for row in rows:
            row.send_after = now + LEASE
        session.flush()
        session.expunge_all()
    return rows


def _message(row: MailMessage, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.recipient
    message["Subject"] = row.subject
    message["Message-ID"] = f"<scimlink-{row.pk}@{sender.rpartition('@')[2] or 'localhost'}>"
    message.set_content(row.body)
    return message


def _connect(settings: SmtpSettings) -> smtplib.SMTP:
    if settings.security == "tls":
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            timeout=settings.timeout,
            context=ssl.create_default_context(),
        )
    client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    if settings.security == "starttls":
        client.starttls(context=ssl.create_default_context())
    return client


def send_due(
    sessions: sessionmaker[Session],
    settings: SmtpSettings,
    *,
    now: datetime | None = None,
    batch: int = 50,
) -> SendReport:
    """Send what is due now over one SMTP connection; record each outcome."""
    now = now or utcnow()
    rows = _claim(sessions, now, batch)
    if not rows:
        return SendReport(0, 0)
    outcomes: dict[int, str | None] = {}
    try:
        client = _connect(settings)
    except (OSError, smtplib.SMTPException) as exc:
        outcomes = {row.pk: f"cannot reach {settings.host}:{settings.port}: {exc}" for row in rows}
    else:
        with client:
            try:
                if settings.username:
                    client.login(settings.username, settings.password or "")
            except (OSError, smtplib.SMTPException) as exc:
                outcomes = {row.pk: f"SMTP login failed: {exc}" for row in rows}
                rows_to_send: list[MailMessage] = []
            else:
                rows_to_send = rows
            for row in rows_to_send:
                try:
                    client.send_message(_message(row, settings.sender))
                    outcomes[row.pk] = None
                except (OSError, smtplib.SMTPException) as exc:
                    outcomes[row.pk] = str(exc)
    _settle(sessions, rows, outcomes, max(now, utcnow()))
    failed = sum(1 for error in outcomes.values() if error is not None)
    return SendReport(len(rows) - failed, failed)


def _settle(
    sessions: sessionmaker[Session],
    rows: list[MailMessage],
    outcomes: dict[int, str | None],
    done: datetime,
) -> None:
    with write_session(sessions) as session:
        for row in rows:
            error = outcomes.get(row.pk)
            if error is None:
                session.execute(
                    update(MailMessage)
                    .where(MailMessage.pk == row.pk)
                    .values(sent_at=done, attempts=row.attempts + 1, last_error=None)
                )
            else:
                backoff = min(timedelta(minutes=2**row.attempts), MAX_BACKOFF)
                session.execute(
                    update(MailMessage)
                    .where(MailMessage.pk == row.pk)
                    .values(
                        send_after=done + backoff,
                        attempts=row.attempts + 1,
                        last_error=error[:500],
                    )
                )
