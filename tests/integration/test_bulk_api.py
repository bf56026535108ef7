"""SCIM bulk requests on the app half (RFC 7644 §3.7), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy import select

from scimlink.sp import lifecycle
from scimlink.sp.audit import entries
from scimlink.sp.models import SpUser
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from tests.conftest import Scim
from tests.conftest import Tenant
from tests.conftest import assert_scim_error
from tests.conftest import create_user
from tests.conftest import make_tenant
from tests.conftest import patch_body
from tests.conftest import total_users
from tests.conftest import user_body

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"


def _bulk(*operations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"schemas": [BULK_REQUEST], "Operations": list(operations), **extra}


def _post(bulk_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": body}


def _results(scim: Scim, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = scim.post("/Bulk", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    answer = response.json()
    assert answer["schemas"] == [BULK_RESPONSE]
    results: list[dict[str, Any]] = answer["Operations"]
    return results


def test_service_provider_config_advertises_bulk_with_its_limits(scim: Scim) -> None:
    spc = scim.get("/ServiceProviderConfig").json()
    assert spc["bulk"] == {"supported": True, "maxOperations": 100, "maxPayloadSize": 1048576}


def test_creates_in_one_request(scim: Scim) -> None:
    names = [f"bulk-{n}@example.com" for n in range(3)]
    results = _results(
        scim, _bulk(*(_post(f"b{n}", user_body(name)) for n, name in enumerate(names)))
    )
    assert [(r["method"], r["bulkId"], r["status"]) for r in results] == [
        ("POST", "b0", "201"),
        ("POST", "b1", "201"),
        ("POST", "b2", "201"),
    ]
    for result, name in zip(results, names, strict=True):
        assert "/insync/scim/Users/" in result["location"]
        assert result["version"] == 'W/"1"'
        fetched = scim.get(result["location"].split("/insync/scim")[1])
        assert fetched.status_code == 200
        assert fetched.json()["userName"] == name
        assert fetched.headers["etag"] == result["version"]


def test_later_operations_refer_to_earlier_creates_by_bulk_id(scim: Scim) -> None:
    results = _results(
        scim,
        _bulk(
            _post("manager", user_body("boss@example.com")),
            _post(
                "report",
                user_body(
                    "report@example.com",
                    **{
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                            "manager": {"value": "bulkId:manager"}
                        }
                    },
                ),
            ),
            {
                "method": "PATCH",
                "path": "/Users/bulkId:report",
                "data": patch_body({"op": "replace", "path": "displayName", "value": "Renamed"}),
            },
            {
                "method": "PUT",
                "path": "/Users/bulkId:manager",
                "version": 'W/"1"',
                "data": user_body("boss@example.com", displayName="The Boss"),
            },
            {"method": "DELETE", "path": "/Users/bulkId:manager"},
        ),
    )
    assert [r["status"] for r in results] == ["201", "201", "200", "200", "204"]
    manager_id = results[0]["location"].rsplit("/", 1)[1]
    report = scim.get(f"/Users/{results[1]['location'].rsplit('/', 1)[1]}").json()
    extension = report["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
    assert extension["manager"]["value"] == manager_id
    assert report["displayName"] == "Renamed"
    assert results[2]["version"] == 'W/"2"'
    assert results[3]["version"] == 'W/"2"'
    assert results[4]["location"].endswith(f"/Users/{manager_id}")
    assert scim.get(f"/Users/{manager_id}").status_code == 404


def test_a_refused_operation_leaves_no_trace_and_the_others_stand(
    scim: Scim, tenant: Tenant, engine: Engine
) -> None:
    existing = create_user(scim)
    before = total_users(scim)
    results = _results(
        scim,
        _bulk(
            _post("ok1", user_body("fine-1@example.com")),
            _post("dup", user_body(existing["userName"].upper(), emails=[])),
            _post("bad", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}),
            {"method": "PATCH", "path": "/Users/no-such-user", "data": patch_body()},
            _post("ok2", user_body("fine-2@example.com")),
        ),
    )
    statuses = [r["status"] for r in results]
    assert statuses[0] == "201"
    assert statuses[4] == "201"
    assert results[1]["status"] == "409"
    assert results[1]["response"]["scimType"] == "uniqueness"
    assert results[2]["status"] == "400"
    assert results[2]["response"]["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert results[3]["status"] == "404"
    assert "location" not in results[1]
    assert "version" not in results[2]
    assert total_users(scim) == before + 2
    with read_session(make_sessionmaker(engine)) as session:
        names = set(
            session.execute(select(SpUser.user_name).where(SpUser.tenant_id == tenant.id)).scalars()
        )
    assert {"fine-1@example.com", "fine-2@example.com"} <= names
    assert len(names) == before + 2


def test_fail_on_errors_stops_after_that_many_errors(scim: Scim) -> None:
    results = _results(
        scim,
        _bulk(
            _post("a", user_body("stop-a@example.com")),
            {"method": "DELETE", "path": "/Users/missing-1"},
            {"method": "DELETE", "path": "/Users/missing-2"},
            _post("b", user_body("stop-b@example.com")),
            failOnErrors=2,
        ),
    )
    assert [r["status"] for r in results] == ["201", "404", "404"]
    lookup = scim.get("/Users", params={"filter": 'userName eq "stop-b@example.com"'}).json()
    assert lookup["totalResults"] == 0
    lookup = scim.get("/Users", params={"filter": 'userName eq "stop-a@example.com"'}).json()
    assert lookup["totalResults"] == 1


def test_operations_that_cannot_run_get_their_own_error(scim: Scim) -> None:
    user = create_user(scim)
    results = _results(
        scim,
        _bulk(
            {"method": "POST", "path": "/Users", "data": user_body()},
            _post("group", {**user_body(), "schemas": ["x"]}) | {"path": "/Groups"},
            {"method": "GET", "path": f"/Users/{user['id']}"},
            {"method": "PATCH", "path": "/Users/bulkId:nobody", "data": patch_body()},
            {"method": "PUT", "path": f"/Users/{user['id']}"},
            {"method": "PATCH", "path": "/Users", "data": patch_body()},
            {"method": "DELETE", "path": f"/Users/{user['id']}", "version": 'W/"9"'},
            {"method": "DELETE"},
            "not an object",
        ),
    )
    assert [(r["status"], r["response"].get("scimType")) for r in results] == [
        ("400", "invalidSyntax"),  # a POST needs a bulkId
        ("404", None),  # only /Users is offered
        ("400", "invalidSyntax"),  # GET is not a bulk method
        ("409", "invalidValue"),  # no earlier operation created "nobody"
        ("400", "invalidSyntax"),  # PUT without data
        ("404", None),  # PATCH names one user
        ("412", None),  # version is If-Match
        ("400", "invalidSyntax"),  # no path
        ("400", "invalidSyntax"),  # not an object
    ]
    assert "bulkId:nobody" in results[3]["response"]["detail"]
    assert scim.get(f"/Users/{user['id']}").status_code == 200


def test_requests_refused_as_a_whole(scim: Scim) -> None:
    too_many = _bulk(*(_post(f"n{n}", user_body()) for n in range(101)))
    response = scim.post("/Bulk", json=too_many)
    assert_scim_error(response, 413)
    assert "maxOperations" in response.json()["detail"]
    assert total_users(scim) == 0
    oversized = _bulk(_post("big", user_body(displayName="x" * (1024 * 1024))))
    assert_scim_error(scim.post("/Bulk", json=oversized), 413)
    assert_scim_error(scim.post("/Bulk", json={"Operations": []}), 400, "invalidSyntax")
    assert_scim_error(
        scim.post("/Bulk", json={"schemas": [BULK_REQUEST], "Operations": {}}), 400, "invalidSyntax"
    )
    twice = _bulk(_post("same", user_body()), _post("same", user_body()))
    response = scim.post("/Bulk", json=twice)
    assert_scim_error(response, 400, "invalidSyntax")
    assert "unique" in response.json()["detail"]
    for value in (0, -1, "2", True):
        assert_scim_error(
            scim.post("/Bulk", json=_bulk(_post("x", user_body()), failOnErrors=value)),
            400,
            "invalidValue",
        )
    control = _bulk(_post("x", user_body(displayName="bell\x07")))
    assert_scim_error(scim.post("/Bulk", json=control), 400, "invalidValue")
    assert total_users(scim) == 0
    assert _results(scim, _bulk()) == []


def test_bulk_needs_the_tenants_token_and_stays_in_its_tenant(scim: Scim, engine: Engine) -> None:
    other = Scim(scim.client, make_tenant(engine).token)
    theirs = create_user(other)
    anonymous = Scim(scim.client, "")
    assert_scim_error(anonymous.post("/Bulk", json=_bulk(_post("x", user_body()))), 401)
    results = _results(
        scim,
        _bulk(
            {"method": "DELETE", "path": f"/Users/{theirs['id']}"},
            {
                "method": "PATCH",
                "path": f"/Users/{theirs['id']}",
                "data": patch_body({"op": "replace", "path": "displayName", "value": "Mine"}),
            },
        ),
    )
    assert [r["status"] for r in results] == ["404", "404"]
    assert other.get(f"/Users/{theirs['id']}").json()["displayName"] == theirs["displayName"]


def test_a_refusal_the_audit_trail_keeps_is_recorded(
    scim: Scim, tenant: Tenant, engine: Engine
) -> None:
    user = create_user(scim)
    sessions = make_sessionmaker(engine)
    with write_session(sessions) as session:
        lifecycle.preserve(session, tenant.id, user["userName"])
    results = _results(
        scim,
        _bulk(
            {
                "method": "PATCH",
                "path": f"/Users/{user['id']}",
                "data": patch_body({"op": "replace", "path": "active", "value": True}),
            }
        ),
    )
    assert results[0]["status"] == "403"
    assert "preserved by an administrator" in results[0]["response"]["detail"]
    with read_session(sessions) as session:
        refused = [e for e in entries(session, tenant.id, limit=20) if e.outcome == "refused"]
    assert [(e.action, e.target_id) for e in refused] == [("user.reactivate", user["id"])]


def test_a_full_request_keeps_the_tenants_count_across_its_units_of_work(scim: Scim) -> None:
    """On PostgreSQL a request of 100 runs as two transactions of 50 (see sp.bulk); the
    tenant's count, written once per unit, follows what succeeded in both."""
    doomed = create_user(scim)
    operations = [_post(f"c{n}", user_body(f"unit-{n}@example.com")) for n in range(98)]
    operations.insert(60, _post("dup", user_body(doomed["userName"])))
    operations.insert(70, {"method": "DELETE", "path": f"/Users/{doomed['id']}"})
    results = _results(scim, _bulk(*operations))
    assert len(results) == 100
    assert [r["status"] for r in results].count("201") == 98
    assert (results[60]["status"], results[70]["status"]) == ("409", "204")
    assert total_users(scim) == 98
    listed = scim.get("/Users", params={"filter": 'userName sw "unit-"', "count": 0}).json()
    assert listed["totalResults"] == 98


def test_fail_on_errors_counts_across_units_of_work(scim: Scim) -> None:
    operations = [_post(f"e{n}", user_body(f"stop-{n}@example.com")) for n in range(100)]
    operations[10] = {"method": "DELETE", "path": "/Users/missing-a"}
    operations[55] = {"method": "DELETE", "path": "/Users/missing-b"}
    results = _results(scim, _bulk(*operations, failOnErrors=2))
    assert len(results) == 56
    assert total_users(scim) == 54
