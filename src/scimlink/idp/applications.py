"""Applications: the catalog (a Druva preset and a generic SCIM 2.0 application), attribute
mappings, group bindings, and the Identity Management connector's settings.

The IdM token is encrypted at rest and can be changed only while IdM is deactivated (the spec:
"deactivate the IdM integration, update the token, and then reactivate"). Deactivating stops
provisioning and keeps the pending work; activating verifies the target first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.errors import ConflictError
from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.idp import directory
from scimlink.idp import outbox
from scimlink.idp import workers
from scimlink.idp.models import Application
from scimlink.idp.models import Binding
from scimlink.idp.models import Group
from scimlink.idp.models import Link
from scimlink.idp.models import Membership
from scimlink.idp.provisioning.desired import ENTERPRISE
from scimlink.idp.provisioning.desired import check_mapping
from scimlink.idp.secrets import SecretBox
from scimlink.idp.secrets import hint
from scimlink.scim.text import fold
from scimlink.storage.base import utcnow

DRUVA_URLS = {
    "cloud": "https://apis.druva.com/insync/scim",
    "govcloud": "https://govcloudapis.druva.com/insync/scim",
}


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    kind: str
    title: str
    description: str
    logo_url: str | None
    mapping: tuple[tuple[str, str], ...]
    deprovision: str


#: The spec's attribute table (username -> userName, active -> active, employeeIdentifier ->
#: externalId, displayname -> displayName), plus the e-mail Druva keeps up to date.
DRUVA = CatalogEntry(
    "druva",
    "Druva inSync",
    "Endpoint and SaaS backup: users are provisioned, updated and preserved over SCIM 2.0.",
    "https://www.druva.com/favicon.ico",
    (
        ("username", "userName"),
        ("active", "active"),
        ("employeeIdentifier", "externalId"),
        ("displayname", "displayName"),
        ("email", "emails"),
    ),
    "deactivate",
)
GENERIC = CatalogEntry(
    "scim",
    "Custom SCIM 2.0 application",
    "Any SCIM 2.0 service provider.",
    None,
    (
        ("username", "userName"),
        ("active", "active"),
        ("employeeIdentifier", "externalId"),
        ("displayname", "displayName"),
        ("firstname", "name.givenName"),
        ("lastname", "name.familyName"),
        ("email", "emails"),
        ("department", f"{ENTERPRISE}:department"),
    ),
    "deactivate",
)
CATALOG = {entry.kind: entry for entry in (DRUVA, GENERIC)}


def check_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInputError(f"{url!r} is not an http(s) URL.")
    return url


def find_app(session: Session, ref: str) -> Application:
    app = session.execute(
        select(Application).where(
            (Application.id == ref) | (Application.label_key == fold(ref.strip()))
        )
    ).scalar_one_or_none()
    if app is None:
        raise NotFoundError(f"No application {ref!r}.")
    return app


def _check_label(session: Session, label: str, *, exclude: str | None = None) -> str:
    """The stripped label, if no other application (``exclude`` is the one being edited) has it
    case-insensitively: labels name applications on the command line and in the API."""
    label = label.strip()
    if not label or len(label) > 255:
        raise InvalidInputError("An application needs a display label of 1 to 255 characters.")
    clash = select(Application.id).where(Application.label_key == fold(label))
    if exclude is not None:
        clash = clash.where(Application.id != exclude)
    if session.execute(clash).first():
        raise ConflictError(f"An application labelled {label!r} already exists.")
    return label


def _or_catalog(value: str | None, default: str | None, name: str) -> str | None:
    """An empty description or logo URL means the catalog entry's. Refused here above the
    column's 1000 characters, which PostgreSQL would refuse less readably (and SQLite not)."""
    if value and len(value) > 1000:
        raise InvalidInputError(f"The {name} is longer than 1000 characters.")
    return value or default


