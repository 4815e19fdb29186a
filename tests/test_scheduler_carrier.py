"""The dispatcher against the real carrier stand-in (engine + carrier Asterisk, real AMI
dialer): a resident who never answers gets exactly the configured attempts at the configured
spacing and is exhausted; a busy one is retried sooner; a rejected one is not retried. Intervals
are seconds so the test stays fast."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.models import Checkin, District, Resident
from anbu.db.models_scheduling import Program
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus, Outcome
from anbu.ports import SystemClock
from anbu.services.checkins import CheckinClosed, open_checkin
from ivr.ami import AmiClient
from ivr.dialer import AmiDialer, CallRegistry
from scheduler.dispatcher import AmiChannelProbe, Dispatcher
from tests.call_rig import dispatching

NEVER_ANSWERS = "01099990004"
BUSY = "01099990005"
REJECTS = "01099990007"
INTERVAL_S = 2
BUSY_INTERVAL_S = 1
RING_S = 1.0
MAX_ATTEMPTS = 3


async def _seed(session: AsyncSession) -> dict[str, Resident]:
    session.add(
        Program.any_hour(
            "test",
            max_attempts=MAX_ATTEMPTS,
            interval_s=INTERVAL_S,
            busy_interval_s=BUSY_INTERVAL_S,
            failure_interval_s=1,
            max_callbacks=0,
        )
    )
    district = District(code="11620", name="관악구")
    people = {
        n: Resident(district=district, name=f"주민{n[-2:]}", phone=n, dong="신림동")
        for n in (NEVER_ANSWERS, BUSY, REJECTS)
    }
    session.add_all(people.values())
    await session.flush()
    return people


async def test_given_carrier_numbers_when_dispatched_then_retries_follow_the_policy(
    engine_ami: AmiClient,
    db_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = SystemClock()
    dialer = AmiDialer(engine_ami, CallRegistry(), max_concurrent_calls=10)
    closed: list[CheckinClosed] = []
    all_closed = asyncio.Event()

    async def listener(event: CheckinClosed) -> None:
        closed.append(event)
        if len(closed) == 3:
            all_closed.set()

    dispatcher = Dispatcher(
        sessions,
        dialer,
        clock,
        max_concurrent=10,
        ring_timeout_s=RING_S,
        channel_probe=AmiChannelProbe(engine_ami),
        listeners=[listener],
        engine=db_engine,
    )
    async with sessions() as s:
        people = await _seed(s)
        ids = {}
        for number, person in people.items():
            checkin, _ = await open_checkin(
                s, person, source=CheckinSource.API, reason="test", now=clock.now()
            )
            ids[number] = checkin.id
        await s.commit()
    async with dispatching(dispatcher, then=[dialer.close]):
        await asyncio.wait_for(all_closed.wait(), 40)

    async with sessions() as s:
        cases = {n: await s.get(Checkin, cid) for n, cid in ids.items()}
    never, busy, rejected = cases[NEVER_ANSWERS], cases[BUSY], cases[REJECTS]
    assert never is not None
    assert busy is not None
    assert rejected is not None

    # Never answers: exactly MAX_ATTEMPTS ring-outs, then exhausted.
    assert (never.status, never.outcome) == (CheckinStatus.EXHAUSTED, Outcome.UNREACHABLE)
    assert [a.result for a in never.attempts] == [CallResult.NO_ANSWER] * MAX_ATTEMPTS
    assert all(a.status is AttemptStatus.FINISHED for a in never.attempts)
    never_gaps = _gaps(never)
    # Spacing is counted from dial time: never sooner than the interval.
    assert all(g >= INTERVAL_S for g in never_gaps), never_gaps

    # Busy: retried at the shorter busy interval.
    assert (busy.status, busy.outcome) == (CheckinStatus.EXHAUSTED, Outcome.UNREACHABLE)
    assert [a.result for a in busy.attempts] == [CallResult.BUSY] * MAX_ATTEMPTS
    busy_gaps = _gaps(busy)
    assert all(g >= BUSY_INTERVAL_S for g in busy_gaps), busy_gaps
    assert max(busy_gaps) < min(never_gaps)

    # Rejected: one dial, no redial, straight to an official.
    assert (rejected.status, rejected.outcome) == (CheckinStatus.EXHAUSTED, Outcome.DECLINED)
    assert [a.result for a in rejected.attempts] == [CallResult.REJECTED]
    assert {e.checkin_id for e in closed} == set(ids.values())


def _gaps(checkin: Checkin) -> list[float]:
    times = [a.originated_at for a in checkin.attempts]
    assert all(t is not None for t in times)
    stamps: list[dt.datetime] = [t for t in times if t is not None]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
