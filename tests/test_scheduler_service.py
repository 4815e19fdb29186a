"""The scheduler service (APScheduler 3 + dispatcher) wired by ``build_scheduler``, against the
real engine + carrier: periodic hooks fire, a routine slot becomes a dialed check-in, an API
check-in wakes the dispatcher, the self-test reports a broken line."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select

from anbu.app.parts import build_container
from anbu.db.models import Checkin, District, Resident
from anbu.db.models_scheduling import Program, RoutineSchedule, SelfTestRun
from anbu.domain.calling_hours import zone
from anbu.domain.checkin import CheckinSource, CheckinStatus, Outcome
from anbu.services.checkins import CheckinClosed, open_checkin
from anbu.settings import SchedulingSettings, Settings, TrunkSettings
from ivr.ami import AmiClient
from ivr.dialer import AmiDialer, CallRegistry
from scheduler.dispatcher import AmiChannelProbe, Dispatcher
from scheduler.selftest import run_self_test
from scheduler.service import build_scheduler

REJECTS = "01099990007"
NEVER_ANSWERS = "01099990004"


async def test_given_service_when_started_then_jobs_fire_and_checkins_get_dialed(
    db_url: str, engine_ami: AmiClient
) -> None:
    settings = Settings(
        database_url=db_url,
        max_concurrent_calls=5,
        trunk=TrunkSettings(ring_timeout_s=1.0),
        scheduling=SchedulingSettings(
            calls_per_second=None,
            poll_interval_s=0.2,
            risk_sweep_interval_s=0.2,
            escalation_interval_s=0.2,
            routine_interval_s=0.2,
            self_test_number=NEVER_ANSWERS,
            self_test_time="03:00",
        ),
    )
    container = build_container(settings)
    dialer = AmiDialer(engine_ami, CallRegistry(), max_concurrent_calls=5)
    swept = asyncio.Event()
    ticked = asyncio.Event()
    all_closed = asyncio.Event()
    closed: list[CheckinClosed] = []

    async def risk_sweep() -> None:
        swept.set()

    async def escalation_tick() -> None:
        ticked.set()

    async def retention() -> None:  # daily at 03:30 local: registered here, not awaited
        return None

    async def listener(event: CheckinClosed) -> None:
        closed.append(event)
        if len(closed) == 2:
            all_closed.set()

    container.dispatcher = dispatcher = Dispatcher.from_settings(
        settings,
        container.engine,
        container.sessions,
        dialer,
        container.clock,
        channel_probe=AmiChannelProbe(engine_ami),
    )
    service = build_scheduler(
        container,
        dispatcher,
        risk_sweep=risk_sweep,
        risk_retention=retention,
        record_retention=retention,
        escalation_tick=escalation_tick,
    )
    assert container.dispatcher is service.dispatcher
    service.dispatcher.add_listener(listener)
    assert service.job_ids == [
        "dispatch", "escalation", "record-retention", "risk-sweep", "routine", "self-test",
        "signal-retention",
    ]  # fmt: skip
    now = container.clock.now()
    local = now.astimezone(zone("Asia/Seoul"))
    async with container.sessions() as s:
        s.add(Program.any_hour("all-day", max_attempts=1))
        district = District(code="11620", name="관악구")
        routine_person = Resident(district=district, name="정기", phone=REJECTS, dong="신림동")
        api_person = Resident(district=district, name="요청", phone=REJECTS, dong="신림동")
        s.add_all([routine_person, api_person])
        await s.flush()
        # A weekly slot that fell due a minute ago (created well before it).
        slot = local - dt.timedelta(minutes=1)
        s.add(
            RoutineSchedule(
                resident_id=routine_person.id,
                weekday=slot.weekday(),
                time_min=slot.hour * 60 + slot.minute,
                created_at=now - dt.timedelta(days=1),
            )
        )
        await s.commit()
    await service.start()
    try:
        async with container.sessions() as s:
            api_case, _ = await open_checkin(
                s, api_person, source=CheckinSource.API, reason="api", now=container.clock.now()
            )
            await s.commit()
        container.wake_dispatcher()
        await asyncio.wait_for(all_closed.wait(), 20)
        await asyncio.wait_for(asyncio.gather(swept.wait(), ticked.wait()), 5)
    finally:
        await service.stop(drain=True)
        await dialer.close()
        await container.aclose()
    assert {e.outcome for e in closed} == {Outcome.DECLINED}
    assert api_case.id in {e.checkin_id for e in closed}
    container = build_container(settings)
    try:
        async with container.sessions() as s:
            cases = (await s.execute(select(Checkin))).scalars().all()
    finally:
        await container.aclose()
    assert sorted(c.source for c in cases) == [CheckinSource.API, CheckinSource.ROUTINE]
    assert all(c.status is CheckinStatus.EXHAUSTED for c in cases)


async def test_given_dead_test_line_when_self_test_runs_then_failure_is_stored_and_reported(
    db_url: str, engine_ami: AmiClient
) -> None:
    settings = Settings(database_url=db_url)
    container = build_container(settings)
    dialer = AmiDialer(engine_ami, CallRegistry(), max_concurrent_calls=2)
    failures: list[SelfTestRun] = []

    async def page_admin(run: SelfTestRun) -> None:
        failures.append(run)

    try:
        run = await run_self_test(
            container.sessions,
            dialer.call,
            container.clock,
            NEVER_ANSWERS,
            ring_timeout_s=1.0,
            on_failure=page_admin,
        )
        async with container.sessions() as s:
            stored = (await s.execute(select(SelfTestRun))).scalar_one()
    finally:
        await dialer.close()
        await container.aclose()
    assert not run.ok
    assert run.result == "no_answer"
    assert (stored.ok, stored.result) == (False, "no_answer")
    assert [f.id for f in failures] == [stored.id]
