"""One test (or a few) per named IdP quirk normaliser in scimlink.scim.compat, plus the quirks that
scim2-models' ScimPolicy and our model overrides in scimlink.scim.resources absorb
(scim-servers.md §3). The interop suites replay the same payloads over HTTP."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from scimlink.scim import compat
from scimlink.scim.errors import ScimError
from scimlink.scim.patch import custom_attributes
from scimlink.scim.resources import POLICY
from scimlink.scim.resources import apply_patch
from scimlink.scim.resources import dump_user
from scimlink.scim.resources import validate_user

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
TYPO = "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def test_the_normaliser_pipelines_name_every_quirk() -> None:
    resource, patch = compat.RESOURCE_NORMALISERS, compat.PATCH_NORMALISERS
    assert resource == (
        compat.entra_nulls_and_meta,
        compat.entra_enterprise_urn_typo,
        compat.entra_string_booleans,
        compat.manager_reference,
    )
    assert patch == (
        compat.entra_capitalised_op,
        compat.entra_patch_string_booleans,
        compat.entra_empty_string_clears,
    )


# -- entra_string_booleans (E02, E13) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "expected"), [("True", True), ("False", False), (" true ", True), ("FALSE", False)]
)
def test_entra_string_booleans_coerces_true_and_false(sent: str, expected: bool) -> None:
    payload = {"active": sent, "emails": [{"value": "a@b.c", "Primary": sent}]}
    assert compat.entra_string_booleans(payload) == {
        "active": expected,
        "emails": [{"value": "a@b.c", "Primary": expected}],
    }


def test_entra_string_booleans_keeps_real_booleans_and_other_attributes() -> None:
    payload = {"Active": False, "title": "True", "name": {"givenName": "False"}}
    assert compat.entra_string_booleans(copy.deepcopy(payload)) == payload


@pytest.mark.parametrize("sent", ["yes", "1", "", "Tru"])
def test_entra_string_booleans_refuses_other_strings(sent: str) -> None:
    with pytest.raises(ScimError) as raised:
        compat.entra_string_booleans({"active": sent})
    assert (raised.value.status, raised.value.scim_type) == (400, "invalidValue")


# -- entra_enterprise_urn_typo (E10) -------------------------------------------------------------


def test_entra_enterprise_urn_typo_fixes_schemas_and_the_extension_key() -> None:
    payload = {"schemas": [CORE, TYPO], TYPO: {"department": "Finance"}}
    assert compat.entra_enterprise_urn_typo(payload) == {
        "schemas": [CORE, ENTERPRISE],
        ENTERPRISE: {"department": "Finance"},
    }


def test_entra_enterprise_urn_typo_leaves_correct_payloads_alone() -> None:
    payload = {"schemas": [CORE, ENTERPRISE], ENTERPRISE: {"department": "Finance"}}
    assert compat.entra_enterprise_urn_typo(copy.deepcopy(payload)) == payload


# -- entra_nulls_and_meta (E10, E12) -------------------------------------------------------------


def test_entra_nulls_and_meta_drops_nulls_and_read_only_members() -> None:
    payload = {
        "schemas": [CORE, ENTERPRISE],
        "id": "client-chosen",
        "Meta": {"resourceType": "User"},
        "userName": "a",
        "addresses": None,
        "phoneNumbers": None,
        "roles": [],
        ENTERPRISE: {"department": None, "costCenter": "4"},
    }
    assert compat.entra_nulls_and_meta(payload) == {
        "schemas": [CORE, ENTERPRISE],
        "userName": "a",
        "roles": [],
        ENTERPRISE: {"costCenter": "4"},
    }


# -- manager_reference (E07) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "manager", ["123456", {"value": "123456"}, {"value": "123456", "$ref": "../Users/123456"}]
)
def test_manager_reference_makes_a_complex_value(manager: Any) -> None:
    payload = {ENTERPRISE: {"manager": manager}}
    assert compat.manager_reference(payload) == {
        ENTERPRISE: {"manager": {"value": "123456", "$ref": "../Users/123456"}}
    }


@pytest.mark.parametrize("manager", ["", {"value": ""}, {"value": None}])
def test_manager_reference_drops_an_empty_manager(manager: Any) -> None:
    assert compat.manager_reference({ENTERPRISE: {"manager": manager, "division": "x"}}) == {
        ENTERPRISE: {"division": "x"}
    }


def test_manager_reference_ignores_payloads_without_one() -> None:
    assert compat.manager_reference({"userName": "a"}) == {"userName": "a"}
    assert compat.manager_reference({ENTERPRISE: {"division": "x"}}) == {
        ENTERPRISE: {"division": "x"}
    }


# -- entra_capitalised_op (E01) ------------------------------------------------------------------


def test_entra_capitalised_op_lowers_op_names() -> None:
    payload = _ops(
        {"op": "Add", "path": "title", "value": "x"},
        {"op": "Replace", "path": "title", "value": "y"},
        {"op": "REMOVE", "path": "title"},
    )
    assert [o["op"] for o in compat.entra_capitalised_op(payload)["Operations"]] == [
        "add",
        "replace",
        "remove",
    ]


# -- entra_patch_string_booleans (E02) -----------------------------------------------------------


def test_entra_patch_string_booleans_with_a_path() -> None:
    payload = _ops(
        {"op": "replace", "path": "active", "value": "False"},
        {"op": "replace", "path": f"{CORE}:active", "value": "True"},
        {"op": "replace", "path": 'emails[type eq "work"].primary', "value": "true"},
        {"op": "replace", "path": "title", "value": "True"},
    )
    values = [o["value"] for o in compat.entra_patch_string_booleans(payload)["Operations"]]
    assert values == [False, True, True, "True"]


def test_entra_patch_string_booleans_without_a_path() -> None:
    payload = _ops({"op": "replace", "value": {"active": "False", "title": "False"}})
    assert compat.entra_patch_string_booleans(payload)["Operations"][0]["value"] == {
        "active": False,
        "title": "False",
    }


def test_entra_patch_string_booleans_refuses_other_strings() -> None:
    with pytest.raises(ScimError):
        compat.entra_patch_string_booleans(_ops({"op": "replace", "path": "active", "value": "0"}))


# -- entra_empty_string_clears (E12) -------------------------------------------------------------


def test_entra_empty_string_clears_turns_an_empty_value_into_a_remove() -> None:
    payload = _ops(
        {"op": "replace", "path": "title", "value": ""},
        {"op": "add", "path": f"{ENTERPRISE}:department", "value": ""},
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": ""},
        {"op": "replace", "path": "nickName", "value": "kept"},
    )
    assert compat.entra_empty_string_clears(payload)["Operations"] == [
        {"op": "remove", "path": "title"},
        {"op": "remove", "path": f"{ENTERPRISE}:department"},
        {"op": "remove", "path": 'emails[type eq "work"].value'},
        {"op": "replace", "path": "nickName", "value": "kept"},
    ]


def test_entra_empty_string_clears_nulls_empty_members_of_complex_values() -> None:
    payload = _ops(
        {"op": "replace", "value": {"title": "", "name.givenName": "", "nickName": "n"}},
        {"op": "replace", "path": "name", "value": {"familyName": "", "givenName": "g"}},
    )
    assert [o["value"] for o in compat.entra_empty_string_clears(payload)["Operations"]] == [
        {"title": None, "name.givenName": None, "nickName": "n"},
        {"familyName": None, "givenName": "g"},
    ]


@pytest.mark.parametrize("path", ["emails", f"{CORE}:phoneNumbers", "Addresses"])
def test_entra_empty_string_clears_never_removes_a_whole_multi_valued_attribute(
    path: str,
) -> None:
    operation = {"op": "replace", "path": path, "value": ""}
    payload = compat.entra_empty_string_clears(_ops(dict(operation)))
    assert payload["Operations"] == [operation]


# -- the pipelines end to end, through validation --------------------------------------------------


def test_normalise_resource_then_validate_the_entra_doc_sample() -> None:
    payload = {
        "UserName": "UserName123",
        "Active": "True",
        "DisplayName": "BobIsAmazing",
        "schemas": [CORE, TYPO],
        "externalId": "ext",
        "meta": {"resourceType": "User"},
        "addresses": None,
        TYPO: {"department": "Dep", "manager": "123456"},
    }
    document = dump_user(validate_user(compat.normalise_resource(payload)))
    assert document == {
        "schemas": [CORE, ENTERPRISE],
        "externalId": "ext",
        "userName": "UserName123",
        "displayName": "BobIsAmazing",
        "active": True,
        ENTERPRISE: {
            "department": "Dep",
            "manager": {"value": "123456", "$ref": "../Users/123456"},
        },
    }


def test_normalise_patch_applies_every_patch_normaliser_in_order() -> None:
    payload = _ops(
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Replace", "path": "title", "value": ""},
    )
    assert compat.normalise_patch(payload)["Operations"] == [
        {"op": "replace", "path": "active", "value": False},
        {"op": "remove", "path": "title"},
    ]


# -- ScimPolicy and model overrides (resources.py) -------------------------------------------------


def test_policy_unmatched_path_filter_creates_the_entry_e06() -> None:
    user = validate_user({"schemas": [CORE], "userName": "a"})
    patch = _ops({"op": "replace", "path": 'emails[type eq "work"].value', "value": "w@x.io"})
    assert apply_patch(user, patch)
    assert dump_user(user)["emails"] == [{"value": "w@x.io", "type": "work"}]


def test_policy_drops_unknown_attributes_custom_ones_travel_beside_the_model() -> None:
    assert POLICY.unknown.value == "ignore"
    body = {"schemas": [CORE], "userName": "a", "company": "Acme", "name": {"nonexistent": "x"}}
    dumped = dump_user(validate_user(body))
    assert "company" not in dumped
    assert "nonexistent" not in str(dumped)
    assert custom_attributes(body) == {"company": "Acme"}


def test_policy_remove_with_value_removes_only_the_listed_values_e04() -> None:
    user = validate_user(
        {
            "schemas": [CORE],
            "userName": "a",
            "emails": [{"value": "one@x.io"}, {"value": "two@x.io"}],
        }
    )
    patch = _ops({"op": "remove", "path": "emails", "value": [{"value": "one@x.io"}]})
    assert apply_patch(user, patch)
    assert dump_user(user)["emails"] == [{"value": "two@x.io"}]


def test_scim2_models_reads_attribute_names_case_insensitively_e13() -> None:
    user = validate_user(
        {
            "schemas": [CORE],
            "UserName": "OMalley",
            "Active": True,
            "Emails": [{"Primary": True, "Value": "o@x.io"}],
        }
    )
    assert dump_user(user) == {
        "schemas": [CORE],
        "userName": "OMalley",
        "active": True,
        "emails": [{"value": "o@x.io", "primary": True}],
    }


@pytest.mark.parametrize(
    "email", ["test.user@okta.local", "lab@corp.test", "Mixed.Case@Example.COM", "admin@localhost"]
)
def test_lenient_email_keeps_the_value_as_sent_o03(email: str) -> None:
    user = validate_user({"schemas": [CORE], "userName": "a", "emails": [{"value": email}]})
    assert dump_user(user)["emails"] == [{"value": email}]
