"""Users and groups of the directory.

Every change that can alter what an application should hold commits, in the same transaction,
one outbox row per affected (application, user) pair (ARCHITECTURE.md, the provisioning path).
The row names the pair, not a diff: the worker recomputes the desired state when it runs.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.errors import ConflictError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.idp import outbox
from scimlink.idp.models import DirectoryUser
from scimlink.idp.models import Group
from scimlink.idp.models import Membership
from scimlink.scim.text import fold
from scimlink.storage.base import utcnow

#: JumpCloud's property names (CSV columns, JSON keys, CLI) -> our columns.
PROPERTIES = {
    "username": "username",
    "email": "email",
    "firstname": "firstname",
    "lastname": "lastname",
    "displayname": "displayname",
    "employeeIdentifier": "employee_identifier",
    "department": "department",
    "jobTitle": "job_title",
    "company": "company",
    "location": "location",
    "costCenter": "cost_center",
    "state": "state",
}
STATES = ("activated", "suspended", "staged")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_USERNAME = re.compile(r"[A-Za-z0-9._@+-]{1,255}")
_HASHER = PasswordHasher()


def user_view(user: DirectoryUser) -> dict[str, Any]:
    """A user with JumpCloud's property names."""
    data: dict[str, Any] = {"id": user.id}
    for name, column in PROPERTIES.items():
        data[name] = getattr(user, column)
    data["attributes"] = dict(user.attributes or {})
    data["created"] = user.created.isoformat()
    return data


