"""Alembic history of the app half: upgrades keep data (the 0002 counter is back-filled) and
downgrades work, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import text

from scimlink.idp import schema as idp_schema
from scimlink.idp.models import IdpBase
from scimlink.sp import schema
from scimlink.sp.models import SpBase
from scimlink.storage.db import make_engine
from tests.conftest import Scim
from tests.conftest import user_body


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'migrate.db'}")
        yield engine
        engine.dispose()
        return
    base = request.getfixturevalue("postgres_url")
    head, _, _ = base.rpartition("/")
    name = f"scimlink_migrate_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{head}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(f"{head}/{name}")
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_backfills_the_user_counter_and_downgrade_round_trips(blank_engine: Engine) -> None:
    schema.upgrade(blank_engine, "0001")
    with blank_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sp_tenants (id, name, region, created) VALUES ('t1', 'one', 'cloud', :now)"
            ),
            {"now": "2026-01-01 00:00:00+00:00"},
        )
        for n in range(3):
            connection.execute(
                text(
                    "INSERT INTO sp_users (id, tenant_id, user_name, user_name_key, active, created,"
                    " last_modified, version, document) VALUES (:id, 't1', :u, :u, true, :now, :now, 1, '{}')"
                ),
                {"id": f"u{n}", "u": f"user{n}", "now": "2026-01-01 00:00:00+00:00"},
            )
    schema.upgrade(blank_engine)
    with blank_engine.connect() as connection:
        assert connection.execute(text("SELECT user_count FROM sp_tenants")).scalar_one() == 3
    schema.downgrade(blank_engine, "0001")
    assert "user_count" not in {c["name"] for c in inspect(blank_engine).get_columns("sp_tenants")}
    schema.upgrade(blank_engine)
    assert "user_count" in {c["name"] for c in inspect(blank_engine).get_columns("sp_tenants")}


def test_0005_keeps_scim_tenants_on_scim_and_derives_each_account_email(
    blank_engine: Engine,
) -> None:
    """Tenants with a token were provisioning over SCIM; the account e-mail comes from the
    primary e-mail, else a userName that is one; of two accounts sharing one, the older keeps it."""
    schema.upgrade(blank_engine, "0004")
    now = {"now": "2026-01-01 00:00:00+00:00"}
    with blank_engine.begin() as connection:
        for tenant in ("scim", "manual"):
            connection.execute(
                text(
                    "INSERT INTO sp_tenants (id, name, region, created, user_count)"
                    " VALUES (:t, :t, 'cloud', :now, 0)"
                ),
                {"t": tenant, **now},
            )
        connection.execute(
            text(
                "INSERT INTO sp_scim_tokens (tenant_id, token_hash, hint, created, expires_at)"
                " VALUES ('scim', 'h', 'x', :now, :now)"
            ),
            now,
        )
        users = [
            ("a", "alice", "alice@work.example"),
            ("b", "bob@example.com", None),
            ("c", "carol", "ALICE@work.example"),
        ]
        for n, (user_id, user_name, email) in enumerate(users, start=1):
            connection.execute(
                text(
                    "INSERT INTO sp_users (pk, id, tenant_id, user_name, user_name_key, active,"
                    " created, last_modified, version, document) VALUES"
                    " (:pk, :id, 'scim', :u, :u, true, :now, :now, 1, '{}')"
                ),
                {"pk": n, "id": user_id, "u": user_name, **now},
            )
            if email:
                connection.execute(
                    text(
                        'INSERT INTO sp_user_emails (user_pk, tenant_id, value_key, "primary")'
                        " VALUES (:pk, 'scim', :v, true)"
                    ),
                    {"pk": n, "v": email.lower()},
                )
    schema.upgrade(blank_engine)
    with blank_engine.connect() as connection:
        methods = dict(connection.execute(text("SELECT id, provisioning FROM sp_tenants")).all())
        keys = dict(connection.execute(text("SELECT id, email_key FROM sp_users")).all())
        managed = set(connection.execute(text("SELECT managed_by FROM sp_users")).scalars())
    assert methods == {"scim": "scim", "manual": "manual"}
    assert keys == {"a": "alice@work.example", "b": "bob@example.com", "c": None}
    assert managed == {"scim"}
    schema.downgrade(blank_engine, "0004")
    assert "sp_audit" not in inspect(blank_engine).get_table_names()
    schema.upgrade(blank_engine)


def test_unfiltered_total_follows_creates_and_deletes(scim: Scim) -> None:
    ids = [scim.post("/Users", json=user_body()).json()["id"] for _ in range(5)]
    assert scim.post("/Users", json=user_body()).status_code == 201
    scim.delete(f"/Users/{ids[0]}")
    scim.delete(f"/Users/{ids[0]}")  # a second delete is a 404 and changes nothing
    unfiltered = scim.get("/Users", params={"count": 0}).json()["totalResults"]
    counted = scim.get("/Users", params={"filter": "id pr", "count": 0}).json()["totalResults"]
    assert unfiltered == counted == 5


def _insert_application(connection: Connection, now: dict[str, str]) -> None:
    """Application ``a1`` as the directory's first migrations define it."""
    connection.execute(
        text(
            "INSERT INTO idp_applications (id, label, label_key, kind, show_in_portal,"
            " idm_state, update_method, deprovision, attribute_map,"
            " mass_deactivation_threshold, max_concurrency, rate_per_second, created)"
            " VALUES ('a1', 'App', 'app', 'druva', true, 'active', 'patch', 'deactivate',"
            " '[]', 3, 4, 20.0, :now)"
        ),
        now,
    )