def add_app(
    session: Session,
    kind: str,
    label: str,
    *,
    region: str | None = None,
    base_url: str | None = None,
    description: str | None = None,
    show_in_portal: bool = True,
    logo_url: str | None = None,
) -> Application:
    entry = CATALOG.get(kind)
    if entry is None:
        raise InvalidInputError(f"Unknown catalog entry {kind!r}: use {', '.join(CATALOG)}.")
    label = _check_label(session, label)
    if kind == "druva":
        region = region or "cloud"
        if region not in DRUVA_URLS:
            raise InvalidInputError(f"Unknown region {region!r}: use cloud or govcloud.")
        base_url = base_url or DRUVA_URLS[region]
    elif region is not None:
        raise InvalidInputError("Only the Druva application has a region.")
    app = Application(
        id=str(uuid.uuid4()),
        label=label,
        label_key=fold(label),
        kind=kind,
        description=_or_catalog(description, entry.description, "description"),
        show_in_portal=show_in_portal,
        logo_url=_or_catalog(logo_url, entry.logo_url, "logo URL"),
        region=region,
        base_url=check_base_url(base_url) if base_url else None,
        attribute_map=[{"source": s, "target": t} for s, t in entry.mapping],
        deprovision=entry.deprovision,
        idm_state="inactive",
        created=utcnow(),
    )
    session.add(app)
    session.flush()
    return app


def edit_app(
    session: Session,
    ref: str,
    *,
    label: str | None = None,
    description: str | None = None,
    show_in_portal: bool | None = None,
    logo_url: str | None = None,
) -> Application:
    """Change how the application is presented; ``None`` leaves a field as it is.

    Everything is checked before anything is set, so a refused edit changes nothing. Nothing is
    queued or sent: provisioning state (IdM, links, pending work) is keyed by the application's
    id, never by its label, so renaming an active application is safe.
    """
    app = find_app(session, ref)
    entry = CATALOG[app.kind]
    changes: dict[str, Any] = {}
    if label is not None:
        changes["label"] = _check_label(session, label, exclude=app.id)
        changes["label_key"] = fold(changes["label"])
    if description is not None:
        changes["description"] = _or_catalog(description, entry.description, "description")
    if show_in_portal is not None:
        changes["show_in_portal"] = show_in_portal
    if logo_url is not None:
        changes["logo_url"] = _or_catalog(logo_url, entry.logo_url, "logo URL")
    for column, value in changes.items():
        setattr(app, column, value)
    session.flush()
    return app


def delete_app(session: Session, ref: str) -> Application:
    app = find_app(session, ref)
    session.delete(app)
    session.flush()
    return app


def list_apps(session: Session) -> list[Application]:
    return list(session.execute(select(Application).order_by(Application.label_key)).scalars())


def app_view(session: Session, app: Application) -> dict[str, Any]:
    groups = session.execute(
        select(Group.name)
        .join(Binding, Binding.group_id == Group.id)
        .where(Binding.app_id == app.id)
        .order_by(Group.name_key)
    ).scalars()
    return {
        "id": app.id,
        "label": app.label,
        "kind": app.kind,
        "description": app.description,
        "show_in_portal": app.show_in_portal,
        "logo_url": app.logo_url,
        "region": app.region,
        "idm": {
            "base_url": app.base_url,
            "token": app.token_hint,
            "token_expires_at": app.token_expires_at.isoformat() if app.token_expires_at else None,
            "state": app.idm_state,
            "detail": app.idm_detail,
            "update_method": app.update_method,
            "bulk_max_operations": app.bulk_max_operations,
        },
        "attribute_map": list(app.attribute_map),
        "groups": list(groups),
        "pending": outbox.pending(session, app.id),
        "quarantined_until": app.quarantined_until.isoformat() if app.quarantined_until else None,
        "quarantine_reason": app.quarantine_reason,
        "mass_deactivation_threshold": app.mass_deactivation_threshold,
        "max_concurrency": app.max_concurrency,
        "rate_per_second": app.rate_per_second,
        # Used only when the target offers bulk (idm.bulk_max_operations > 0).
        "bulk_creates": app.bulk_creates,
        # The two limits above are shared among the provisioning engines running now.
        "engines_alive": workers.alive(session, utcnow()),
    }


def map_attribute(session: Session, ref: str, source: str, target: str) -> Application:
    """Add (or replace) the rule that fills ``target``; later changes are re-sent to users."""
    app = find_app(session, ref)
    try:
        check_mapping(source, target)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    rules = [r for r in app.attribute_map if r["target"] != target]
    rules.append({"source": source, "target": target})
    app.attribute_map = rules
    _resend_all(session, app, f"attribute mapping {source} -> {target}")
    return app


