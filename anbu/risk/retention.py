"""Retention of raw signal events: delete what is older than the district keeps.

The rules never read raw events back: each resident's baselines summarise them
(``signal_states``), so raw events are kept only for audit and replay, and for the idempotency
key that makes a resent event change nothing. Personal data kept longer than needed is a
liability (PIPA: data minimisation), so a daily job deletes events received more than
``keep`` ago.

Why it is safe for the baselines: an event can be at most a few minutes newer than its
``received_at`` (ingestion refuses later timestamps), so a deleted event is older than ``keep``
(at least 3 days). If it is sent again, it is accepted again, but it lies outside the 56-hour
ring, so it moves no hourly profile and no last-activity time that is not already later.

How: the oldest rows come first in primary-key order (ids grow with insertion), so the job
walks the key from the start in chunks, one short transaction each, and stops at the first
chunk that holds a row received after the cutoff. No index on the timestamps is needed, so
ingestion pays nothing for it.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models_signals import SignalEvent

log = logging.getLogger(__name__)

MIN_KEEP = dt.timedelta(days=3)  # longer than the baselines' 56-hour ring, with room


async def prune_events(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    keep: dt.timedelta,
    *,
    chunk: int = 10_000,
) -> int:
    """Delete raw events received before ``now - keep``; returns how many."""
    if keep < MIN_KEEP:
        raise ValueError(f"raw events must be kept at least {MIN_KEEP.days} days")
    cutoff = now - keep
    deleted = 0
    after = 0
    while True:
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(SignalEvent.id, SignalEvent.received_at)
                    .where(SignalEvent.id > after)
                    .order_by(SignalEvent.id)
                    .limit(chunk)
                )
            ).all()
            if not rows:
                break
            last = rows[-1][0]
            result = await session.execute(
                delete(SignalEvent).where(
                    SignalEvent.id > after,
                    SignalEvent.id <= last,
                    SignalEvent.received_at < cutoff,
                )
            )
            await session.commit()
        deleted += int(result.rowcount)  # type: ignore[attr-defined]
        after = last
        if any(received >= cutoff for _, received in rows):
            break  # the rest was received later
    if deleted:
        log.info("deleted %d raw signal event(s) received before %s", deleted, cutoff.isoformat())
    return deleted


async def oldest_event(sessions: async_sessionmaker[AsyncSession]) -> dt.datetime | None:
    """When the oldest raw event still kept was received (for operators and tests)."""
    async with sessions() as session:
        first: dt.datetime | None = (
            await session.execute(select(func.min(SignalEvent.received_at)))
        ).scalar()
        return first
