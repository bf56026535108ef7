"""Bad input and security: PATCH (security.md §5 H1-H6).

A refused PATCH must leave the user exactly as it was: same body, same ETag.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import CORE
from tests.conftest import ENTERPRISE
from tests.conftest import PATCH_OP
from tests.conftest import Scim
from tests.conftest import assert_scim_error
from tests.conftest import patch_body
from tests.conftest import snapshot
from tests.conftest import user_body


@pytest.fixture
def alice(scim: Scim) -> dict[str, Any]:
    body = user_body(
        company="Acme",
        title="Engineer",
        name={"givenName": "Alice", "familyName": "Smith"},
        schemas=[CORE, ENTERPRISE],
        **{ENTERPRISE: {"department": "R&D"}},
    )
    response = scim.post("/Users", json=body)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


def _refused(
    scim: Scim, user: dict[str, Any], body: dict[str, Any], scim_types: str | set[str]
) -> None:
    """The PATCH is a 400 with one of ``scim_types`` and changes nothing."""
    before = snapshot(scim, user["id"])
    response = scim.patch(f"/Users/{user['id']}", json=body)
    assert response.status_code == 400, (body["Operations"], response.text)
    allowed = {scim_types} if isinstance(scim_types, str) else scim_types
    assert_scim_error(response, 400)
    assert response.json().get("scimType") in allowed, response.text
    assert snapshot(scim, user["id"]) == before


def _each_op(path: str, value: Any) -> list[dict[str, Any]]:
    """``add``, ``replace`` (with ``value``) and ``remove`` (without) on ``path``."""
    return [
        {"op": "add", "path": path, "value": value},
        {"op": "replace", "path": path, "value": value},
        {"op": "remove", "path": path},
    ]


# -- H1: remove without path ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param({"op": "remove"}, id="no-path"),
        pytest.param({"op": "remove", "path": None}, id="null-path"),
        pytest.param({"op": "remove", "value": {"title": "Engineer"}}, id="value-no-path"),
        pytest.param({"op": "Remove"}, id="capitalised"),
    ],
)
def test_h1_remove_without_path_is_no_target(
    scim: Scim, alice: dict[str, Any], operation: dict[str, Any]
) -> None:
    _refused(scim, alice, patch_body(operation), "noTarget")


# -- H2: invalid paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "emails[type eq",
        'emails[type eq "work"',
        'emails[type eq "work"].',
        "emails[]",
        "name.",
        ".name",
        "name..givenName",
        "name.givenName.extra",
        'emails[type eq "work"]]',
        "name[givenName",
    ],
)
def test_h2_invalid_path_grammar_is_invalid_path(
    scim: Scim, alice: dict[str, Any], path: str
) -> None:
    for operation in _each_op(path, "x"):
        _refused(scim, alice, patch_body(operation), "invalidPath")


def test_h2_unknown_attribute_in_a_value_filter_is_refused(
    scim: Scim, alice: dict[str, Any]
) -> None:
    operation = {"op": "replace", "path": 'emails[nonexistent eq "x"].value', "value": "y"}
    _refused(scim, alice, patch_body(operation), {"invalidPath", "invalidFilter"})


@pytest.mark.parametrize(
    "path",
    [
        "name.nonexistent",
        f"{CORE}:nonexistent",
        f"{CORE}:name.nonexistent",
        "nonexistent.sub",
        f"{ENTERPRISE}:nonexistent",
        'emails[type eq "work"].nonexistent',
    ],
)
def test_h2_path_to_a_nonexistent_attribute_is_invalid_path(
    scim: Scim, alice: dict[str, Any], path: str
) -> None:
    for operation in _each_op(path, "x"):
        _refused(scim, alice, patch_body(operation), "invalidPath")


@pytest.mark.parametrize("path", ["", " ", "a b", "x=y", "-leading-dash", "1digit", "é"])
def test_h2_path_that_is_not_an_attribute_name_is_invalid_path(
    scim: Scim, alice: dict[str, Any], path: str
) -> None:
    _refused(scim, alice, patch_body({"op": "add", "path": path, "value": "x"}), "invalidPath")


# -- H3: read-only attributes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("id", "forged-id"),
        ("ID", "forged-id"),
        (f"{CORE}:id", "forged-id"),
        ("meta", {"created": "2000-01-01T00:00:00Z"}),
        ("meta.created", "2000-01-01T00:00:00Z"),
        ("meta.lastModified", "2000-01-01T00:00:00Z"),
        ("meta.version", 'W/"999"'),
        ("meta.location", "https://evil.example/"),
        ("meta.resourceType", "Group"),
        ("groups", [{"value": "admins"}]),
        ("groups.value", "admins"),
        ('groups[value eq "admins"].display', "Admins"),
    ],
)
def test_h3_read_only_paths_are_mutability(
    scim: Scim, alice: dict[str, Any], path: str, value: Any
) -> None:
    for operation in _each_op(path, value):
        _refused(scim, alice, patch_body(operation), "mutability")


@pytest.mark.parametrize(
    "value",
    [
        {"id": "forged-id"},
        {"meta": {"created": "2000-01-01T00:00:00Z"}},
        {"groups": [{"value": "admins"}]},
        {"displayName": "Fine", "id": "forged-id"},
    ],
)
@pytest.mark.parametrize("op", ["add", "replace"])
def test_h3_read_only_attributes_in_a_path_less_value_are_mutability(
    scim: Scim, alice: dict[str, Any], value: dict[str, Any], op: str
) -> None:
    _refused(scim, alice, patch_body({"op": op, "value": value}), "mutability")


def test_h3_schemas_cannot_gain_an_unknown_urn(scim: Scim, alice: dict[str, Any]) -> None:
    operation = {"op": "add", "path": "schemas", "value": ["urn:example:unknown"]}
    _refused(scim, alice, patch_body(operation), {"invalidValue", "mutability", "invalidPath"})


# -- H4: capitalised operations (Entra) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "path", "value", "check"),
    [
        ("Replace", "displayName", "Replaced", ("displayName", "Replaced")),
        ("REPLACE", "title", "Boss", ("title", "Boss")),
        ("rEpLaCe", "active", "False", ("active", False)),
        ("Add", "nickName", "Al", ("nickName", "Al")),
        ("ADD", "company", "Other", ("company", "Other")),
        ("Remove", "title", None, ("title", None)),
        ("Remove", "company", None, ("company", None)),
    ],
)
def test_h4_operation_names_are_case_insensitive(
    scim: Scim, alice: dict[str, Any], op: str, path: str, value: Any, check: tuple[str, Any]
) -> None:
    operation: dict[str, Any] = {"op": op, "path": path}
    if value is not None:
        operation["value"] = value
    response = scim.patch(f"/Users/{alice['id']}", json=patch_body(operation))
    assert response.status_code == 200, response.text
    key, expected = check
    assert response.json().get(key) == expected
    assert response.headers["etag"] == 'W/"2"'
    assert snapshot(scim, alice["id"])[1] == response.json()


def test_h4_capitalised_path_less_replace(scim: Scim, alice: dict[str, Any]) -> None:
    operation = {"op": "Replace", "value": {"displayName": "New", "active": "False"}}
    response = scim.patch(f"/Users/{alice['id']}", json=patch_body(operation))
    assert response.status_code == 200, response.text
    assert (response.json()["displayName"], response.json()["active"]) == ("New", False)


@pytest.mark.parametrize("op", ["frobnicate", "copy", "move", "test", "", 5, None])
def test_h4_unknown_operations_are_refused(scim: Scim, alice: dict[str, Any], op: Any) -> None:
    operation = {"op": op, "path": "title", "value": "x"}
    _refused(scim, alice, patch_body(operation), "invalidValue")
    custom = {"op": op, "path": "company", "value": "x"}
    _refused(scim, alice, patch_body(custom), "invalidValue")


@pytest.mark.parametrize(
    "operations",
    [
        pytest.param([], id="empty"),
        pytest.param({}, id="object"),
        pytest.param("add", id="string"),
        pytest.param([1], id="number"),
        pytest.param([None], id="null"),
        pytest.param([{"path": "title", "value": "x"}], id="no-op"),
        pytest.param([{"op": "add", "path": "title"}], id="add-without-value"),
        pytest.param([{"op": "add", "path": 5, "value": "x"}], id="numeric-path"),
    ],
)
def test_h4_malformed_operation_lists_are_refused(
    scim: Scim, alice: dict[str, Any], operations: Any
) -> None:
    body = {"schemas": [PATCH_OP], "Operations": operations}
    _refused(scim, alice, body, "invalidValue")


@pytest.mark.parametrize("op", ["add", "replace"])
def test_h4_add_without_value_on_a_custom_attribute_is_refused(
    scim: Scim, alice: dict[str, Any], op: str
) -> None:
    _refused(scim, alice, patch_body({"op": op, "path": "company"}), "invalidValue")


# -- H5: no attribute reflection -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "name.__class__",
        "name.__dict__",
        "__proto__.polluted",
        "__class__.__init__",
        'emails[type eq "work"].__class__',
        "emails[__class__ eq 1]",
        f"{CORE}:__class__.x",
    ],
)
def test_h5_dunder_segments_in_sub_paths_are_invalid_path(
    scim: Scim, alice: dict[str, Any], path: str
) -> None:
    for operation in _each_op(path, {"polluted": True}):
        _refused(scim, alice, patch_body(operation), {"invalidPath", "invalidFilter"})


@pytest.mark.parametrize("path", ["__class__", "__dict__", "__proto__", "__init__", "_private"])
def test_h5_dunder_top_level_paths_are_invalid_path(
    scim: Scim, alice: dict[str, Any], path: str
) -> None:
    for operation in _each_op(path, {"polluted": True}):
        _refused(scim, alice, patch_body(operation), "invalidPath")


@pytest.mark.parametrize("key", ["__proto__", "__class__", "__dict__"])
def test_h5_dunder_keys_in_path_less_values_are_refused(
    scim: Scim, alice: dict[str, Any], key: str
) -> None:
    _refused(
        scim, alice, patch_body({"op": "add", "value": {key: {"polluted": True}}}), "invalidPath"
    )


def test_h5_reflection_leaves_no_trace(scim: Scim, alice: dict[str, Any]) -> None:
    """Whatever the answer to dunder paths, nothing of Python's object model leaks out."""
    for path in ("name.__class__", "__class__", "__dict__", "__proto__"):
        response = scim.patch(
            f"/Users/{alice['id']}", json=patch_body({"op": "add", "path": path, "value": "x"})
        )
        assert response.status_code in {200, 400}, response.text
        for leak in ("<class", "__module__", "pydantic", "Traceback", "object at 0x"):
            assert leak not in response.text
        got = scim.get(f"/Users/{alice['id']}")
        assert "<class" not in got.text
        assert "__module__" not in got.text