def _clean(changes: dict[str, Any]) -> dict[str, Any]:
    """Validate JumpCloud properties; unknown names are refused, not silently dropped."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "attributes":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str | int | float | bool | None)
                for k, v in value.items()
            ):
                raise InvalidInputError("'attributes' maps names to plain values.")
            values["attributes"] = value
            continue
        if name == "password":
            if not isinstance(value, str) or len(value) < 8:
                raise InvalidInputError("A password needs at least 8 characters.")
            values["password_hash"] = _HASHER.hash(value)
            continue
        column = PROPERTIES.get(name)
        if column is None:
            known = ", ".join(PROPERTIES)
            raise InvalidInputError(f"Unknown property {name!r}; known: {known}, attributes.")
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(f"{name!r} must be text.")
        text = value.strip() if isinstance(value, str) else None
        if column in ("username", "email") and not text:
            raise InvalidInputError(f"{name!r} is required.")
        if column == "username" and text and not _USERNAME.fullmatch(text):
            raise InvalidInputError(
                f"username {text!r} may hold only letters, digits and . _ @ + -."
            )
        if column == "email" and text and not _EMAIL.fullmatch(text):
            raise InvalidInputError(f"{text!r} is not an e-mail address.")
        if column == "state" and text not in STATES:
            raise InvalidInputError(f"state is one of {', '.join(STATES)}.")
        limit = 320 if column == "email" else 255
        if text is not None and len(text) > limit:
            raise InvalidInputError(f"{name!r} is longer than {limit} characters.")
        values[column] = text or None
    return values


def _check_unique(session: Session, values: dict[str, Any], exclude: str | None = None) -> None:
    for column, key_column, label in (
        ("username", DirectoryUser.username_key, "username"),
        ("email", DirectoryUser.email_key, "email"),
    ):
        if values.get(column) is None:
            continue
        query = select(DirectoryUser.id).where(key_column == fold(values[column]))
        if exclude is not None:
            query = query.where(DirectoryUser.id != exclude)
        if session.execute(query).first() is not None:
            raise ConflictError(f"A user with {label} {values[column]!r} already exists.")


def find_user(session: Session, ref: str) -> DirectoryUser:
    """A user by id, username or e-mail."""
    key = fold(ref.strip())
    user = session.execute(
        select(DirectoryUser).where(
            or_(
                DirectoryUser.id == ref,
                DirectoryUser.username_key == key,
                DirectoryUser.email_key == key,
            )
        )
    ).scalar_one_or_none()
    if user is None:
        raise NotFoundError(f"No user {ref!r}.")
    return user


def add_user(session: Session, properties: dict[str, Any]) -> DirectoryUser:
    values = _clean(properties)
    for required in ("username", "email"):
        if not values.get(required):
            raise InvalidInputError(f"{required!r} is required.")
    _check_unique(session, values)
    now = utcnow()
    user = DirectoryUser(
        id=str(uuid.uuid4()),
        username_key=fold(values["username"]),
        email_key=fold(values["email"]),
        created=now,
        updated=now,
        state=values.pop("state", None) or "activated",
        attributes={k: v for k, v in values.pop("attributes", {}).items() if v is not None},
        **values,
    )
    session.add(user)
    session.flush()
    return user


@dataclass(frozen=True, slots=True)
class Change:
    user: DirectoryUser
    changed: list[str]


def set_user(session: Session, ref: str, properties: dict[str, Any], cause: str) -> Change:
    """Change properties; the applications the user reaches are told (outbox)."""
    user = find_user(session, ref)
    values = _clean(properties)
    _check_unique(session, values, exclude=user.id)
    changed = []
    for column, value in values.items():
        if column == "attributes":
            merged = {**(user.attributes or {}), **value}
            merged = {k: v for k, v in merged.items() if v is not None}
            if merged != user.attributes:
                user.attributes = merged
                changed.append("attributes")
            continue
        if column in ("username", "email") and value is None:
            raise InvalidInputError(f"{column!r} cannot be empty.")
        if getattr(user, column) != value:
            setattr(user, column, value)
            changed.append(column)
    if "username" in changed:
        user.username_key = fold(user.username)
    if "email" in changed:
        user.email_key = fold(user.email)
    if changed:
        user.updated = utcnow()
        session.flush()
        outbox.enqueue_users(session, [user.id], cause)
    return Change(user, changed)


def set_state(session: Session, ref: str, state: str) -> Change:
    return set_user(session, ref, {"state": state}, f"user {state}")


def delete_user(session: Session, ref: str) -> DirectoryUser:
    """Delete the user; every application it reached deactivates it (outbox, before removal)."""
    user = find_user(session, ref)
    outbox.enqueue_users(session, [user.id], "user deleted")
    session.delete(user)
    session.flush()
    return user


def list_users(
    session: Session,
    *,
    state: str | None = None,
    group: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[DirectoryUser]:
    """Users in creation order, paged by the last id seen (an index seek at any depth)."""
    query = select(DirectoryUser)
    if state is not None:
        query = query.where(DirectoryUser.state == state)
    if group is not None:
        query = query.join(Membership, Membership.user_id == DirectoryUser.id).where(
            Membership.group_id == find_group(session, group).id
        )
    if after is not None:
        last = find_user(session, after)
        query = query.where(
            (DirectoryUser.created > last.created)
            | ((DirectoryUser.created == last.created) & (DirectoryUser.id > last.id))
        )
    query = query.order_by(DirectoryUser.created, DirectoryUser.id).limit(limit)
    return list(session.execute(query).scalars())


def count_users(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(DirectoryUser)).scalar_one())


# -- groups --------------------------------------------------------------------------------------


def find_group(session: Session, ref: str) -> Group:
    group = session.execute(
        select(Group).where(or_(Group.id == ref, Group.name_key == fold(ref.strip())))
    ).scalar_one_or_none()
    if group is None:
        raise NotFoundError(f"No group {ref!r}.")
    return group


def create_group(session: Session, name: str, description: str | None = None) -> Group:
    name = name.strip()
    if not name or len(name) > 255:
        raise InvalidInputError("A group needs a name of 1 to 255 characters.")
    if session.execute(select(Group.id).where(Group.name_key == fold(name))).first():
        raise ConflictError(f"A group named {name!r} already exists.")
    group = Group(
        id=str(uuid.uuid4()),
        name=name,
        name_key=fold(name),
        description=description,
        created=utcnow(),
    )
    session.add(group)
    session.flush()
    return group


def member_ids(session: Session, group_id: str) -> list[str]:
    return list(
        session.execute(select(Membership.user_id).where(Membership.group_id == group_id)).scalars()
    )


def delete_group(session: Session, ref: str) -> Group:
    """Members lose what the group granted: the applications it was bound to are told."""
    group = find_group(session, ref)
    members = member_ids(session, group.id)
    session.execute(delete(Membership).where(Membership.group_id == group.id))
    outbox.enqueue_after_scope_change(session, group.id, members, f"group {group.name} deleted")
    session.delete(group)
    session.flush()
    return group


def add_members(session: Session, group_ref: str, user_refs: list[str]) -> list[str]:
    group = find_group(session, group_ref)
    added: list[str] = []
    for ref in user_refs:
        user = find_user(session, ref)
        # The same user may be named twice (username and id): add it once.
        if user.id not in added and session.get(Membership, (group.id, user.id)) is None:
            session.add(Membership(group_id=group.id, user_id=user.id))
            added.append(user.id)
    session.flush()
    outbox.enqueue_after_scope_change(session, group.id, added, f"added to group {group.name}")
    return added


def remove_members(session: Session, group_ref: str, user_refs: list[str]) -> list[str]:
    group = find_group(session, group_ref)
    removed = []
    for ref in user_refs:
        user = find_user(session, ref)
        membership = session.get(Membership, (group.id, user.id))
        if membership is not None:
            session.delete(membership)
            removed.append(user.id)
    session.flush()
    outbox.enqueue_after_scope_change(
        session, group.id, removed, f"removed from group {group.name}"
    )
    return removed


def list_groups(session: Session) -> list[tuple[Group, int]]:
    counts = (
        select(Membership.group_id, func.count().label("members"))
        .group_by(Membership.group_id)
        .subquery()
    )
    rows = session.execute(
        select(Group, func.coalesce(counts.c.members, 0))
        .outerjoin(counts, counts.c.group_id == Group.id)
        .order_by(Group.name_key)
    ).all()
    return [(group, int(members)) for group, members in rows]
