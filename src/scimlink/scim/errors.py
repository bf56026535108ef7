"""SCIM errors with their HTTP status and ``scimType`` (RFC 7644 §3.12).

The protocol core raises :class:`ScimError`; the web layer renders it. Nothing here knows HTTP
frameworks, so services and normalisers can raise the exact error a client must see.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    """An error a SCIM client receives as an ``Error`` message (RFC 7644 §3.12)."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type

    def to_body(self) -> dict[str, Any]:
        """Render the RFC 7644 §3.12 error body; ``status`` is a string there."""
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status)}
        if self.scim_type:
            body["scimType"] = self.scim_type
        body["detail"] = self.detail
        return body


def invalid_syntax(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidSyntax")


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def invalid_filter(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def invalid_path(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidPath")


def mutability(detail: str) -> ScimError:
    return ScimError(400, detail, "mutability")


def no_target(detail: str) -> ScimError:
    return ScimError(400, detail, "noTarget")


def uniqueness(detail: str) -> ScimError:
    return ScimError(409, detail, "uniqueness")


def not_found(detail: str) -> ScimError:
    return ScimError(404, detail)


def unauthorized(
    detail: str = "Authentication failed: a valid bearer token is required.",
) -> ScimError:
    return ScimError(401, detail)


def precondition_failed(detail: str) -> ScimError:
    return ScimError(412, detail)


def too_large(detail: str) -> ScimError:
    return ScimError(413, detail)
