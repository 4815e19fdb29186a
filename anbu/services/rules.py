"""Per-resident rules read from the database: the retry policy and the calling window.

Program rows become :class:`~anbu.domain.retry.RetryPolicy` and
:class:`~anbu.domain.calling_hours.CallingWindow`; which programme a resident follows depends
on their district (:class:`~anbu.domain.program_scope.ProgramBook`); a resident's schedule,
holds and the do-not-call list narrow them. With no program rows at all the dispatcher's
defaults apply.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import Resident
from anbu.db.models_scheduling import CallHold, DoNotCall, Program, ResidentSchedule
from anbu.db.models_signals import MonitoringHold
from anbu.domain.calling_hours import (
    END_OF_DAY,
    CallingWindow,
    Hold,
    ResidentHours,
    resolve_window,
)
from anbu.domain.program_scope import ProgramBook, ProgramKey
from anbu.domain.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class ResidentRules:
    policy: RetryPolicy
    window: CallingWindow


def minutes_to_time(minutes: int) -> dt.time:
    """Minutes after midnight -> time; 1440 is 24:00 (the end of the day, exclusive)."""
    if not 0 <= minutes <= 1440:
        raise ValueError(f"minutes of day out of range: {minutes}")
    if minutes == 1440:
        return END_OF_DAY
    return dt.time(minutes // 60, minutes % 60)


def time_to_minutes(value: dt.time) -> int:
    return 1440 if value == END_OF_DAY else value.hour * 60 + value.minute


def parse_weekdays(text: str) -> frozenset[int]:
    return frozenset(int(c) for c in text if c.isdigit())


def format_weekdays(days: Iterable[int]) -> str:
    return "".join(str(d) for d in sorted(set(days)))


def program_policy(p: Program) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=p.max_attempts,
        interval=dt.timedelta(seconds=p.interval_s),
        busy_interval=dt.timedelta(seconds=p.busy_interval_s),
        failure_interval=dt.timedelta(seconds=p.failure_interval_s),
        max_callbacks=p.max_callbacks,
        callback_delay=dt.timedelta(seconds=p.callback_delay_s),
    )


def program_window(p: Program) -> CallingWindow:
    return CallingWindow(
        start=minutes_to_time(p.start_min),
        end=minutes_to_time(p.end_min),
        weekdays=parse_weekdays(p.weekdays),
        call_on_holidays=p.call_on_holidays,
        tz=p.tz,
        severe_start=minutes_to_time(p.severe_start_min),
        severe_end=minutes_to_time(p.severe_end_min),
    )


def resident_hours(s: ResidentSchedule) -> ResidentHours:
    return ResidentHours(
        start=minutes_to_time(s.start_min) if s.start_min is not None else None,
        end=minutes_to_time(s.end_min) if s.end_min is not None else None,
        weekdays=parse_weekdays(s.weekdays) if s.weekdays is not None else None,
        call_on_holidays=s.call_on_holidays,
        tz=s.tz,
    )


class Programs:
    """Programme rows with their :class:`ProgramBook`: which row a district's resident follows."""

    def __init__(self, rows: Iterable[Program]) -> None:
        self.by_id = {p.id: p for p in rows}
        self.book = ProgramBook(
            ProgramKey(p.id, p.district_id, p.replaces_id, p.is_default)
            for p in self.by_id.values()
        )

    def resolve(self, district_id: int, chosen: int | None) -> Program | None:
        found = self.book.resolve(district_id, chosen)
        return self.by_id[found] if found is not None else None


async def program_book(
    session: AsyncSession, district_ids: Collection[int] | None = None
) -> Programs:
    """The shared programmes and those of ``district_ids`` (None: every district's)."""
    query = select(Program)
    if district_ids is not None:
        query = query.where(
            or_(Program.district_id.is_(None), Program.district_id.in_(set(district_ids)))
        )
    return Programs((await session.execute(query)).scalars().all())


