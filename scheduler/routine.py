"""Routine check-ins: a resident's standing weekly call at the time they chose.

A periodic job opens a check-in for every slot that has come due since the last one, in the
same transaction that records the slot (``last_slot_at``): a crash never opens a slot twice,
and a slot missed by more than ``grace`` (the service was down for hours) is skipped rather
than rung late. Opening joins an already-open case (a signal-driven call in flight), so a
routine slot never makes a second call ring.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models_scheduling import RoutineSchedule
from anbu.domain.calling_hours import zone
from anbu.domain.checkin import CheckinSource
from anbu.services.checkins import open_checkin

log = logging.getLogger(__name__)

ROUTINE_REASON = "정기 안부전화"


def latest_slot(now: dt.datetime, weekday: int, time_min: int, tz: str) -> dt.datetime:
    """The most recent weekly slot (``weekday`` at ``time_min`` local) at or before ``now``."""
    tzinfo = zone(tz)
    local = now.astimezone(tzinfo)
    days_back = (local.weekday() - weekday) % 7
    day = local.date() - dt.timedelta(days=days_back)
    slot = dt.datetime.combine(day, dt.time(time_min // 60, time_min % 60), tzinfo)
    if slot > local:
        slot -= dt.timedelta(days=7)
    return slot.astimezone(dt.UTC)


async def open_due_routine_checkins(
    session: AsyncSession, now: dt.datetime, *, grace: dt.timedelta = dt.timedelta(hours=6)
) -> list[str]:
    """Open a check-in for every routine slot due since the last run. Returns the check-in
    ids opened or joined. Commits."""
    opened: list[str] = []
    schedules = (
        (await session.execute(select(RoutineSchedule).where(RoutineSchedule.active)))
        .scalars()
        .all()
    )
    for sched in schedules:
        slot = latest_slot(now, sched.weekday, sched.time_min, sched.tz)
        if slot < sched.created_at or (
            sched.last_slot_at is not None and slot <= sched.last_slot_at
        ):
            continue
        sched.last_slot_at = slot
        if now - slot > grace:
            log.warning("routine %s: slot %s missed by over %s; skipped", sched.id, slot, grace)
            continue
        if not sched.resident.active:
            continue
        checkin, _created = await open_checkin(
            session, sched.resident, source=CheckinSource.ROUTINE, reason=ROUTINE_REASON, now=now
        )
        opened.append(checkin.id)
    await session.commit()
    return opened
