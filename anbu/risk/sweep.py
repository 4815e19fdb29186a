"""The periodic sweep: re-grade everyone whose risk can have changed with the passing of time.

Invariant: a resident who is not a candidate grades now exactly as at their last evaluation.
Between events a resident's baselines do not change, so only time moves an assessment, and a
resident is a candidate when any of the ways time can move it is due:

- a channel's ``signal_states.status_due_at <= now``: the earliest time at which, with no further
  events, the channel could turn LOW (its 50-hour window slides over empty hours) or QUIET
  (:func:`anbu.domain.risk.status_due_at`, stored with every baseline update; a channel still
  learning never changes without events, so it has none);
- a device's ``devices.stale_due_at <= now``: it could have gone stale (device_down);
- ``monitoring_profiles.level != 'none'``: any level can fall back (a channel LOW or quiet
  recovers its rate, a hold starts) or rise (a quiet stretch grows severe).

A resident graded 'none' has no channel low or quiet (or only while a hold or a disabled profile
hid it, and then that channel is due already), so until one of the due times passes nothing can
give them a point. A stored due time stays put until an event or a profile change recomputes
it, so a resident stays a candidate from their first due time on; the sweep stores the due
times it recomputes for its candidates where they differ (rows a migration marked due, rules
changed since), so those stop being candidates. Holds only delay the rules and are left out of
the due times (earlier is safe, later would not be). All this assumes every stored event was
followed by an evaluation (ingestion grades every batch; if recording a grade fails it marks
the residents due). Candidates are fetched in resident-id pages, so memory stays bounded;
:func:`regrade_all` grades everyone to check the invariant (tests, the benchmark).
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
from anbu.domain.risk import DEFAULT_RULES, Level, Rules, status_due_at
from anbu.risk.bulk import DueChange, bulk_store
from anbu.risk.evaluate import Gathered, assess_all, gather, grade_in

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
    due_refreshed: int = 0  # stored due times that were stale (rules changed, a migration)
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
            "due_refreshed": self.due_refreshed,
            "seconds": round(self.seconds, 3),
        }


_GRADED = [level for level in Level if level is not Level.NONE]


def _candidates(now: dt.datetime, after: str, limit: int):  # type: ignore[no-untyped-def]
    due = select(SignalState.resident_id).where(SignalState.status_due_at <= now)
    stale = select(Device.resident_id).where(Device.stale_due_at <= now, Device.active.is_(True))
    # IN, not !=: the level index serves the few graded residents instead of a scan of all.
    graded = select(MonitoringProfile.resident_id).where(MonitoringProfile.level.in_(_GRADED))
    u = union(due, stale, graded).subquery()
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
            found = await gather(session, ids, now)
            results = await grade_in(session, found.subjects, found.context, now, rules)
            store = await bulk_store(session)
            report.due_refreshed += await store.refresh_due(_due_changes(found, rules))
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


def _due_changes(found: Gathered, rules: Rules) -> list[DueChange]:
    """The candidates' due times recomputed from their stored baselines, where they differ
    from the stored ones. Ingestion stores a due time with every baseline it saves, so these
    differ only when the rules changed or a migration marked rows due: without the refresh such
    a resident would stay a candidate until their next event, for nothing."""
    stored = found.stored.due_times()
    out: list[DueChange] = []
    for s in found.subjects:
        profile = found.residents[s.resident_id].profile
        assert profile is not None  # subjects have one
        for channel, b in s.baselines.items():
            new = status_due_at(b, profile.window_h, rules)
            old = stored.get((s.resident_id, channel))
            if new != old:
                out.append(DueChange(s.resident_id, channel, old, new))
    return out


@dataclass(slots=True)
class RegradeReport:
    at: dt.datetime
    residents: int = 0
    # (resident, stored level, level graded now) wherever the two differ
    differences: list[tuple[str, Level, Level]] = field(default_factory=list)
    seconds: float = 0.0


async def regrade_all(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    *,
    rules: Rules = DEFAULT_RULES,
    page: int = 2000,
) -> RegradeReport:
    """Grade every resident at ``now`` as :func:`evaluate_residents` does, writing nothing, and
    list those whose stored level differs. Right after ``sweep(sessions, now)`` the invariant
    says there are none: this is its check (tests, the benchmark), read in resident-id pages."""
    started = time.perf_counter()
    report = RegradeReport(at=now)
    after = ""
    while True:
        async with sessions() as session:
            ids = list(
                (
                    await session.execute(
                        select(MonitoringProfile.resident_id)
                        .where(MonitoringProfile.resident_id > after)
                        .order_by(MonitoringProfile.resident_id)
                        .limit(page)
                    )
                ).scalars()
            )
            if not ids:
                break
            found = await gather(session, ids, now)
        for s, a in zip(found.subjects, assess_all(found.subjects, found.context, now, rules),
                        strict=True):  # fmt: skip
            if a.level is not s.level:
                report.differences.append((s.resident_id, s.level, a.level))
        report.residents += len(ids)
        after = ids[-1]
    report.seconds = time.perf_counter() - started
    return report
