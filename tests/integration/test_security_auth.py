"""Bad input and security: bearer tokens (security.md §5 A1-A5) and tenant isolation (T1-T4, T6).

Every rejected request is also checked for its effect: a follow-up GET shows the same body and
ETag, and nothing was created. A6 (rate limits and timing) and T5 (groups) are out of scope:
the app half has no rate limiter yet and offers no groups.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import update

from scimlink.scim.errors import ScimError
from scimlink.sp import provisioning
from scimlink.sp import schema
from scimlink.sp import tenants
from scimlink.sp import tokens
from scimlink.sp.models import ScimToken
from scimlink.storage.base import utcnow
from scimlink.storage.db import make_engine
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from tests.conftest import BASE
from tests.conftest import PATCH_OP
from tests.conftest import Scim
from tests.conftest import Tenant
from tests.conftest import assert_scim_error
from tests.conftest import create_user
from tests.conftest import database_text
from tests.conftest import make_tenant
from tests.conftest import patch_body
from tests.conftest import snapshot
from tests.conftest import total_users
from tests.conftest import user_body

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


# -- helpers -------------------------------------------------------------------------------------


def _assert_401(response: Any) -> None:
    assert_scim_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer "), response.headers
    assert "scimType" not in response.json()


def _requests(user_id: str) -> list[tuple[str, str, Any]]:
    """One request per SCIM route and method: (method, path relative to the base, JSON body)."""
    return [
        ("GET", "/Users", None),
        ("GET", "/Users?filter=userName%20pr", None),
        ("POST", "/Users", user_body()),
        ("POST", "/Users/.search", {"schemas": [SEARCH], "filter": "id pr"}),
        ("GET", f"/Users/{user_id}", None),
        ("PUT", f"/Users/{user_id}", user_body("replaced@example.com")),
        (
            "PATCH",
            f"/Users/{user_id}",
            patch_body({"op": "replace", "path": "displayName", "value": "X"}),
        ),
        ("DELETE", f"/Users/{user_id}", None),
        ("GET", "/ServiceProviderConfig", None),
        ("GET", "/ResourceTypes", None),
        ("GET", "/ResourceTypes/User", None),
        ("GET", "/Schemas", None),
        ("GET", "/Groups", None),
    ]


def _raw(client: TestClient, method: str, path: str, body: Any, headers: Any = None) -> Any:
    all_headers: list[tuple[str, str]] = [("Content-Type", "application/scim+json")]
    all_headers += list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    content = json.dumps(body).encode() if body is not None else None
    return client.request(method, f"{BASE}{path}", content=content, headers=all_headers)


def _token_row(engine: Engine, token: str) -> Any:
    with read_session(make_sessionmaker(engine)) as session:
        return session.execute(
            select(ScimToken).where(ScimToken.token_hash == tokens.token_hash(token))
        ).scalar_one()


def _set_expiry(engine: Engine, token: str, expires_at: Any) -> None:
    with write_session(make_sessionmaker(engine)) as session:
        session.execute(
            update(ScimToken)
            .where(ScimToken.token_hash == tokens.token_hash(token))
            .values(expires_at=expires_at)
        )


def _bad_crc(token: str) -> str:
    """Same prefix, length and alphabet, but the checksum no longer matches the body."""
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


@pytest.fixture
def victim(scim: Scim) -> dict[str, Any]:
    """A user of the current tenant that unauthenticated requests try to reach."""
    return create_user(scim)


# -- A1: no Authorization header -------------------------------------------------------------------


def test_a1_every_route_needs_a_token_and_nothing_changes(
    client: TestClient, scim: Scim, victim: dict[str, Any]
) -> None:
    before = snapshot(scim, victim["id"])
    total = total_users(scim)
    for method, path, body in _requests(victim["id"]):
        _assert_401(_raw(client, method, path, body))
    assert snapshot(scim, victim["id"]) == before
    assert total_users(scim) == total


def test_a1_refuses_before_looking_at_the_body(client: TestClient, scim: Scim) -> None:
    """An anonymous client learns nothing from body or filter checks: 401 comes first."""
    total = total_users(scim)
    headers = {"Content-Type": "application/scim+json"}
    _assert_401(client.post(f"{BASE}/Users", content=b"{not json", headers=headers))
    _assert_401(client.post(f"{BASE}/Users", content=b"x" * (2 * 1024 * 1024), headers=headers))
    _assert_401(client.get(f"{BASE}/Users", params={"filter": "userName eq"}))
    _assert_401(client.get(f"{BASE}/Users", params={"filter": 'password eq "x"'}))
    assert total_users(scim) == total


# -- A2: wrong schemes, empty tokens, duplicate headers, query-string tokens -------------------


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(lambda t: [("Authorization", "Basic dXNlcjpwYXNzd29yZA==")], id="basic"),
        pytest.param(lambda t: [("Authorization", f"Basic {t}")], id="basic-with-token"),
        pytest.param(lambda t: [("Authorization", f"SSWS {t}")], id="ssws"),
        pytest.param(lambda t: [("Authorization", f"Token {t}")], id="token-scheme"),
        pytest.param(lambda t: [("Authorization", t)], id="no-scheme"),
        pytest.param(lambda t: [("Authorization", "Bearer")], id="bearer-no-token"),
        pytest.param(lambda t: [("Authorization", "Bearer ")], id="bearer-empty"),
        pytest.param(lambda t: [("Authorization", "Bearer    ")], id="bearer-spaces"),
        pytest.param(lambda t: [("Authorization", f"Bearer {t} {t}")], id="two-tokens-one-header"),
        pytest.param(lambda t: [("Authorization", f"Bearer {t}x")], id="token-plus-char"),
        pytest.param(lambda t: [("Authorization", f"Bearer {t[:-1]}")], id="token-minus-char"),
        pytest.param(
            lambda t: [("Authorization", f"Bearer {t}"), ("Authorization", f"Bearer {t}")],
            id="two-headers-same-token",
        ),
        pytest.param(
            lambda t: [("Authorization", f"Bearer {t}"), ("Authorization", "Bearer other")],
            id="two-headers-different",
        ),
    ],
)
def test_a2_bad_authorization_headers_get_401(
    client: TestClient, scim: Scim, victim: dict[str, Any], make_headers: Any
) -> None:
    before = snapshot(scim, victim["id"])
    total = total_users(scim)
    headers = make_headers(scim.token)
    for method, path, body in _requests(victim["id"]):
        _assert_401(_raw(client, method, path, body, headers))
    assert snapshot(scim, victim["id"]) == before
    assert total_users(scim) == total


def test_a2_query_string_tokens_are_never_accepted(
    client: TestClient, scim: Scim, victim: dict[str, Any]
) -> None:
    before = snapshot(scim, victim["id"])
    total = total_users(scim)
    for method, path, body in _requests(victim["id"]):
        separator = "&" if "?" in path else "?"
        with_query = f"{path}{separator}access_token={scim.token}"
        _assert_401(_raw(client, method, with_query, body))
        _assert_401(_raw(client, method, with_query, body, {"Authorization": "Bearer not-a-token"}))
    # The form-encoded body parameter of RFC 6750 §2.2 is not a way in either.
    _assert_401(
        client.post(
            f"{BASE}/Users/.search",
            content=f"access_token={scim.token}".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    assert snapshot(scim, victim["id"]) == before
    assert total_users(scim) == total


def test_a2_scheme_is_case_insensitive_but_the_token_is_not(scim: Scim) -> None:
    """RFC 7235 §2.1: the scheme is case-insensitive; the token is compared exactly."""
    assert scim.get("/Users", headers={"Authorization": f"bearer {scim.token}"}).status_code == 200
    assert scim.get("/Users", headers={"Authorization": f"BEARER {scim.token}"}).status_code == 200
    swapped = scim.token[: len(tokens.PREFIX)] + scim.token[len(tokens.PREFIX) :].swapcase()
    _assert_401(scim.get("/Users", headers={"Authorization": f"Bearer {swapped}"}))


# -- A3: malformed tokens never reach the database -----------------------------------------------


@pytest.fixture
def query_counter(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield statements
    event.remove(engine, "before_cursor_execute", count)


@pytest.mark.parametrize(
    "malform",
    [
        pytest.param(_bad_crc, id="bad-crc"),
        pytest.param(
            lambda t: t[: len(tokens.PREFIX)] + "!" + t[len(tokens.PREFIX) + 1 :], id="bad-alphabet"
        ),
        pytest.param(lambda t: "dsp_scim_" + t[len(tokens.PREFIX) :], id="other-prefix"),
        pytest.param(lambda t: t + "0", id="too-long"),
        pytest.param(lambda t: "x" * 10_000, id="huge"),
    ],
)
def test_a3_malformed_token_gets_401_without_any_query(
    client: TestClient,
    scim: Scim,
    victim: dict[str, Any],
    query_counter: list[str],
    malform: Any,
) -> None:
    before = snapshot(scim, victim["id"])
    total = total_users(scim)
    bad = malform(scim.token)
    assert not tokens.well_formed(bad)
    requests = _requests(victim["id"])
    query_counter.clear()
    for method, path, body in requests:
        _assert_401(_raw(client, method, path, body, {"Authorization": f"Bearer {bad}"}))
    assert query_counter == [], "a malformed token must be refused before any database query"
    # The counter does see the queries of a good token (so the assertion above can fail).
    assert scim.get("/Users").status_code == 200
    assert query_counter
    assert snapshot(scim, victim["id"]) == before
    assert total_users(scim) == total


def test_a3_bad_crc_token_is_refused_by_authenticate_without_a_query(
    engine: Engine, tenant: Tenant, query_counter: list[str]
) -> None:
    with read_session(make_sessionmaker(engine)) as session:
        query_counter.clear()
        with pytest.raises(ScimError) as refused:
            tenants.authenticate(session, _bad_crc(tenant.token))
        assert refused.value.status == 401
        assert query_counter == []


# -- A4: expired, revoked and unknown tokens are indistinguishable -----------------------------


def _reference_401(client: TestClient) -> Any:
    """The answer to a well-formed token that was never issued."""
    unknown = tokens.new_token()
    response = client.get(f"{BASE}/Users", headers={"Authorization": f"Bearer {unknown}"})
    _assert_401(response)
    return response


def _same_401(response: Any, reference: Any) -> None:
    _assert_401(response)
    assert response.content == reference.content
    assert response.headers["www-authenticate"] == reference.headers["www-authenticate"]
    assert response.headers["content-type"] == reference.headers["content-type"]


def _assert_expired_401(response: Any) -> None:
    """An expired token is told so, and when (the issue's rule, beyond security.md A4's "same
    body"): expiry is the documented silent cause of users not being provisioned, and only the
    holder of a real token can see this answer."""
    _assert_401(response)
    detail = response.json()["detail"]
    assert detail.startswith("The SCIM token expired at "), detail
    assert "generate a new one" in detail


def test_a4_expired_token_one_second_ago_is_refused_with_a_clear_detail(
    client: TestClient, engine: Engine, scim: Scim
) -> None:
    victim = create_user(scim)
    before = snapshot(scim, victim["id"])
    _set_expiry(engine, scim.token, utcnow() - timedelta(seconds=1))
    for method, path, body in _requests(victim["id"]):
        headers = {"Authorization": f"Bearer {scim.token}"}
        _assert_expired_401(_raw(client, method, path, body, headers))
    # Give the token its life back: the user was untouched by the refused requests.
    _set_expiry(engine, scim.token, utcnow() + timedelta(minutes=5))
    assert snapshot(scim, victim["id"]) == before


def test_a4_a_token_is_expired_exactly_at_expires_at(engine: Engine, tenant: Tenant) -> None:
    row = _token_row(engine, tenant.token)
    with read_session(make_sessionmaker(engine)) as session:
        just_before = row.expires_at - timedelta(microseconds=1)
        assert tenants.authenticate(session, tenant.token, now=just_before).tenant_id == tenant.id
        for now in (row.expires_at, row.expires_at + timedelta(seconds=1)):
            with pytest.raises(ScimError) as expired:
                tenants.authenticate(session, tenant.token, now=now)
            assert expired.value.status == 401
            assert "expired at" in expired.value.detail


def test_a4_expiry_at_exactly_now_over_http(client: TestClient, engine: Engine) -> None:
    """``expires_at`` already reached when the request arrives (it is <= now by then)."""
    other = make_tenant(engine)
    _set_expiry(engine, other.token, utcnow())
    response = client.get(f"{BASE}/Users", headers={"Authorization": f"Bearer {other.token}"})
    _assert_expired_401(response)


def test_a4_revoked_token_gets_the_unknown_token_answer(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    old = Scim(client, tenant.token)
    victim = create_user(old)
    before = snapshot(old, victim["id"])
    with write_session(make_sessionmaker(engine)) as session:
        new = tenants.generate_token(session, tenant.id).token
    reference = _reference_401(client)
    _same_401(old.get("/Users"), reference)
    for method, path, body in _requests(victim["id"]):
        headers = {"Authorization": f"Bearer {old.token}"}
        _same_401(_raw(client, method, path, body, headers), reference)
    fresh = Scim(client, new)
    assert snapshot(fresh, victim["id"]) == before
    # One second after the revocation, through the use case with an explicit clock.
    revoked_at = _token_row(engine, tenant.token).revoked_at
    assert revoked_at is not None
    with read_session(make_sessionmaker(engine)) as session:
        with pytest.raises(ScimError) as revoked:
            tenants.authenticate(session, tenant.token, now=revoked_at + timedelta(seconds=1))
        with pytest.raises(ScimError) as unknown:
            tenants.authenticate(session, tokens.new_token(), now=revoked_at + timedelta(seconds=1))
        assert revoked.value.to_body() == unknown.value.to_body()
        assert tenants.authenticate(session, new).tenant_id == tenant.id


def test_a4_malformed_and_missing_tokens_get_the_same_answer_too(
    client: TestClient, tenant: Tenant
) -> None:
    reference = _reference_401(client)
    _same_401(client.get(f"{BASE}/Users"), reference)
    bad = {"Authorization": f"Bearer {_bad_crc(tenant.token)}"}
    _same_401(client.get(f"{BASE}/Users", headers=bad), reference)
    _same_401(client.get(f"{BASE}/Users", headers={"Authorization": "Basic x"}), reference)


# -- A5: the token is shown once and stored only as its SHA-256 --------------------------------
# (Cache-Control: no-store on the creation response comes with the admin API; today tokens are
# issued only by the use case and the CLI.)


def test_a5_generate_token_returns_it_once_and_stores_only_its_hash(
    client: TestClient, engine: Engine, tenant: Tenant
) -> None:
    with write_session(make_sessionmaker(engine)) as session:
        issued = tenants.generate_token(session, tenant.id)
    token = issued.token
    assert tokens.well_formed(token)
    assert Scim(client, token).get("/Users").status_code == 200
    row = _token_row(engine, token)
    assert row.token_hash == hashlib.sha256(token.encode("ascii")).hexdigest()
    assert row.expires_at == issued.expires_at
    assert row.hint == f"{tokens.PREFIX}…{token[-4:]}"
    # Nothing that reads tokens back can return the plaintext.
    with read_session(make_sessionmaker(engine)) as session:
        active = tenants.active_token(session, tenant.id)
        assert active is not None
        assert token not in repr([attribute.value for attribute in inspect(active).attrs])
    dump = database_text(engine)
    assert row.token_hash in dump  # the scan does see the token table
    assert token not in dump
    assert token[len(tokens.PREFIX) :] not in dump
    assert token[len(tokens.PREFIX) : len(tokens.PREFIX) + 32] not in dump


def test_a5_token_never_reaches_the_logs(
    client: TestClient, engine: Engine, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    with write_session(make_sessionmaker(engine)) as session:
        token = tenants.generate_token(session, tenant.id).token
        newer = tenants.generate_token(session, tenant.id).token  # revokes ``token``
    good, revoked = Scim(client, newer), Scim(client, token)
    assert good.post("/Users", json=user_body()).status_code == 201
    assert good.get("/Users", params={"filter": "userName pr"}).status_code == 200
    _assert_401(revoked.get("/Users"))
    _assert_401(Scim(client, _bad_crc(newer)).get("/Users"))
    assert caplog.records, "logging was captured"
    for secret in (token, newer):
        assert secret not in caplog.text
        assert secret[len(tokens.PREFIX) :] not in caplog.text
        for record in caplog.records:
            assert secret not in record.getMessage()


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIMLINK_")}
    env["SCIMLINK_DATA_DIR"] = str(data_dir)
    executable = Path(sys.executable).parent / "scimlink"
    return subprocess.run(
        [str(executable), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a5_cli_prints_the_token_once_and_keeps_it_out_of_logs_and_database(
    tmp_path: Path,
) -> None:
    # The tenant is made in-process (each CLI start costs seconds); the token comes from the CLI.
    engine = make_engine(f"sqlite:///{tmp_path / 'sp.db'}")
    schema.upgrade(engine)
    with write_session(make_sessionmaker(engine)) as session:
        provisioning.use_scim(session, tenants.create_tenant(session, "Acme Corp").id)
    engine.dispose()
    issued = _cli(tmp_path, "sp", "token", "generate", "--tenant", "Acme Corp", "--json")
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)["token"]
    assert tokens.well_formed(token)
    assert issued.stdout.count(token) == 1
    assert token not in issued.stderr
    assert token[len(tokens.PREFIX) :] not in issued.stderr
    digest = hashlib.sha256(token.encode("ascii")).hexdigest().encode()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(digest in p.read_bytes() for p in files), "the hash is stored"
    for path in files:
        data = path.read_bytes()
        assert token.encode() not in data, path
        assert token[len(tokens.PREFIX) :].encode() not in data, path


# -- T1-T4, T6: tenant isolation -------------------------------------------------------------


@pytest.fixture
def other(client: TestClient, engine: Engine) -> Scim:
    """Tenant B, with a client bound to its own token."""
    return Scim(client, make_tenant(engine).token)


def _not_found_body(response: Any, user_id: str) -> dict[str, Any]:
    assert_scim_error(response, 404)
    body: dict[str, Any] = json.loads(response.text.replace(user_id, "ID"))
    return body


def test_t1_reading_another_tenants_user_is_404_like_a_missing_one(scim: Scim, other: Scim) -> None:
    theirs = create_user(other, user_body(title="Secret title", company="B Corp"))
    missing = str(uuid.uuid4())
    leaked = scim.get(f"/Users/{theirs['id']}")
    absent = scim.get(f"/Users/{missing}")
    assert leaked.status_code == 404  # never 403: nothing says the id exists
    assert _not_found_body(leaked, theirs["id"]) == _not_found_body(absent, missing)
    for secret in (theirs["userName"], "Secret title", "B Corp", theirs["meta"]["version"]):
        assert secret not in leaked.text
    not_modified = scim.get(f"/Users/{theirs['id']}", headers={"If-None-Match": "*"})
    assert not_modified.status_code == 404
    assert "etag" not in not_modified.headers


def test_t2_a_tenant_in_the_url_is_not_a_way_into_it(
    client: TestClient, engine: Engine, scim: Scim
) -> None:
    b = make_tenant(engine)
    theirs = create_user(Scim(client, b.token))
    for path in (
        f"/{b.id}/Users",
        f"/{b.id}/Users/{theirs['id']}",
        f"/tenants/{b.id}/Users",
    ):
        response = scim.get(path)
        assert_scim_error(response, 404)
        assert theirs["userName"] not in response.text
    # Query parameters naming the tenant are ignored: the token alone selects it.
    mine = create_user(scim)
    for params in ({"tenant": b.id}, {"tenant_id": b.id}, {"tenantId": b.id}):
        listed = scim.get("/Users", params=params).json()
        assert [u["id"] for u in listed["Resources"]] == [mine["id"]]


@pytest.mark.parametrize("if_match", [None, "*"])
def test_t3_writes_to_another_tenants_user_are_404_and_change_nothing(
    scim: Scim, other: Scim, if_match: str | None
) -> None:
    theirs = create_user(other, user_body(company="B Corp"))
    before = snapshot(other, theirs["id"])
    headers = {"If-Match": if_match} if if_match else {}
    attempts = [
        scim.patch(
            f"/Users/{theirs['id']}",
            json=patch_body({"op": "replace", "path": "active", "value": False}),
            headers=headers,
        ),
        scim.patch(
            f"/Users/{theirs['id']}",
            json=patch_body({"op": "replace", "path": "company", "value": "A Corp"}),
            headers=headers,
        ),
        scim.put(f"/Users/{theirs['id']}", json=user_body(theirs["userName"]), headers=headers),
        scim.delete(f"/Users/{theirs['id']}", headers=headers),
    ]
    for response in attempts:
        assert_scim_error(response, 404)
        assert theirs["userName"] not in response.text
    assert snapshot(other, theirs["id"]) == before
    assert total_users(scim) == 0


def test_t3_a_patch_body_cannot_retarget_another_tenants_user(scim: Scim, other: Scim) -> None:
    mine = create_user(scim)
    theirs = create_user(other)
    before = snapshot(other, theirs["id"])
    response = scim.patch(
        f"/Users/{mine['id']}",
        json={
            "schemas": [PATCH_OP],
            "id": theirs["id"],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Mine"}],
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == mine["id"]
    assert snapshot(other, theirs["id"]) == before


T4_FILTERS = [
    'userName sw ""',
    "id pr",
    "userName pr",
    'userName co "@"',
    "emails pr",
    "emails.value pr",
    'emails[type eq "work"]',
    "active eq true",
    "company pr",
    'not (id eq "x")',
    'meta.created gt "2000-01-01T00:00:00Z"',
    'meta.resourceType eq "User"',
    'id pr or userName eq "shared@example.com"',
]


def test_t4_lists_and_filters_only_see_the_own_tenant(scim: Scim, other: Scim) -> None:
    mine = {create_user(scim, user_body(company="A"))["id"] for _ in range(2)}
    for _ in range(3):
        create_user(other, user_body(company="B"))
    create_user(
        other, user_body(userName="shared@example.com", emails=[{"value": "shared@example.com"}])
    )
    for flt in T4_FILTERS:
        listed = scim.get("/Users", params={"filter": flt}).json()
        assert listed["totalResults"] == 2, flt
        assert {u["id"] for u in listed["Resources"]} == mine, flt
        searched = scim.post("/Users/.search", json={"schemas": [SEARCH], "filter": flt}).json()
        assert searched["totalResults"] == 2, flt
        assert {u["id"] for u in searched["Resources"]} == mine, flt
        paged = scim.get("/Users", params={"filter": flt, "startIndex": 2, "count": 5}).json()
        assert paged["totalResults"] == 2, flt
        assert len(paged["Resources"]) == 1, flt
        assert paged["Resources"][0]["id"] in mine, flt


def test_t4_unfiltered_and_sorted_lists_count_only_the_own_tenant(scim: Scim, other: Scim) -> None:
    mine = {create_user(scim)["id"]}
    for _ in range(3):
        create_user(other)
    for params in ({}, {"sortBy": "userName"}, {"sortBy": "emails", "sortOrder": "descending"}):
        listed = scim.get("/Users", params=params).json()
        assert listed["totalResults"] == 1
        assert {u["id"] for u in listed["Resources"]} == mine


def test_t6_the_same_user_name_in_two_tenants_is_fine(scim: Scim, other: Scim) -> None:
    name = f"same-{uuid.uuid4().hex[:8]}@example.com"
    a = scim.post("/Users", json=user_body(name))
    b = other.post("/Users", json=user_body(name.upper(), emails=[{"value": name}]))
    assert a.status_code == 201, a.text
    assert b.status_code == 201, b.text
    assert a.json()["id"] != b.json()["id"]
    for client, created in ((scim, a.json()), (other, b.json())):
        found = client.get("/Users", params={"filter": f'userName eq "{name}"'}).json()
        assert found["totalResults"] == 1
        assert found["Resources"][0]["id"] == created["id"]
    # Uniqueness still holds inside each tenant.
    assert_scim_error(scim.post("/Users", json=user_body(name)), 409, "uniqueness")
    assert_scim_error(other.post("/Users", json=user_body(name)), 409, "uniqueness")
