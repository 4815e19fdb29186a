"""The dispatcher's database side on SQLite and PostgreSQL: claiming (severe first, calling
hours, do-not-call, global cap, no double claim), reconciling lost attempts, callbacks,
routine check-ins and program rules."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.db.models_scheduling import (
    AttemptClaim,
    CallHold,
    DispatcherWorker,
    DoNotCall,
    Program,
    ResidentSchedule,
    RoutineSchedule,
)
from anbu.db.models_signals import MonitoringHold
from anbu.domain.calling_hours import ALL_DAYS, END_OF_DAY, CallingWindow
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus, Outcome
from anbu.domain.replies import Reply
from anbu.domain.retry import RetryPolicy
from anbu.domain.risk import HoldReason
from anbu.ports import CallRecord
from anbu.services.checkins import CheckinClosed, lose_attempt, open_checkin, record_attempt
from anbu.services.rules import load_rules
from scheduler.claims import ClaimPass, claim_due, orphaned_attempts
from scheduler.dispatcher import SEVERE_PRIORITY
from scheduler.routine import latest_slot, open_due_routine_checkins

KST = dt.timezone(dt.timedelta(hours=9))
WED_10 = dt.datetime(2026, 11, 25, 10, tzinfo=KST).astimezone(dt.UTC)
SAT_12 = dt.datetime(2026, 11, 28, 12, tzinfo=KST).astimezone(dt.UTC)
MON_09 = dt.datetime(2026, 11, 30, 9, tzinfo=KST).astimezone(dt.UTC)
ANYTIME = CallingWindow(start=dt.time(0), end=END_OF_DAY, weekdays=ALL_DAYS, call_on_holidays=True)
POLICY = RetryPolicy(max_attempts=3, interval=dt.timedelta(seconds=30))


async def _residents(session: AsyncSession, n: int) -> list[Resident]:
    district = District(code="11620", name="관악구")
    people = [
        Resident(district=district, name=f"주민{i}", phone=f"010{i:08d}", dong="신림동")
        for i in range(n)
    ]
    session.add_all(people)
    await session.flush()
    return people


async def _worker(session: AsyncSession) -> int:
    row = DispatcherWorker(host="test", pid=1)
    session.add(row)
    await session.flush()
    return row.id


async def _due_now(sessions: async_sessionmaker[AsyncSession], n: int) -> tuple[list[Checkin], int]:
    """``n`` residents, each with an API check-in due at WED_10, and one dispatcher worker."""
    async with sessions() as s:
        checkins = [
            (await open_checkin(s, p, source=CheckinSource.API, reason="a", now=WED_10))[0]
            for p in await _residents(s, n)
        ]
        worker = await _worker(s)
        await s.commit()
    return checkins, worker


async def _claim(
    session: AsyncSession,
    worker: int,
    now: dt.datetime,
    *,
    limit: int = 10,
    cap: int = 50,
    window: CallingWindow = ANYTIME,
    hung_up: frozenset[str] = frozenset(),
    refill_allowance: int | None = None,
) -> ClaimPass:
    return await claim_due(
        session,
        worker_id=worker,
        now=now,
        global_cap=cap,
        can_start=lambda _t: "engine",
        limit=limit,
        trunk_of=lambda _n: "trunk",
        severe_priority=SEVERE_PRIORITY,
        default_policy=POLICY,
        default_window=window,
        hung_up=hung_up,
        refill_allowance=refill_allowance,
    )


async def _claim_in(
    sessions: async_sessionmaker[AsyncSession], worker: int, now: dt.datetime, **kw: Any
) -> ClaimPass:
    """One claiming pass in a session of its own, as the dispatcher runs it."""
    async with sessions() as s:
        return await _claim(s, worker, now, **kw)


def _record(
    attempt: CallAttempt, result: CallResult, at: dt.datetime, reply: Reply | None = None
) -> CallRecord:
    return CallRecord(
        channel_id=attempt.channel_id,
        result=result,
        hangup_cause=None,
        originated_at=at,
        answered_at=at if result is CallResult.ANSWERED else None,
        ended_at=at,
        reply=reply,
    )


async def test_given_normal_and_severe_due_when_one_slot_then_severe_is_claimed_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        calm, severe = await _residents(s, 2)
        await open_checkin(s, calm, source=CheckinSource.API, reason="a", now=WED_10)
        c2, _ = await open_checkin(
            s, severe, source=CheckinSource.SIGNAL, reason="b", now=WED_10, priority=SEVERE_PRIORITY
        )
        worker = await _worker(s)
        await s.commit()
    out = await _claim_in(sessions, worker, WED_10, limit=1)
    assert [c.checkin_id for c in out.claimed] == [c2.id]


async def test_given_saturday_when_claiming_then_normal_waits_for_monday_and_severe_rings(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        calm, severe = await _residents(s, 2)
        c1, _ = await open_checkin(s, calm, source=CheckinSource.API, reason="a", now=SAT_12)
        c2, _ = await open_checkin(
            s, severe, source=CheckinSource.SIGNAL, reason="b", now=SAT_12, priority=SEVERE_PRIORITY
        )
        worker = await _worker(s)
        await s.commit()
    out = await _claim_in(sessions, worker, SAT_12, window=CallingWindow())
    assert [c.checkin_id for c in out.claimed] == [c2.id]
    assert out.deferred == 1
    async with sessions() as s:
        first = (
            await s.execute(select(CallAttempt).where(CallAttempt.checkin_id == c1.id))
        ).scalar_one()
        assert first.status is AttemptStatus.SCHEDULED
        assert first.scheduled_for == MON_09


async def test_given_do_not_call_number_when_claiming_then_case_closes_for_an_official(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        (person,) = await _residents(s, 1)
        s.add(DoNotCall(phone=person.phone, reason="본인 거부"))
        checkin, _ = await open_checkin(
            s, person, source=CheckinSource.SIGNAL, reason="a", now=WED_10, priority=SEVERE_PRIORITY
        )
        worker = await _worker(s)
        await s.commit()
    out = await _claim_in(sessions, worker, WED_10)
    assert out.claimed == []
    assert [(e.checkin_id, e.outcome) for e in out.closed] == [(checkin.id, Outcome.DECLINED)]
    async with sessions() as s:
        stored = await s.get(Checkin, checkin.id)
        assert stored is not None
        assert stored.status is CheckinStatus.CANCELLED
        assert stored.attempts == []
        assert "do_not_call" in stored.reason


def _call_hold(resident_id: str) -> tuple[CallHold, dt.datetime]:
    until = WED_10 + dt.timedelta(days=1)
    starts = WED_10 - dt.timedelta(hours=1)
    return CallHold(resident_id=resident_id, starts_at=starts, ends_at=until), until


def _hospital_stay(resident_id: str) -> tuple[MonitoringHold, dt.datetime]:
    until = WED_10 + dt.timedelta(days=3)
    hold = MonitoringHold(
        resident_id=resident_id,
        starts_at=WED_10 - dt.timedelta(days=1),
        ends_at=until,
        reason=HoldReason.HOSPITAL,
    )
    return hold, until


# A call hold until tomorrow, and a monitoring hold for a hospital stay: no call until it ends.
@pytest.mark.parametrize("make_hold", [_call_hold, _hospital_stay], ids=["call", "hospital"])
async def test_given_hold_when_claiming_then_attempt_moves_to_hold_end(
    sessions: async_sessionmaker[AsyncSession],
    make_hold: Callable[[str], tuple[CallHold | MonitoringHold, dt.datetime]],
) -> None:
    async with sessions() as s:
        (person,) = await _residents(s, 1)
        hold, until = make_hold(person.id)
        s.add(hold)
        await open_checkin(s, person, source=CheckinSource.API, reason="a", now=WED_10)
        worker = await _worker(s)
        await s.commit()
    out = await _claim_in(sessions, worker, WED_10)
    assert (out.claimed, out.deferred) == ([], 1)
    assert out.next_due == until


async def test_given_cap_reached_by_other_workers_when_claiming_then_nothing_starts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    _, worker = await _due_now(sessions, 4)
    first = await _claim_in(sessions, worker, WED_10, cap=3)
    second = await _claim_in(sessions, worker, WED_10, cap=3)
    assert (len(first.claimed), len(second.claimed)) == (3, 0)


@pytest.mark.parametrize(("allowance", "expected"), [(None, 3), (2, 2), (0, 0)])
async def test_given_hung_up_calls_unstored_when_claiming_then_their_channels_count_as_free(
    sessions: async_sessionmaker[AsyncSession], allowance: int | None, expected: int
) -> None:
    _, worker = await _due_now(sessions, 8)
    first = await _claim_in(sessions, worker, WED_10, cap=4)
    # Three of the four calls have hung up, results not stored: still dialing in the table.
    ended = frozenset(c.attempt_id for c in first.claimed[:3]) | {"stored-meanwhile"}
    second = await _claim_in(
        sessions, worker, WED_10, cap=4, hung_up=ended, refill_allowance=allowance
    )
    assert (len(first.claimed), len(second.claimed)) == (4, expected)


async def test_given_a_wave_refilled_in_two_passes_when_claiming_then_the_rest_is_free(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    _, worker = await _due_now(sessions, 12)
    wave = await _claim_in(sessions, worker, WED_10, cap=4)
    ended = frozenset(c.attempt_id for c in wave.claimed)  # all four hung up, none stored
    # Alone: the allowance is the cap less its calls up (none yet).
    first = await _claim_in(
        sessions, worker, WED_10, cap=4, limit=2, hung_up=ended, refill_allowance=4
    )
    # The table now says six dialing; two calls are really up.
    second = await _claim_in(sessions, worker, WED_10, cap=4, hung_up=ended, refill_allowance=2)
    assert [len(p.claimed) for p in (wave, first, second)] == [4, 2, 2]


async def test_given_two_claimers_at_once_when_claiming_then_no_attempt_is_claimed_twice(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    _, w1 = await _due_now(sessions, 30)
    async with sessions() as s:
        w2 = await _worker(s)
        await s.commit()

    async def claimer(worker: int) -> list[str]:
        got: list[str] = []
        for _ in range(10):
            async with sessions() as s:
                got += [c.attempt_id for c in (await _claim(s, worker, WED_10, limit=4)).claimed]
        return got

    a, b = await asyncio.gather(claimer(w1), claimer(w2))
    assert len(a) + len(b) == 30
    assert not set(a) & set(b)
    async with sessions() as s:
        claims = (await s.execute(select(AttemptClaim))).scalars().all()
        assert len(claims) == 30


async def test_given_attempt_of_dead_worker_when_reconciled_then_counted_and_retried_later(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (checkin,), dead = await _due_now(sessions, 1)
    async with sessions() as s:
        (claimed,) = (await _claim(s, dead, WED_10)).claimed
    later = WED_10 + dt.timedelta(seconds=5)
    async with sessions() as s:
        lost = await orphaned_attempts(s, live_workers=set(), own_inflight=set())
        assert [x.attempt_id for x in lost] == [claimed.attempt_id]
        assert await orphaned_attempts(s, live_workers={dead}, own_inflight=set()) == []
        assert await lose_attempt(s, claimed.attempt_id, POLICY, later) is None
        await s.commit()
    async with sessions() as s:
        stored = await s.get(Checkin, checkin.id)
        assert stored is not None
        assert [a.status for a in stored.attempts] == [
            AttemptStatus.UNKNOWN,
            AttemptStatus.SCHEDULED,
        ]
        assert stored.attempts[1].scheduled_for == later + POLICY.interval
        # A late result for the lost attempt must not move the case a second time.
        assert (
            await record_attempt(
                s,
                claimed.attempt_id,
                _record(stored.attempts[0], CallResult.NO_ANSWER, later),
                POLICY,
                later,
            )
            is None
        )
        await s.commit()
        assert len((await s.execute(select(CallAttempt))).scalars().all()) == 2


async def test_given_lost_attempts_when_policy_used_up_then_case_is_exhausted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    policy = RetryPolicy(max_attempts=2, interval=dt.timedelta(seconds=0))
    _, worker = await _due_now(sessions, 1)
    closed = None
    for _ in range(2):
        async with sessions() as s:
            (claimed,) = (await _claim(s, worker, WED_10)).claimed
            closed = await lose_attempt(s, claimed.attempt_id, policy, WED_10)
            await s.commit()
    assert closed is not None
    assert (closed.status, closed.outcome) == (CheckinStatus.EXHAUSTED, Outcome.UNREACHABLE)


async def _claim_and_ask_for_callback(
    s: AsyncSession, worker: int, at: dt.datetime, policy: RetryPolicy
) -> CheckinClosed | None:
    """Claims the one due attempt; the resident answers and says "call me later"."""
    (claimed,) = (await _claim(s, worker, at)).claimed
    attempt = await s.get(CallAttempt, claimed.attempt_id)
    assert attempt is not None
    reply = _record(attempt, CallResult.ANSWERED, at, Reply.CALLBACK)
    return await record_attempt(s, attempt.id, reply, policy, at)


async def test_given_call_me_later_when_recorded_then_one_callback_then_official(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    policy = RetryPolicy(max_attempts=1, max_callbacks=1, callback_delay=dt.timedelta(hours=2))
    (checkin,), worker = await _due_now(sessions, 1)
    async with sessions() as s:
        assert await _claim_and_ask_for_callback(s, worker, WED_10, policy) is None
        await s.commit()
    later = WED_10 + dt.timedelta(hours=2)
    async with sessions() as s:
        stored = await s.get(Checkin, checkin.id)
        assert stored is not None
        assert stored.attempts[1].scheduled_for == later
        closed = await _claim_and_ask_for_callback(s, worker, later, policy)
        await s.commit()
    assert closed is not None
    assert (closed.status, closed.outcome) == (CheckinStatus.COMPLETED, Outcome.CALLBACK)


async def test_given_program_and_resident_override_when_loading_rules_then_they_apply(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        a, b = await _residents(s, 2)
        default = Program(name="기본", is_default=True, max_attempts=4, interval_s=300)
        special = Program(name="집중", max_attempts=2, interval_s=60, weekdays="0123456")
        s.add_all([default, special])
        await s.flush()
        s.add(ResidentSchedule(resident_id=b.id, program_id=special.id, start_min=600, end_min=720))
        await s.commit()
        rules = await load_rules(
            s,
            [(a.id, a.phone), (b.id, b.phone)],
            WED_10,
            default_policy=POLICY,
            default_window=ANYTIME,
        )
    assert (rules[a.id].policy.max_attempts, rules[a.id].policy.interval) == (
        4,
        dt.timedelta(minutes=5),
    )
    assert rules[a.id].window.weekdays == frozenset(range(5))
    assert rules[b.id].policy.max_attempts == 2
    assert (rules[b.id].window.start, rules[b.id].window.end) == (dt.time(10), dt.time(12))
    assert rules[b.id].window.weekdays == ALL_DAYS


async def _weekly_routine(
    sessions: async_sessionmaker[AsyncSession],
    weekday: int,
    time_min: int,
    created_at: dt.datetime,
) -> None:
    """One resident called every week on ``weekday`` at ``time_min`` minutes past midnight KST."""
    async with sessions() as s:
        (person,) = await _residents(s, 1)
        s.add(
            RoutineSchedule(
                resident_id=person.id, weekday=weekday, time_min=time_min, created_at=created_at
            )
        )
        await s.commit()


async def test_given_weekly_routine_when_job_runs_twice_then_one_checkin_per_slot(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Wednesday 09:30 KST weekly; created the week before.
    await _weekly_routine(sessions, 2, 9 * 60 + 30, WED_10 - dt.timedelta(days=8))
    async with sessions() as s:
        first = await open_due_routine_checkins(s, WED_10)
    async with sessions() as s:
        again = await open_due_routine_checkins(s, WED_10 + dt.timedelta(minutes=5))
    assert len(first) == 1
    assert again == []
    async with sessions() as s:
        checkin = await s.get(Checkin, first[0])
        assert checkin is not None
        assert checkin.source is CheckinSource.ROUTINE
        sched = (await s.execute(select(RoutineSchedule))).scalar_one()
        assert sched.last_slot_at == dt.datetime(2026, 11, 25, 9, 30, tzinfo=KST).astimezone(dt.UTC)


async def test_given_slot_missed_for_a_day_when_job_runs_then_it_is_skipped_not_rung_late(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _weekly_routine(sessions, 1, 600, WED_10 - dt.timedelta(days=30))
    async with sessions() as s:
        assert await open_due_routine_checkins(s, WED_10) == []


def test_given_times_when_computing_latest_weekly_slot_then_table_holds() -> None:
    tue_10 = dt.datetime(2026, 11, 24, 10, tzinfo=KST).astimezone(dt.UTC)
    assert latest_slot(WED_10, 2, 600, "Asia/Seoul") == WED_10
    assert latest_slot(WED_10, 1, 600, "Asia/Seoul") == tue_10
    assert latest_slot(WED_10, 2, 601, "Asia/Seoul") == WED_10 - dt.timedelta(days=7, minutes=-1)


async def test_given_postgres_worker_when_registered_then_liveness_follows_its_connection(
    db_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from scheduler.workers import WorkerLife

    one, two = WorkerLife(db_engine, sessions), WorkerLife(db_engine, sessions)
    now = WED_10
    id1 = await one.register(now)
    if db_engine.dialect.name != "postgresql":
        async with sessions() as s:
            assert await one.live_workers(s) == {id1}
        await one.close(now)
        return
    id2 = await two.register(now)
    async with sessions() as s:
        assert {id1, id2} <= await one.live_workers(s)
    await two.close(now)  # its lock connection closes, as when the process dies
    async with sessions() as s:
        live = await one.live_workers(s)
    await one.close(now)
    assert id1 in live
    assert id2 not in live
