"""Administering SCIM mappings: create, list, edit, move, delete, and evaluate (preview).

Only the name and the inSync configuration (profile, storage, quota, activation e-mail) of a
mapping can change once it exists; its criteria cannot (inSync's rule). New mappings go to the
bottom; deleting one keeps the users it placed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.scim.patch import document_from_payload
from scimlink.scim.text import fold
from scimlink.sp import profiles
from scimlink.sp.accounts import account_email
from scimlink.sp.accounts import sanitise_user_name
from scimlink.sp.mappings import Criteria
from scimlink.sp.mappings import Evaluation
from scimlink.sp.mappings import MappingRule
from scimlink.sp.mappings import evaluate
from scimlink.sp.mappings import parse_values
from scimlink.sp.models import Profile
from scimlink.sp.models import ScimMapping
from scimlink.sp.models import SpUser
from scimlink.sp.models import Storage
from scimlink.storage.base import utcnow


@dataclass(frozen=True, slots=True)
class Placement:
    """What a matching mapping gives a new user."""

    mapping_id: str
    profile_id: str
    storage_id: str
    quota_gb: int | None
    send_activation_email: bool
    mapping_name: str
    #: What the create policy checks, read with the mapping (one query per create).
    profile_name: str
    max_users: int | None
    storage_name: str
    storage_healthy: bool


def create_mapping(
    session: Session,
    tenant_id: str,
    name: str,
    *,
    any_user: bool = False,
    attribute: str | None = None,
    values: str | None = None,
    profile: str | None = None,
    storage: str | None = None,
    quota_gb: int | None = None,
    activation_email: bool = False,
) -> ScimMapping:
    name = name.strip()
    if not name:
        raise InvalidInputError("A SCIM mapping needs a non-empty name.")
    if any_user == bool(attribute):
        raise InvalidInputError("Choose either 'Allow any user' or one SCIM attribute with values.")
    parsed: tuple[str, ...] = ()
    if attribute:
        try:
            parsed = parse_values(values or "")
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
    if quota_gb is not None and quota_gb < 0:
        raise InvalidInputError("The quota cannot be negative.")
    last = session.execute(
        select(func.max(ScimMapping.position)).where(ScimMapping.tenant_id == tenant_id)
    ).scalar_one()
    mapping = ScimMapping(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        name=name,
        position=(last or 0) + 1,
        any_user=any_user,
        attribute=attribute.strip() if attribute else None,
        values=list(parsed),
        profile_id=profiles.find_profile(session, tenant_id, profile).id,
        storage_id=profiles.find_storage(session, tenant_id, storage).id,
        quota_gb=quota_gb,
        send_activation_email=activation_email,
        created=utcnow(),
    )
    session.add(mapping)
    session.flush()
    return mapping


def list_mappings(session: Session, tenant_id: str) -> list[ScimMapping]:
    """In priority order: the first match wins."""
    return list(
        session.execute(
            select(ScimMapping)
            .where(ScimMapping.tenant_id == tenant_id)
            .order_by(ScimMapping.position)
        ).scalars()
    )


def find_mapping(session: Session, tenant_id: str, ref: str) -> ScimMapping:
    mapping = (
        session.execute(
            select(ScimMapping).where(
                ScimMapping.tenant_id == tenant_id,
                or_(ScimMapping.id == ref, ScimMapping.name == ref),
            )
        )
        .scalars()
        .first()
    )
    if mapping is None:
        raise NotFoundError(f"No SCIM mapping {ref!r} in this tenant.")
    return mapping


def edit_mapping(session: Session, tenant_id: str, ref: str, **changes: Any) -> ScimMapping:
    """Change the name or the inSync configuration; criteria changes are refused."""
    mapping = find_mapping(session, tenant_id, ref)
    for forbidden in ("any_user", "attribute", "values"):
        if changes.get(forbidden) not in (None, False):
            raise InvalidInputError(
                "The users criteria of a SCIM mapping cannot change once it exists: "
                "create a new mapping and delete this one."
            )
    if changes.get("name") is not None:
        if not changes["name"].strip():
            raise InvalidInputError("A SCIM mapping needs a non-empty name.")
        mapping.name = changes["name"].strip()
    if changes.get("profile") is not None:
        mapping.profile_id = profiles.find_profile(session, tenant_id, changes["profile"]).id
    if changes.get("storage") is not None:
        mapping.storage_id = profiles.find_storage(session, tenant_id, changes["storage"]).id
    if changes.get("quota_gb") is not None:
        if changes["quota_gb"] < 0:
            raise InvalidInputError("The quota cannot be negative.")
        mapping.quota_gb = changes["quota_gb"]
    if changes.get("activation_email") is not None:
        mapping.send_activation_email = bool(changes["activation_email"])
    session.flush()
    return mapping


def move_mapping(session: Session, tenant_id: str, ref: str, position: int) -> list[ScimMapping]:
    """Put a mapping at ``position`` (1 = highest priority); the others keep their order."""
    ordered = list_mappings(session, tenant_id)
    mapping = find_mapping(session, tenant_id, ref)
    if not 1 <= position <= len(ordered):
        raise InvalidInputError(f"Position must be between 1 and {len(ordered)}.")
    ordered = [m for m in ordered if m.id != mapping.id]
    ordered.insert(position - 1, mapping)
    for index, item in enumerate(ordered, start=1):
        item.position = index
    session.flush()
    return ordered


def delete_mapping(session: Session, tenant_id: str, ref: str) -> None:
    """Users the mapping placed keep their profile and storage (their link is cleared)."""
    session.delete(find_mapping(session, tenant_id, ref))
    session.flush()


def rules(mappings: Sequence[Any]) -> list[MappingRule]:
    """Rules from mappings (ORM objects or rows with the same names), in priority order."""
    return [
        MappingRule(m.id, m.name, Criteria(m.any_user, m.attribute, tuple(m.values)))
        for m in mappings
    ]


#: The tenant's mappings in priority order, each with what its placement is checked against.
_CANDIDATES = (
    select(
        ScimMapping.id,
        ScimMapping.name,
        ScimMapping.any_user,
        ScimMapping.attribute,
        ScimMapping.values,
        ScimMapping.profile_id,
        ScimMapping.storage_id,
        ScimMapping.quota_gb,
        ScimMapping.send_activation_email,
        Profile.name.label("profile_name"),
        Profile.max_users,
        Storage.name.label("storage_name"),
        Storage.healthy,
    )
    .join(Profile, Profile.id == ScimMapping.profile_id)
    .join(Storage, Storage.id == ScimMapping.storage_id)
    .where(ScimMapping.tenant_id == bindparam("tenant_id"))
    .order_by(ScimMapping.position)
)


def evaluate_for(
    session: Session, tenant_id: str, document: dict[str, Any]
) -> tuple[Evaluation, Placement | None]:
    """Evaluate the tenant's mappings for a SCIM user document, as a create would.

    One Core query reads the mappings with their profiles and storages: every SCIM create
    runs this, so it costs one round trip and no ORM objects.
    """
    candidates = session.connection().execute(_CANDIDATES, {"tenant_id": tenant_id}).all()
    evaluation = evaluate(rules(candidates), document)
    if evaluation.matched is None:
        return evaluation, None
    chosen = next(c for c in candidates if c.id == evaluation.matched.id)
    return evaluation, Placement(
        chosen.id,
        chosen.profile_id,
        chosen.storage_id,
        chosen.quota_gb,
        chosen.send_activation_email,
        chosen.name,
        chosen.profile_name,
        chosen.max_users,
        chosen.storage_name,
        chosen.healthy,
    )


def placement_in(profile: Profile, storage: Storage, quota_gb: int | None) -> Placement:
    """A placement chosen by hand (a manually added user), without a mapping."""
    return Placement(
        "",
        profile.id,
        storage.id,
        quota_gb,
        False,
        "",
        profile.name,
        profile.max_users,
        storage.name,
        storage.healthy,
    )


def document_from_body(payload: dict[str, Any]) -> dict[str, Any]:
    """A SCIM create body as the create policy sees it (normalised, validated, userName
    sanitised)."""
    document = document_from_payload(payload)
    document["userName"] = sanitise_user_name(document["userName"])
    return document


def stored_document(session: Session, tenant_id: str, ref: str) -> dict[str, Any]:
    """An existing user's document, by id or userName."""
    document = session.execute(
        select(SpUser.document).where(
            SpUser.tenant_id == tenant_id, or_(SpUser.id == ref, SpUser.user_name_key == fold(ref))
        )
    ).scalar_one_or_none()
    if document is None:
        raise NotFoundError(f"No user {ref!r} in this tenant.")
    return dict(document)


