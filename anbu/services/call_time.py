"""The learned best time to call, applied: a routine check-in's retry goes to the hour the
person's answered calls fall in (:mod:`anbu.domain.call_time`), inside their calling hours.

Only routine check-ins move: the first call keeps the slot the resident chose, and cases raised
by signals or the API are never delayed for a better hour.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import CallAttempt, Checkin
from anbu.domain.call_time import best_time, learned_hour
from anbu.domain.calling_hours import zone
from anbu.services.rules import resident_rules

HISTORY = 30  # the person's last answered calls that count


async def answered_times(session: AsyncSession, resident_id: str) -> list[dt.datetime]:
    rows = await session.execute(
        select(CallAttempt.answered_at)
        .join(Checkin, Checkin.id == CallAttempt.checkin_id)
        .where(Checkin.resident_id == resident_id, CallAttempt.answered_at.is_not(None))
        .order_by(CallAttempt.answered_at.desc())
        .limit(HISTORY)
    )
    return [a for a in rows.scalars() if a is not None]


async def routine_retry_at(
    session: AsyncSession, resident_id: str, phone: str, at: dt.datetime, now: dt.datetime
) -> dt.datetime:
    """When to place a routine check-in's retry the retry policy wants at ``at``."""
    answered = await answered_times(session, resident_id)
    if not answered:
        return at
    window = (await resident_rules(session, resident_id, phone, now)).window
    return best_time(at, learned_hour(answered, zone(window.tz)), window)