def test_directory_0002_keeps_released_outbox_rows_released(blank_engine: Engine) -> None:
    idp_schema.upgrade(blank_engine, "0001")
    now = {"now": "2026-01-01 00:00:00+00:00"}
    with blank_engine.begin() as connection:
        _insert_application(connection, now)
        for user, held in (("held", True), ("released", False)):
            connection.execute(
                text(
                    "INSERT INTO idp_outbox (app_id, user_id, cause, generation, due_at,"
                    " attempts, held, created) VALUES ('a1', :u, 'c', 1, :now, 0, :held, :now)"
                ),
                {**now, "u": user, "held": held},
            )
    idp_schema.upgrade(blank_engine)
    with blank_engine.connect() as connection:
        approved = dict(connection.execute(text("SELECT user_id, approved FROM idp_outbox")).all())
    assert {user: bool(value) for user, value in approved.items()} == {
        "held": False,
        "released": True,
    }
    assert "idp_workers" in inspect(blank_engine).get_table_names()
    idp_schema.downgrade(blank_engine, "0001")
    columns = {c["name"] for c in inspect(blank_engine).get_columns("idp_outbox")}
    assert "approved" not in columns
    assert "idp_workers" not in inspect(blank_engine).get_table_names()
    idp_schema.upgrade(blank_engine)


def test_directory_0005_adds_bulk_settings_and_keeps_every_applications_rows(
    blank_engine: Engine,
) -> None:
    """The new columns are added in place: a table copy would cascade (SQLite drops the old
    table) and empty the outbox, links and bindings of every application."""
    idp_schema.upgrade(blank_engine, "0004")
    now = {"now": "2026-01-01 00:00:00+00:00"}
    with blank_engine.begin() as connection:
        _insert_application(connection, now)
        connection.execute(
            text(
                "INSERT INTO idp_outbox (app_id, user_id, cause, generation, due_at, attempts,"
                " held, approved, created) VALUES ('a1', 'u1', 'c', 1, :now, 0, false, true, :now)"
            ),
            now,
        )
    for _ in range(2):
        idp_schema.upgrade(blank_engine)
        with blank_engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM idp_outbox")).scalar_one() == 1
            row = connection.execute(
                text(
                    "SELECT bulk_max_operations, bulk_max_payload, bulk_creates"
                    " FROM idp_applications"
                )
            ).one()
        assert (row[0], row[1], bool(row[2])) == (0, 0, False)
        idp_schema.downgrade(blank_engine, "0004")
        columns = {c["name"] for c in inspect(blank_engine).get_columns("idp_applications")}
        assert "bulk_creates" not in columns
        with blank_engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM idp_outbox")).scalar_one() == 1


@pytest.mark.parametrize("half", ["sp", "idp"])
def test_the_models_match_the_migrations(blank_engine: Engine, half: str) -> None:
    """Tables, columns and indexes as the ORM declares them are what the migrations build,
    so a model change without its migration (or the reverse) fails here, not in production."""
    history, base = (schema, SpBase) if half == "sp" else (idp_schema, IdpBase)
    history.upgrade(blank_engine)
    with blank_engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"include_name": lambda name, kind, _: not str(name).endswith("alembic_version")},
        )
        assert compare_metadata(context, base.metadata) == []
