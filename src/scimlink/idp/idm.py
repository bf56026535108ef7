"""Activating and deactivating an application's Identity Management connector.

Activation verifies the target before anything is sent: discovery (``ServiceProviderConfig``,
which also says whether PATCH is supported) plus a harmless lookup of a user that cannot exist.
The answer is "successfully verified" or a precise cause: unreachable, TLS, token rejected, or
not SCIM. Deactivation stops provisioning and keeps every pending change.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.errors import ConflictError
from scimlink.idp import applications
from scimlink.idp import outbox
from scimlink.idp.provisioning.connector import Exchange
from scimlink.idp.provisioning.engine import Engine
from scimlink.storage.base import utcnow
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session

SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
#: A target may report its token's expiry in this response header (our app half does).
TOKEN_EXPIRY_HEADER = "x-scim-token-expires-at"  # noqa: S105 - a header name
EXPIRY_WARNING = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    message: str
    update_method: str = "patch"
    token_expires_at: datetime | None = None
    #: The target's bulk limits (RFC 7644 §3.7.4); 0 when it offers no bulk.
    bulk_max_operations: int = 0
    bulk_max_payload: int = 0


def _failure(what: str, exchange: Exchange) -> Verification | None:
    if exchange.status is None:
        return Verification(False, f"{what}: {exchange.error}")
    if exchange.status in (401, 403):
        return Verification(
            False, f"token rejected: {what} answered {exchange.status} ({exchange.detail})"
        )
    return None


def _expiry(*exchanges: Exchange) -> datetime | None:
    for exchange in exchanges:
        value = exchange.headers.get(TOKEN_EXPIRY_HEADER)
        if value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
    return None


def verify(engine: Engine, app_ref: str) -> Verification:
    with read_session(engine.sessions) as session:
        app = applications.find_app(session, app_ref)
        applications.credentials(app, engine.box)
        session.expunge(app)
    with engine.target(app) as target:
        spc = target.service_provider_config()
        failed = _failure("GET /ServiceProviderConfig", spc)
        if failed:
            return failed
        body = spc.response or {}
        if spc.status != 200 or SPC_SCHEMA not in (body.get("schemas") or []):
            return Verification(
                False,
                f"not SCIM: GET /ServiceProviderConfig answered {spc.status} without a SCIM "
                "ServiceProviderConfig",
            )
        patch = body.get("patch") or {}
        method = "patch" if patch.get("supported") is True else "put"
        operations, payload = _bulk_limits(body.get("bulk"))
        probe = target.find_by_user_name(f"scimlink-verify-{secrets.token_hex(6)}")
        failed = _failure("GET /Users?filter=userName eq …", probe)
        if failed:
            return failed
        if probe.status != 200 or "totalResults" not in (probe.response or {}):
            return Verification(
                False, f"not SCIM: a user lookup answered {probe.status} without a ListResponse"
            )
    return Verification(
        True, "successfully verified", method, _expiry(spc, probe), operations, payload
    )


def _bulk_limits(bulk: object) -> tuple[int, int]:
    """``(maxOperations, maxPayloadSize)`` when bulk is offered with both limits, else zeros."""
    if not isinstance(bulk, dict) or bulk.get("supported") is not True:
        return 0, 0
    operations, payload = bulk.get("maxOperations"), bulk.get("maxPayloadSize")
    if not isinstance(operations, int) or not isinstance(payload, int):
        return 0, 0
    if operations < 1 or payload < 1:
        return 0, 0
    return operations, payload


def activate(engine: Engine, app_ref: str) -> Verification:
    """Verify, then start provisioning (the pending work is sent)."""
    with read_session(engine.sessions) as session:
        app = applications.find_app(session, app_ref)
        if app.idm_state == "active":
            return Verification(
                True,
                "already active",
                app.update_method,
                app.token_expires_at,
                app.bulk_max_operations,
                app.bulk_max_payload,
            )
    result = verify(engine, app_ref)
    with write_session(engine.sessions) as session:
        app = applications.find_app(session, app_ref)
        if not result.ok:
            app.idm_detail = f"verification failed: {result.message}"
            return result
        app.idm_state = "active"
        app.update_method = result.update_method
        app.token_expires_at = result.token_expires_at
        app.bulk_max_operations = result.bulk_max_operations
        app.bulk_max_payload = result.bulk_max_payload
        stamp = utcnow().isoformat(timespec="seconds")
        bulk = (
            f"; bulk offered, up to {result.bulk_max_operations} operations"
            if result.bulk_max_operations
            else ""
        )
        app.idm_detail = (
            f"successfully verified at {stamp}; updates use {result.update_method.upper()}{bulk}"
        )
    return result


def deactivate(sessions: sessionmaker[Session], app_ref: str) -> int:
    """Stop provisioning; returns how many changes wait for reactivation."""
    with write_session(sessions) as session:
        app = applications.find_app(session, app_ref)
        if app.idm_state == "inactive" and app.token_encrypted is None:
            raise ConflictError(f"Identity Management of {app.label!r} is not configured.")
        app.idm_state = "inactive"
        counts = outbox.pending(session, app.id)
        waiting = counts["due"] + counts["held"]
        app.idm_detail = f"deactivated; {waiting} pending change(s) kept"
        return waiting


def expiry_warning(expires_at: datetime | None, now: datetime | None = None) -> str | None:
    """Beyond JumpCloud: a warning when the application said its token expires soon."""
    if expires_at is None:
        return None
    now = now or utcnow()
    if expires_at <= now:
        return f"the application's token expired at {expires_at.isoformat(timespec='seconds')}"
    if expires_at - now <= EXPIRY_WARNING:
        days = (expires_at - now).days
        return f"the application's token expires in {days} day(s), at {expires_at.isoformat(timespec='seconds')}"
    return None
