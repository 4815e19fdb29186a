"""Answered calls reach the process that placed them, with the real IVR and the real prompts.

- Two ``python -m scheduler.worker --agi-port N`` processes on PostgreSQL share a run of
  check-ins to the line that answers and presses 1. Each worker names its own FastAGI server in
  the Originate (``ANBU_AGI``), so the engine runs its calls there: every case ends
  completed/ok, each worker's IVR served exactly the calls that worker claimed, and no attempt
  reached the engine twice. The engine's globals point at a port nobody serves, so a call routed
  the old way would fail.
- The daily self-test job, wired as ``anbu serve`` wires it, calls that line through the real
  IVR (audio/rendered) and stores a passed run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.app.parts import build_container
from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, Checkin
from anbu.db.models_scheduling import AttemptClaim, Program, SelfTestRun
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinStatus, Outcome
from anbu.domain.replies import Reply
from anbu.errors import ValidationError
from anbu.ports import SystemClock
from anbu.settings import SchedulingSettings, Settings, TrunkSettings
from ivr.agi import AgiServer
from ivr.ami import AmiClient, AmiMessage
from ivr.dialer import AmiDialer, CallRegistry
from ivr.flow import CheckinFlow
from ivr.prompts import PromptLibrary
from scheduler.dispatcher import AmiChannelProbe, Dispatcher
from scheduler.service import build_scheduler
from scheduler.worker import agi_address_for
from tests.call_rig import open_api_checkins
from tests.dispatch_worker import DispatchWorker
from tests.fixtures_asterisk import AsteriskPair, free_ports

pytestmark = pytest.mark.asterisk

ROOT = Path(__file__).resolve().parent.parent
AUDIO_DIR = ROOT / "audio"
PRESSES_1 = "01099990001"
CASES = 16
# "agi <channel id>: reply ok (keys '1', asked 1)" from ivr.flow, in each worker's log.
_IVR_REPLY = re.compile(r"agi (\S+): reply (\w+)")


@pytest.fixture(scope="module", autouse=True)
def real_prompts() -> None:
    missing = PromptLibrary(AUDIO_DIR).missing()
    assert not missing, f"render the prompts first (anbu prompts render): {missing}"


class Worker(DispatchWorker):
    """A worker with its own FastAGI port, on the real prompts."""

    def __init__(self, pair: AsteriskPair, url: str, port: int, log_path: Path) -> None:
        # A few calls per second each, so that both workers take a share of the run.
        options = ("--agi-port", str(port), "--max-concurrent", str(CASES), "--cps", "4")
        super().__init__(
            pair,
            url,
            log_path,
            *options,
            *("--ring-timeout", "10"),
            env={"ANBU_AUDIO_DIR": str(AUDIO_DIR)},
        )
        self.agi_port = port

    async def stop(self) -> int | None:
        code = await super().stop()
        assert code in (0, None), self.log_tail()
        return code

    def ivr_replies(self) -> dict[str, str]:
        """Channel id -> reply, for every call this worker's FastAGI server ran."""
        return dict(_IVR_REPLY.findall(self.log_path.read_text()))