def _existing(session: Session, tenant_id: str, document: dict[str, Any]) -> dict[str, Any] | None:
    """What a create of ``document`` would do to an account the tenant already has, if any."""
    email = account_email(document)
    keys = [fold(document["userName"])]
    row = session.execute(
        select(SpUser).where(SpUser.tenant_id == tenant_id, SpUser.user_name_key == keys[0])
    ).scalar_one_or_none()
    by_email = False
    if row is None and email:
        by_email = True
        row = session.execute(
            select(SpUser).where(SpUser.tenant_id == tenant_id, SpUser.email_key == fold(email))
        ).scalar_one_or_none()
    if row is None:
        return None
    profile = session.get(Profile, row.profile_id) if row.profile_id else None
    storage = session.get(Storage, row.storage_id) if row.storage_id else None
    kept = {
        "profile": profile.name if profile else None,
        "storage": storage.name if storage else None,
        "quota_gb": row.quota_gb,
    }
    if row.managed_by == "manual":
        return {
            "outcome": "adopt",
            "matched": True,
            "explanation": f"The manually added account {row.user_name!r} has this "
            f"{'e-mail' if by_email else 'userName'}: SCIM adopts it, and it keeps its profile "
            "and storage (mappings are not evaluated).",
            **kept,
        }
    if row.preserved_by == "admin":
        rejection = (
            f"The account {row.user_name!r} was preserved by an administrator and cannot be "
            "reactivated from the IdP."
        )
    elif by_email:
        rejection = f"A user with the e-mail address {email} already exists in inSync."
    elif row.state == "active" and not row.scim_deleted:
        rejection = "A user with this userName already exists."
    else:
        return {
            "outcome": "reactivate",
            "matched": True,
            "explanation": f"The account {row.user_name!r} was preserved by the IdP: it becomes "
            "Active again with its profile and storage (mappings are not evaluated).",
            **kept,
        }
    return {"outcome": "reject", "matched": False, "explanation": rejection, "rejection": rejection}


