"""What real phone networks do, through the carrier stand-in (numbers 010-9999-0013..0021),
the real engine, dialer and IVR, down to the stored attempt, the case's outcome and the retry.

Each number plays one network behaviour from issue 10: a switched-off phone (the network's
announcement as early media, then 480), an INVITE nobody answers, 183 ringback music (컬러링)
never answered, keys pressed by SIP INFO and as in-band tones, and the SIP final responses
600/603/484/408. A BYE without ``Reason`` cannot be made on the stand-in (Asterisk always adds
``Reason: Q.850`` to the BYEs it sends): SIPp covers it (tests/test_sipp_interop.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.domain.calls import CallResult
from anbu.domain.checkin import CheckinSource, CheckinStatus, Outcome
from anbu.domain.replies import Reply
from anbu.domain.retry import RetryPolicy
from anbu.ports import CallRecord
from anbu.services.checkins import open_checkin, phone_unreachable_attempts, record_attempt
from tests.call_rig import Rig
from tests.test_calls_integration import audio_dir, rig  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asterisk

POLICY = RetryPolicy()
RING_S = 4.0
NOW = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)

# number -> (result, reply, keys, then): then is an Outcome (the case settles) or the delay
# until the next attempt.
CASES: dict[str, tuple[CallResult, Reply | None, str, Outcome | dt.timedelta]] = {
    "01099990013": (CallResult.UNREACHABLE, None, "", POLICY.unreachable_interval),
    "01099990014": (CallResult.NETWORK_FAILURE, None, "", POLICY.failure_interval),
    "01099990015": (CallResult.NO_ANSWER, None, "", POLICY.interval),
    "01099990016": (CallResult.ANSWERED, Reply.OK, "1", Outcome.OK),
    "01099990017": (CallResult.ANSWERED, Reply.OK, "1", Outcome.OK),
    "01099990018": (CallResult.BUSY, None, "", POLICY.busy_interval),
    "01099990019": (CallResult.REJECTED, None, "", Outcome.DECLINED),
    "01099990020": (CallResult.INVALID_NUMBER, None, "", Outcome.INVALID_NUMBER),
    "01099990021": (CallResult.NETWORK_FAILURE, None, "", POLICY.failure_interval),
}


# What the far end's SIP said, stored on the attempt (None: nothing but 100 Trying; 200 then a
# BYE; 183 when our ring timeout ended the early media).
SIP_STATUS: dict[str, int | None] = {
    "01099990013": 480,
    "01099990014": None,
    "01099990015": 183,
    "01099990016": 200,
    "01099990017": 200,
    "01099990018": 600,
    "01099990019": 603,
    "01099990020": 484,
    "01099990021": 408,
}


async def store(
    sessions: async_sessionmaker[AsyncSession], number: str, record: CallRecord
) -> tuple[Checkin, list[CallAttempt]]:
    async with sessions() as session:
        district = (
            await session.execute(select(District).where(District.code == "11620"))
        ).scalar_one_or_none() or District(code="11620", name="관악구")
        resident = Resident(district=district, name="주민", phone=number, dong="신림동")
        session.add(resident)
        await session.flush()
        checkin, _ = await open_checkin(
            session, resident, source=CheckinSource.API, reason="test", now=NOW
        )
        first = checkin.attempts[0]
        first.channel_id = record.channel_id
        await session.flush()
        await record_attempt(session, first.id, record, POLICY, NOW)
        await session.commit()
        checkin_id = checkin.id
    async with sessions() as session:
        stored = await session.get(Checkin, checkin_id)
        assert stored is not None
        attempts = list(
            (
                await session.execute(
                    select(CallAttempt)
                    .where(CallAttempt.checkin_id == checkin_id)
                    .order_by(CallAttempt.attempt_no)
                )
            ).scalars()
        )
        return stored, attempts


async def test_given_real_network_behaviours_when_called_then_stored_result_outcome_and_retry(
    rig: Rig,  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    numbers = list(CASES)
    # The switched-off phone's announcement plays (~4 s) before its 480: give it time to.
    ring = {n: 12.0 if n == "01099990013" else RING_S for n in numbers}
    records = await asyncio.gather(*(rig.call(n, ring_timeout_s=ring[n]) for n in numbers))
    for number, record in zip(numbers, records, strict=True):
        result, reply, keys, then = CASES[number]
        assert (record.result, record.reply, record.keys) == (result, reply, keys), number
        checkin, attempts = await store(sessions, number, record)
        assert attempts[0].result is result, number
        assert attempts[0].sip_status == SIP_STATUS[number], number
        if isinstance(then, Outcome):
            assert (checkin.outcome, len(attempts)) == (then, 1), number
            final = CheckinStatus.COMPLETED if result is CallResult.ANSWERED else None
            assert checkin.status in ((final,) if final else (CheckinStatus.EXHAUSTED,)), number
        else:
            assert checkin.status is CheckinStatus.PENDING, number
            assert checkin.outcome is None, number
            assert attempts[1].scheduled_for == record.originated_at + then, number
    # The switched-off phone is on record as "phone unreachable" for the risk rules.
    async with sessions() as session:
        resident_id = (
            await session.execute(select(Resident.id).where(Resident.phone == "01099990013"))
        ).scalar_one()
        since = NOW - dt.timedelta(days=1)
        assert await phone_unreachable_attempts(session, resident_id, since) == 1
