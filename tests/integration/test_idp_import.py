"""Importing directory users from CSV and JSON files (``scimlink idp user import``), on SQLite and
PostgreSQL: every property lands, a re-run changes nothing, and a bad line is reported with its
line number while the others are imported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.errors import InvalidInputError
from scimlink.idp import directory
from scimlink.idp import importer
from scimlink.idp.importer import ImportReport
from scimlink.idp.importer import LineError
from scimlink.idp.importer import Record
from scimlink.idp.importer import import_users
from scimlink.idp.importer import parse_records
from scimlink.idp.importer import read_records
from scimlink.idp.models import DirectoryUser
from scimlink.storage.db import make_sessionmaker
from scimlink.storage.db import read_session
from scimlink.storage.db import write_session
from tests.integration.idp_fixtures import DIALECTS
from tests.integration.idp_fixtures import directory_database
from tests.integration.idp_fixtures import wipe

HEADER = (
    "username,email,firstname,lastname,displayname,employeeIdentifier,department,jobTitle,"
    "company,location,costCenter,state,password,attributes.badge,attributes.floor"
)
ALICE = {
    "username": "alice",
    "email": "alice@example.com",
    "firstname": "Alice",
    "lastname": "Anders",
    "displayname": "Alice A.",
    "employeeIdentifier": "E-1",
    "department": "Engineering",
    "jobTitle": "Engineer",
    "company": "Acme",
    "location": "Paris",
    "costCenter": "CC-1",
    "state": "suspended",
}


@pytest.fixture(scope="module", params=DIALECTS)
def idp_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with directory_database(request.param, tmp_path_factory.mktemp("idp")) as engine:
        yield engine


@pytest.fixture
def sessions(idp_engine: Engine) -> sessionmaker[Session]:
    wipe(idp_engine)
    return make_sessionmaker(idp_engine)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def csv_text(*lines: str) -> str:
    return "".join(f"{line}\r\n" for line in lines)


def users(sessions: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    with read_session(sessions) as session:
        return {
            user.username: directory.user_view(user)
            for user in directory.list_users(session, limit=100_000)
        }


def stamps(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with read_session(sessions) as session:
        return dict(session.execute(select(DirectoryUser.username, DirectoryUser.updated)).all())


def password_hash(sessions: sessionmaker[Session], username: str) -> str | None:
    with read_session(sessions) as session:
        return directory.find_user(session, username).password_hash


def counts(report: ImportReport) -> tuple[int, int, int, int]:
    return report.created, report.updated, report.unchanged, report.failed


def run(sessions: sessionmaker[Session], path: Path, **kwargs: Any) -> ImportReport:
    return import_users(sessions, read_records(path), **kwargs)


# -- creating ------------------------------------------------------------------------------------


def test_csv_creates_users_with_every_property_and_custom_attributes(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "users.csv",
        csv_text(
            HEADER,
            "alice,alice@example.com,Alice,Anders,Alice A.,E-1,Engineering,Engineer,Acme,Paris,"
            "CC-1,suspended,correct horse,B-7,3",
            "bob,bob@example.com,Bob,,,,,,,,,,,,",
        ),
    )
    report = run(sessions, path)
    assert counts(report) == (2, 0, 0, 0), report.errors
    found = users(sessions)
    assert {name: found["alice"][name] for name in ALICE} == ALICE
    assert found["alice"]["attributes"] == {"badge": "B-7", "floor": "3"}
    stored = password_hash(sessions, "alice")
    assert stored is not None
    assert PasswordHasher().verify(stored, "correct horse")
    # Empty cells are "not given": defaults, no attributes, no password.
    bob = found["bob"]
    assert (bob["firstname"], bob["lastname"], bob["state"]) == ("Bob", None, "activated")
    assert bob["attributes"] == {}
    assert password_hash(sessions, "bob") is None


def test_json_creates_users_from_a_list_or_a_users_object(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    listed = write(
        tmp_path,
        "users.json",
        json.dumps([{**ALICE, "attributes": {"badge": "B-7", "floor": 3, "remote": True}}]),
    )
    wrapped = write(
        tmp_path,
        "more.json",
        json.dumps(
            {
                "users": [
                    # JumpCloud's API shape for custom attributes, and flat attributes.<name> keys.
                    {
                        "username": "bob",
                        "email": "bob@example.com",
                        "attributes": [{"name": "badge", "value": "B-8"}],
                        "attributes.floor": "4",
                    }
                ]
            }
        ),
    )
    assert counts(run(sessions, listed)) == (1, 0, 0, 0)
    assert counts(run(sessions, wrapped)) == (1, 0, 0, 0)
    found = users(sessions)
    assert {name: found["alice"][name] for name in ALICE} == ALICE
    assert found["alice"]["attributes"] == {"badge": "B-7", "floor": 3, "remote": True}
    assert found["bob"]["attributes"] == {"badge": "B-8", "floor": "4"}


# -- idempotence and updates ---------------------------------------------------------------------


def test_a_second_run_of_the_same_file_changes_nothing(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Passwords included: a salted hash of the same password is not a change."""
    path = write(
        tmp_path,
        "users.csv",
        csv_text(
            HEADER,
            "alice,alice@example.com,Alice,,,,,,,,,,correct horse,B-7,",
            "bob,bob@example.com,,,,,,,,,,staged,,,2",
            "carol,carol@example.com,,,,,,,,,,,,,",
        ),
    )
    records = [{**ALICE, "username": f"j{n}", "email": f"j{n}@example.com"} for n in range(3)]
    document = write(tmp_path, "users.json", json.dumps(records))
    assert counts(run(sessions, path)) == (3, 0, 0, 0)
    assert counts(run(sessions, document)) == (3, 0, 0, 0)
    before, hashed = stamps(sessions), password_hash(sessions, "alice")
    assert counts(run(sessions, path)) == (0, 0, 3, 0)
    assert counts(run(sessions, document)) == (0, 0, 3, 0)
    assert stamps(sessions) == before
    assert password_hash(sessions, "alice") == hashed


