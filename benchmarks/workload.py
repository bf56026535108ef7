"""The users and requests of the load benchmark, shared by every server under test.

Nothing here imports scimlink, so the scim2-server process loads only what it needs.
"""

from __future__ import annotations

from typing import Any

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#: The number of user 0: the only part of a payload that differs between users.
PLACEHOLDER = "0000000"


def number(index: int) -> str:
    """The seven-digit number that makes user ``index`` unique."""
    return f"{index:07d}"


def payload(index: int, prefix: str = "user") -> dict[str, Any]:
    """A typical IdP create request (core + enterprise extension, one work e-mail)."""
    n = number(index)
    return {
        "schemas": [CORE, ENTERPRISE],
        "userName": f"{prefix}{n}@bench.example",
        "externalId": f"ext-{prefix}-{n}",
        "name": {"givenName": f"Given{n}", "familyName": f"Family{n}"},
        "displayName": f"Bench User {n}",
        "active": True,
        "emails": [{"value": f"{prefix}{n}@bench.example", "type": "work", "primary": True}],
        ENTERPRISE: {"employeeNumber": n, "department": "Engineering"},
    }


def user_name(index: int, prefix: str = "user") -> str:
    return f"{prefix}{number(index)}@bench.example"


def patch_display_name(value: str) -> dict[str, Any]:
    """The PATCH an IdP sends when a user's display name changes."""
    return {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "displayName", "value": value}],
    }
