"""Bulk requests and responses (RFC 7644 §3.7), free of HTTP and storage.

A bulk request is read whole before anything runs: problems of the request itself (schema,
shape, too many operations, a bulkId used twice) refuse it; problems of one operation (a bad
method or path, a POST without bulkId, a reference to a bulkId no earlier operation created)
become that operation's error and the others still run (§3.7.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from scimlink.scim.errors import ScimError
from scimlink.scim.errors import invalid_syntax
from scimlink.scim.errors import invalid_value
from scimlink.scim.errors import not_found
from scimlink.scim.errors import too_large

BULK_REQUEST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
METHODS = ("POST", "PUT", "PATCH", "DELETE")
_REFERENCE = "bulkId:"
_USER_PATH = re.compile(r"^/Users/([^/?#]+)$")


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of a bulk request, as sent (``error`` set when it cannot run at all)."""

    index: int
    method: str
    path: str
    bulk_id: str | None
    version: str | None
    data: dict[str, Any] | None
    error: ScimError | None = None


@dataclass(frozen=True, slots=True)
class BulkRequest:
    operations: list[Operation]
    #: Errors after which the rest is not attempted (§3.7.3); ``None``: attempt everything.
    fail_on_errors: int | None


def parse_request(body: dict[str, Any], *, max_operations: int) -> BulkRequest:
    """Read a bulk request; raises :class:`ScimError` when the request as a whole is refused."""
    if BULK_REQUEST_SCHEMA not in (body.get("schemas") or []):
        raise invalid_syntax(f"A bulk request names the schema {BULK_REQUEST_SCHEMA}.")
    raw = body.get("Operations")
    if not isinstance(raw, list):
        raise invalid_syntax("A bulk request holds its operations in an Operations array.")
    if len(raw) > max_operations:
        # §3.7.4: the limit exceeded is named in the error.
        raise too_large(
            f"The bulk request holds {len(raw)} operations; at most {max_operations} are "
            "accepted (maxOperations)."
        )
    fail_on_errors = body.get("failOnErrors")
    if fail_on_errors is not None and (
        not isinstance(fail_on_errors, int)
        or isinstance(fail_on_errors, bool)
        or fail_on_errors < 1
    ):
        raise invalid_value("failOnErrors must be a positive integer.")
    operations = [_operation(index, item) for index, item in enumerate(raw)]
    seen: dict[str, int] = {}
    for op in operations:
        if op.bulk_id is None:
            continue
        if op.bulk_id in seen:
            raise invalid_syntax(
                f"bulkId {op.bulk_id!r} is used by operations {seen[op.bulk_id] + 1} and "
                f"{op.index + 1}; a bulkId must be unique within a request."
            )
        seen[op.bulk_id] = op.index
    return BulkRequest(operations, fail_on_errors)


def _operation(index: int, item: Any) -> Operation:
    if not isinstance(item, dict):
        return Operation(
            index, "", "", None, None, None, invalid_syntax("Each operation is a JSON object.")
        )
    method = item.get("method")
    method = method.upper() if isinstance(method, str) else ""
    path = item.get("path")
    path = path if isinstance(path, str) else ""
    bulk_id = item.get("bulkId") if isinstance(item.get("bulkId"), str) else None
    version = item.get("version") if isinstance(item.get("version"), str) else None
    data = item.get("data") if isinstance(item.get("data"), dict) else None
    op = Operation(index, method, path, bulk_id, version, data)
    refused = _check(op, item)
    return Operation(index, method, path, bulk_id, version, data, refused) if refused else op


def _check(op: Operation, item: dict[str, Any]) -> ScimError | None:
    if op.method not in METHODS:
        return invalid_syntax(
            f"Operation {op.index + 1}: method must be one of {', '.join(METHODS)}."
        )
    if not op.path:
        return invalid_syntax(f"Operation {op.index + 1}: a path is required.")
    if op.method == "POST":
        if not op.bulk_id:
            return invalid_syntax(
                f"Operation {op.index + 1}: a POST needs a bulkId (RFC 7644 §3.7)."
            )
        if op.path != "/Users":
            return not_found(f"Operation {op.index + 1}: only /Users is offered, not {op.path}.")
    elif _USER_PATH.match(op.path) is None:
        return not_found(
            f"Operation {op.index + 1}: {op.method} names one user, as /Users/{{id}}, "
            f"not {op.path}."
        )
    if op.method != "DELETE" and op.data is None:
        return invalid_syntax(f"Operation {op.index + 1}: {op.method} needs a data object.")
    if "data" in item and op.data is None:
        return invalid_syntax(f"Operation {op.index + 1}: data must be a JSON object.")
    return None


def target_id(op: Operation, created: dict[str, str]) -> str:
    """The user an operation names, with a ``bulkId:`` reference resolved (§3.7.2)."""
    match = _USER_PATH.match(op.path)
    assert match is not None
    return str(resolve(match.group(1), created))


def resolve(value: Any, created: dict[str, str]) -> Any:
    """``value`` with every ``bulkId:<id>`` string replaced by the id that POST created.

    A reference to a bulkId that no earlier operation of this request created cannot be
    resolved: 409, as §3.7.2 has for references the service provider cannot settle.
    """
    if isinstance(value, str) and value.startswith(_REFERENCE):
        bulk_id = value.removeprefix(_REFERENCE)
        if bulk_id not in created:
            raise ScimError(
                409,
                f"{value} refers to no resource created earlier in this request.",
                "invalidValue",
            )
        return created[bulk_id]
    if isinstance(value, dict):
        return {key: resolve(item, created) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, created) for item in value]
    return value


def result(
    op: Operation,
    status: int,
    *,
    location: str | None = None,
    version: str | None = None,
    error: ScimError | None = None,
) -> dict[str, Any]:
    """One operation's entry in the response (§3.7.3); ``status`` is a string there."""
    entry: dict[str, Any] = {"method": op.method or None, "status": str(status)}
    if op.bulk_id is not None:
        entry["bulkId"] = op.bulk_id
    if location is not None:
        entry["location"] = location
    if version is not None:
        entry["version"] = version
    if error is not None:
        entry["response"] = error.to_body()
    return entry


def response(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": [BULK_RESPONSE_SCHEMA], "Operations": results}