def preview(
    session: Session, tenant_id: str, document: dict[str, Any], *, existing: bool = True
) -> dict[str, Any]:
    """Beyond inSync: which mapping would place this user and why, or why it would be refused.

    ``outcome`` says what a create would do: ``create`` (placed by a mapping), ``adopt`` (a
    manual account), ``reactivate`` (an IdP-preserved account) or ``reject``. With
    ``existing=False`` (previewing an account the tenant has) only the mappings are evaluated.
    """
    account = _existing(session, tenant_id, document) if existing else None
    if account is not None:
        return account
    evaluation, placement = evaluate_for(session, tenant_id, document)
    result: dict[str, Any] = {
        "outcome": "create" if placement is not None else "reject",
        "matched": placement is not None,
        "steps": [
            {"mapping": s.mapping, "matched": s.matched, "reason": s.reason}
            for s in evaluation.steps
        ],
        "explanation": evaluation.explain(),
    }
    if placement is None:
        result["rejection"] = evaluation.rejection
        return result
    assert evaluation.matched is not None
    result.update(
        mapping=evaluation.matched.name,
        profile=placement.profile_name,
        storage=placement.storage_name,
        quota_gb=placement.quota_gb,
        send_activation_email=placement.send_activation_email,
    )
    refused = refusal(session, placement)
    if refused is not None:
        result.update(outcome="reject", matched=False, rejection=refused[1])
    return result


def refusal(session: Session, placement: Placement) -> tuple[int, str] | None:
    """Why the placement cannot take one more user now (status, detail), or None.

    A full profile is the administrator's to fix (400); an unhealthy storage may recover, so
    the IdP should retry later (503).
    """
    if placement.max_users is not None:
        used = session.execute(
            select(func.count()).where(
                SpUser.profile_id == placement.profile_id, SpUser.state == "active"
            )
        ).scalar_one()
        if used >= placement.max_users:
            return (
                400,
                f"The profile '{placement.profile_name}' has reached its maximum of "
                f"{placement.max_users} users.",
            )
    if not placement.storage_healthy:
        return (
            503,
            f"The storage '{placement.storage_name}' is unhealthy; users cannot be created on "
            "it now.",
        )
    return None
