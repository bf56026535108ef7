"""inSync's create policy through SCIM, on both databases: SCIM mappings in priority order
assign profile, storage and quota; no match, a full profile or an unhealthy storage refuse the
user with a distinct error and create nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy import select

from scimlink.errors import InvalidInputError
from scimlink.errors import NotFoundError
from scimlink.sp import profiles
from scimlink.sp import scim_mappings
from scimlink.sp.mappings import NO_MATCH
from scimlink.sp.models import SpUser
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from tests.conftest import ENTERPRISE
from tests.conftest import Scim
from tests.conftest import assert_scim_error
from tests.conftest import make_tenant
from tests.conftest import total_users
from tests.conftest import user_body


@pytest.fixture
def bare(client: TestClient, engine: Engine) -> tuple[Scim, str, Engine]:
    """A tenant with no SCIM mapping at all."""
    tenant = make_tenant(engine, allow_any=False)
    return Scim(client, tenant.token), tenant.id, engine


def _unit(engine: Engine) -> Any:
    return write_session(make_sessionmaker(engine))


def _placement(engine: Engine, user_id: str) -> tuple[str | None, str | None, int | None]:
    with read_session(make_sessionmaker(engine)) as session:
        row = session.execute(select(SpUser).where(SpUser.id == user_id)).scalar_one()
        profile = (
            profiles.find_profile(session, row.tenant_id, row.profile_id).name
            if row.profile_id
            else None
        )
        storage = (
            profiles.find_storage(session, row.tenant_id, row.storage_id).name
            if row.storage_id
            else None
        )
        return profile, storage, row.quota_gb


def test_a_new_tenant_has_a_default_profile_and_storage_and_no_mapping(
    bare: tuple[Scim, str, Engine],
) -> None:
    scim, tenant_id, engine = bare
    with _unit(engine) as session:
        assert profiles.find_profile(session, tenant_id, None).name == "Default"
        assert profiles.find_storage(session, tenant_id, None).name == "Default"
        assert scim_mappings.list_mappings(session, tenant_id) == []
    response = scim.post("/Users", json=user_body())
    assert_scim_error(response, 400, "invalidValue")
    assert response.json()["detail"] == NO_MATCH
    assert total_users(scim) == 0


def test_mappings_place_users_in_priority_order(bare: tuple[Scim, str, Engine]) -> None:
    scim, tenant_id, engine = bare
    with _unit(engine) as session:
        profiles.create_profile(session, tenant_id, "Engineering")
        profiles.create_storage(session, tenant_id, "EU", "eu-central-1")
        scim_mappings.create_mapping(session, tenant_id, "Any", any_user=True)
        scim_mappings.create_mapping(
            session,
            tenant_id,
            "Eng",
            attribute=f"{ENTERPRISE}:department",
            values="Engineering, R&D",
            profile="Engineering",
            storage="EU",
            quota_gb=250,
        )
        scim_mappings.create_mapping(
            session, tenant_id, "Acme", attribute="company", values="Acme, Inc.; Initech"
        )
        assert [m.name for m in scim_mappings.list_mappings(session, tenant_id)] == [
            "Any",
            "Eng",
            "Acme",
        ]
        scim_mappings.move_mapping(session, tenant_id, "Any", 3)
    eng = scim.post(
        "/Users",
        json=user_body(
            schemas=[*user_body()["schemas"], ENTERPRISE], **{ENTERPRISE: {"department": "R&D"}}
        ),
    )
    assert eng.status_code == 201, eng.text
    assert _placement(engine, eng.json()["id"]) == ("Engineering", "EU", 250)
    lower = scim.post(
        "/Users",
        json=user_body(
            schemas=[*user_body()["schemas"], ENTERPRISE],
            **{ENTERPRISE: {"department": "engineering"}},
        ),
    )
    assert _placement(engine, lower.json()["id"]) == (
        "Default",
        "Default",
        None,
    )  # values are case-sensitive
    acme = scim.post("/Users", json=user_body(company="Acme, Inc."))
    assert _placement(engine, acme.json()["id"])[0] == "Default"
    with _unit(engine) as session:
        assert [m.name for m in scim_mappings.list_mappings(session, tenant_id)] == [
            "Eng",
            "Acme",
            "Any",
        ]
        assert [
            s["mapping"]
            for s in scim_mappings.preview(session, tenant_id, acme.json(), existing=False)["steps"]
        ] == ["Eng", "Acme"]


def test_a_user_without_display_name_is_refused(scim: Scim) -> None:
    body = user_body()
    del body["displayName"]
    response = scim.post("/Users", json=body)
    assert_scim_error(response, 400, "invalidValue")
    assert response.json()["detail"] == NO_MATCH
    assert total_users(scim) == 0


def test_a_full_profile_and_an_unhealthy_storage_are_distinct_errors(
    bare: tuple[Scim, str, Engine],
) -> None:
    scim, tenant_id, engine = bare
    with _unit(engine) as session:
        profiles.create_profile(session, tenant_id, "Tiny", max_users=1)
        profiles.create_storage(session, tenant_id, "Flaky", "us-east-1")
        scim_mappings.create_mapping(
            session, tenant_id, "tiny", attribute="title", values="Intern", profile="Tiny"
        )
        scim_mappings.create_mapping(
            session, tenant_id, "flaky", attribute="title", values="Temp", storage="Flaky"
        )
        profiles.set_storage_health(session, tenant_id, "Flaky", False)
    assert scim.post("/Users", json=user_body(title="Intern")).status_code == 201
    full = scim.post("/Users", json=user_body(title="Intern"))
    assert_scim_error(full, 400, "invalidValue")
    assert full.json()["detail"] == "The profile 'Tiny' has reached its maximum of 1 users."
    down = scim.post("/Users", json=user_body(title="Temp"))
    assert_scim_error(down, 503)
    assert "unhealthy" in down.json()["detail"]
    assert total_users(scim) == 1
    preview = scim.post("/Users/.evaluate", json=user_body(title="Temp")).json()
    assert preview["matched"] is False
    assert preview["mapping"] == "flaky"
    assert "unhealthy" in preview["rejection"]


def test_forbidden_user_name_characters_become_underscores(scim: Scim) -> None:
    created = scim.post("/Users", json=user_body("a?b*c/d\\e<f>g@example.com"))
    assert created.status_code == 201, created.text
    assert created.json()["userName"] == "a_b_c_d_e_f_g@example.com"


def test_evaluate_endpoint_explains_without_creating(bare: tuple[Scim, str, Engine]) -> None:
    scim, tenant_id, engine = bare
    refused = scim.post("/Users/.evaluate", json=user_body())
    assert refused.status_code == 200
    assert refused.json() == {
        "outcome": "reject",
        "matched": False,
        "steps": [],
        "explanation": f"rejected: {NO_MATCH}: the tenant has no SCIM mapping",
        "rejection": f"{NO_MATCH}: the tenant has no SCIM mapping",
    }
    with _unit(engine) as session:
        scim_mappings.create_mapping(session, tenant_id, "Sales", attribute="title", values="Sales")
        scim_mappings.create_mapping(session, tenant_id, "Any", any_user=True, quota_gb=10)
    placed = scim.post("/Users/.evaluate", json=user_body(title="Engineer")).json()
    assert (placed["outcome"], placed["matched"]) == ("create", True)
    assert (placed["mapping"], placed["profile"], placed["storage"], placed["quota_gb"]) == (
        "Any",
        "Default",
        "Default",
        10,
    )
    assert placed["steps"][0] == {
        "mapping": "Sales",
        "matched": False,
        "reason": "'title' is 'Engineer', not one of ('Sales',) (case-sensitive)",
    }
    assert total_users(scim) == 0
    assert_scim_error(scim.post("/Users/.evaluate", json={"userName": "x"}), 400, "invalidSyntax")
    assert (
        Scim(scim.client, "scimlink_nope").post("/Users/.evaluate", json=user_body()).status_code
        == 401
    )


def test_mapping_rules_for_administrators(bare: tuple[Scim, str, Engine]) -> None:
    scim, tenant_id, engine = bare
    with _unit(engine) as session:
        profiles.create_profile(session, tenant_id, "Gold")
        mapping = scim_mappings.create_mapping(
            session, tenant_id, "Old", attribute="title", values="A"
        )
    created = scim.post("/Users", json=user_body(title="A")).json()
    with _unit(engine) as session:
        with pytest.raises(InvalidInputError, match="cannot change"):
            scim_mappings.edit_mapping(session, tenant_id, "Old", values="B")
        edited = scim_mappings.edit_mapping(
            session,
            tenant_id,
            mapping.id,
            name="New",
            profile="Gold",
            quota_gb=5,
            activation_email=True,
        )
        assert (edited.name, edited.quota_gb, edited.send_activation_email) == ("New", 5, True)
        for bad in (
            {"any_user": True, "attribute": "title", "values": "x"},
            {"attribute": None},
            {"attribute": "title", "values": " ; "},
            {"any_user": True, "quota_gb": -1},
        ):
            with pytest.raises(InvalidInputError):
                scim_mappings.create_mapping(session, tenant_id, "bad", **bad)
        with pytest.raises(InvalidInputError):
            scim_mappings.create_mapping(session, tenant_id, " ", any_user=True)
        with pytest.raises(NotFoundError):
            scim_mappings.create_mapping(session, tenant_id, "x", any_user=True, profile="Nope")
        with pytest.raises(InvalidInputError, match="Position"):
            scim_mappings.move_mapping(session, tenant_id, "New", 9)
        scim_mappings.delete_mapping(session, tenant_id, "New")
        with pytest.raises(NotFoundError):
            scim_mappings.find_mapping(session, tenant_id, "New")
    with _unit(engine) as session:
        stored = scim_mappings.stored_document(session, tenant_id, created["userName"].upper())
        assert stored["title"] == "A"
        assert scim_mappings.stored_document(session, tenant_id, created["id"]) == stored
        with pytest.raises(NotFoundError):
            scim_mappings.stored_document(session, tenant_id, "nobody")
    # Deleting a mapping keeps its users, with their profile and storage.
    assert scim.get(f"/Users/{created['id']}").status_code == 200
    assert _placement(engine, created["id"])[:2] == ("Default", "Default")


def test_profile_and_storage_names_are_checked(bare: tuple[Scim, str, Engine]) -> None:
    from scimlink.errors import ConflictError

    _, tenant_id, engine = bare
    with _unit(engine) as session:
        with pytest.raises(ConflictError, match="profile named 'Default'"):
            profiles.create_profile(session, tenant_id, " Default ")
        with pytest.raises(ConflictError, match="storage named 'Default'"):
            profiles.create_storage(session, tenant_id, "Default", "eu")
        with pytest.raises(InvalidInputError, match="non-empty"):
            profiles.create_storage(session, tenant_id, " ", "eu")
        with pytest.raises(InvalidInputError, match="negative"):
            profiles.create_profile(session, tenant_id, "Neg", max_users=-1)
        with pytest.raises(NotFoundError, match="No storage 'Nope'"):
            profiles.find_storage(session, tenant_id, "Nope")
