"""Administrator roles and what each may do (provisioning-engines.md §5.1).

Only a Druva Cloud administrator or an inSync Cloud administrator may switch a tenant to SCIM or
generate SCIM tokens; a profile administrator manages users but not policies or provisioning.
The server operator (the CLI without ``--admin``, and scheduled jobs) may do everything.
"""

from __future__ import annotations

from enum import StrEnum

from scimlink.errors import ForbiddenError
from scimlink.errors import InvalidInputError


class Permission(StrEnum):
    READ = "read"
    USERS = "users"
    POLICIES = "policies"
    PROVISIONING = "provisioning"
    ADMINS = "admins"


DRUVA_CLOUD_ADMIN = "druva-cloud-admin"
INSYNC_CLOUD_ADMIN = "insync-cloud-admin"
PROFILE_ADMIN = "profile-admin"
OPERATOR = "operator"
#: What the IdP may do with its SCIM token: only SCIM changes, never these permissions.
SCIM_CLIENT = "scim"

ROLE_TITLES = {
    DRUVA_CLOUD_ADMIN: "Druva Cloud administrator",
    INSYNC_CLOUD_ADMIN: "inSync Cloud administrator",
    PROFILE_ADMIN: "Profile administrator",
}

_GRANTS: dict[str, frozenset[Permission]] = {
    OPERATOR: frozenset(Permission),
    DRUVA_CLOUD_ADMIN: frozenset(Permission),
    INSYNC_CLOUD_ADMIN: frozenset(Permission) - {Permission.ADMINS},
    PROFILE_ADMIN: frozenset({Permission.READ, Permission.USERS}),
    SCIM_CLIENT: frozenset(),
}

_DENIALS = {
    Permission.READ: "read this tenant",
    Permission.USERS: "manage users",
    Permission.POLICIES: "manage profiles, storages and SCIM mappings",
    Permission.PROVISIONING: (
        "change the provisioning method or SCIM tokens; only a Druva Cloud administrator or an "
        "inSync Cloud administrator may"
    ),
    Permission.ADMINS: "manage administrators; only a Druva Cloud administrator may",
}


def check_role(role: str) -> str:
    """A role an administrator account may hold."""
    if role not in ROLE_TITLES:
        raise InvalidInputError(f"Unknown role {role!r}: use one of {', '.join(ROLE_TITLES)}.")
    return role


def allows(role: str, permission: Permission) -> bool:
    return permission in _GRANTS.get(role, frozenset())


def require(role: str, permission: Permission) -> None:
    if not allows(role, permission):
        title = ROLE_TITLES.get(role, role)
        article = "An" if title[:1].lower() in "aeiou" else "A"
        raise ForbiddenError(f"{article} {title} may not {_DENIALS[permission]}.")
