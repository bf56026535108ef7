"""Running a SCIM bulk request (RFC 7644 §3.7) as one unit of work of one tenant.

Each operation runs in its own savepoint: a refused operation leaves no trace but its error
(and, for a refusal the audit trail keeps, that record), the others stand, and everything that
succeeded commits once at the end. One commit for many users is why a directory sends bulk.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DataError

from scimlink.scim import bulk
from scimlink.scim.errors import ScimError
from scimlink.scim.errors import invalid_value
from scimlink.sp.audit import RefusedChange
from scimlink.sp.audit import record
from scimlink.sp.users import UserService

#: Advertised in ServiceProviderConfig (``bulk.maxOperations``).
MAX_OPERATIONS = 100


def run(service: UserService, request: bulk.BulkRequest, users_url: str) -> list[dict[str, Any]]:
    """Apply the operations in order; one result each, until ``failOnErrors`` errors."""
    created: dict[str, str] = {}
    results: list[dict[str, Any]] = []
    errors = 0
    for op in request.operations:
        if request.fail_on_errors is not None and errors >= request.fail_on_errors:
            break
        savepoint = service.session.begin_nested()
        try:
            if op.error is not None:
                raise op.error
            entry = _apply(service, op, created, users_url)
        except ScimError as error:
            savepoint.rollback()
            if isinstance(error, RefusedChange) and service.actor is not None:
                record(service.session, service.tenant_id, service.actor, error.change)
            entry = bulk.result(op, error.status, error=error)
            errors += 1
        except DataError:
            savepoint.rollback()
            refused = invalid_value("A value is too long or otherwise cannot be stored.")
            entry = bulk.result(op, refused.status, error=refused)
            errors += 1
        else:
            savepoint.commit()
        results.append(entry)
    return results


def _apply(
    service: UserService, op: bulk.Operation, created: dict[str, str], users_url: str
) -> dict[str, Any]:
    if op.method == "POST":
        assert op.data is not None
        assert op.bulk_id is not None
        user = service.create(bulk.resolve(op.data, created))
        created[op.bulk_id] = user.id
        return bulk.result(op, 201, location=f"{users_url}/{user.id}", version=user.etag)
    user_id = bulk.target_id(op, created)
    location = f"{users_url}/{user_id}"
    if op.method == "DELETE":
        service.delete(user_id, op.version)
        return bulk.result(op, 204, location=location)
    assert op.data is not None
    data = bulk.resolve(op.data, created)
    if op.method == "PUT":
        user = service.replace(user_id, data, op.version)
    else:
        user = service.patch(user_id, data, op.version)
    return bulk.result(op, 200, location=location, version=user.etag)
