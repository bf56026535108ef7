"""Which filters are key lookups: the ones ``UserService.search`` orders without an index."""

from __future__ import annotations

import pytest

from scimlink.scim.filter import parse_filter
from scimlink.sp.user_filters import is_key_lookup

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "ann@example.com"',
        'USERNAME eq "ann@example.com"',
        f'{CORE}:userName eq "ann@example.com"',
        'externalId eq "e-1"',
        'id eq "2819c223-7f76-453a-919d-413861904646"',
        'userName eq "a" or userName eq "b" or userName eq "c"',
        'externalId eq "a" or externalId eq "b"',
    ],
)
def test_equalities_on_one_key_are_lookups(text: str) -> None:
    assert is_key_lookup(parse_filter(text))


@pytest.mark.parametrize(
    "text",
    [
        'displayName eq "Ann"',  # not a key: many users may share it
        'userName co "ann"',
        'userName ne "ann"',
        'userName sw "a" or userName sw "b"',
        'userName eq "a" or externalId eq "b"',
        'userName eq "a" and active eq true',
        "userName pr",
        'name.givenName eq "Ann"',
        'emails.value eq "ann@example.com"',
        'emails[value eq "ann@example.com"]',
        'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1"',
        'department eq "R&D"',  # a custom attribute
        "active eq true",
        "userName eq null",
    ],
)
def test_other_filters_are_not(text: str) -> None:
    assert not is_key_lookup(parse_filter(text))
