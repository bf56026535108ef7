import re

import pytest

from scimlink.sp import tokens


def test_new_tokens_are_prefixed_checksummed_and_distinct() -> None:
    issued = {tokens.new_token() for _ in range(200)}
    assert len(issued) == 200
    for token in issued:
        assert re.fullmatch(r"scimlink_[0-9A-Za-z]{38}", token)
        assert tokens.well_formed(token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # bad checksum
        lambda t: t[:12] + ("x" if t[12] != "x" else "y") + t[13:],  # body typo
        lambda t: "other_" + t[len("scimlink_") :],  # wrong prefix
        lambda t: t + "0",  # too long
        lambda t: t[:-1],  # too short
        lambda t: t[:15] + "-" + t[16:],  # outside the alphabet
    ],
)
def test_mangled_tokens_are_refused_offline(mangle: object) -> None:
    token = tokens.new_token()
    assert not tokens.well_formed(mangle(token))  # type: ignore[operator]


def test_only_a_hash_and_a_hint_derive_from_the_token() -> None:
    token = tokens.new_token()
    digest = tokens.token_hash(token)
    assert len(digest) == 64
    assert token not in digest
    assert tokens.hint(token).endswith(token[-4:])
    assert token[len("scimlink_") : -4] not in tokens.hint(token)
