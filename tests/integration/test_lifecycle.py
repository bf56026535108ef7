"""inSync's Active <-> Preserved lifecycle through SCIM and the administrator's actions, on both
databases (provisioning-engines.md §5; the spec's "Important Considerations")."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy import select

from scimlink.errors import ConflictError
from scimlink.errors import NotFoundError
from scimlink.sp import lifecycle
from scimlink.sp import profiles
from scimlink.sp import scim_mappings
from scimlink.sp.models import SpUser
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import write_session
from tests.conftest import Scim
from tests.conftest import Tenant
from tests.conftest import assert_scim_error
from tests.conftest import create_user
from tests.conftest import patch_body
from tests.conftest import total_users
from tests.conftest import user_body


def _row(engine: Engine, user_id: str) -> Any:
    with write_session(make_sessionmaker(engine)) as session:
        row = session.execute(select(SpUser).where(SpUser.id == user_id)).scalar_one()
        return (row.state, row.preserved_by, row.scim_deleted, row.profile_id, row.storage_id)


def _deactivate(scim: Scim, user_id: str) -> Any:
    return scim.patch(
        f"/Users/{user_id}", json=patch_body({"op": "replace", "path": "active", "value": False})
    )


def test_deactivation_preserves_and_reactivation_makes_the_same_account_active(
    scim: Scim, engine: Engine
) -> None:
    user = create_user(scim)
    active = _row(engine, user["id"])
    assert active[:3] == ("active", None, False)
    assert _deactivate(scim, user["id"]).json()["active"] is False
    assert _row(engine, user["id"])[:2] == ("preserved", "idp")
    assert scim.get("/Users", params={"filter": "active eq false"}).json()["totalResults"] == 1
    again = scim.patch(
        f"/Users/{user['id']}", json=patch_body({"op": "replace", "value": {"active": True}})
    )
    assert again.json()["active"] is True
    assert _row(engine, user["id"]) == active  # same account, same profile and storage


def test_delete_preserves_the_account_and_scim_answers_404(scim: Scim, engine: Engine) -> None:
    user = create_user(scim)
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert scim.get(f"/Users/{user['id']}").status_code == 404
    assert scim.delete(f"/Users/{user['id']}").status_code == 404
    assert (
        scim.get("/Users", params={"filter": f'userName eq "{user["userName"]}"'}).json()[
            "totalResults"
        ]
        == 0
    )
    assert total_users(scim) == 0
    assert _row(engine, user["id"])[:3] == ("preserved", "idp", True)
    # Re-provisioning (POST of the same userName) makes the same account Active again.
    again = scim.post("/Users", json=user_body(user["userName"], displayName="Back"))
    assert again.status_code == 201, again.text
    assert again.json()["id"] == user["id"]
    assert again.json()["displayName"] == "Back"
    assert _row(engine, user["id"])[:3] == ("active", None, False)
    assert total_users(scim) == 1


def test_post_of_a_deactivated_user_name_reactivates_it(scim: Scim, engine: Engine) -> None:
    user = create_user(scim)
    _deactivate(scim, user["id"])
    again = scim.post("/Users", json=user_body(user["userName"].upper()))
    assert again.status_code == 201
    assert again.json()["id"] == user["id"]
    assert again.json()["active"] is True
    duplicate = scim.post("/Users", json=user_body(user["userName"]))
    assert_scim_error(duplicate, 409, "uniqueness")


def test_an_admin_preserved_user_cannot_be_reactivated_from_the_idp(
    scim: Scim, tenant: Tenant, engine: Engine
) -> None:
    user = create_user(scim)
    with write_session(make_sessionmaker(engine)) as session:
        account = lifecycle.preserve(session, tenant.id, user["userName"])
    assert (account.state, account.preserved_by) == ("preserved", "admin")
    fetched = scim.get(f"/Users/{user['id']}").json()
    assert fetched["active"] is False
    for attempt in (
        scim.patch(
            f"/Users/{user['id']}",
            json=patch_body({"op": "replace", "path": "active", "value": True}),
        ),
        scim.put(f"/Users/{user['id']}", json={**user_body(user["userName"]), "active": True}),
        scim.post("/Users", json=user_body(user["userName"])),
    ):
        assert_scim_error(attempt, 403)
        assert "preserved by an administrator" in attempt.json()["detail"]
    assert _row(engine, user["id"])[:2] == ("preserved", "admin")
    # Other updates still reach the account; it stays preserved.
    renamed = scim.patch(
        f"/Users/{user['id']}",
        json=patch_body({"op": "replace", "path": "displayName", "value": "Kept"}),
    )
    assert renamed.status_code == 200
    assert renamed.json()["active"] is False
    # The IdP deleting it keeps it admin-preserved; only an administrator activates it.
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert _row(engine, user["id"])[:3] == ("preserved", "admin", True)
    with write_session(make_sessionmaker(engine)) as session:
        assert lifecycle.activate(session, tenant.id, user["id"]).state == "active"
        assert lifecycle.license_counts(session, tenant.id) == {"active": 1, "preserved": 0}
        lifecycle.delete(session, tenant.id, user["id"])
        with pytest.raises(NotFoundError):
            lifecycle.activate(session, tenant.id, user["id"])


def test_preserved_users_release_their_license(scim: Scim, tenant: Tenant, engine: Engine) -> None:
    with write_session(make_sessionmaker(engine)) as session:
        profiles.create_profile(session, tenant.id, "Two", max_users=1)
        scim_mappings.create_mapping(
            session, tenant.id, "two", attribute="title", values="T", profile="Two"
        )
        scim_mappings.move_mapping(session, tenant.id, "two", 1)
    first = create_user(scim, user_body(title="T"))
    assert scim.post("/Users", json=user_body(title="T")).status_code == 400
    _deactivate(scim, first["id"])
    assert scim.post("/Users", json=user_body(title="T")).status_code == 201
    with write_session(make_sessionmaker(engine)) as session:
        used = {p.name: n for p, n in profiles.list_profiles(session, tenant.id)}
        assert used["Two"] == 1
        accounts = lifecycle.list_accounts(session, tenant.id, state="preserved")
        assert [a.id for a in accounts] == [first["id"]]


def test_a_user_created_inactive_starts_preserved(scim: Scim, engine: Engine) -> None:
    user = create_user(scim, user_body(active=False))
    assert _row(engine, user["id"])[:2] == ("preserved", "idp")
    assert user["active"] is False


def test_an_account_added_by_hand_meets_the_same_profile_and_storage_checks(
    tenant: Tenant, engine: Engine
) -> None:
    """A manual account is placed by the administrator, not by a SCIM mapping, and is refused
    as a SCIM create would be: a full profile, an unhealthy storage."""
    with write_session(make_sessionmaker(engine)) as session:
        profiles.create_profile(session, tenant.id, "Tiny", max_users=1)
        profiles.create_storage(session, tenant.id, "Flaky", "us-east-1")
        profiles.set_storage_health(session, tenant.id, "Flaky", False)
        lifecycle.add_account(session, tenant.id, "first@example.com", "First", profile="Tiny")
    sessions = make_sessionmaker(engine)
    with (
        pytest.raises(ConflictError, match="'Tiny' has reached its maximum of 1 users"),
        write_session(sessions) as session,
    ):
        lifecycle.add_account(session, tenant.id, "second@example.com", "Two", profile="Tiny")
    with (
        pytest.raises(ConflictError, match="storage 'Flaky' is unhealthy"),
        write_session(sessions) as session,
    ):
        lifecycle.add_account(session, tenant.id, "third@example.com", "Three", storage="Flaky")
    with write_session(make_sessionmaker(engine)) as session:
        emails = session.execute(select(SpUser.user_name).where(SpUser.tenant_id == tenant.id))
        assert list(emails.scalars()) == ["first@example.com"]