def test_a_changed_value_updates_only_that_user(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    first = csv_text(
        "username,email,department,password,attributes.badge,attributes.floor",
        "alice,alice@example.com,Sales,correct horse,B-7,1",
        "bob,bob@example.com,Sales,,B-8,2",
        "carol,carol@example.com,Sales,,,",
    )
    assert counts(run(sessions, write(tmp_path, "a.csv", first))) == (3, 0, 0, 0)
    before, hashed = stamps(sessions), password_hash(sessions, "alice")
    # Bob moves; his empty badge cell keeps his badge. Usernames match case-insensitively.
    second = csv_text(
        "username,email,department,password,attributes.badge,attributes.floor",
        "ALICE,alice@example.com,Sales,correct horse,B-7,1",
        "bob,bob@example.com,Support,,,2",
        "carol,carol@example.com,Sales,,,",
    )
    report = run(sessions, write(tmp_path, "b.csv", second))
    assert counts(report) == (0, 2, 1, 0)
    found, after = users(sessions), stamps(sessions)
    assert found["bob"]["department"] == "Support"
    assert found["bob"]["attributes"] == {"badge": "B-8", "floor": "2"}
    assert found["ALICE"]["department"] == "Sales"
    assert after["carol"] == before["carol"]
    assert after["bob"] > before["bob"]
    assert password_hash(sessions, "alice") == hashed
    # A new password is a change.
    third = csv_text("username,password", "alice,battery staple")
    assert counts(run(sessions, write(tmp_path, "c.csv", third))) == (0, 1, 0, 0)
    stored = password_hash(sessions, "alice")
    assert stored is not None
    assert PasswordHasher().verify(stored, "battery staple")


def test_a_line_without_username_updates_by_email_and_an_import_never_renames(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with write_session(sessions) as session:
        directory.add_user(session, {"username": "alice", "email": "alice@example.com"})
    path = write(
        tmp_path,
        "users.csv",
        csv_text(
            "username,email,department",
            ",ALICE@example.com,Sales",
            ",nobody@example.com,Sales",
        ),
    )
    report = run(sessions, path)
    assert counts(report) == (0, 1, 0, 1)
    assert [e.line for e in report.errors] == [3]
    assert "No user has e-mail 'nobody@example.com'; a new user needs a username" in str(
        report.errors[0]
    )
    # The e-mail is given, so it is set as written: only its case changed.
    assert users(sessions)["alice"]["email"] == "ALICE@example.com"
    assert users(sessions)["alice"]["department"] == "Sales"
    # A new username with alice's e-mail is not a rename of alice.
    renamed = write(tmp_path, "renamed.csv", csv_text("username,email", "alicia,Alice@example.com"))
    report = run(sessions, renamed)
    assert counts(report) == (0, 0, 0, 1)
    assert str(report.errors[0]) == (
        "line 2 (alicia): E-mail 'ALICE@example.com' belongs to user 'alice'; an import matches"
        " users by username and never renames one."
    )
    assert set(users(sessions)) == {"alice"}


def test_in_json_a_null_clears_a_property_and_removes_an_attribute(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    first = [{**ALICE, "attributes": {"badge": "B-7", "floor": "3"}}]
    assert counts(run(sessions, write(tmp_path, "a.json", json.dumps(first)))) == (1, 0, 0, 0)
    second = [
        {"username": "alice", "department": None, "jobTitle": "", "attributes": {"badge": None}}
    ]
    assert counts(run(sessions, write(tmp_path, "b.json", json.dumps(second)))) == (0, 1, 0, 0)
    alice = users(sessions)["alice"]
    assert (alice["department"], alice["jobTitle"], alice["company"]) == (None, None, "Acme")
    assert alice["attributes"] == {"floor": "3"}
    assert counts(run(sessions, write(tmp_path, "b.json", json.dumps(second)))) == (0, 0, 1, 0)


# -- reporting bad lines -------------------------------------------------------------------------


def test_bad_lines_are_reported_with_their_line_numbers_and_the_others_imported(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with write_session(sessions) as session:
        directory.add_user(session, {"username": "carol", "email": "carol@example.com"})
    path = write(
        tmp_path,
        "users.csv",
        csv_text(
            "username,email,state,department",
            "dave,dave@example.com,,Sales",
            "erin,,,",
            "frank,not-an-email,,",
            "grace,grace@example.com,active,",
            "heidi,heidi@example.com,,Ops,surplus",
            "ivan,CAROL@example.com,,",
            f"judy,judy@example.com,,{'x' * 300}",
            '"mallory",mallory@example.com,,"Research\r\nand Development"',
            "oscar,oscar@example.com,,",
            "DAVE,dave2@example.com,,",
            "peggy,Dave@Example.com,,",
            "",
            "trent,trent@example.com,staged,",
            f"kim,{'k' * 320}@example.com,,",
            ",,,Sales",
        ),
    )
    expected = {
        3: ("erin", "'email' is required"),
        4: ("frank", "is not an e-mail address"),
        5: ("grace", "state is one of activated, suspended, staged"),
        6: ("heidi", "5 cells; the header names 4 columns"),
        7: ("ivan", "belongs to user 'carol'"),
        8: ("judy", "'department' is longer than 255 characters"),
        12: ("DAVE", "username 'DAVE' is also on line 2"),
        13: ("peggy", "email 'Dave@Example.com' is also on line 2"),
        16: ("kim", "'email' is longer than 320 characters"),
        17: (None, "A line needs a username (or the e-mail of an existing user)"),
    }
    for _ in range(2):  # and again: the same report, nothing new
        report = run(sessions, path, batch=3)
        assert {e.line: e.username for e in report.errors} == {
            line: name for line, (name, _) in expected.items()
        }
        for error in report.errors:
            assert expected[error.line][1] in error.message, error
    assert counts(report) == (0, 0, 4, 10)
    found = users(sessions)
    assert set(found) == {"carol", "dave", "mallory", "oscar", "trent"}
    assert found["mallory"]["department"] == "Research\r\nand Development"
    assert found["trent"]["state"] == "staged"


def test_a_line_the_database_refuses_costs_only_that_line(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if another writer created carol between the checks and the insert: the unique key
    refuses her, her SAVEPOINT rolls back, and the batch goes on."""
    with write_session(sessions) as session:
        directory.add_user(session, {"username": "carol", "email": "carol@example.com"})
    monkeypatch.setattr(importer._Known, "add", lambda self, user: None)
    monkeypatch.setattr(directory, "_check_unique", lambda *args, **kwargs: None)
    path = write(
        tmp_path,
        "users.csv",
        csv_text("username,email", "dave,dave@example.com", "carol,c@example.com", "erin,e@x.io"),
    )
    report = run(sessions, path)
    assert counts(report) == (2, 0, 0, 1)
    assert report.errors[0].line == 3
    assert report.errors[0].message.startswith("The database refused the line: ")
    assert set(users(sessions)) == {"carol", "dave", "erin"}


def test_json_errors_name_the_array_index(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "users.json",
        json.dumps(
            [
                {"username": "alice", "email": "alice@example.com"},
                "bob",
                {"username": "carol", "email": "carol@example.com", "firstName": "Carol"},
                {"username": "dave", "email": "dave@example.com", "employeeIdentifier": 7},
                {"username": "erin", "email": "erin@example.com", "attributes": "x"},
                {"username": "frank", "email": "frank@example.com", "department": None},
                {"username": "grace", "email": "g@x.io", "attributes": [{"name": 1, "value": 2}]},
                {"username": 5, "email": "heidi@example.com"},
            ]
        ),
    )
    report = run(sessions, path)
    assert counts(report) == (2, 0, 0, 6)
    messages = {e.line: e.message for e in report.errors}
    assert set(messages) == {2, 3, 4, 5, 7, 8}
    assert "Expected an object" in messages[2]
    assert "Unknown key 'firstName' (did you mean 'firstname'?)" in messages[3]
    assert "'employeeIdentifier' must be text" in messages[4]
    assert "'attributes' is an object" in messages[5]
    assert "'attributes' is an object" in messages[7]
    assert "'username' must be text" in messages[8]
    assert set(users(sessions)) == {"alice", "frank"}


def test_an_unknown_csv_column_is_one_error_for_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "users.csv", csv_text("username,email,firstName,shoeSize", "a,a@b.c,,"))
    with pytest.raises(InvalidInputError) as raised:
        read_records(path)
    message = str(raised.value)
    assert message.startswith("users.csv line 1: unknown column 'firstName'")
    assert "(did you mean 'firstname'?)" in message
    assert "unknown column 'shoeSize'" in message
    assert "attributes.<name>" in message
    for header, problem in (
        ("username,email,email", "column 'email' appears twice"),
        ("username,,email", "column 2 has no name"),
        ("firstname,lastname", "neither username nor email"),
    ):
        with pytest.raises(InvalidInputError, match=problem):
            parse_records(csv_text(header).encode(), fmt="csv")


def test_progress_reports_every_record_once(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    lines = [f"u{n},u{n}@example.com" for n in range(7)] + ["bad,not-an-email"]
    records = read_records(write(tmp_path, "users.csv", csv_text("username,email", *lines)))
    seen: list[int] = []
    report = import_users(sessions, records, on_progress=seen.append, batch=3)
    assert sum(seen) == len(records) == report.total == 8
    assert counts(report) == (7, 0, 0, 1)


def test_two_thousand_users(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    lines = [
        f"user{n:04},user{n:04}@example.com,First{n},Last{n},Dept{n % 7},{n}" for n in range(2000)
    ]
    path = write(
        tmp_path,
        "big.csv",
        csv_text("username,email,firstname,lastname,department,attributes.seat", *lines),
    )
    assert counts(run(sessions, path)) == (2000, 0, 0, 0)
    lines[1234] = lines[1234].replace("Dept2", "Moved")
    path = write(
        tmp_path,
        "big.csv",
        csv_text("username,email,firstname,lastname,department,attributes.seat", *lines),
    )
    assert counts(run(sessions, path)) == (0, 1, 1999, 0)
    found = users(sessions)
    assert len(found) == 2000
    assert found["user1234"]["department"] == "Moved"
    assert found["user1999"]["attributes"] == {"seat": "1999"}


# -- reading files -------------------------------------------------------------------------------


def test_a_byte_order_mark_is_not_part_of_the_first_name(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    csv_path = write(
        tmp_path, "bom.csv", b"\xef\xbb\xbf" + b"username,email\r\nal,al@example.com\r\n"
    )
    json_path = write(tmp_path, "bom.json", b'\xef\xbb\xbf[{"username": "bo", "email": "bo@x.io"}]')
    assert read_records(csv_path) == [Record(2, {"username": "al", "email": "al@example.com"})]
    assert counts(run(sessions, csv_path)) == (1, 0, 0, 0)
    assert counts(run(sessions, json_path)) == (1, 0, 0, 0)


def test_a_file_that_cannot_be_read_is_one_readable_error(tmp_path: Path) -> None:
    cases = {
        "broken.json": (
            b'[{"username": "a",}]',
            r"broken.json is not valid JSON: .* line 1, column",
        ),
        "latin1.csv": (
            "username,email\nren\u00e9,rene@example.com\n".encode("latin-1"),
            r"latin1.csv is not UTF-8 text \(line 2 holds byte 0xe9\)",
        ),
        "excel.csv": ("username,email\n".encode("utf-16"), "excel.csv is UTF-16 text"),
        "empty.csv": (b"\r\n \r\n", "empty.csv is empty"),
        "top.json": (b'{"people": []}', r'neither a list of users nor \{"users"'),
        "nan.json": (b'[{"attributes": {"x": NaN}}]', "NaN is not a JSON number"),
        "quote.csv": (b'username,email\n"a,a@b.c\n', "quote.csv line 2: unexpected end of data"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(InvalidInputError, match=message):
            read_records(write(tmp_path, name, content))
    with pytest.raises(InvalidInputError, match="Cannot read"):
        read_records(tmp_path / "missing.csv")


def test_formats_are_sniffed_and_other_delimiters_read(tmp_path: Path) -> None:
    semicolons = write(
        tmp_path, "export.txt", "username;email;attributes.site\r\nal;al@x.io;Lyon\r\n"
    )
    assert read_records(semicolons) == [
        Record(2, {"username": "al", "email": "al@x.io", "attributes": {"site": "Lyon"}})
    ]
    lines = write(tmp_path, "users", '{"username": "a\u2028l"}\r\n\n{"username": \n[1]\n')
    records = read_records(lines)
    assert [(r.line, r.error is None) for r in records] == [(1, True), (3, False), (4, False)]
    assert records[0].properties == {"username": "a\u2028l"}
    assert records[1].error is not None
    assert records[1].error.startswith("Not valid JSON")
    wrapped = write(tmp_path, "users.data", '{"users": [{"username": "al"}]}')
    assert read_records(wrapped) == [Record(1, {"username": "al"})]
    with pytest.raises(InvalidInputError, match="Unknown import format 'xml'"):
        read_records(wrapped, fmt="xml")


def test_the_report_serialises_for_json_output() -> None:
    report = ImportReport(created=2, updated=1, unchanged=3)
    report.errors.append(LineError(7, "bob", "'email' is required."))
    report.errors.append(LineError(9, None, "A line needs a username."))
    assert json.loads(json.dumps(report.to_dict())) == {
        "created": 2,
        "updated": 1,
        "unchanged": 3,
        "failed": 2,
        "errors": [
            {"line": 7, "username": "bob", "message": "'email' is required."},
            {"line": 9, "username": None, "message": "A line needs a username."},
        ],
    }
    assert [str(e) for e in report.errors] == [
        "line 7 (bob): 'email' is required.",
        "line 9: A line needs a username.",
    ]
