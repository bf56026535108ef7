"""When to try again: exponential backoff with full jitter, honouring ``Retry-After`` (pure).

Full jitter (delay drawn uniformly from zero to the exponential cap) spreads retries of many
pairs that failed together, so a recovering target is not hit by a synchronised wave. A target's
``Retry-After`` (seconds or an HTTP-date, RFC 9110 §10.2.3) is a floor, capped so a hostile or
broken header cannot park a user for days.
"""

from __future__ import annotations

import random
from datetime import datetime
from datetime import timedelta
from email.utils import parsedate_to_datetime

BASE = timedelta(seconds=2)
CAP = timedelta(minutes=15)
RETRY_AFTER_CAP = timedelta(hours=1)


def retry_after(header: str | None, now: datetime) -> timedelta | None:
    """The wait a ``Retry-After`` header asks for, capped; ``None`` when absent or unreadable."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        wait = timedelta(seconds=int(header))
    else:
        try:
            moment = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        wait = moment - now
    return max(timedelta(0), min(wait, RETRY_AFTER_CAP))


def next_attempt(
    attempts: int,
    now: datetime,
    *,
    header: str | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """When the ``attempts + 1``-th try may happen."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
    ceiling = min(CAP, BASE * (2 ** min(attempts, 20)))
    delay = timedelta(seconds=rng.uniform(0, ceiling.total_seconds()))
    floor = retry_after(header, now)
    if floor is not None:
        delay = max(delay, floor)
    return now + delay
