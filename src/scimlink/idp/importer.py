"""Importing directory users from a CSV or JSON file (``scimlink idp user import FILE``).

Files use JumpCloud's property names (``directory.PROPERTIES`` and ``password``) as CSV columns or
JSON keys; custom attributes are ``attributes.<name>`` columns (or keys) or an ``attributes``
object. An empty CSV cell means "not given": it never clears a value (in JSON, a null or empty
property clears it and a null attribute removes it). A password is set as given; the same
password again is no change.

An import is an upsert, so running a file again changes nothing. Each line runs in its own
SAVEPOINT and batches commit as they go: a bad line costs only itself, and an interrupted import
is finished by running the same file again.

Matching: a line updates the user with its username (case-insensitively; a username written in
another case is set as written); a line without a username updates the user with its e-mail. A
new username whose e-mail belongs to another user is refused, never taken as a rename: a typo in
a username would otherwise rename someone in every application the directory provisions. A
username or e-mail that two lines of one file share is refused on the later line.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from difflib import get_close_matches
from pathlib import Path
from pathlib import PurePath
from typing import Any
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.exc import DataError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from scimlink.errors import ConflictError
from scimlink.errors import InvalidInputError
from scimlink.errors import ScimLinkError
from scimlink.idp import directory
from scimlink.idp.models import DirectoryUser
from scimlink.scim.text import fold
from scimlink.storage.db import write_session

PREFIX = "attributes."
#: The names an import file may use besides ``attributes.<name>``.
NAMES = (*directory.PROPERTIES, "password")
FORMATS = ("csv", "json", "jsonl")
#: The width of the e-mail column: ``directory`` checks only the other properties' length, and
#: SQLite would store a longer one that PostgreSQL refuses.
MAX_EMAIL = 320
_HASHER = PasswordHasher()

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class Record:
    """One user of an import file: properties as ``directory.add_user`` takes them.

    ``line`` is the CSV or JSON Lines file line, or the 1-based index in a JSON array. A record
    that could not be read carries ``error`` and is reported instead of imported.
    """

    line: int
    properties: dict[str, Any]
    error: str | None = None

    @property
    def username(self) -> str | None:
        value = self.properties.get("username")
        return (value.strip() or None) if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    username: str | None
    message: str

    def __str__(self) -> str:
        who = f" ({self.username})" if self.username else ""
        return f"line {self.line}{who}: {self.message}"


@dataclass(slots=True)
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[LineError] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.errors)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "errors": [
                {"line": e.line, "username": e.username, "message": e.message} for e in self.errors
            ],
        }


# -- reading -------------------------------------------------------------------------------------


def read_records(path: Path, fmt: str | None = None) -> list[Record]:
    """The records of ``path``; the format comes from ``fmt``, the extension, or the content.

    A file that cannot be read as a whole (not UTF-8, malformed JSON, an unknown CSV column)
    raises one InvalidInputError before anything is imported; a bad line becomes a record with
    an error.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    return parse_records(data, fmt=fmt, name=path.name)


def parse_records(data: bytes, *, fmt: str | None = None, name: str = "input") -> list[Record]:
    """``read_records`` for bytes from elsewhere (standard input); ``name`` labels errors."""
    text = _decode(data, name)
    fmt = fmt or _sniff(name, text)
    if fmt == "csv":
        return _csv_records(text, name)
    if fmt == "json":
        return _json_records(text, name)
    if fmt == "jsonl":
        return _jsonl_records(text)
    raise InvalidInputError(f"Unknown import format {fmt!r}: use one of {', '.join(FORMATS)}.")


