"""The User resource (core + enterprise extension) on top of scim2-models.

Incoming payloads are validated here once; what is stored is the canonical dump, so the read path
never re-validates (ARCHITECTURE.md, performance notes). scim2-models' pydantic errors are turned
into :class:`ScimError` with the ``scimType`` that RFC 7644 §3.12 names.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from scim2_models import AnyExtension
from scim2_models import Context
from scim2_models import Email
from scim2_models import EnterpriseUser
from scim2_models import PatchOp
from scim2_models import SCIMException
from scim2_models import ScimPolicy
from scim2_models import User

from scimlink.scim.errors import ScimError
from scimlink.scim.errors import invalid_syntax
from scimlink.scim.errors import invalid_value

CORE_USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


class LenientEmail(Email):
    """O03: ``emails.value`` is a string (RFC 7643 §4.1.2 says it SHOULD follow RFC 5321).

    scim2-models types it as pydantic's ``EmailStr``, whose validator refuses special-use
    domains: Okta's own create example ``test.user@okta.local`` got a 400, and so would any
    lab tenant on ``.local``/``.test``. It also rewrote the domain's case. The value is kept as
    the IdP sent it; the published schema (``type: string``) is unchanged.
    """

    value: str | None = None


class LenientUser(User[AnyExtension]):
    """The core User with :class:`LenientEmail` values; everything else is scim2-models'."""

    # list is invariant, so mypy flags the narrower element type; nothing assigns Email lists.
    emails: list[LenientEmail] | None = None  # type: ignore[assignment]


UserModel = LenientUser[EnterpriseUser]

#: Tolerances for what real IdPs send (scim-servers.md §3): Entra's remove-with-value and
#: filtered paths on missing entries are applied as Entra means them. Unknown attributes are
#: dropped at every level: the custom top-level attributes we keep (``company``, …) are carried
#: beside the model by :mod:`scimlink.scim.patch`, never through it.
POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

_SCIM_TYPES = {
    "mutability",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidSyntax",
    "invalidFilter",
    "uniqueness",
    "tooMany",
    "sensitive",
}


def _from_validation_error(exc: ValidationError) -> ScimError:
    """Pick the first pydantic error and keep scim2-models' ``scim_<type>`` marker if any."""
    first = exc.errors(include_url=False)[0]
    kind = str(first.get("type", ""))
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "Operations")
    message = str(first.get("msg", "invalid value"))
    detail = f"{location}: {message}" if location else message
    scim_type = kind.removeprefix("scim_") if kind.startswith("scim_") else "invalidValue"
    if scim_type not in _SCIM_TYPES:
        scim_type = "invalidValue"
    return ScimError(400, detail, scim_type)


def _from_scim_exception(exc: SCIMException) -> ScimError:
    error = exc.to_error()
    status = int(error.status) if error.status else 400
    return ScimError(status, str(error.detail or exc), error.scim_type)


def validate_user(payload: dict[str, Any], *, replacement: bool = False) -> UserModel:
    """Validate a POST (or, with ``replacement``, a PUT) body (RFC 7644 §3.3, §3.5.1)."""
    if "schemas" not in payload:
        raise invalid_syntax("The request body must name its 'schemas' (RFC 7643 §3).")
    check_schemas(payload["schemas"])
    context = (
        Context.RESOURCE_REPLACEMENT_REQUEST if replacement else Context.RESOURCE_CREATION_REQUEST
    )
    try:
        return UserModel.model_validate(payload, scim_ctx=context, scim_policy=POLICY)
    except ValidationError as exc:
        raise _from_validation_error(exc) from None
    except SCIMException as exc:
        raise _from_scim_exception(exc) from None


KNOWN_SCHEMAS = {
    CORE_USER_SCHEMA.lower(): CORE_USER_SCHEMA,
    ENTERPRISE_USER_SCHEMA.lower(): ENTERPRISE_USER_SCHEMA,
}


def check_schemas(schemas: Any) -> None:
    """Only the core User schema and the enterprise extension are offered (RFC 7643 §3)."""
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise invalid_value("'schemas' must be a list of schema URNs.")
    unknown = [s for s in schemas if s.lower() not in KNOWN_SCHEMAS]
    if unknown:
        raise invalid_value(
            f"Unknown schema {unknown[0]!r}: this service offers {', '.join(KNOWN_SCHEMAS.values())}."
        )


def load_user(document: dict[str, Any]) -> UserModel:
    """Rebuild a model from a stored canonical document (already validated once)."""
    return UserModel.model_validate(document, scim_policy=POLICY)


def dump_user(user: UserModel) -> dict[str, Any]:
    """Canonical stored form: what a client may read, without ``id``/``meta`` and never the password."""
    document = user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, scim_policy=POLICY)
    document.pop("id", None)
    document.pop("meta", None)
    document.pop("password", None)
    return document


def check_patch_schemas(payload: dict[str, Any]) -> None:
    """A PATCH body is a PatchOp message (RFC 7644 §3.5.2)."""
    schemas = payload.get("schemas")
    if schemas is None:
        raise invalid_syntax("The PATCH body must name the PatchOp schema (RFC 7644 §3.5.2).")
    if not isinstance(schemas, list) or PATCH_OP_SCHEMA not in schemas:
        raise invalid_value(f"A PATCH body names the schema {PATCH_OP_SCHEMA}.")


def apply_patch(user: UserModel, payload: dict[str, Any]) -> bool:
    """Apply a PatchOp atomically to ``user`` (RFC 7644 §3.5.2); returns whether it changed.

    scim2-models applies operations in order on the model; callers patch a fresh copy, so a
    failing operation leaves the stored resource untouched (all or nothing).
    """
    try:
        patch = PatchOp[UserModel].model_validate(
            payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=POLICY
        )
        return bool(patch.patch(user, scim_policy=POLICY))
    except ValidationError as exc:
        raise _from_validation_error(exc) from None
    except SCIMException as exc:
        raise _from_scim_exception(exc) from None