async def _seed_program(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s:
        s.add(Program.any_hour("all-day", max_attempts=1, max_callbacks=0))
        await s.commit()


async def _open_cases(sessions: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    now = SystemClock().now()
    async with sessions() as s:
        checkins = await open_api_checkins(s, [PRESSES_1] * count, reason="agi routing", now=now)
        await s.commit()
    return [c.id for c in checkins]


async def _wait_closed(sessions: async_sessionmaker[AsyncSession], timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with sessions() as s:
            statuses = list((await s.execute(select(Checkin.status))).scalars())
        if all(st.is_final for st in statuses):
            return
        assert loop.time() < deadline, f"cases still open after {timeout_s} s: {statuses}"
        await asyncio.sleep(0.25)


async def test_given_two_workers_with_own_agi_ports_when_cases_answered_then_each_gets_its_results(
    make_asterisk_pair: Callable[..., AsteriskPair],
    pg_database: str,
    tmp_path: Path,
) -> None:
    # The engine's globals name a port that nothing serves: only ANBU_AGI can make calls work.
    pair = make_asterisk_pair()
    first_port, second_port = free_ports(2)
    assert pair.agi_port not in (first_port, second_port)
    engine = make_engine(pg_database)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    dials: dict[str, int] = {}

    def on_newchannel(msg: AmiMessage) -> None:
        uid = msg.get("Uniqueid")
        if uid:
            dials[uid] = dials.get(uid, 0) + 1

    ami = AmiClient("127.0.0.1", pair.ami_port, pair.ami_user, pair.ami_secret)
    await ami.connect()
    sub = ami.subscribe(on_newchannel, "Newchannel")
    workers = [
        Worker(pair, pg_database, port, tmp_path / f"worker{i}.log")
        for i, port in enumerate((first_port, second_port))
    ]
    try:
        await _seed_program(sessions)
        await asyncio.gather(*(w.start() for w in workers))
        ids = await _open_cases(sessions, CASES)
        await _wait_closed(sessions, 90)
        for w in workers:
            await w.stop()
        async with sessions() as s:
            cases = (await s.execute(select(Checkin))).scalars().all()
            attempts = (await s.execute(select(CallAttempt))).scalars().all()
            claims = (await s.execute(select(AttemptClaim))).scalars().all()
    finally:
        for w in workers:
            await w.stop()
        sub.cancel()
        await ami.close()
        await engine.dispose()

    assert sorted(c.id for c in cases) == sorted(ids)
    assert {(c.status, c.outcome) for c in cases} == {(CheckinStatus.COMPLETED, Outcome.OK)}
    assert len(attempts) == CASES
    assert {(a.status, a.result, a.reply) for a in attempts} == {
        (AttemptStatus.FINISHED, CallResult.ANSWERED, Reply.OK)
    }
    # Every attempt reached the engine exactly once.
    assert {a.channel_id: dials.get(a.channel_id, 0) for a in attempts} == {
        a.channel_id: 1 for a in attempts
    }
    channel_of = {a.id: a.channel_id for a in attempts}
    claimed_by: dict[int, set[str]] = {}
    for c in claims:
        claimed_by.setdefault(c.worker_id, set()).add(channel_of[c.attempt_id])
    assert len(claimed_by) == 2, claimed_by  # both workers took a share
    # Each worker's FastAGI server ran exactly the calls that worker placed.
    served = [w.ivr_replies() for w in workers]
    assert sorted(sorted(s) for s in served) == sorted(sorted(c) for c in claimed_by.values())
    assert {reply for s in served for reply in s.values()} == {"ok"}


async def test_given_line_that_presses_1_when_daily_self_test_runs_then_passed_run_is_stored(
    asterisk_pair: AsteriskPair,
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'selftest.db'}",
        audio_dir=AUDIO_DIR,
        trunk=TrunkSettings(ring_timeout_s=10.0),
        scheduling=SchedulingSettings(self_test_number="010-9999-0001", self_test_time="03:00"),
    )
    engine = make_engine(settings.database_url)
    await upgrade(engine)
    await engine.dispose()
    container = build_container(settings)
    ami = AmiClient(
        "127.0.0.1", asterisk_pair.ami_port, asterisk_pair.ami_user, asterisk_pair.ami_secret
    )
    registry = CallRegistry()
    (port,) = free_ports(1)
    agi = AgiServer.from_settings(
        settings.model_copy(update={"agi_port": port}),
        {"checkin": CheckinFlow.from_settings(settings, registry)},
    )
    dialer = AmiDialer.from_settings(settings, ami, registry, agi_address=f"127.0.0.1:{port}")
    failures: list[SelfTestRun] = []

    async def page_admin(run: SelfTestRun) -> None:
        failures.append(run)

    try:
        await ami.connect()
        await agi.start()
        dispatcher = Dispatcher.from_settings(
            settings,
            container.engine,
            container.sessions,
            dialer,
            container.clock,
            channel_probe=AmiChannelProbe(ami),
        )
        service = build_scheduler(container, dispatcher, on_self_test_failed=page_admin)
        job = service.scheduler.get_job("self-test")
        assert job is not None
        started = container.clock.now()
        await asyncio.wait_for(job.func(), 60)
        async with container.sessions() as s:
            runs = (await s.execute(select(SelfTestRun))).scalars().all()
    finally:
        await dialer.close()
        await agi.stop()
        await ami.close()
        await container.aclose()

    assert failures == []
    assert len(runs) == 1
    run = runs[0]
    assert (run.ok, run.result) == (True, "answered"), run.detail
    assert "reply=ok" in run.detail
    assert "keys='1'" in run.detail
    assert run.ended_at is not None
    assert started <= run.started_at <= run.ended_at
    assert run.ended_at - run.started_at < dt.timedelta(seconds=60)
    assert agi.sessions_served == 1


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "host:port", "a,b:4573", "h:4573\n", "h:1\r\nX: y"]
)
def test_given_malformed_agi_address_when_building_dialer_then_refused(address: str) -> None:
    ami = AmiClient("127.0.0.1", 1, "anbu", "secret")
    with pytest.raises(ValidationError, match="not host:port"):
        AmiDialer(ami, CallRegistry(), agi_address=address)
    assert AmiDialer(ami, CallRegistry(), agi_address="[::1]:4573").agi_address == "[::1]:4573"


def test_given_bind_address_when_worker_advertises_agi_then_hosts_are_usable_in_a_url() -> None:
    assert agi_address_for("127.0.0.1", 4573) == "127.0.0.1:4573"
    assert agi_address_for("::1", 4573) == "[::1]:4573"
    assert agi_address_for("anbu-worker-2", 4573) == "anbu-worker-2:4573"
    for wildcard in ("0.0.0.0", "::", ""):
        with pytest.raises(SystemExit, match="--agi-advertise"):
            agi_address_for(wildcard, 4573)
