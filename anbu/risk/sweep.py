"""The periodic sweep: re-grade everyone whose risk can have changed with the passing of time.

Time alone can only (a) turn a channel quiet, (b) make a device stale, or (c) change the level
of someone who already has one (a hold ending, a quiet stretch growing severe). Each of these
has an indexed due time (``signal_states.quiet_due_at``, ``devices.stale_due_at``) or an
indexed level, so the sweep asks the database for exactly those residents instead of reading
a million baselines; everyone else was graded when their last event arrived and nothing has
changed since. Candidates are fetched in resident-id pages, so memory stays bounded.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models_signals import Device, MonitoringProfile, SignalState
from anbu.domain.risk import DEFAULT_RULES, Level, Rules
from anbu.risk.evaluate import evaluate_residents

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SweepReport:
    at: dt.datetime
    candidates: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    changed: int = 0
    checkins_opened: int = 0
    checkins_joined: int = 0
    device_tasks_opened: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at.isoformat(),
            "candidates": self.candidates,
            "levels": dict(self.levels),
            "changed": self.changed,
            "checkins_opened": self.checkins_opened,
            "checkins_joined": self.checkins_joined,
            "device_tasks_opened": self.device_tasks_opened,
            "seconds": round(self.seconds, 3),
        }


def _candidates(now: dt.datetime, after: str, limit: int):  # type: ignore[no-untyped-def]
    quiet = select(SignalState.resident_id).where(SignalState.quiet_due_at <= now)
    stale = select(Device.resident_id).where(Device.stale_due_at <= now, Device.active.is_(True))
    graded = select(MonitoringProfile.resident_id).where(MonitoringProfile.level != Level.NONE)
    u = union(quiet, stale, graded).subquery()
    col = u.c[0]
    return select(col).where(col > after).order_by(col).limit(limit)


async def sweep(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    *,
    rules: Rules = DEFAULT_RULES,
    page: int = 2000,
) -> SweepReport:
    """Grade every resident whose risk may have changed by ``now``; one transaction per page."""
    started = time.perf_counter()
    report = SweepReport(at=now)
    after = ""
    while True:
        async with sessions() as session:
            ids = list((await session.execute(_candidates(now, after, page))).scalars())
            if not ids:
                break
            results = await evaluate_residents(session, ids, now, rules)
            await session.commit()
        after = ids[-1]
        report.candidates += len(ids)
        for r in results:
            report.levels[r.level.value] += 1
            report.changed += r.changed
            report.device_tasks_opened += r.tasks_opened
            if r.checkin_id is not None:
                if r.checkin_created:
                    report.checkins_opened += 1
                else:
                    report.checkins_joined += 1
    report.seconds = time.perf_counter() - started
    log.info("risk sweep at %s: %s", now.isoformat(), report.as_dict())
    return report
