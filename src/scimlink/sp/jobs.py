"""Scheduled work of the app half: auto-delete of preserved users, token expiry reminders, and
sending the mail outbox. ``sp serve`` runs it periodically; ``sp jobs run`` runs it once.

Every job is idempotent and works in bounded batches, so running it twice, late, or on several
servers at once does the same thing as running it once on time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.sp import mail
from scimlink.sp.audit import Actor
from scimlink.sp.audit import Change
from scimlink.sp.audit import record
from scimlink.sp.models import Admin
from scimlink.sp.models import Profile
from scimlink.sp.models import ScimToken
from scimlink.sp.models import SpUser
from scimlink.sp.models import Tenant
from scimlink.sp.roles import DRUVA_CLOUD_ADMIN
from scimlink.sp.roles import INSYNC_CLOUD_ADMIN
from scimlink.sp.roles import OPERATOR
from scimlink.storage.base import utcnow
from scimlink.storage.db import write_session

#: Druva sends "multiple reminder emails" before a SCIM token expires; we send these.
REMINDER_DAYS = (30, 7, 1)
_BATCH = 500


@dataclass(frozen=True, slots=True)
class JobReport:
    deleted_users: int
    reminders: int
    mail: mail.SendReport | None


def _system(job: str) -> Actor:
    return Actor(f"system:{job}", OPERATOR)


def delete_expired_preserved(sessions: sessionmaker[Session], now: datetime | None = None) -> int:
    """Delete users preserved longer than their profile's auto-delete period (Druva's
    "Auto-Delete Preserved User"), in batches, each with its audit entry."""
    now = now or utcnow()
    actor = _system("auto-delete")
    deleted = 0
    with write_session(sessions) as session:
        periods = session.execute(
            select(Profile.id, Profile.tenant_id, Profile.preserved_auto_delete_days).where(
                Profile.preserved_auto_delete_days.is_not(None)
            )
        ).all()
    for profile_id, tenant_id, days in periods:
        assert days is not None
        cutoff = now - timedelta(days=days)
        while True:
            with write_session(sessions) as session:
                rows = session.execute(
                    select(
                        SpUser.pk,
                        SpUser.id,
                        SpUser.user_name,
                        SpUser.scim_deleted,
                        SpUser.preserved_by,
                        SpUser.preserved_at,
                    )
                    .where(
                        SpUser.state == "preserved",
                        SpUser.preserved_at <= cutoff,
                        SpUser.profile_id == profile_id,
                    )
                    .limit(_BATCH)
                    .with_for_update(skip_locked=True)
                ).all()
                if not rows:
                    break
                for row in rows:
                    record(
                        session,
                        tenant_id,
                        actor,
                        Change(
                            "user.auto-delete",
                            "user",
                            row.id,
                            row.user_name,
                            before={"state": "preserved", "preservedBy": row.preserved_by},
                            detail=f"preserved since {row.preserved_at.isoformat()}, longer "
                            f"than the profile's auto-delete period of {days} days",
                        ),
                    )
                session.execute(delete(SpUser).where(SpUser.pk.in_([r.pk for r in rows])))
                visible = sum(1 for r in rows if not r.scim_deleted)
                if visible:
                    session.execute(
                        update(Tenant)
                        .where(Tenant.id == tenant_id)
                        .values(user_count=Tenant.user_count - visible)
                    )
                deleted += len(rows)
    return deleted


def _threshold(expires_at: datetime, now: datetime) -> int | None:
    """The reminder due now: the smallest of 30, 7, 1 days that is not before today."""
    days_left = math.ceil((expires_at - now) / timedelta(days=1))
    due = [days for days in REMINDER_DAYS if days_left <= days]
    return min(due) if due else None


def send_token_reminders(sessions: sessionmaker[Session], now: datetime | None = None) -> int:
    """Queue a reminder to the tenant's Druva and inSync Cloud administrators 30, 7 and 1 days
    before its SCIM token expires; each threshold once per token."""
    now = now or utcnow()
    actor = _system("token-reminder")
    sent = 0
    with write_session(sessions) as session:
        tokens = session.execute(
            select(ScimToken, Tenant.name)
            .join(Tenant, Tenant.id == ScimToken.tenant_id)
            .where(
                ScimToken.revoked_at.is_(None),
                ScimToken.expires_at > now,
                ScimToken.expires_at <= now + timedelta(days=max(REMINDER_DAYS)),
            )
            .with_for_update(of=ScimToken, skip_locked=True)
        ).all()
        for token, tenant_name in tokens:
            threshold = _threshold(token.expires_at, now)
            if threshold is None or (
                token.reminded_days is not None and token.reminded_days <= threshold
            ):
                continue
            token.reminded_days = threshold
            recipients = list(
                session.execute(
                    select(Admin.email).where(
                        Admin.tenant_id == token.tenant_id,
                        Admin.role.in_((DRUVA_CLOUD_ADMIN, INSYNC_CLOUD_ADMIN)),
                    )
                ).scalars()
            )
            expires = token.expires_at.strftime("%Y-%m-%d %H:%M UTC")
            for email in recipients:
                mail.enqueue(
                    session,
                    token.tenant_id,
                    "token-reminder",
                    email,
                    f"Your inSync SCIM token expires in {threshold} day(s)",
                    f"The SCIM token {token.hint} of {tenant_name} expires on {expires}. "
                    "When it expires, your identity provider can no longer create, update or "
                    "deactivate users. Generate a new token and update it in the identity "
                    "provider before then.\n",
                )
            record(
                session,
                token.tenant_id,
                actor,
                Change(
                    "token.reminder",
                    "token",
                    None,
                    token.hint,
                    after={"daysLeft": threshold, "recipients": recipients},
                    detail=None
                    if recipients
                    else "no Druva or inSync Cloud administrator to remind",
                ),
            )
            sent += 1
        session.flush()
    return sent


def run_once(
    sessions: sessionmaker[Session],
    smtp: mail.SmtpSettings | None,
    *,
    now: datetime | None = None,
) -> JobReport:
    """Every scheduled job once; mail is sent only when SMTP is configured."""
    # Without an explicit ``now`` each job reads the clock itself, so a slow job cannot leave
    # the mail sender a lease that has already run out.
    deleted = delete_expired_preserved(sessions, now)
    reminders = send_token_reminders(sessions, now)
    report = mail.send_due(sessions, smtp, now=now) if smtp is not None else None
    return JobReport(deleted, reminders, report)
