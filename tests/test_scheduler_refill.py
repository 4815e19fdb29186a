"""A channel is refilled when its call hangs up, not once the call's result is stored, and the
cap still holds (real engine + carrier pair, real AMI dialer, calls that ring out).

- On both backends, with a cap of one: each next call is claimed before the previous call's
  result is written, and the engine never has two calls up.
- On PostgreSQL, a result that cannot be stored (its row locked by another transaction) does
  not keep its channel idle: the next check-in is dialed meanwhile. (SQLite has one writer: a
  lock held there would stop the claim too, so the ordering test above is its check.)
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, Checkin
from anbu.db.models_scheduling import AttemptClaim, Program
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinStatus
from anbu.ports import SystemClock
from anbu.services.checkins import CheckinClosed
from ivr.ami import AmiClient, AmiMessage
from ivr.dialer import AmiDialer, CallRegistry
from scheduler.claims import Claimed
from scheduler.dispatcher import AmiChannelProbe, Dispatcher
from tests.call_rig import open_api_checkins
from tests.db_fixtures import create_pg_database, drop_pg_database, pg_url
from tests.fixtures_asterisk import AsteriskPair

NEVER_ANSWERS = "01099990004"
RING_S = 3.0  # long enough for the locking test to lock the first row before its hang-up
DEADLINE_S = 60.0  # for an event that, without the refill, never comes


@dataclass
class ChannelWatch:
    """Channels up on the engine at once, from its own AMI (Newchannel / Hangup)."""

    up: set[str] = field(default_factory=set)
    peak: int = 0

    def on_event(self, msg: AmiMessage) -> None:
        uid = msg.get("Uniqueid") or ""
        if msg.event == "Newchannel":
            self.up.add(uid)
            self.peak = max(self.peak, len(self.up))
        else:
            self.up.discard(uid)


@pytest.fixture
async def channel_watch(asterisk_pair: AsteriskPair) -> AsyncIterator[ChannelWatch]:
    watch = ChannelWatch()
    async with asterisk_pair.engine_events(watch.on_event, "Newchannel", "Hangup"):
        yield watch


async def _open(sessions: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    clock = SystemClock()
    async with sessions() as s:
        s.add(Program.any_hour("test", max_attempts=1, max_callbacks=0))
        checkins = await open_api_checkins(
            s, [NEVER_ANSWERS] * count, reason="test", now=clock.now()
        )
        await s.commit()
    return [c.id for c in checkins]


def _dispatcher(
    engine_ami: AmiClient,
    db_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    closed: list[CheckinClosed],
    all_closed: asyncio.Event,
    count: int,
) -> tuple[Dispatcher, AmiDialer]:
    async def listener(event: CheckinClosed) -> None:
        closed.append(event)
        if len(closed) == count:
            all_closed.set()

    dialer = AmiDialer(engine_ami, CallRegistry(), max_concurrent_calls=1)
    dispatcher = Dispatcher(
        sessions,
        dialer,
        SystemClock(),
        max_concurrent=1,
        ring_timeout_s=RING_S,
        channel_probe=AmiChannelProbe(engine_ami),
        listeners=[listener],
        engine=db_engine,
    )
    return dispatcher, dialer


async def _stop(runner: asyncio.Task[None], dispatcher: Dispatcher, dialer: AmiDialer) -> None:
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await dispatcher.drain()
    await dispatcher.close()
    await dialer.close()


async def test_given_cap_one_when_a_call_hangs_up_then_the_next_is_claimed_before_storing(
    engine_ami: AmiClient,
    channel_watch: ChannelWatch,
    db_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _open(sessions, 3)
    closed: list[CheckinClosed] = []
    all_closed = asyncio.Event()
    dispatcher, dialer = _dispatcher(engine_ami, db_engine, sessions, closed, all_closed, 3)
    runner = asyncio.create_task(dispatcher.run(poll_interval_s=0.2))
    try:
        await asyncio.wait_for(all_closed.wait(), DEADLINE_S)
    finally:
        await _stop(runner, dispatcher, dialer)

    async with sessions() as s:
        rows = (
            await s.execute(
                select(AttemptClaim.claimed_at, Checkin.closed_at, CallAttempt.result)
                .join(CallAttempt, CallAttempt.id == AttemptClaim.attempt_id)
                .join(Checkin, Checkin.id == CallAttempt.checkin_id)
                .where(Checkin.id.in_(ids))
                .order_by(AttemptClaim.claimed_at)
            )
        ).all()
    assert [r.result for r in rows] == [CallResult.NO_ANSWER] * 3
    for before, after in itertools.pairwise(rows):
        assert before.closed_at is not None
        # The channel was claimed again while the call before it was still unstored.
        assert after.claimed_at <= before.closed_at, (after.claimed_at, before.closed_at)
    assert channel_watch.peak == 1


async def test_given_an_unstorable_result_when_its_call_hangs_up_then_the_next_is_dialed(
    engine_ami: AmiClient, channel_watch: ChannelWatch
) -> None:
    name = await create_pg_database()
    db_engine = make_engine(pg_url(name))
    try:
        await upgrade(db_engine)
        sessions = make_sessionmaker(db_engine)
        first_id, second_id = await _open(sessions, 2)
        closed: list[CheckinClosed] = []
        all_closed = asyncio.Event()
        dispatcher, dialer = _dispatcher(engine_ami, db_engine, sessions, closed, all_closed, 2)
        dialed: list[str] = []
        first_dialed, second_dialed = asyncio.Event(), asyncio.Event()

        def on_originate(claimed: Claimed, _at: object) -> None:
            dialed.append(claimed.checkin_id)
            (first_dialed if len(dialed) == 1 else second_dialed).set()

        dispatcher.on_originate = on_originate
        runner = asyncio.create_task(dispatcher.run(poll_interval_s=0.2))
        try:
            await asyncio.wait_for(first_dialed.wait(), DEADLINE_S)
            async with sessions() as locker:
                # Hold the first call's attempt row: its result cannot be written until this
                # transaction ends (the recorder locks the rows it stores).
                status = (
                    await locker.execute(
                        select(CallAttempt.status)
                        .join(Checkin, Checkin.id == CallAttempt.checkin_id)
                        .where(Checkin.id == dialed[0])
                        .with_for_update(of=CallAttempt)
                    )
                ).scalar_one()
                assert status is AttemptStatus.DIALING, "the row was locked after the result"
                await asyncio.wait_for(second_dialed.wait(), DEADLINE_S)
                async with sessions() as s:
                    first = await s.get(Checkin, dialed[0])
                    assert first is not None
                    assert first.status is CheckinStatus.DIALING  # its result is still unstored
                await locker.rollback()
            await asyncio.wait_for(all_closed.wait(), DEADLINE_S)
        finally:
            await _stop(runner, dispatcher, dialer)
        assert sorted(dialed) == sorted([first_id, second_id])
        async with sessions() as s:
            for checkin_id in (first_id, second_id):
                case = await s.get(Checkin, checkin_id)
                assert case is not None
                assert case.status is CheckinStatus.EXHAUSTED
                assert [a.result for a in case.attempts] == [CallResult.NO_ANSWER]
        assert channel_watch.peak == 1
    finally:
        await db_engine.dispose()
        await drop_pg_database(name)
