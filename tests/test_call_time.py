"""The learned best time to call (pure, table-driven)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import District, Resident
from anbu.domain.call_time import best_time, learned_hour
from anbu.domain.calling_hours import CallingWindow
from anbu.domain.calls import CallResult
from anbu.domain.checkin import CheckinSource
from anbu.domain.replies import Reply
from anbu.domain.retry import RetryPolicy
from anbu.ports import CallRecord
from anbu.services.checkins import claim_attempts, open_checkin, record_attempt
from tests.call_rig import scheduled_attempt

KST = dt.timezone(dt.timedelta(hours=9))


def kst(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=KST)  # 2026-12-01 is a Tuesday


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        ([], None),
        ([10, 10], None),  # too few answers to learn from
        ([10, 10, 10], 10),
        ([9, 10, 11, 10, 15], 10),  # neighbours count half: 10 beats a lone 15
        ([9, 9, 11, 11, 10], 10),  # 10 is between both habits
        ([14, 14, 9, 9, 9], 9),  # more answers win
        ([14, 14, 9, 9], 9),  # a tie: the earlier hour
    ],
)
def test_learned_hour(hours: list[int], expected: int | None) -> None:
    answered = [kst(1 + i % 5, h, 17) for i, h in enumerate(hours)]
    assert learned_hour(answered, KST) == expected


WINDOW = CallingWindow()  # weekdays 09:00-18:00 Asia/Seoul, not on holidays


@pytest.mark.parametrize(
    ("at", "hour", "expected"),
    [
        (kst(1, 9), None, kst(1, 9)),  # nothing learned: as wanted
        (kst(1, 9), 14, kst(1, 14)),  # later the same day, inside the hours
        (kst(1, 14, 30), 14, kst(1, 14, 30)),  # already in that hour
        (kst(1, 15), 10, kst(1, 15)),  # tomorrow 10:00 is 19 h later: too far, as wanted
        (kst(1, 9), 20, kst(1, 9)),  # 20:00 is outside the calling hours: as wanted
        (kst(4, 17), 10, kst(4, 17)),  # Friday 17:00 -> Saturday is not a calling day
        (kst(1, 23), 10, kst(2, 10)),  # late at night: the next morning, 11 h later
    ],
)
def test_best_time_stays_inside_calling_hours_and_near(
    at: dt.datetime, hour: int | None, expected: dt.datetime
) -> None:
    assert best_time(at.astimezone(dt.UTC), hour, WINDOW) == expected.astimezone(dt.UTC)


# --- applied: a routine check-in's retry, over both databases ----------------------------------


async def _attempt(
    sessions: async_sessionmaker[AsyncSession],
    checkin_id: str,
    result: CallResult,
    at: dt.datetime,
    policy: RetryPolicy,
) -> None:
    async with sessions() as s:
        attempt_id = (await scheduled_attempt(s, checkin_id)).id
        assert await claim_attempts(s, [attempt_id], at) == {attempt_id}
        answered = result is CallResult.ANSWERED
        record = CallRecord(
            channel_id=attempt_id, result=result, hangup_cause=16 if answered else 19,
            originated_at=at, answered_at=at + dt.timedelta(seconds=5) if answered else None,
            ended_at=at + dt.timedelta(seconds=30), reply=Reply.OK if answered else None,
        )  # fmt: skip
        await record_attempt(s, attempt_id, record, policy, at + dt.timedelta(seconds=30))
        await s.commit()


async def _next_attempt(sessions: async_sessionmaker[AsyncSession], checkin_id: str) -> dt.datetime:
    async with sessions() as s:
        return (await scheduled_attempt(s, checkin_id)).scheduled_for


async def test_given_answers_at_two_when_a_routine_call_is_unanswered_then_retried_at_two(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    policy = RetryPolicy(max_attempts=3, interval=dt.timedelta(minutes=10))
    async with sessions() as s:
        d = District(code="11620", name="관악구")
        s.add(d)
        await s.flush()
        r = Resident(district_id=d.id, name="김안부", phone="01099990001", dong="신림동")
        s.add(r)
        await s.commit()
        rid = r.id

    async def case(source: CheckinSource, at: dt.datetime) -> str:
        async with sessions() as s:
            resident = await s.get(Resident, rid)
            assert resident is not None
            c, _ = await open_checkin(s, resident, source=source, reason="t", now=at)
            await s.commit()
            return c.id

    # Before anything is learned, a routine retry keeps the policy's time.
    first = await case(CheckinSource.ROUTINE, kst(1, 10).astimezone(dt.UTC))
    await _attempt(sessions, first, CallResult.NO_ANSWER, kst(1, 10).astimezone(dt.UTC), policy)
    assert await _next_attempt(sessions, first) == kst(1, 10, 10).astimezone(dt.UTC)
    await _attempt(sessions, first, CallResult.ANSWERED, kst(1, 14).astimezone(dt.UTC), policy)
    for day in (2, 3):  # two more calls answered around 14:00
        c = await case(CheckinSource.API, kst(day, 14, 20).astimezone(dt.UTC))
        await _attempt(
            sessions, c, CallResult.ANSWERED, kst(day, 14, 20).astimezone(dt.UTC), policy
        )

    routine = await case(CheckinSource.ROUTINE, kst(7, 10).astimezone(dt.UTC))  # Monday 10:00
    await _attempt(sessions, routine, CallResult.NO_ANSWER, kst(7, 10).astimezone(dt.UTC), policy)
    assert await _next_attempt(sessions, routine) == kst(7, 14).astimezone(dt.UTC)
    await _attempt(sessions, routine, CallResult.ANSWERED, kst(7, 14).astimezone(dt.UTC), policy)

    # A case raised by signals is never held back for a better hour.
    signal = await case(CheckinSource.SIGNAL, kst(8, 10).astimezone(dt.UTC))
    await _attempt(sessions, signal, CallResult.NO_ANSWER, kst(8, 10).astimezone(dt.UTC), policy)
    assert await _next_attempt(sessions, signal) == kst(8, 10, 10).astimezone(dt.UTC)
