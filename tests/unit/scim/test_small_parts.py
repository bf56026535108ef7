import pytest

from scimlink.scim import errors
from scimlink.scim.errors import ScimError
from scimlink.scim.etag import etag
from scimlink.scim.etag import matches
from scimlink.scim.query import Limits
from scimlink.scim.query import parse_list_query
from scimlink.scim.text import fold


def test_etags_are_weak_and_compare_weakly() -> None:
    assert etag(3) == 'W/"3"'
    assert matches('W/"3"', 3)
    assert matches('"3"', 3)
    assert matches('W/"1", W/"3"', 3)
    assert matches("*", 9)
    assert not matches('W/"2"', 3)
    assert not matches("", 3)


def test_fold_unifies_case_and_width() -> None:
    assert fold("Admin") == fold("ADMIN") == fold("\uff41dmin") == "admin"
    assert fold("Stra\u00dfe") == fold("STRASSE")


@pytest.mark.parametrize(
    ("factory", "status", "scim_type"),
    [
        (errors.invalid_syntax, 400, "invalidSyntax"),
        (errors.invalid_value, 400, "invalidValue"),
        (errors.invalid_filter, 400, "invalidFilter"),
        (errors.invalid_path, 400, "invalidPath"),
        (errors.mutability, 400, "mutability"),
        (errors.no_target, 400, "noTarget"),
        (errors.uniqueness, 409, "uniqueness"),
        (errors.not_found, 404, None),
        (errors.precondition_failed, 412, None),
        (errors.too_large, 413, None),
    ],
)
def test_error_bodies_follow_rfc_7644_3_12(
    factory: object, status: int, scim_type: str | None
) -> None:
    error: ScimError = factory("why")  # type: ignore[operator]
    body = error.to_body()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"] == "why"


def test_unauthorized_has_a_default_detail() -> None:
    assert errors.unauthorized().status == 401


def test_list_parameters_are_interpreted_not_rejected() -> None:
    limits = Limits(max_results=50)
    query = parse_list_query({"startIndex": "-4", "count": "100000"}, limits)
    assert (query.start_index, query.count) == (1, 50)
    assert parse_list_query({"count": "-1"}, limits).count == 0
    assert parse_list_query({}, limits).count == 50
    search = parse_list_query(
        {"startIndex": 3, "count": 2, "attributes": ["userName", " "]}, limits
    )
    assert (search.start_index, search.count, search.attributes) == (3, 2, ["userName"])
    assert parse_list_query({"sortOrder": "DESCENDING", "sortBy": "userName"}, limits).descending


@pytest.mark.parametrize(
    ("params", "scim_type"),
    [
        ({"count": "ten"}, "invalidValue"),
        ({"startIndex": True}, "invalidValue"),
        ({"sortOrder": "sideways"}, "invalidValue"),
        ({"filter": "userName eq"}, "invalidFilter"),
    ],
)
def test_bad_list_parameters(params: dict[str, object], scim_type: str) -> None:
    with pytest.raises(ScimError) as info:
        parse_list_query(params, Limits())
    assert info.value.scim_type == scim_type