def _decode(data: bytes, name: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InvalidInputError(f"{name} is UTF-16 text; save it as UTF-8.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(
            f"{name} is not UTF-8 text (line {line} holds byte 0x{data[exc.start]:02x}); "
            "save it as UTF-8."
        ) from None
    if not text.strip():
        raise InvalidInputError(f"{name} is empty.")
    return text


def _sniff(name: str, text: str) -> str:
    suffix = PurePath(name).suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    if suffix == "ndjson":
        return "jsonl"
    start = text.lstrip()
    if start.startswith("["):
        return "json"
    if start.startswith("{"):
        # One document ({"users": [...]}) or one object per line.
        try:
            json.loads(text)
        except ValueError:
            try:
                return "jsonl" if isinstance(json.loads(start.split("\n", 1)[0]), dict) else "json"
            except ValueError:
                return "json"
        return "json"
    return "csv"


def _known(name: str) -> bool:
    return name in NAMES or (name.startswith(PREFIX) and len(name) > len(PREFIX))


def _hint(name: str) -> str:
    by_case = {known.casefold(): known for known in NAMES}
    match = by_case.get(name.casefold()) or next(iter(get_close_matches(name, NAMES, 1, 0.8)), None)
    return f" (did you mean {match!r}?)" if match else ""


def _csv_records(text: str, name: str) -> list[Record]:
    first = text.lstrip("\r\n").split("\n", 1)[0]
    # Spreadsheets in some locales save with semicolons or tabs.
    delimiter = next((d for d in (",", ";", "\t") if d in first), ",")
    # strict: an unclosed quote would otherwise swallow the rest of the file into one cell.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[Record] = []
    columns: list[str] | None = None
    start = 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns = [cell.strip() for cell in row]
                _check_header(columns, name, line)
                continue
            records.append(_csv_record(line, columns, row))
    except csv.Error as exc:
        raise InvalidInputError(f"{name} line {start}: {exc}.") from None
    if columns is None:
        raise InvalidInputError(f"{name} is empty.")
    return records


def _check_header(columns: list[str], name: str, line: int) -> None:
    """An unknown column would fail every line (or drop data): it is reported once, up front."""
    problems = []
    for index, column in enumerate(columns, start=1):
        if not column:
            problems.append(f"column {index} has no name")
        elif columns.index(column) != index - 1:
            problems.append(f"column {column!r} appears twice")
        elif not _known(column):
            problems.append(f"unknown column {column!r}{_hint(column)}")
    if problems:
        raise InvalidInputError(
            f"{name} line {line}: {'; '.join(problems)}. Columns are JumpCloud property names: "
            f"{', '.join(NAMES)} and {PREFIX}<name>."
        )
    if "username" not in columns and "email" not in columns:
        raise InvalidInputError(f"{name} line {line}: the header names neither username nor email.")


def _csv_record(line: int, columns: list[str], row: list[str]) -> Record:
    properties: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for column, cell in zip(columns, row, strict=False):
        if not cell.strip():
            continue
        if column.startswith(PREFIX):
            attributes[column.removeprefix(PREFIX)] = cell.strip()
        else:
            properties[column] = cell if column == "password" else cell.strip()
    if attributes:
        properties["attributes"] = attributes
    if any(cell.strip() for cell in row[len(columns) :]):
        error = f"The line has {len(row)} cells; the header names {len(columns)} columns."
        return Record(line, properties, error)
    return Record(line, properties)


def _refuse_constant(value: str) -> Any:
    raise InvalidInputError(f"{value} is not a JSON number.")


def _load_json(text: str) -> Any:
    return json.loads(text, parse_constant=_refuse_constant)


def _json_records(text: str, name: str) -> list[Record]:
    try:
        document = _load_json(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except InvalidInputError as exc:
        raise InvalidInputError(f"{name}: {exc}") from None
    if isinstance(document, dict) and set(document) == {"users"}:
        document = document["users"]
    if not isinstance(document, list):
        raise InvalidInputError(f'{name} holds neither a list of users nor {{"users": [...]}}.')
    return [_json_record(index, item) for index, item in enumerate(document, start=1)]


def _jsonl_records(text: str) -> list[Record]:
    records = []
    # Split on line feeds only: a JSON string may hold U+2028 and other "line breaks".
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        try:
            item = _load_json(content)
        except json.JSONDecodeError as exc:
            records.append(Record(line, {}, f"Not valid JSON: {exc.msg} at column {exc.colno}."))
            continue
        except InvalidInputError as exc:
            records.append(Record(line, {}, str(exc)))
            continue
        records.append(_json_record(line, item))
    return records


def _json_attributes(value: Any) -> dict[str, Any] | None:
    """An object of name: value, or JumpCloud's API shape, a list of {"name", "value"}."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and all(
        isinstance(item, dict) and set(item) == {"name", "value"} and isinstance(item["name"], str)
        for item in value
    ):
        return {item["name"]: item["value"] for item in value}
    return None


def _sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}."


def _json_record(line: int, item: Any) -> Record:
    if not isinstance(item, dict):
        return Record(line, {}, "Expected an object of JumpCloud properties.")
    properties: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    problems = []
    for key, value in item.items():
        if key in NAMES:
            properties[key] = value
        elif key == "attributes":
            parsed = _json_attributes(value)
            if parsed is None:
                problems.append(
                    "'attributes' is an object of name: value (or a list of name/value objects)"
                )
            else:
                attributes.update(parsed)
        elif _known(key):
            attributes[key.removeprefix(PREFIX)] = value
        else:
            problems.append(f"unknown key {key!r}{_hint(key)}")
    if attributes or "attributes" in item:
        properties["attributes"] = attributes
    if problems:
        known = f"Keys are {', '.join(NAMES)}, attributes."
        return Record(line, properties, f"{_sentence('; '.join(problems))} {known}")
    return Record(line, properties)


# -- importing -----------------------------------------------------------------------------------


def import_users(
    sessions: sessionmaker[Session],
    records: Iterable[Record],
    *,
    on_progress: Callable[[int], None] | None = None,
    batch: int = 200,
) -> ImportReport:
    """Create or update each record's user; commit every ``batch`` records.

    ``on_progress`` is told how many records were handled since its last call. A batch that
    cannot commit (the database went away) raises: the batches before it stay, and running the
    import again finishes the work.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    report = ImportReport()
    seen: dict[str, int] = {}
    for chunk in _chunks(records, batch):
        with write_session(sessions) as session:
            known = _Known(session, chunk)
            for record in chunk:
                try:
                    _check_line(record, seen)
                    outcome = _upsert(session, known, record)
                except ScimLinkError as exc:
                    report.errors.append(LineError(record.line, record.username, str(exc)))
                except (IntegrityError, DataError) as exc:
                    # A concurrent writer won a unique key, or a value the checks above let by.
                    report.errors.append(LineError(record.line, record.username, _refusal(exc)))
                else:
                    if outcome == "created":
                        report.created += 1
                    elif outcome == "updated":
                        report.updated += 1
                    else:
                        report.unchanged += 1
                if on_progress is not None:
                    on_progress(1)
    return report


def _refusal(exc: IntegrityError | DataError) -> str:
    reason = next(iter(str(exc.orig).strip().splitlines()), type(exc).__name__)
    return f"The database refused the line: {reason}."


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _key(value: Any) -> str | None:
    return fold(value.strip()) if isinstance(value, str) and value.strip() else None


class _Known:
    """The users a batch names, by folded username and e-mail: one query per batch instead of
    two per line. Kept current as the batch creates and changes users, so a later line sees an
    earlier one's work; another writer's concurrent change is still caught by the directory's
    own checks and the unique keys."""

    def __init__(self, session: Session, records: list[Record]) -> None:
        self.by_username: dict[str, DirectoryUser] = {}
        self.by_email: dict[str, DirectoryUser] = {}
        usernames = sorted({k for r in records if (k := _key(r.properties.get("username")))})
        emails = sorted({k for r in records if (k := _key(r.properties.get("email")))})
        if usernames or emails:
            query = select(DirectoryUser).where(
                or_(DirectoryUser.username_key.in_(usernames), DirectoryUser.email_key.in_(emails))
            )
            for user in session.execute(query).scalars():
                self.add(user)

    def add(self, user: DirectoryUser) -> None:
        self.by_username[user.username_key] = user
        self.by_email[user.email_key] = user

    def move(self, user: DirectoryUser, username_key: str, email_key: str) -> None:
        """``user`` held these keys before a change."""
        self.by_username.pop(username_key, None)
        self.by_email.pop(email_key, None)
        self.add(user)


def _check_line(record: Record, seen: dict[str, int]) -> None:
    """A read error, or a username or e-mail an earlier line of the file already used (the later
    line would silently override it, and a re-run would report it again as an update)."""
    if record.error is not None:
        raise InvalidInputError(record.error)
    for name in ("username", "email"):
        key = _key(record.properties.get(name))
        if key is None:
            continue
        first = seen.setdefault(f"{name}:{key}", record.line)
        if first != record.line:
            value = record.properties[name].strip()
            raise InvalidInputError(f"{name} {value!r} is also on line {first}.")


def _upsert(session: Session, known: _Known, record: Record) -> Outcome:
    """Each write runs in a SAVEPOINT, so a failing line leaves the batch as it found it."""
    properties = dict(record.properties)
    email = properties.get("email")
    if isinstance(email, str) and len(email.strip()) > MAX_EMAIL:
        raise InvalidInputError(f"'email' is longer than {MAX_EMAIL} characters.")
    user = _match(known, properties)
    if user is None:
        owner = known.by_email.get(_key(email) or "")
        if owner is not None:
            raise ConflictError(
                f"E-mail {owner.email!r} belongs to user {owner.username!r}; an import matches "
                "users by username and never renames one."
            )
        with session.begin_nested():
            user = directory.add_user(session, properties)
        known.add(user)
        return "created"
    if _same_password(user, properties.get("password")):
        # Hashes are salted: setting the same password again would count as a change.
        del properties["password"]
    if _holds(user, properties):
        return "unchanged"
    keys = user.username_key, user.email_key
    with session.begin_nested():
        change = directory.set_user(session, user.id, properties, "import")
    known.move(user, *keys)
    return "updated" if change.changed else "unchanged"


def _match(known: _Known, properties: dict[str, Any]) -> DirectoryUser | None:
    username, email = properties.get("username"), properties.get("email")
    if username is not None and not isinstance(username, str):
        raise InvalidInputError("'username' must be text.")
    if key := _key(username):
        return known.by_username.get(key)
    if key := _key(email):
        user = known.by_email.get(key)
        if user is None:
            raise InvalidInputError(
                f"No user has e-mail {str(email).strip()!r}; a new user needs a username."
            )
        return user
    raise InvalidInputError("A line needs a username (or the e-mail of an existing user).")


def _holds(user: DirectoryUser, properties: dict[str, Any]) -> bool:
    """Whether ``user`` already has every given value, compared as ``directory.set_user``
    compares them (stripped text, empty is none; attributes merge and a none removes one): a
    re-run then reads instead of writing. Anything else (a password, a bad value) is left to
    ``set_user`` to apply or refuse."""
    for name, value in properties.items():
        if name == "attributes":
            current = user.attributes or {}
            if not isinstance(value, dict):
                return False
            merged = {k: v for k, v in {**current, **value}.items() if v is not None}
            if merged != current:
                return False
            continue
        column = directory.PROPERTIES.get(name)
        if column is None or not isinstance(value, str | None):
            return False
        if getattr(user, column) != ((value.strip() or None) if value is not None else None):
            return False
    return True


def _same_password(user: DirectoryUser, password: Any) -> bool:
    if not isinstance(password, str) or user.password_hash is None:
        return False
    try:
        return _HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
