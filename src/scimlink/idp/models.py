"""Tables of the directory half. Its own metadata and Alembic history: it shares nothing with the
app half.

Provisioning state is keyed by (application, user id) and never points at ``idp_users`` with a
foreign key: a deleted user must still be deactivated in every application it reached.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import false
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from scimlink.storage.base import NAMING_CONVENTION
from scimlink.storage.base import JsonDocument
from scimlink.storage.base import UTCDateTime
from scimlink.storage.base import utcnow

#: Calls in flight to one application, shared by every engine alive.
DEFAULT_CONCURRENCY = 4


class IdpBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JsonDocument}


class DirectoryUser(IdpBase):
    """A user with JumpCloud's properties (provisioning-engines.md §3)."""

    __tablename__ = "idp_users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    #: Folded forms: usernames and e-mails are unique case-insensitively.
    username_key: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    firstname: Mapped[str | None] = mapped_column(String(255), default=None)
    lastname: Mapped[str | None] = mapped_column(String(255), default=None)
    displayname: Mapped[str | None] = mapped_column(String(255), default=None)
    employee_identifier: Mapped[str | None] = mapped_column(String(255), default=None)
    department: Mapped[str | None] = mapped_column(String(255), default=None)
    job_title: Mapped[str | None] = mapped_column(String(255), default=None)
    company: Mapped[str | None] = mapped_column(String(255), default=None)
    location: Mapped[str | None] = mapped_column(String(255), default=None)
    cost_center: Mapped[str | None] = mapped_column(String(255), default=None)
    #: ``activated``, ``suspended`` or ``staged`` (JumpCloud's states).
    state: Mapped[str] = mapped_column(String(16), default="activated")
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow)


class Group(IdpBase):
    __tablename__ = "idp_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(1000), default=None)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(IdpBase):
    __tablename__ = "idp_group_members"
    __table_args__ = (Index("ix_idp_group_members_user", "user_id"),)

    group_id: Mapped[str] = mapped_column(
        ForeignKey("idp_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("idp_users.id", ondelete="CASCADE"), primary_key=True
    )


class Application(IdpBase):
    """A catalog application with its Identity Management (SCIM) connector settings."""

    __tablename__ = "idp_applications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    label: Mapped[str] = mapped_column(String(255))
    label_key: Mapped[str] = mapped_column(String(255), unique=True)
    #: The catalog entry: ``druva`` (preset) or ``scim`` (generic SCIM 2.0).
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(String(1000), default=None)
    show_in_portal: Mapped[bool] = mapped_column(Boolean, default=True)
    logo_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    region: Mapped[str | None] = mapped_column(String(16), default=None)
    base_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    #: The IdM token, encrypted with the directory's master key (never stored in clear).
    token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    token_hint: Mapped[str | None] = mapped_column(String(64), default=None)
    token_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    #: ``inactive`` (configured or not), ``active`` (provisioning) or ``paused`` (a 401).
    idm_state: Mapped[str] = mapped_column(String(16), default="inactive")
    idm_detail: Mapped[str | None] = mapped_column(String(1000), default=None)
    #: How updates are sent, from the target's ServiceProviderConfig: ``patch`` or ``put``.
    update_method: Mapped[str] = mapped_column(String(8), default="patch")
    #: The target's bulk limits from its ServiceProviderConfig (0: no bulk), read on activation.
    bulk_max_operations: Mapped[int] = mapped_column(Integer, default=0)
    bulk_max_payload: Mapped[int] = mapped_column(Integer, default=0)
    #: Send creates in bulk requests when the target offers them (an administrator's choice).
    bulk_creates: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ``deactivate`` (active=false, Druva) or ``delete`` when a user leaves scope.
    deprovision: Mapped[str] = mapped_column(String(16), default="deactivate")
    attribute_map: Mapped[list[dict[str, str]]] = mapped_column(JsonDocument, default=list)
    #: More deactivations than this from one admin action wait for approval.
    mass_deactivation_threshold: Mapped[int] = mapped_column(Integer, default=25)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=DEFAULT_CONCURRENCY)
    rate_per_second: Mapped[float] = mapped_column(Float, default=20.0)
    quarantined_until: Mapped[datetime | None] = mapped_column(default=None)
    quarantine_reason: Mapped[str | None] = mapped_column(String(1000), default=None)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Binding(IdpBase):
    """A group bound to an application: its members are in the application's scope."""

    __tablename__ = "idp_bindings"
    __table_args__ = (Index("ix_idp_bindings_group", "group_id"),)

    app_id: Mapped[str] = mapped_column(
        ForeignKey("idp_applications.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[str] = mapped_column(
        ForeignKey("idp_groups.id", ondelete="CASCADE"), primary_key=True
    )


class OutboxRow(IdpBase):
    """One (application, user) pair to bring to its desired state: level-triggered, coalesced.

    Committed in the same transaction as the change that causes it. ``generation`` grows with
    every new cause, so a worker that finishes an older generation leaves the row for another
    pass instead of deleting a change it never saw.
    """

    __tablename__ = "idp_outbox"
    __table_args__ = (
        UniqueConstraint("app_id", "user_id", name="uq_idp_outbox_pair"),
        # Claims are per application, first due first (see scimlink.idp.outbox).
        Index("ix_idp_outbox_app_due", "app_id", "held", "due_at", "pk"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("idp_applications.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(36))
    cause: Mapped[str] = mapped_column(String(255))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Held for an administrator's approval (a mass deactivation).
    held: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Released by an administrator (``idp app approve``): never held again until processed.
    approved: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    last_error: Mapped[str | None] = mapped_column(String(1000), default=None)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Link(IdpBase):
    """What the application last accepted for a user: remote id, state and a hash of it."""

    __tablename__ = "idp_links"
    __table_args__ = (Index("ix_idp_links_user", "user_id"),)

    app_id: Mapped[str] = mapped_column(
        ForeignKey("idp_applications.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    remote_id: Mapped[str | None] = mapped_column(String(255), default=None)
    #: ``pending`` (a first create under way), ``active``, ``inactive`` (deprovisioned) or
    #: ``failed`` (a permanent error; see detail).
    state: Mapped[str] = mapped_column(String(16))
    accepted_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[str | None] = mapped_column(String(2000), default=None)
    updated: Mapped[datetime] = mapped_column(default=utcnow)


class LogEntry(IdpBase):
    """One step of provisioning: cause -> request -> response -> the application's decision."""

    __tablename__ = "idp_provisioning_log"
    __table_args__ = (
        Index("ix_idp_log_app_pk", "app_id", "pk"),
        Index("ix_idp_log_app_user_pk", "app_id", "user_id", "pk"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("idp_applications.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(36))
    username: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    cause: Mapped[str] = mapped_column(String(255))
    step: Mapped[str] = mapped_column(String(32))
    method: Mapped[str | None] = mapped_column(String(8), default=None)
    url: Mapped[str | None] = mapped_column(String(2000), default=None)
    request: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument, default=None)
    status: Mapped[int | None] = mapped_column(Integer, default=None)
    response: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument, default=None)
    decision: Mapped[str] = mapped_column(String(2000))
    duration_ms: Mapped[float | None] = mapped_column(Float, default=None)
    correlation_id: Mapped[str] = mapped_column(String(64))


class Worker(IdpBase):
    """A running provisioning engine (``idp serve`` / ``idp worker``), seen by its heartbeat.

    The engines alive share each application's concurrency and rate limits between them.
    """

    __tablename__ = "idp_workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ApiKey(IdpBase):
    """A directory admin API key; only its SHA-256 is stored."""

    __tablename__ = "idp_api_keys"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(40))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
