"""A learned best time to call (pure): the local hour a person's answered calls fall in.

Routine check-ins and their retries are moved to that hour when it lies inside the calling
hours and not too far ahead; a person who always answers around 10:00 is called at 10:00, not
at 09:00 when they are out walking. Cases raised by signals or by the API are never delayed.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable

from anbu.domain.calling_hours import CallingWindow, is_allowed, zone

MIN_ANSWERS = 3  # fewer answered calls than this teach nothing
MAX_DELAY = dt.timedelta(hours=12)  # never hold a call longer than this for a better hour


def learned_hour(answered_at: Iterable[dt.datetime], tz: dt.tzinfo) -> int | None:
    """The local hour (0-23) most answered calls started in, counting each neighbouring hour
    half (people keep habits, not exact hours); ``None`` with fewer than :data:`MIN_ANSWERS`."""
    hours = [a.astimezone(tz).hour for a in answered_at]
    if len(hours) < MIN_ANSWERS:
        return None
    direct = Counter(hours)
    score = {h: 2 * direct[h] + direct[(h - 1) % 24] + direct[(h + 1) % 24] for h in direct}
    # The best-scored hour that had answers; ties: more answers in the hour itself, then earlier.
    return min(score, key=lambda h: (-score[h], -direct[h], h))


def best_time(
    at: dt.datetime,
    hour: int | None,
    window: CallingWindow,
    max_delay: dt.timedelta = MAX_DELAY,
) -> dt.datetime:
    """When to place a routine call wanted at ``at``: the next start of the learned ``hour`` if
    calling is allowed then and it comes within ``max_delay``; else ``at`` unchanged (the
    dispatcher still applies the calling hours)."""
    if hour is None:
        return at
    local = at.astimezone(zone(window.tz))
    if local.hour == hour:
        return at
    start = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if start < local:
        start += dt.timedelta(days=1)
    candidate = start.astimezone(dt.UTC)
    if candidate - at > max_delay or not is_allowed(candidate, window):
        return at
    return candidate
