"""Bad input and security: ETags and concurrency (security.md §5 C1-C4).

C3 and C4 run against a real uvicorn server (``live_server``) with real threads, so requests
truly overlap in the server and in the database. No assertion depends on timing: only on which
answers were given and on the final state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import BASE
from tests.conftest import Scim
from tests.conftest import Tenant
from tests.conftest import assert_scim_error
from tests.conftest import patch_body
from tests.conftest import snapshot
from tests.conftest import user_body


@pytest.fixture
def alice(scim: Scim) -> dict[str, Any]:
    response = scim.post("/Users", json=user_body(company="Acme"))
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


def _version(etag: str) -> int:
    assert etag.startswith('W/"'), etag
    assert etag.endswith('"'), etag
    return int(etag[3:-1])


# -- C1: stale If-Match -----------------------------------------------------------------------------


def _advance(scim: Scim, user: dict[str, Any]) -> str:
    """Make the user's current version 2; return the now stale ETag of version 1."""
    stale: str = user["meta"]["version"]
    op = {"op": "replace", "path": "displayName", "value": "Second"}
    response = scim.patch(f"/Users/{user['id']}", json=patch_body(op))
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'
    return stale


@pytest.mark.parametrize(
    "if_match",
    [
        pytest.param(None, id="stale"),
        pytest.param('W/"0"', id="zero"),
        pytest.param('W/"3"', id="future"),
        pytest.param('W/"1", W/"3"', id="list-without-current"),
        pytest.param("garbage", id="garbage"),
        pytest.param('W/""', id="empty-tag"),
    ],
)
def test_c1_stale_if_match_is_412_and_changes_nothing(
    scim: Scim, alice: dict[str, Any], if_match: str | None
) -> None:
    stale = _advance(scim, alice)
    headers = {"If-Match": if_match or stale}
    before = snapshot(scim, alice["id"])
    path = f"/Users/{alice['id']}"
    attempts = [
        scim.put(path, json=user_body(alice["userName"], displayName="Put"), headers=headers),
        scim.patch(
            path,
            json=patch_body({"op": "replace", "path": "displayName", "value": "Patched"}),
            headers=headers,
        ),
        scim.patch(
            path,
            json=patch_body({"op": "replace", "path": "company", "value": "Other"}),
            headers=headers,
        ),
        # A PATCH that would change nothing is still refused on a stale ETag.
        scim.patch(
            path,
            json=patch_body({"op": "replace", "path": "displayName", "value": "Second"}),
            headers=headers,
        ),
        scim.delete(path, headers=headers),
    ]
    for response in attempts:
        assert_scim_error(response, 412)
    assert snapshot(scim, alice["id"]) == before


