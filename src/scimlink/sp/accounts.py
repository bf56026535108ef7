"""The inSync account a SCIM user is: its e-mail, what the audit shows of it, its userName rule.

Pure functions over a SCIM document (no SQL): the create policy, the update rule, the preview
and the audit trail all read the account the same way.
"""

from __future__ import annotations

import re
from typing import Any

#: inSync replaces these characters of a SCIM userName with "_".
_USER_NAME_FORBIDDEN = re.compile(r"[?*/\\<>]")


def sanitise_user_name(user_name: str) -> str:
    """``? * / \\ < >`` in a SCIM-managed userName become ``_`` (inSync's Users page)."""
    return _USER_NAME_FORBIDDEN.sub("_", user_name)


def account_email(document: dict[str, Any]) -> str | None:
    """The inSync account's e-mail: the primary e-mail, else the first, else a userName that
    is an e-mail address (IdPs send the e-mail as userName: scim-servers.md §3)."""
    values = [e for e in document.get("emails") or [] if isinstance(e.get("value"), str)]
    chosen = next((e for e in values if e.get("primary") is True), values[0] if values else None)
    if chosen is not None and chosen["value"].strip():
        return str(chosen["value"]).strip()
    user_name = document.get("userName")
    return user_name if isinstance(user_name, str) and "@" in user_name else None


def account_view(document: dict[str, Any], state: str, preserved_by: str | None) -> dict[str, Any]:
    """What the inSync account holds (provisioning-engines.md §5.2): the audit's before/after."""
    return {
        "userName": document.get("userName"),
        "displayName": document.get("displayName"),
        "email": account_email(document),
        "state": state,
        "preservedBy": preserved_by,
    }
