"""How users reach a tenant: manually (the default), over SCIM, or from AD/LDAP.

Druva's rule (provisioning-engines.md §5.1): once SCIM is chosen the tenant cannot use AD or
LDAP for user management, so switching to SCIM is refused while anything of AD/LDAP remains: an
AD/LDAP account, an AD/LDAP mapping, or an AD/LDAP-managed user in Active or Preserved state.
AD/LDAP is modelled only as far as these guards need: accounts, mappings and the users they
manage; nothing here talks to a directory server.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.errors import ConflictError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.sp import profiles
from scimlink.sp import tenants
from scimlink.sp.models import LdapAccount
from scimlink.sp.models import LdapMapping
from scimlink.sp.models import SpUser
from scimlink.sp.models import Tenant
from scimlink.storage.base import utcnow

_Ldap = TypeVar("_Ldap", LdapAccount, LdapMapping)


@dataclass(frozen=True, slots=True)
class Switch:
    before: str
    after: str
    tokens_revoked: int = 0


def _tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFoundError(f"No tenant {tenant_id!r}.")
    return tenant


def scim_obstacle(session: Session, tenant_id: str) -> str | None:
    """What keeps the tenant from using SCIM, named so the administrator can remove it."""
    account = session.execute(
        select(LdapAccount.name).where(LdapAccount.tenant_id == tenant_id).limit(1)
    ).scalar_one_or_none()
    if account is not None:
        return f"the AD/LDAP account {account!r} exists; delete it first"
    mapping = session.execute(
        select(LdapMapping.name).where(LdapMapping.tenant_id == tenant_id).limit(1)
    ).scalar_one_or_none()
    if mapping is not None:
        return f"the AD/LDAP mapping {mapping!r} exists; delete it first"
    user = session.execute(
        select(SpUser.user_name, SpUser.state)
        .where(
            SpUser.tenant_id == tenant_id,
            SpUser.managed_by == "ldap",
            SpUser.state.in_(("active", "preserved")),
        )
        .limit(1)
    ).one_or_none()
    if user is not None:
        count = session.execute(
            select(func.count()).where(SpUser.tenant_id == tenant_id, SpUser.managed_by == "ldap")
        ).scalar_one()
        return (
            f"{count} AD/LDAP-managed user(s) exist, e.g. {user.user_name!r} ({user.state}); "
            "delete them first"
        )
    return None


def use_scim(session: Session, tenant_id: str) -> Switch:
    """Users > Deployment > Use SCIM > Confirm."""
    tenant = _tenant(session, tenant_id)
    if tenant.provisioning == "scim":
        return Switch("scim", "scim")
    obstacle = scim_obstacle(session, tenant_id)
    if obstacle is not None:
        raise ConflictError(f"Tenant {tenant.name!r} cannot use SCIM: {obstacle}.")
    before, tenant.provisioning = tenant.provisioning, "scim"
    session.flush()
    return Switch(before, "scim")


def use_manual(session: Session, tenant_id: str) -> Switch:
    """Stop SCIM or AD/LDAP provisioning; the tenant's SCIM tokens stop working at once.

    Users stay as they are: SCIM-managed ones keep their state and can be adopted again when
    the tenant returns to SCIM.
    """
    tenant = _tenant(session, tenant_id)
    before, tenant.provisioning = tenant.provisioning, "manual"
    revoked = tenants.revoke_tokens(session, tenant_id)
    session.flush()
    return Switch(before, "manual", revoked)


def use_ldap(session: Session, tenant_id: str) -> Switch:
    """Manage users from AD/LDAP; refused while SCIM-managed users are Active or Preserved."""
    tenant = _tenant(session, tenant_id)
    if tenant.provisioning == "ldap":
        return Switch("ldap", "ldap")
    scim_user = session.execute(
        select(SpUser.user_name)
        .where(SpUser.tenant_id == tenant_id, SpUser.managed_by == "scim")
        .limit(1)
    ).scalar_one_or_none()
    if scim_user is not None:
        raise ConflictError(
            f"Tenant {tenant.name!r} cannot use AD/LDAP: SCIM-managed users exist, e.g. "
            f"{scim_user!r}; delete them first."
        )
    before, tenant.provisioning = tenant.provisioning, "ldap"
    revoked = tenants.revoke_tokens(session, tenant_id)
    session.flush()
    return Switch(before, "ldap", revoked)


# -- AD/LDAP accounts and mappings ---------------------------------------------------------------


def _require_ldap(session: Session, tenant_id: str) -> None:
    tenant = _tenant(session, tenant_id)
    if tenant.provisioning != "ldap":
        raise ConflictError(
            f"Tenant {tenant.name!r} does not use AD/LDAP "
            "(scimlink sp provisioning use-ldap switches it)."
        )


def add_ldap_account(session: Session, tenant_id: str, name: str, host: str) -> LdapAccount:
    _require_ldap(session, tenant_id)
    name, host = name.strip(), host.strip()
    if not name or not host:
        raise InvalidInputError("An AD/LDAP account needs a name and a host.")
    if session.execute(
        select(LdapAccount.id).where(LdapAccount.tenant_id == tenant_id, LdapAccount.name == name)
    ).first():
        raise ConflictError(f"An AD/LDAP account named {name!r} already exists.")
    account = LdapAccount(
        id=str(uuid.uuid4()), tenant_id=tenant_id, name=name, host=host, created=utcnow()
    )
    session.add(account)
    session.flush()
    return account


def _find_ldap(session: Session, model: type[_Ldap], tenant_id: str, ref: str, kind: str) -> _Ldap:
    found = session.execute(
        select(model).where(model.tenant_id == tenant_id, or_(model.id == ref, model.name == ref))
    ).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"No AD/LDAP {kind} {ref!r} in this tenant.")
    return found


def delete_ldap_account(session: Session, tenant_id: str, ref: str) -> str:
    account = _find_ldap(session, LdapAccount, tenant_id, ref, "account")
    name = account.name
    session.delete(account)
    session.flush()
    return name


def list_ldap_accounts(session: Session, tenant_id: str) -> list[LdapAccount]:
    return list(
        session.execute(
            select(LdapAccount)
            .where(LdapAccount.tenant_id == tenant_id)
            .order_by(LdapAccount.created)
        ).scalars()
    )


def add_ldap_mapping(
    session: Session, tenant_id: str, name: str, account: str | None, profile: str | None
) -> LdapMapping:
    _require_ldap(session, tenant_id)
    name = name.strip()
    if not name:
        raise InvalidInputError("An AD/LDAP mapping needs a name.")
    if session.execute(
        select(LdapMapping.id).where(LdapMapping.tenant_id == tenant_id, LdapMapping.name == name)
    ).first():
        raise ConflictError(f"An AD/LDAP mapping named {name!r} already exists.")
    account_id = (
        _find_ldap(session, LdapAccount, tenant_id, account, "account").id if account else None
    )
    mapping = LdapMapping(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        name=name,
        account_id=account_id,
        profile_id=profiles.find_profile(session, tenant_id, profile).id,
        created=utcnow(),
    )
    session.add(mapping)
    session.flush()
    return mapping


def delete_ldap_mapping(session: Session, tenant_id: str, ref: str) -> str:
    mapping = _find_ldap(session, LdapMapping, tenant_id, ref, "mapping")
    name = mapping.name
    session.delete(mapping)
    session.flush()
    return name


def list_ldap_mappings(session: Session, tenant_id: str) -> list[LdapMapping]:
    return list(
        session.execute(
            select(LdapMapping)
            .where(LdapMapping.tenant_id == tenant_id)
            .order_by(LdapMapping.created)
        ).scalars()
    )
