"""What administrators do to a tenant, for the CLI and the admin API alike.

Every operation checks the acting administrator's role first and writes its audit entry in the
same transaction as the change. Results are plain JSON-ready dictionaries, so the CLI prints
and the admin API returns the same thing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.sp import admins
from scimlink.sp import audit
from scimlink.sp import lifecycle
from scimlink.sp import mail
from scimlink.sp import profiles
from scimlink.sp import provisioning
from scimlink.sp import scim_mappings
from scimlink.sp import tenants
from scimlink.sp.audit import Actor
from scimlink.sp.audit import Change
from scimlink.sp.models import LdapAccount
from scimlink.sp.models import LdapMapping
from scimlink.sp.models import Profile
from scimlink.sp.models import ScimMapping
from scimlink.sp.models import Storage
from scimlink.sp.models import Tenant
from scimlink.sp.roles import Permission
from scimlink.sp.roles import allows
from scimlink.sp.roles import require
from scimlink.storage.base import utcnow


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def account_data(account: lifecycle.Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "userName": account.user_name,
        "displayName": account.display_name,
        "email": account.email,
        "managed_by": account.managed_by,
        "state": account.state,
        "preserved_by": account.preserved_by,
        "preserved_at": _iso(account.preserved_at),
        "deleted_in_idp": account.deleted_in_idp,
        "profile": account.profile,
        "storage": account.storage,
        "quota_gb": account.quota_gb,
    }


def _profile_data(profile: Profile, users: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": profile.id,
        "name": profile.name,
        "default": profile.is_default,
        "max_users": profile.max_users,
        "auto_delete_days": profile.preserved_auto_delete_days,
    }
    if users is not None:
        data["users"] = users
    return data


def _storage_data(storage: Storage) -> dict[str, Any]:
    return {
        "id": storage.id,
        "name": storage.name,
        "region": storage.region,
        "healthy": storage.healthy,
        "default": storage.is_default,
    }


def _admin_data(view: admins.AdminView) -> dict[str, Any]:
    return {
        "id": view.id,
        "email": view.email,
        "role": view.role,
        "has_password": view.has_password,
        "created": _iso(view.created),
    }


def _key_data(view: admins.KeyView) -> dict[str, Any]:
    return {
        "id": view.id,
        "admin": view.admin,
        "name": view.name,
        "hint": view.hint,
        "created": _iso(view.created),
        "revoked_at": _iso(view.revoked_at),
    }


class Administration:
    """One tenant, administered by one actor inside the caller's unit of work."""

    def __init__(
        self,
        session: Session,
        tenant_id: str,
        actor: Actor,
        scim_urls: dict[str, str] | None = None,
        *,
        admin_id: str | None = None,
    ) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.actor = actor
        self.scim_urls = scim_urls or {"cloud": "http://127.0.0.1:8000/insync/scim"}
        #: The acting administrator's account (API keys and the CLI's ``--admin``), if any.
        self.admin_id = admin_id

    # -- plumbing --------------------------------------------------------------------------------

    def _require(self, permission: Permission) -> None:
        require(self.actor.role, permission)

    def _audit(self, change: Change) -> None:
        audit.record(self.session, self.tenant_id, self.actor, change)

    def _tenant(self) -> Tenant:
        tenant = self.session.get(Tenant, self.tenant_id)
        assert tenant is not None
        return tenant

    # -- the tenant ------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """What the console's summary shows: region, SCIM base URL, method, token, licenses."""
        self._require(Permission.READ)
        tenant = self._tenant()
        return {
            "id": tenant.id,
            "name": tenant.name,
            "region": tenant.region,
            "scim_base_url": tenants.scim_base_url(tenant.region, self.scim_urls),
            "provisioning": tenant.provisioning,
            "token_grace_hours": tenant.token_grace_hours,
            "tokens": self._token_rows(),
            "licenses": lifecycle.license_counts(self.session, self.tenant_id),
        }

    # -- provisioning method and tokens ---------------------------------------------------------

    def switch_provisioning(self, method: str) -> dict[str, Any]:
        self._require(Permission.PROVISIONING)
        switch = {
            "scim": provisioning.use_scim,
            "manual": provisioning.use_manual,
            "ldap": provisioning.use_ldap,
        }[method](self.session, self.tenant_id)
        if switch.before != switch.after or switch.tokens_revoked:
            self._audit(
                Change(
                    "provisioning.switch",
                    "tenant",
                    self.tenant_id,
                    self._tenant().name,
                    before={"provisioning": switch.before},
                    after={"provisioning": switch.after},
                    detail=f"{switch.tokens_revoked} SCIM token(s) revoked"
                    if switch.tokens_revoked
                    else None,
                )
            )
        return {
            "provisioning": switch.after,
            "previous": switch.before,
            "tokens_revoked": switch.tokens_revoked,
        }

    def generate_token(self) -> dict[str, Any]:
        self._require(Permission.PROVISIONING)
        issued = tenants.generate_token(self.session, self.tenant_id)
        self._audit(
            Change(
                "token.generate",
                "tenant",
                self.tenant_id,
                self._tenant().name,
                after={"expires_at": _iso(issued.expires_at)},
                detail=f"previous token works until {_iso(issued.previous_valid_until)}"
                if issued.previous_valid_until
                else "any previous token stopped working",
            )
        )
        tenant = self._tenant()
        return {
            "tenant_id": issued.tenant_id,
            "token": issued.token,
            "expires_at": _iso(issued.expires_at),
            "previous_valid_until": _iso(issued.previous_valid_until),
            "scim_base_url": tenants.scim_base_url(tenant.region, self.scim_urls),
        }

    def _token_rows(self) -> list[dict[str, Any]]:
        now = utcnow()
        return [
            {
                "hint": t.hint,
                "created": _iso(t.created),
                "expires_at": _iso(t.expires_at),
                "days_left": t.days_left(now),
                "current": t.current,
                "valid_until": _iso(t.revoked_at),
            }
            for t in tenants.list_tokens(self.session, self.tenant_id, now=now)
        ]

    def tokens(self) -> list[dict[str, Any]]:
        self._require(Permission.READ)
        return self._token_rows()

    def set_token_grace(self, hours: int) -> dict[str, Any]:
        self._require(Permission.PROVISIONING)
        before = self._tenant().token_grace_hours
        tenants.set_token_grace(self.session, self.tenant_id, hours)
        self._audit(
            Change(
                "token.grace",
                "tenant",
                self.tenant_id,
                self._tenant().name,
                before={"grace_hours": before},
                after={"grace_hours": hours},
            )
        )
        return {"token_grace_hours": hours}

    # -- AD/LDAP (modelled for the provisioning-method guards) ---------------------------------

    def _ldap_account_data(self, account: LdapAccount) -> dict[str, Any]:
        return {"id": account.id, "name": account.name, "host": account.host}

    def _ldap_mapping_data(self, mapping: LdapMapping) -> dict[str, Any]:
        profile = self.session.get(Profile, mapping.profile_id)
        account = self.session.get(LdapAccount, mapping.account_id) if mapping.account_id else None
        return {
            "id": mapping.id,
            "name": mapping.name,
            "account": account.name if account else None,
            "profile": profile.name if profile else None,
        }

    def add_ldap_account(self, name: str, host: str) -> dict[str, Any]:
        self._require(Permission.PROVISIONING)
        data = self._ldap_account_data(
            provisioning.add_ldap_account(self.session, self.tenant_id, name, host)
        )
        self._audit(
            Change("ldap.account.add", "ldap-account", data["id"], data["name"], after=data)
        )
        return data

    def delete_ldap_account(self, ref: str) -> dict[str, Any]:
        self._require(Permission.PROVISIONING)
        name = provisioning.delete_ldap_account(self.session, self.tenant_id, ref)
        self._audit(Change("ldap.account.delete", "ldap-account", None, name))
        return {"deleted": name}

    def ldap_accounts(self) -> list[dict[str, Any]]:
        self._require(Permission.READ)
        return [
            self._ldap_account_data(a)
            for a in provisioning.list_ldap_accounts(self.session, self.tenant_id)
        ]

    def add_ldap_mapping(
        self, name: str, account: str | None, profile: str | None
    ) -> dict[str, Any]:
        self._require(Permission.PROVISIONING)
        data = self._ldap_mapping_data(
            provisioning.add_ldap_mapping(self.session, self.tenant_id, name, account, profile)
        )
        self._audit(
            Change("ldap.mapping.add", "ldap-mapping", data["id"], data["name"], after=data)
        )
        return data

    def delete_ldap_mapping(self, ref: str) -> dict[str, Any]:
        self._require(Permission.PROVISIONING)
        name = provisioning.delete_ldap_mapping(self.session, self.tenant_id, ref)
        self._audit(Change("ldap.mapping.delete", "ldap-mapping", None, name))
        return {"deleted": name}

    def ldap_mappings(self) -> list[dict[str, Any]]:
        self._require(Permission.READ)
        return [
            self._ldap_mapping_data(m)
            for m in provisioning.list_ldap_mappings(self.session, self.tenant_id)
        ]

    # -- profiles and storages -------------------------------------------------------------------

    def create_profile(
        self, name: str, max_users: int | None = None, auto_delete_days: int | None = None
    ) -> dict[str, Any]:
        self._require(Permission.POLICIES)
        data = _profile_data(
            profiles.create_profile(
                self.session,
                self.tenant_id,
                name,
                max_users=max_users,
                preserved_auto_delete_days=auto_delete_days,
            )
        )
        self._audit(Change("profile.create", "profile", data["id"], data["name"], after=data))
        return data

    def edit_profile(self, ref: str, **changes: Any) -> dict[str, Any]:
        self._require(Permission.POLICIES)
        before = _profile_data(profiles.find_profile(self.session, self.tenant_id, ref))
        data = _profile_data(profiles.edit_profile(self.session, self.tenant_id, ref, **changes))
        self._audit(
            Change("profile.edit", "profile", data["id"], data["name"], before=before, after=data)
        )
        return data

    def profiles(self) -> list[dict[str, Any]]:
        self._require(Permission.READ)
        return [
            _profile_data(p, used)
            for p, used in profiles.list_profiles(self.session, self.tenant_id)
        ]

    def create_storage(self, name: str, region: str) -> dict[str, Any]:
        self._require(Permission.POLICIES)
        data = _storage_data(profiles.create_storage(self.session, self.tenant_id, name, region))
        self._audit(Change("storage.create", "storage", data["id"], data["name"], after=data))
        return data

    def set_storage_health(self, ref: str, healthy: bool) -> dict[str, Any]:
        self._require(Permission.POLICIES)
        before = _storage_data(profiles.find_storage(self.session, self.tenant_id, ref))
        data = _storage_data(
            profiles.set_storage_health(self.session, self.tenant_id, ref, healthy)
        )
        self._audit(
            Change("storage.health", "storage", data["id"], data["name"], before=before, after=data)
        )
        return data

    def storages(self) -> list[dict[str, Any]]:
        self._require(Permission.READ)
        return [_storage_data(s) for s in profiles.list_storages(self.session, self.tenant_id)]

    # -- SCIM mappings ---------------------------------------------------------------------------

    def _mapping_data(self, mapping: ScimMapping) -> dict[str, Any]:
        profile = self.session.get(Profile, mapping.profile_id)
        storage = self.session.get(Storage, mapping.storage_id)
        return {
            "id": mapping.id,
            "name": mapping.name,
            "priority": mapping.position,
            "criteria": "Allow any user"
            if mapping.any_user
            else {"attribute": mapping.attribute, "values": list(mapping.values)},
            "profile": profile.name if profile else None,
            "storage": storage.name if storage else None,
            "quota_gb": mapping.quota_gb,
            "send_activation_email": mapping.send_activation_email,
        }

    def create_mapping(self, name: str, **options: Any) -> dict[str, Any]:
        self._require(Permission.POLICIES)
        data = self._mapping_data(
            scim_mappings.create_mapping(self.session, self.tenant_id, name, **options)
        )
        self._audit(Change("mapping.create", "mapping", data["id"], data["name"], after=data))
        return data

    def edit_mapping(self, ref: str, **changes: Any) -> dict[str, Any]:
        self._require(Permission.POLICIES)
        before = self._mapping_data(scim_mappings.find_mapping(self.session, self.tenant_id, ref))
        data = self._mapping_data(
            scim_mappings.edit_mapping(self.session, self.tenant_id, ref, **changes)
        )
        self._audit(
            Change("mapping.edit", "mapping", data["id"], data["name"], before=before, after=data)
        )
        return data

    def move_mapping(self, ref: str, position: int) -> list[dict[str, Any]]:
        self._require(Permission.POLICIES)
        mapping = scim_mappings.find_mapping(self.session, self.tenant_id, ref)
        before = mapping.position
        ordered = scim_mappings.move_mapping(self.session, self.tenant_id, ref, position)
        self._audit(
            Change(
                "mapping.move",
                "mapping",
                mapping.id,
                mapping.name,
                before={"priority": before},
                after={"priority": mapping.position},
            )
        )
        return [self._mapping_data(m) for m in ordered]

    def delete_mapping(self, ref: str) -> dict[str, Any]:
        self._require(Permission.POLICIES)
        before = self._mapping_data(scim_mappings.find_mapping(self.session, self.tenant_id, ref))
        scim_mappings.delete_mapping(self.session, self.tenant_id, ref)
        self._audit(
            Change("mapping.delete", "mapping", before["id"], before["name"], before=before)
        )
        return {"deleted": before["name"]}

    def mappings(self) -> list[dict[str, Any]]:
        self._require(Permission.READ)
        return [
            self._mapping_data(m) for m in scim_mappings.list_mappings(self.session, self.tenant_id)
        ]

    def evaluate(
        self, body: dict[str, Any] | None = None, user: str | None = None
    ) -> dict[str, Any]:
        """Which mapping would place this SCIM body or existing user, and why (nothing changes)."""
        self._require(Permission.READ)
        if body is not None:
            document = scim_mappings.document_from_body(body)
        else:
            assert user is not None
            document = scim_mappings.stored_document(self.session, self.tenant_id, user)
        return scim_mappings.preview(
            self.session, self.tenant_id, document, existing=body is not None
        )

    # -- accounts --------------------------------------------------------------------------------

    def users(
        self, state: str | None = None, limit: int = 100, after: str | None = None
    ) -> dict[str, Any]:
        self._require(Permission.READ)
        rows = lifecycle.list_accounts(
            self.session, self.tenant_id, state=state, limit=limit, after=after
        )
        return {
            "users": [account_data(a) for a in rows],
            "licenses": lifecycle.license_counts(self.session, self.tenant_id),
        }

    def user(self, ref: str) -> dict[str, Any]:
        self._require(Permission.READ)
        return account_data(lifecycle.find_account(self.session, self.tenant_id, ref))

    def add_user(self, email: str, name: str, **options: Any) -> dict[str, Any]:
        self._require(Permission.USERS)
        account = lifecycle.add_account(self.session, self.tenant_id, email, name, **options)
        self._audit(
            Change("user.add", "user", account.id, account.user_name, after=account.audit_view())
        )
        return account_data(account)

    def preserve_user(self, ref: str) -> dict[str, Any]:
        return self._account_change("user.preserve", ref, lifecycle.preserve)

    def activate_user(self, ref: str) -> dict[str, Any]:
        return self._account_change("user.activate", ref, lifecycle.activate)

    def _account_change(self, action: str, ref: str, change: Any) -> dict[str, Any]:
        self._require(Permission.USERS)
        before = lifecycle.find_account(self.session, self.tenant_id, ref)
        account: lifecycle.Account = change(self.session, self.tenant_id, ref)
        self._audit(
            Change(
                action,
                "user",
                account.id,
                account.user_name,
                before=before.audit_view(),
                after=account.audit_view(),
            )
        )
        return account_data(account)

    def delete_user(self, ref: str) -> dict[str, Any]:
        self._require(Permission.USERS)
        before = lifecycle.find_account(self.session, self.tenant_id, ref)
        lifecycle.delete(self.session, self.tenant_id, ref)
        self._audit(
            Change(
                "user.delete",
                "user",
                before.id,
                before.user_name,
                before=before.audit_view(),
                detail="deleted with its data by an administrator",
            )
        )
        return {"deleted": before.user_name, "id": before.id}

    # -- administrators and API keys -----------------------------------------------------------

    def create_admin(self, email: str, role: str, password: str | None = None) -> dict[str, Any]:
        self._require(Permission.ADMINS)
        data = _admin_data(admins.create_admin(self.session, self.tenant_id, email, role, password))
        self._audit(
            Change(
                "admin.create",
                "admin",
                data["id"],
                data["email"],
                after={"role": data["role"], "has_password": data["has_password"]},
            )
        )
        return data

    def set_admin_role(self, ref: str, role: str) -> dict[str, Any]:
        self._require(Permission.ADMINS)
        before = admins.admin_view(self.session, self.tenant_id, ref)
        data = _admin_data(admins.set_role(self.session, self.tenant_id, ref, role))
        self._audit(
            Change(
                "admin.role",
                "admin",
                data["id"],
                data["email"],
                before={"role": before.role},
                after={"role": data["role"]},
            )
        )
        return data

    def set_admin_password(self, ref: str, password: str) -> dict[str, Any]:
        own = self.admin_id is not None and self._is_self(ref)
        if not own:
            self._require(Permission.ADMINS)
        data = _admin_data(admins.set_password(self.session, self.tenant_id, ref, password))
        self._audit(Change("admin.password", "admin", data["id"], data["email"]))
        return data

    def delete_admin(self, ref: str) -> dict[str, Any]:
        self._require(Permission.ADMINS)
        view = admins.delete_admin(self.session, self.tenant_id, ref)
        self._audit(
            Change("admin.delete", "admin", view.id, view.email, before={"role": view.role})
        )
        return {"deleted": view.email}

    def admin(self, ref: str) -> dict[str, Any]:
        self._require(Permission.READ)
        return _admin_data(admins.admin_view(self.session, self.tenant_id, ref))

    def admins(self) -> list[dict[str, Any]]:
        self._require(Permission.READ)
        return [_admin_data(a) for a in admins.list_admins(self.session, self.tenant_id)]

    def _is_self(self, ref: str) -> bool:
        try:
            return admins.find_admin(self.session, self.tenant_id, ref).id == self.admin_id
        except NotFoundError:
            return False

    def create_key(self, admin: str | None, name: str) -> dict[str, Any]:
        """A new API key, shown once. Anyone may create their own; others' need ``admins``."""
        if admin is None:
            if self.admin_id is None:
                raise InvalidInputError("Name the administrator the key acts as.")
            admin = self.admin_id
        if not self._is_self(admin):
            self._require(Permission.ADMINS)
        issued = admins.create_key(self.session, self.tenant_id, admin, name)
        data = _key_data(issued.view)
        self._audit(
            Change(
                "apikey.create",
                "apikey",
                None,
                f"{data['admin']} {data['hint']}",
                after={"name": data["name"], "id": data["id"]},
            )
        )
        return {**data, "key": issued.key}

    def revoke_key(self, key_id: int) -> dict[str, Any]:
        _, owner = admins.find_key(self.session, self.tenant_id, key_id)
        if owner.id != self.admin_id:
            self._require(Permission.ADMINS)
        data = _key_data(admins.revoke_key(self.session, self.tenant_id, key_id))
        self._audit(Change("apikey.revoke", "apikey", None, f"{data['admin']} {data['hint']}"))
        return data

    def keys(self) -> list[dict[str, Any]]:
        if self.admin_id is not None and not allows(self.actor.role, Permission.ADMINS):
            return [
                _key_data(k) for k in admins.list_keys(self.session, self.tenant_id, self.admin_id)
            ]
        self._require(Permission.READ)
        return [_key_data(k) for k in admins.list_keys(self.session, self.tenant_id)]

    # -- audit trail and mail ------------------------------------------------------------------

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        self._require(Permission.READ)
        return [
            {
                "id": e.id,
                "at": _iso(e.at),
                "actor": e.actor,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "target": e.target,
                "before": e.before,
                "after": e.after,
                "outcome": e.outcome,
                "detail": e.detail,
                "correlation_id": e.correlation_id,
            }
            for e in audit.entries(self.session, self.tenant_id, **filters)
        ]

    def mail(self, pending: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        self._require(Permission.READ)
        return [
            {
                "id": m.id,
                "kind": m.kind,
                "recipient": m.recipient,
                "subject": m.subject,
                "created": _iso(m.created),
                "sent_at": _iso(m.sent_at),
                "attempts": m.attempts,
                "last_error": m.last_error,
            }
            for m in mail.messages(self.session, self.tenant_id, pending=pending, limit=limit)
        ]