@dataclass(frozen=True, slots=True)
class Followed:
    """One resident's district, own schedule (None: none stored) and the programme they follow
    (None: no programme applies, the built-in defaults do)."""

    district_id: int
    schedule: ResidentSchedule | None
    program: Program | None


async def followed_programs(
    session: AsyncSession, resident_ids: Collection[str]
) -> dict[str, Followed]:
    """For each resident: district, own schedule and programme, in two queries whatever the
    count. A resident id that is not stored is left out."""
    if not resident_ids:
        return {}
    rows = (
        await session.execute(
            select(Resident.id, Resident.district_id, ResidentSchedule)
            .outerjoin(ResidentSchedule, ResidentSchedule.resident_id == Resident.id)
            .where(Resident.id.in_(set(resident_ids)))
        )
    ).all()
    book = await program_book(session, {district for _, district, _ in rows})
    return {
        rid: Followed(
            district,
            sched,
            book.resolve(district, sched.program_id if sched is not None else None),
        )
        for rid, district, sched in rows
    }


async def schedules_of(
    session: AsyncSession, resident_ids: list[str]
) -> dict[str, ResidentSchedule]:
    """The residents' own schedules (programme and hours), by resident id."""
    rows = await session.execute(
        select(ResidentSchedule).where(ResidentSchedule.resident_id.in_(resident_ids))
    )
    return {s.resident_id: s for s in rows.scalars()}


async def load_rules(
    session: AsyncSession,
    residents: Iterable[tuple[str, str]],
    now: dt.datetime,
    *,
    default_policy: RetryPolicy,
    default_window: CallingWindow,
) -> dict[str, ResidentRules]:
    """Rules for each ``(resident_id, phone)``, read in five queries whatever the count; each
    resident follows their own district's programme."""
    pairs = dict(residents)
    if not pairs:
        return {}
    ids = list(pairs)
    followed = await followed_programs(session, ids)
    holds: dict[str, list[Hold]] = {}
    for h in (
        await session.execute(
            select(CallHold).where(
                CallHold.resident_id.in_(ids),
                or_(CallHold.ends_at.is_(None), CallHold.ends_at > now),
            )
        )
    ).scalars():
        holds.setdefault(h.resident_id, []).append(Hold(h.starts_at, h.ends_at, h.reason))
    # A monitoring hold (hospital stay, travel) entered once for the risk rules stops calls too:
    # the resident is not at that phone.
    for m in (
        await session.execute(
            select(MonitoringHold).where(
                MonitoringHold.resident_id.in_(ids), MonitoringHold.ends_at > now
            )
        )
    ).scalars():
        holds.setdefault(m.resident_id, []).append(
            Hold(m.starts_at, m.ends_at, f"monitoring hold: {m.reason.value}")
        )
    blocked = set(
        (
            await session.execute(
                select(DoNotCall.phone).where(DoNotCall.phone.in_(set(pairs.values())))
            )
        ).scalars()
    )
    out: dict[str, ResidentRules] = {}
    for resident_id, phone in pairs.items():
        found = followed.get(resident_id)
        sched = found.schedule if found is not None else None
        program = found.program if found is not None else None
        policy = program_policy(program) if program else default_policy
        base = program_window(program) if program else default_window
        window = resolve_window(
            base,
            resident_hours(sched) if sched else None,
            holds=tuple(holds.get(resident_id, ())),
            do_not_call=phone in blocked,
        )
        out[resident_id] = ResidentRules(policy, window)
    return out


async def resident_rules(
    session: AsyncSession, resident_id: str, phone: str, now: dt.datetime
) -> ResidentRules:
    """One resident's rules, with the dispatcher's built-in defaults (``RetryPolicy()``,
    ``CallingWindow()``) where no programme applies."""
    rules = await load_rules(
        session,
        [(resident_id, phone)],
        now,
        default_policy=RetryPolicy(),
        default_window=CallingWindow(),
    )
    return rules[resident_id]
