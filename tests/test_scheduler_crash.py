"""Crash safety and several workers, with real worker processes and real Asterisk.

- Kill test: a 100-check-in run; the worker process (``python -m scheduler.worker``) is
  SIGKILLed at 10 or more random moments while cases are still open, and restarted each time.
  Afterwards every check-in has exactly one final outcome, no resident was dialed more often
  than the policy allows (counted on the engine's own AMI, not from our tables) and never
  sooner than the policy's shortest spacing, no channel id was dialed twice, and no channel is
  left up.
- Two workers on PostgreSQL share a run: no attempt is dialed twice.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, Checkin
from anbu.db.models_scheduling import AttemptClaim, Program
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.checkin import AttemptStatus, CheckinStatus
from anbu.ports import SystemClock
from ivr.ami import AmiClient, AmiMessage
from scheduler.dispatcher import AmiChannelProbe
from tests.call_rig import open_api_checkins
from tests.dispatch_worker import DispatchWorker
from tests.fixtures_asterisk import (
    AsteriskPair,
)

# never answers | busy | rejects | answers and hangs up at once
NUMBERS = ("01099990004", "01099990005", "01099990007", "01099990008")
MAX_ATTEMPTS = 3
INTERVAL_S = 1  # every retry spacing (the program stores whole seconds)
RING_S = 1.0
# Dials are timed by when the engine's Newchannel event reached us: allow for event jitter.
JITTER_S = 0.05


@dataclass
class DialLog:
    """Every channel the engine created, with when we saw it (engine AMI ``Newchannel``)."""

    seen: dict[str, list[float]] = field(default_factory=dict)

    def on_event(self, msg: AmiMessage) -> None:
        uid = msg.get("Uniqueid")
        if uid:
            self.seen.setdefault(uid, []).append(asyncio.get_running_loop().time())


@pytest.fixture
async def dial_log(asterisk_pair: AsteriskPair) -> AsyncIterator[DialLog]:
    log = DialLog()
    async with asterisk_pair.engine_events(log.on_event, "Newchannel"):
        yield log


async def _migrated(url: str) -> AsyncEngine:
    engine = make_engine(url)
    await upgrade(engine)
    return engine


async def _seed(sessions: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    clock = SystemClock()
    async with sessions() as s:
        s.add(
            Program.any_hour(
                "crash",
                max_attempts=MAX_ATTEMPTS,
                interval_s=INTERVAL_S,
                busy_interval_s=INTERVAL_S,
                failure_interval_s=INTERVAL_S,
                max_callbacks=0,
            )
        )
        phones = [NUMBERS[i % len(NUMBERS)] for i in range(count)]
        checkins = await open_api_checkins(s, phones, reason="kill test", now=clock.now())
        await s.commit()
    return [c.id for c in checkins]


def _worker(pair: AsteriskPair, url: str, log_path: Path) -> DispatchWorker:
    return DispatchWorker(
        pair,
        url,
        log_path,
        *("--max-concurrent", "10", "--cps", "0", "--ring-timeout", str(RING_S)),
        *("--reconcile-interval", "0.5"),
        env={"ANBU_IVR__AGI_RESULT_GRACE_S": "0.5"},
    )


async def _open_cases(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int(
            (
                await s.execute(
                    select(func.count())
                    .select_from(Checkin)
                    .where(Checkin.status.in_((CheckinStatus.PENDING, CheckinStatus.DIALING)))
                )
            ).scalar_one()
        )


async def _wait_all_closed(sessions: async_sessionmaker[AsyncSession], timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := await _open_cases(sessions)) > 0:
        assert loop.time() < deadline, f"{left} check-ins still open after {timeout_s} s"
        await asyncio.sleep(0.25)


async def _check_invariants(
    sessions: async_sessionmaker[AsyncSession], ids: list[str], dials: DialLog
) -> dict[str, int]:
    async with sessions() as s:
        checkins = (await s.execute(select(Checkin))).scalars().all()
        attempts = (await s.execute(select(CallAttempt))).scalars().all()
    assert sorted(c.id for c in checkins) == sorted(ids)
    for c in checkins:
        assert c.status.is_final, (c.id, c.status)
        assert c.outcome is not None, c.id
        assert c.closed_at is not None, c.id
    assert not [a for a in attempts if a.status in (AttemptStatus.SCHEDULED, AttemptStatus.DIALING)]
    by_checkin: dict[str, list[str]] = {}
    for a in attempts:
        by_checkin.setdefault(a.checkin_id, []).append(a.channel_id)
    ours = {a.channel_id for a in attempts}
    # Each channel id (= one attempt) reached the engine at most once.
    dup = {uid: times for uid, times in dials.seen.items() if uid in ours and len(times) > 1}
    assert not dup, dup
    worst = 0
    for checkin_id, channels in by_checkin.items():
        times = sorted(dials.seen[ch][0] for ch in channels if ch in dials.seen)
        worst = max(worst, len(times))
        assert len(times) <= MAX_ATTEMPTS, (checkin_id, len(times))
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(g >= INTERVAL_S - JITTER_S for g in gaps), (checkin_id, gaps)
    statuses: dict[str, int] = {}
    for a in attempts:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    statuses["max_dials_per_resident"] = worst
    return statuses


async def _no_channels_left(pair: AsteriskPair) -> None:
    ami = AmiClient("127.0.0.1", pair.ami_port, pair.ami_user, pair.ami_secret)
    await ami.connect()
    try:
        probe = AmiChannelProbe(ami)
        for _ in range(40):
            if not await probe.live_channel_ids():
                return
            await asyncio.sleep(0.25)
        pytest.fail(f"channels still up on the engine: {await probe.live_channel_ids()}")
    finally:
        await ami.close()


async def test_given_worker_killed_at_random_moments_when_restarted_then_no_case_lost_or_overdialed(
    asterisk_pair: AsteriskPair,
    dial_log: DialLog,
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    engine = await _migrated(url)
    sessions = make_sessionmaker(engine)
    try:
        ids = await _seed(sessions, 100)
        worker = _worker(asterisk_pair, url, tmp_path / "worker.log")
        rng = random.Random(20261125)
        kills_mid_run = 0
        kills = 0
        while kills_mid_run < 10:
            await worker.start()
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            still_open = await _open_cases(sessions)
            await worker.kill()
            kills += 1
            assert still_open > 0, f"the run ended after only {kills_mid_run} mid-run kills"
            kills_mid_run += 1
        await worker.start()
        try:
            await _wait_all_closed(sessions, 90)
        finally:
            await worker.stop()
        stats = await _check_invariants(sessions, ids, dial_log)
        await _no_channels_left(asterisk_pair)
        assert kills >= 10
        assert stats.get(AttemptStatus.UNKNOWN, 0) >= 1  # the kills did hit calls in flight
        print(f"kills={kills} attempts={stats}")
    finally:
        await engine.dispose()


async def test_given_two_workers_on_postgres_when_sharing_a_run_then_no_attempt_dialed_twice(
    asterisk_pair: AsteriskPair,
    dial_log: DialLog,
    pg_database: str,
    tmp_path: Path,
) -> None:
    engine = await _migrated(pg_database)
    sessions = make_sessionmaker(engine)
    workers = [_worker(asterisk_pair, pg_database, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        ids = await _seed(sessions, 100)
        await asyncio.gather(*(w.start() for w in workers))
        await _wait_all_closed(sessions, 90)
        stats = await _check_invariants(sessions, ids, dial_log)
        assert sum(v for k, v in stats.items() if k != "max_dials_per_resident") > len(ids)
        async with sessions() as s:
            rows = (
                await s.execute(
                    select(AttemptClaim.worker_id, func.count()).group_by(AttemptClaim.worker_id)
                )
            ).all()
        # Both workers took a share; each attempt was claimed once (primary key).
        assert len(rows) == 2, rows
    finally:
        for w in workers:
            await w.stop()
        await engine.dispose()