def unmap_attribute(session: Session, ref: str, target: str) -> Application:
    app = find_app(session, ref)
    if target in ("userName", "active"):
        raise InvalidInputError(f"{target!r} is always mapped.")
    rules = [r for r in app.attribute_map if r["target"] != target]
    if len(rules) == len(app.attribute_map):
        raise NotFoundError(f"No rule fills {target!r}.")
    app.attribute_map = rules
    _resend_all(session, app, f"attribute mapping for {target} removed")
    return app


def _resend_all(session: Session, app: Application, cause: str) -> None:
    session.flush()
    linked = session.execute(select(Link.user_id).where(Link.app_id == app.id)).scalars()
    outbox.enqueue(session, app.id, list(linked), cause)


def settings(
    session: Session,
    ref: str,
    *,
    threshold: int | None = None,
    concurrency: int | None = None,
    rate: float | None = None,
    deprovision: str | None = None,
    bulk_creates: bool | None = None,
) -> Application:
    app = find_app(session, ref)
    if threshold is not None:
        if threshold < 0:
            raise InvalidInputError("The mass-deactivation threshold cannot be negative.")
        app.mass_deactivation_threshold = threshold
    if concurrency is not None:
        if not 1 <= concurrency <= 64:
            raise InvalidInputError("Concurrency is 1 to 64.")
        app.max_concurrency = concurrency
    if rate is not None:
        if not 0 < rate <= 10000:
            raise InvalidInputError("The rate limit is above 0 and at most 10000 per second.")
        app.rate_per_second = rate
    if deprovision is not None:
        if deprovision not in ("deactivate", "delete"):
            raise InvalidInputError("Deprovision is 'deactivate' or 'delete'.")
        app.deprovision = deprovision
    if bulk_creates is not None:
        app.bulk_creates = bulk_creates
    session.flush()
    return app


# -- scope: group bindings -----------------------------------------------------------------------


def bind_group(session: Session, ref: str, group_ref: str) -> int:
    """Provision the group's members: users are implicitly denied otherwise."""
    app = find_app(session, ref)
    group = directory.find_group(session, group_ref)
    if session.get(Binding, (app.id, group.id)) is None:
        session.add(Binding(app_id=app.id, group_id=group.id))
        session.flush()
    members = directory.member_ids(session, group.id)
    outbox.enqueue(session, app.id, members, f"group {group.name} bound")
    return len(members)


def unbind_group(session: Session, ref: str, group_ref: str) -> tuple[int, int]:
    """Members that no other bound group grants are deactivated; returns (members, held)."""
    app = find_app(session, ref)
    group = directory.find_group(session, group_ref)
    binding = session.get(Binding, (app.id, group.id))
    if binding is None:
        raise NotFoundError(f"Group {group.name!r} is not bound to {app.label!r}.")
    session.delete(binding)
    session.flush()
    members = directory.member_ids(session, group.id)
    held = outbox.enqueue(session, app.id, members, f"group {group.name} unbound")
    return len(members), held


def bound_user_ids(session: Session, app_id: str) -> list[str]:
    return list(
        session.execute(
            select(Membership.user_id)
            .join(Binding, Binding.group_id == Membership.group_id)
            .where(Binding.app_id == app_id)
            .distinct()
        ).scalars()
    )


# -- Identity Management -------------------------------------------------------------------------


def configure_idm(
    session: Session, ref: str, box: SecretBox, *, base_url: str | None, token: str | None
) -> Application:
    app = find_app(session, ref)
    if app.idm_state != "inactive" and token is not None:
        raise ConflictError(
            "The token can be changed only while Identity Management is deactivated: "
            f"scimlink idp app idm deactivate {app.label!r} first."
        )
    if app.idm_state != "inactive" and base_url is not None:
        raise ConflictError("Deactivate Identity Management before changing the base URL.")
    if base_url is not None:
        app.base_url = check_base_url(base_url)
    if token is not None:
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise InvalidInputError("The token key must be one word without spaces.")
        app.token_encrypted = box.encrypt(token)
        app.token_hint = hint(token)
        app.token_expires_at = None
    app.idm_detail = "configured; activate to verify and start provisioning"
    session.flush()
    return app


def credentials(app: Application, box: SecretBox) -> tuple[str, str]:
    if not app.base_url or not app.token_encrypted:
        raise ConflictError(
            f"Configure Identity Management first: scimlink idp app idm configure {app.label!r} "
            "--base-url URL --token-key TOKEN"
        )
    return app.base_url, box.decrypt(app.token_encrypted)
