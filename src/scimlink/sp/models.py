"""Tables of the app half. Its own metadata and Alembic history: it shares nothing with the directory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean
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


class SpBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JsonDocument}


class Tenant(SpBase):
    __tablename__ = "sp_tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    region: Mapped[str] = mapped_column(String(16), default="cloud")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    #: Kept in the same transaction as every create and delete, so an unfiltered list answers
    #: ``totalResults`` without counting a million rows.
    user_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: How users reach inSync: ``manual`` (the default), ``scim`` or ``ldap`` (AD/LDAP).
    provisioning: Mapped[str] = mapped_column(String(8), default="manual", server_default="manual")
    #: Opt-in: after a new SCIM token is generated the previous one keeps working this long.
    token_grace_hours: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ScimToken(SpBase):
    """A SCIM bearer token: only its SHA-256 is stored (security.md §3.2)."""

    __tablename__ = "sp_scim_tokens"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("sp_tenants.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(32))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    #: When the token stops working before ``expires_at``: set on rotation (now, or now plus
    #: the tenant's grace window).
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The last expiry reminder sent, in days before expiry (30, 7, 1); ``None`` before the first.
    reminded_days: Mapped[int | None] = mapped_column(Integer, default=None)


class Profile(SpBase):
    """An inSync profile: the policy a user gets, with a user limit and a preserved-user lifetime."""

    __tablename__ = "sp_profiles"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_sp_profiles_tenant_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("sp_tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    max_users: Mapped[int | None] = mapped_column(Integer, default=None)
    preserved_auto_delete_days: Mapped[int | None] = mapped_column(Integer, default=None)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Storage(SpBase):
    """Where a user's backups live: a region, healthy or not."""

    __tablename__ = "sp_storages"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_sp_storages_tenant_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("sp_tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(64))
    healthy: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class ScimMapping(SpBase):
    """A SCIM mapping: who it admits (criteria, fixed once created) and what they get."""

    __tablename__ = "sp_scim_mappings"
    __table_args__ = (Index("ix_sp_scim_mappings_tenant_position", "tenant_id", "position"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("sp_tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    any_user: Mapped[bool] = mapped_column(Boolean, default=False)
    attribute: Mapped[str | None] = mapped_column(String(512), default=None)
    values: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    profile_id: Mapped[str] = mapped_column(ForeignKey("sp_profiles.id"))
    storage_id: Mapped[str] = mapped_column(ForeignKey("sp_storages.id"))
    quota_gb: Mapped[int | None] = mapped_column(Integer, default=None)
    send_activation_email: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class SpUser(SpBase):
    """A user as its IdP sees it: indexed columns for what IdPs filter on, plus the document."""

    __tablename__ = "sp_users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_name_key", name="uq_sp_users_tenant_user_name"),
        Index("ix_sp_users_tenant_pk", "tenant_id", "pk"),
        Index("ix_sp_users_tenant_external_id", "tenant_id", "external_id"),
        Index("ix_sp_users_tenant_display_name", "tenant_id", "display_name_key"),
        Index("ix_sp_users_tenant_active", "tenant_id", "active"),
        Index("ix_sp_users_tenant_last_modified", "tenant_id", "last_modified"),
        Index("ix_sp_users_tenant_created", "tenant_id", "created"),
        UniqueConstraint("tenant_id", "email_key", name="uq_sp_users_tenant_email"),
        Index("ix_sp_users_state_preserved_at", "state", "preserved_at"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("sp_tenants.id", ondelete="CASCADE"))
    user_name: Mapped[str] = mapped_column(String(512))
    user_name_key: Mapped[str] = mapped_column(String(512))
    external_id: Mapped[str | None] = mapped_column(String(512))
    display_name_key: Mapped[str | None] = mapped_column(String(512))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[datetime]
    last_modified: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)
    document: Mapped[dict[str, Any]]
    #: What the SCIM mapping assigned at creation (inSync configuration); not re-evaluated.
    mapping_id: Mapped[str | None] = mapped_column(
        ForeignKey("sp_scim_mappings.id", ondelete="SET NULL"), default=None
    )
    profile_id: Mapped[str | None] = mapped_column(
        ForeignKey("sp_profiles.id"), default=None, index=True
    )
    storage_id: Mapped[str | None] = mapped_column(ForeignKey("sp_storages.id"), default=None)
    quota_gb: Mapped[int | None] = mapped_column(Integer, default=None)
    #: inSync's account state: ``active`` or ``preserved`` (license released, data kept).
    state: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    #: Who preserved it: ``idp`` (deactivated or deleted over SCIM) or ``admin`` (console).
    preserved_by: Mapped[str | None] = mapped_column(String(8), default=None)
    preserved_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Not visible over SCIM: deleted by the IdP (SCIM answers 404 for it, RFC 7644 §3.6, while
    #: the account stays preserved), or never SCIM-managed (added manually or by AD/LDAP).
    scim_deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: Who manages the account: ``scim``, ``manual`` (added by an administrator) or ``ldap``.
    managed_by: Mapped[str] = mapped_column(String(8), default="scim", server_default="scim")
    #: The inSync account's e-mail, folded: unique in a tenant (a duplicate fails provisioning)
    #: and how a manually added account is found and adopted by SCIM.
    email_key: Mapped[str | None] = mapped_column(String(512), default=None)


class SpUserEmail(SpBase):
    """One row per ``emails`` value so ``emails.value eq`` is an index lookup, not a JSON scan."""

    __tablename__ = "sp_user_emails"
    __table_args__ = (Index("ix_sp_user_emails_tenant_value", "tenant_id", "value_key"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("sp_users.pk", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    value_key: Mapped[str] = mapped_column(String(512))
    type_key: Mapped[str | None] = mapped_column(String(64))
    primary: Mapped[bool] = mapped_column(Boolean, default=False)


class Admin(SpBase):
    """An administrator of one tenant. The password is stored as an argon2 hash only."""

    __tablename__ = "sp_admins"
    __table_args__ = (UniqueConstraint("tenant_id", "email", name="uq_sp_admins_tenant_email"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("sp_tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(SpBase):
    """An admin API key: it acts as its administrator. Only its SHA-256 is stored."""

    __tablename__ = "sp_api_keys"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    admin_id: Mapped[str] = mapped_column(
        ForeignKey("sp_admins.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class LdapAccount(SpBase):
    """An AD/LDAP account (connection) of the AD/LDAP provisioning method."""

    __tablename__ = "sp_ldap_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_sp_ldap_accounts_tenant_name"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("sp_tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(default=utcnow)


class LdapMapping(SpBase):
    """An AD/LDAP mapping: which directory users inSync imports, into which profile."""

    __tablename__ = "sp_ldap_mappings"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_sp_ldap_mappings_tenant_name"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("sp_tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("sp_ldap_accounts.id", ondelete="SET NULL"), default=None
    )
    profile_id: Mapped[str] = mapped_column(ForeignKey("sp_profiles.id"))
    created: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(SpBase):
    """One change by an administrator or the IdP: who, what, to what, before and after."""

    __tablename__ = "sp_audit"
    __table_args__ = (
        Index("ix_sp_audit_tenant_pk", "tenant_id", "pk"),
        Index("ix_sp_audit_tenant_target", "tenant_id", "target_id"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("sp_tenants.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(400))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(36), default=None)
    target: Mapped[str] = mapped_column(String(512))
    before: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument, default=None)
    outcome: Mapped[str] = mapped_column(String(16), default="done")
    detail: Mapped[str | None] = mapped_column(String(1000), default=None)
    correlation_id: Mapped[str] = mapped_column(String(64))


class MailMessage(SpBase):
    """A durable outbox row: committed with the change that asks for it, sent later."""

    __tablename__ = "sp_mail_outbox"
    __table_args__ = (Index("ix_sp_mail_outbox_pending", "sent_at", "send_after"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("sp_tenants.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    send_after: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