# -- H6: atomicity -------------------------------------------------------------------------------

SIX_GOOD = [
    {"op": "replace", "path": "displayName", "value": "Changed"},
    {"op": "add", "path": "nickName", "value": "Al"},
    {"op": "replace", "path": "company", "value": "Other Corp"},
    {"op": "add", "path": "department", "value": "Sales"},
    {"op": "remove", "path": "title"},
    {"op": "replace", "path": "active", "value": False},
]
THREE_MORE = [
    {"op": "add", "path": "costCenter", "value": "42"},
    {"op": "replace", "path": "name.givenName", "value": "Alicia"},
    {"op": "add", "path": f"{ENTERPRISE}:employeeNumber", "value": "7"},
]


@pytest.mark.parametrize(
    ("seventh", "status", "scim_type"),
    [
        pytest.param({"op": "remove"}, 400, "noTarget", id="remove-without-path"),
        pytest.param(
            {"op": "replace", "path": "emails[type eq", "value": "x"},
            400,
            "invalidPath",
            id="bad-grammar",
        ),
        pytest.param(
            {"op": "replace", "path": "id", "value": "x"}, 400, "mutability", id="read-only"
        ),
        pytest.param(
            {"op": "frobnicate", "path": "title", "value": "x"}, 400, "invalidValue", id="bad-op"
        ),
        pytest.param(
            {"op": "replace", "path": "active", "value": "yes"}, 400, "invalidValue", id="bad-bool"
        ),
        pytest.param(
            {"op": "replace", "path": "displayName", "value": "bell\x07"},
            400,
            "invalidValue",
            id="control-char",
        ),
        pytest.param(
            {"op": "replace", "path": "emails", "value": "not-a-list-of-emails"},
            400,
            "invalidValue",
            id="bad-emails",
        ),
        pytest.param(
            {"op": "replace", "path": "userName", "value": "taken@example.com"},
            409,
            "uniqueness",
            id="duplicate-user-name",
        ),
    ],
)
def test_h6_one_bad_operation_of_ten_applies_none(
    scim: Scim,
    alice: dict[str, Any],
    seventh: dict[str, Any],
    status: int,
    scim_type: str,
) -> None:
    taken = scim.post("/Users", json=user_body("taken@example.com"))
    assert taken.status_code == 201, taken.text
    before = snapshot(scim, alice["id"])
    body = patch_body(*SIX_GOOD, seventh, *THREE_MORE)
    assert len(body["Operations"]) == 10
    response = scim.patch(f"/Users/{alice['id']}", json=body)
    assert_scim_error(response, status, scim_type)
    after = snapshot(scim, alice["id"])
    assert after == before
    assert after[2] == alice["meta"]["version"] == 'W/"1"'
    # The same ten operations without the bad one all apply, in one new version.
    good = scim.patch(f"/Users/{alice['id']}", json=patch_body(*SIX_GOOD, *THREE_MORE))
    assert good.status_code == 200, good.text
    assert good.headers["etag"] == 'W/"2"'
    user = good.json()
    assert (user["displayName"], user["company"], user["active"]) == (
        "Changed",
        "Other Corp",
        False,
    )
    assert "title" not in user
    assert user["name"]["givenName"] == "Alicia"
