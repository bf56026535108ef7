"""The directory half's pure parts: desired state, backoff, secrets at rest."""

from __future__ import annotations

import os
import random
import stat
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from scimlink.errors import InvalidInputError
from scimlink.idp.provisioning import backoff
from scimlink.idp.provisioning.desired import CORE
from scimlink.idp.provisioning.desired import ENTERPRISE
from scimlink.idp.provisioning.desired import check_mapping
from scimlink.idp.provisioning.desired import desired
from scimlink.idp.secrets import SecretBox
from scimlink.idp.secrets import hint

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MAPPING = [
    {"source": "username", "target": "userName"},
    {"source": "active", "target": "active"},
    {"source": "displayname", "target": "displayName"},
    {"source": "firstname", "target": "name.givenName"},
    {"source": "email", "target": "emails"},
    {"source": "department", "target": f"{ENTERPRISE}:department"},
    {"source": "attributes.costCode", "target": "costCode"},
]
USER = {
    "username": "ann",
    "email": "ann@example.com",
    "displayname": "Ann Lee",
    "firstname": "Ann",
    "department": "R&D",
    "state": "activated",
    "attributes": {"costCode": "C-7"},
}


def test_desired_state_follows_the_mapping_and_scope() -> None:
    want = desired(USER, True, MAPPING)
    assert want.in_scope is True
    assert want.resource == {
        "schemas": [CORE, ENTERPRISE],
        "userName": "ann",
        "active": True,
        "displayName": "Ann Lee",
        "name": {"givenName": "Ann"},
        "emails": [{"value": "ann@example.com", "type": "work", "primary": True}],
        ENTERPRISE: {"department": "R&D"},
        "costCode": "C-7",
    }
    # Out of scope: not bound, or suspended, or staged -> the same identity with active=false.
    for user, bound in (
        (USER, False),
        ({**USER, "state": "suspended"}, True),
        ({**USER, "state": "staged"}, True),
    ):
        out = desired(user, bound, MAPPING)
        assert (out.in_scope, out.resource["active"], out.resource["userName"]) == (
            False,
            False,
            "ann",
        )
    gone = desired(None, True, MAPPING)
    assert gone.resource == {"schemas": [CORE], "active": False}


def test_the_digest_changes_exactly_when_the_resource_does() -> None:
    first = desired(USER, True, MAPPING).digest
    assert desired(dict(USER), True, list(MAPPING)).digest == first
    assert desired({**USER, "displayname": "Ann L."}, True, MAPPING).digest != first
    assert desired({**USER, "jobTitle": "Boss"}, True, MAPPING).digest == first  # not mapped
    empty = desired({**USER, "firstname": ""}, True, MAPPING).resource
    assert "name" not in empty


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("username", "userName"),
        ("attributes.x", "x"),
        ("email", "emails"),
        ("department", f"{ENTERPRISE}:department"),
        ("firstname", "name.givenName"),
    ],
)
def test_valid_mappings(source: str, target: str) -> None:
    check_mapping(source, target)


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("shoeSize", "x", "Unknown source"),
        ("attributes.", "x", "Unknown source"),
        ("username", 'emails[type eq "work"].value', "not a SCIM attribute path"),
        ("username", "a.b.c", "not a SCIM attribute path"),
        ("username", "", "not a SCIM attribute path"),
    ],
)
def test_invalid_mappings(source: str, target: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_mapping(source, target)


def test_retry_after_in_seconds_and_as_an_http_date_is_a_capped_floor() -> None:
    assert backoff.retry_after("7", NOW) == timedelta(seconds=7)
    assert backoff.retry_after("Sat, 28 Nov 2026 12:01:30 GMT", NOW) == timedelta(seconds=90)
    assert backoff.retry_after("Sat, 28 Nov 2026 11:00:00 GMT", NOW) == timedelta(0)
    assert backoff.retry_after("999999", NOW) == backoff.RETRY_AFTER_CAP
    for unusable in (None, "", "soon", "-5", "Sat, 28 Nov 2026 12:01:30"):
        assert backoff.retry_after(unusable, NOW) is None
    rng = random.Random(1)
    assert backoff.next_attempt(0, NOW, header="7", rng=rng) >= NOW + timedelta(seconds=7)


def test_full_jitter_stays_under_an_exponential_cap() -> None:
    rng = random.Random(3)
    for attempts in range(30):
        delay = backoff.next_attempt(attempts, NOW, rng=rng) - NOW
        ceiling = min(backoff.CAP, backoff.BASE * 2 ** min(attempts, 20))
        assert timedelta(0) <= delay <= ceiling
    spread = {backoff.next_attempt(5, NOW, rng=rng) for _ in range(20)}
    assert len(spread) > 15  # jittered, not synchronised


def test_secrets_round_trip_and_refuse_tampering(tmp_path: Path) -> None:
    box = SecretBox.from_file(tmp_path / "keys" / "idp-master.key")
    assert stat.S_IMODE(os.stat(tmp_path / "keys" / "idp-master.key").st_mode) == 0o600
    sealed = box.encrypt("scimlink_secret_token")
    assert "scimlink_secret_token" not in sealed
    assert SecretBox.from_file(tmp_path / "keys" / "idp-master.key").decrypt(sealed) == (
        "scimlink_secret_token"
    )
    with pytest.raises(InvalidInputError, match="cannot be decrypted"):
        SecretBox(Fernet.generate_key()).decrypt(sealed)
    with pytest.raises(InvalidInputError, match="not a Fernet key"):
        SecretBox(b"short")
    assert hint("abcdefghijkl") == "…ijkl"
    assert hint("short") == "…"


def test_the_rate_limiter_spaces_calls_to_the_configured_rate() -> None:
    import time

    from scimlink.idp.provisioning.engine import _RateLimiter

    limiter = _RateLimiter()
    started = time.monotonic()
    for _ in range(25):
        limiter.wait("app", 50.0)  # a full bucket of 50, then 50 per second
    assert time.monotonic() - started < 0.2
    started = time.monotonic()
    for _ in range(20):
        limiter.wait("slow", 20.0)  # the bucket holds 20: no wait
    burst = time.monotonic() - started
    for _ in range(10):
        limiter.wait("slow", 20.0)  # beyond the bucket: 20 per second
    assert burst < 0.2
    assert time.monotonic() - started >= 0.45
