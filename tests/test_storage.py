"""Storage contract on SQLite and PostgreSQL: models, migrations, case bookkeeping."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus, Outcome
from anbu.domain.replies import Reply
from anbu.domain.retry import RetryPolicy
from anbu.ports import CallRecord
from anbu.services.checkins import claim_attempts, open_checkin, record_attempt

T0 = dt.datetime(2026, 11, 25, 1, 2, 3, 456000, tzinfo=dt.UTC)


async def _resident(session: AsyncSession, phone: str = "01012345678") -> Resident:
    district = District(code="11620", name="관악구")
    resident = Resident(district=district, name="김안부", phone=phone, dong="신림동")
    session.add(resident)
    await session.flush()
    return resident


async def _new_case(session: AsyncSession) -> Checkin:
    """A check-in asked through the API at T0 for a new resident (one attempt scheduled)."""
    checkin, _ = await open_checkin(
        session, await _resident(session), source=CheckinSource.API, reason="r", now=T0
    )
    return checkin


def _record(channel: str, result: CallResult, reply: Reply | None = None) -> CallRecord:
    return CallRecord(
        channel_id=channel,
        result=result,
        hangup_cause=16 if result is CallResult.ANSWERED else 19,
        originated_at=T0,
        answered_at=T0 + dt.timedelta(milliseconds=4) if result is CallResult.ANSWERED else None,
        ended_at=T0 + dt.timedelta(seconds=9, milliseconds=123),
        reply=reply,
        keys="1" if reply is Reply.OK else "",
    )


async def test_given_new_resident_when_checkin_opened_then_first_attempt_is_due_now(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        resident = await _resident(s)
        checkin, created = await open_checkin(
            s, resident, source=CheckinSource.API, reason="전화 기록 3일 없음", now=T0
        )
        await s.commit()
        assert created
    async with sessions() as s:
        stored = await s.get(Checkin, checkin.id)
        assert stored is not None
        assert stored.status is CheckinStatus.PENDING
        assert [a.attempt_no for a in stored.attempts] == [1]
        assert stored.attempts[0].scheduled_for == T0  # millisecond precision survives
        assert stored.reason == "전화 기록 3일 없음"


async def test_given_open_checkin_when_second_reason_arrives_then_it_joins_the_case(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        resident = await _resident(s)
        first, _ = await open_checkin(s, resident, source=CheckinSource.API, reason="a", now=T0)
        second, created = await open_checkin(
            s, resident, source=CheckinSource.SIGNAL, reason="b", now=T0, priority=5
        )
        await s.commit()
        assert not created
        assert second.id == first.id
        assert second.reason == "a\nb"
        assert second.priority == 5
        count = len((await s.execute(select(Checkin))).scalars().all())
        assert count == 1


async def test_given_scheduled_attempt_when_claimed_twice_then_only_one_claim_wins(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        checkin = await _new_case(s)
        await s.commit()
        attempt_id = checkin.attempts[0].id
    async with sessions() as s1:
        assert await claim_attempts(s1, [attempt_id], T0)
        await s1.commit()
    async with sessions() as s2:
        assert not await claim_attempts(s2, [attempt_id], T0)
        await s2.commit()
        attempt = await s2.get(CallAttempt, attempt_id)
        assert attempt is not None
        assert attempt.status is AttemptStatus.DIALING


async def test_given_answered_ok_when_recorded_then_case_completes_ok(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        checkin = await _new_case(s)
        attempt = checkin.attempts[0]
        assert await claim_attempts(s, [attempt.id], T0)
        closed = await record_attempt(
            s,
            attempt.id,
            _record(attempt.channel_id, CallResult.ANSWERED, Reply.OK),
            RetryPolicy(),
            T0,
        )
        await s.commit()
        assert closed is not None
        assert closed.outcome is Outcome.OK
    async with sessions() as s:
        stored = await s.get(Checkin, checkin.id)
        assert stored is not None
        assert (stored.status, stored.outcome) == (CheckinStatus.COMPLETED, Outcome.OK)
        a = stored.attempts[0]
        assert (a.result, a.reply, a.keys, a.hangup_cause) == (
            CallResult.ANSWERED,
            Reply.OK,
            "1",
            16,
        )
        assert a.ended_at == T0 + dt.timedelta(seconds=9, milliseconds=123)


async def test_given_no_answer_when_attempts_run_out_then_case_is_exhausted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    policy = RetryPolicy(max_attempts=2)
    async with sessions() as s:
        checkin = await _new_case(s)
        await s.commit()
        first = checkin.attempts[0]
    async with sessions() as s:
        assert await claim_attempts(s, [first.id], T0)
        assert (
            await record_attempt(
                s, first.id, _record(first.channel_id, CallResult.NO_ANSWER), policy, T0
            )
            is None
        )
        await s.commit()
    async with sessions() as s:
        stored = await s.get(Checkin, checkin.id)
        assert stored is not None
        assert stored.status is CheckinStatus.PENDING
        second = stored.attempts[1]
        assert second.scheduled_for == T0 + policy.interval  # clock from dial time
        assert await claim_attempts(s, [second.id], T0)
        closed = await record_attempt(
            s, second.id, _record(second.channel_id, CallResult.NO_ANSWER), policy, T0
        )
        await s.commit()
        assert closed is not None
        assert (closed.status, closed.outcome) == (CheckinStatus.EXHAUSTED, Outcome.UNREACHABLE)


async def test_given_duplicate_external_ref_when_inserted_then_constraint_rejects_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        r = await _resident(s)
        r.external_ref = "X1"
        s.add(Resident(district_id=r.district_id, name="b", phone="01011112222", external_ref="X1"))
        with pytest.raises(IntegrityError):
            await s.commit()