@pytest.mark.parametrize("if_match", ['W/"2"', '"2"', "*", 'W/"1", W/"2"'])
def test_c1_current_if_match_is_accepted(scim: Scim, alice: dict[str, Any], if_match: str) -> None:
    _advance(scim, alice)
    op = {"op": "replace", "path": "displayName", "value": "Third"}
    response = scim.patch(
        f"/Users/{alice['id']}", json=patch_body(op), headers={"If-Match": if_match}
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"3"'
    deleted = scim.delete(f"/Users/{alice['id']}", headers={"If-Match": 'W/"3"'})
    assert deleted.status_code == 204
    assert_scim_error(scim.get(f"/Users/{alice['id']}"), 404)


# -- C2: If-None-Match -----------------------------------------------------------------------------


@pytest.mark.parametrize("if_none_match", ['W/"1"', '"1"', "*", 'W/"7", W/"1"'])
def test_c2_if_none_match_current_is_304(
    scim: Scim, alice: dict[str, Any], if_none_match: str
) -> None:
    response = scim.get(f"/Users/{alice['id']}", headers={"If-None-Match": if_none_match})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == 'W/"1"'


def test_c2_if_none_match_stale_is_200_with_the_current_body(
    scim: Scim, alice: dict[str, Any]
) -> None:
    stale = _advance(scim, alice)
    response = scim.get(f"/Users/{alice['id']}", headers={"If-None-Match": stale})
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'
    assert response.json()["displayName"] == "Second"
    assert response.json()["meta"]["version"] == 'W/"2"'


# -- C3: concurrent PATCHes with If-Match form one ETag chain --------------------------------------

THREADS = 16
ATTEMPTS = 8


def _run_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[Exception] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            start.wait()
            work(index)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    assert not errors, errors


def _http(live_server: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{live_server}{BASE}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
        timeout=60,
    )


def test_c3_concurrent_if_match_patches_form_a_single_etag_chain(
    live_server: str, tenant: Tenant
) -> None:
    with _http(live_server, tenant.token) as client:
        created = client.post("/Users", json=user_body(company="Acme"))
        assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    accepted: list[tuple[int, str]] = []  # (version, value written)
    refused: list[int] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        with _http(live_server, tenant.token) as client:
            etag = created.headers["etag"]
            for attempt in range(ATTEMPTS):
                value = f"t{index}-a{attempt}"
                op = {"op": "replace", "path": "displayName", "value": value}
                response = client.patch(
                    f"/Users/{user_id}", json=patch_body(op), headers={"If-Match": etag}
                )
                if response.status_code == 200:
                    etag = response.headers["etag"]
                    assert response.json()["displayName"] == value
                    assert response.json()["meta"]["version"] == etag
                    with lock:
                        accepted.append((_version(etag), value))
                else:
                    assert_scim_error(response, 412)
                    with lock:
                        refused.append(index)
                    current = client.get(f"/Users/{user_id}")
                    assert current.status_code == 200, current.text
                    etag = current.headers["etag"]

    _run_threads(THREADS, work)
    assert len(accepted) + len(refused) == THREADS * ATTEMPTS
    versions = sorted(version for version, _ in accepted)
    # Every accepted write got its own version, with no gaps: one chain, no lost update.
    assert versions == list(range(2, 2 + len(accepted)))
    with _http(live_server, tenant.token) as client:
        final = client.get(f"/Users/{user_id}")
    assert final.status_code == 200
    assert _version(final.headers["etag"]) == 1 + len(accepted)
    assert final.json()["displayName"] == max(accepted)[1]
    assert final.json()["company"] == "Acme"


def test_c3_concurrent_patches_without_if_match_lose_no_update(
    live_server: str, tenant: Tenant
) -> None:
    with _http(live_server, tenant.token) as client:
        created = client.post("/Users", json=user_body())
        assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    applied: list[str] = []
    busy: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        with _http(live_server, tenant.token) as client:
            for attempt in range(4):
                name = f"attr{index}x{attempt}"
                op = {"op": "add", "path": name, "value": attempt}
                response = client.patch(f"/Users/{user_id}", json=patch_body(op))
                if response.status_code == 200:
                    with lock:
                        applied.append(name)
                else:  # the server may give up after its retries; then nothing was written
                    assert_scim_error(response, 503)
                    with lock:
                        busy.append(name)

    _run_threads(8, work)
    with _http(live_server, tenant.token) as client:
        final = client.get(f"/Users/{user_id}")
    document = final.json()
    assert applied
    assert all(name in document for name in applied)
    assert not any(name in document for name in busy)
    assert _version(final.headers["etag"]) == 1 + len(applied)


# -- C4: concurrent creates of one userName -----------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(("race@example.com", "race@example.com"), id="same"),
        pytest.param(("Race@example.com", "rACE@EXAMPLE.COM"), id="case"),
        pytest.param(("race@example.com", "\uff52ace@example.com"), id="width"),
    ],
)
def test_c4_concurrent_creates_of_one_user_name_give_one_201_and_one_409(
    live_server: str, tenant: Tenant, names: tuple[str, str]
) -> None:
    clients = [_http(live_server, tenant.token) for _ in range(2)]
    try:
        for round_ in range(2):
            suffix = f"{round_}"
            responses: dict[int, httpx.Response] = {}

            def work(index: int, suffix: str = suffix, responses: Any = responses) -> None:
                name = names[index].replace("@", f"{suffix}@")
                body = user_body(name, emails=[{"value": f"r{index}{suffix}@example.com"}])
                responses[index] = clients[index].post("/Users", json=body)

            _run_threads(2, work)
            statuses = sorted(r.status_code for r in responses.values())
            assert statuses == [201, 409], [r.text for r in responses.values()]
            loser = next(r for r in responses.values() if r.status_code == 409)
            assert_scim_error(loser, 409, "uniqueness")
            winner = next(r for r in responses.values() if r.status_code == 201)
            flt = f'userName eq "{names[0].replace("@", f"{suffix}@")}"'
            found = clients[0].get("/Users", params={"filter": flt}).json()
            assert found["totalResults"] == 1
            assert found["Resources"][0]["id"] == winner.json()["id"]
    finally:
        for client in clients:
            client.close()
