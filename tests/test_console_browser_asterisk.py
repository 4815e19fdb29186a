"""The console with a real call (issue 13): the dispatcher dials the carrier stand-in's
number that rings and never answers (real engine + carrier Asterisk, real AMI dialer), the
case closes, the escalation service raises the incident and a real Kannel sends the primary
official's SMS; the official logs in to the console in a real browser (Playwright driving
Debian's chromium), finds the incident in the queue with the real call in its timeline,
acknowledges it with a finding, and the chain stops (nothing for the backup)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from anbu.db.models import Resident
from anbu.db.models_escalation import Incident, OutboxMessage
from anbu.db.models_scheduling import Program
from anbu.domain.checkin import CheckinSource, Outcome
from anbu.domain.escalation import Finding
from anbu.domain.incidents import AckChannel, IncidentStatus
from anbu.ports import SystemClock
from anbu.services.checkins import CheckinClosed, open_checkin
from devstack.kannel import KannelInstance
from ivr.ami import AmiClient
from ivr.dialer import AmiDialer, CallRegistry
from scheduler.dispatcher import AmiChannelProbe, Dispatcher
from tests.console_support import make_account
from tests.test_console_browser import chromium, log_in
from tests.test_escalation_e2e import (  # noqa: F401  (fixtures used by name)
    StackFactory,
    api_port,
    esc_kannel,
    stack_factory,
)
from tests.test_escalation_service import incident_of, make_world

pytestmark = [pytest.mark.asterisk, pytest.mark.kannel]

NEVER_ANSWERS = "01099990004"
RING_S = 1.0


async def test_given_real_unanswered_call_when_official_acknowledges_in_browser_then_chain_stops(
    engine_ami: AmiClient,
    db_engine: AsyncEngine,
    stack_factory: StackFactory,  # noqa: F811
    esc_kannel: KannelInstance,  # noqa: F811
) -> None:
    stack = await stack_factory(kannel=esc_kannel)
    sessions = stack.sessions
    world = await make_world(sessions, resident_phone=NEVER_ANSWERS)
    clock = SystemClock()
    async with sessions() as s:
        s.add(
            Program.any_hour(
                "one attempt",
                max_attempts=1,
                interval_s=60,
                busy_interval_s=60,
                failure_interval_s=60,
                max_callbacks=0,
            )
        )
        resident = await s.get(Resident, world.resident_id)
        assert resident is not None
        checkin, _ = await open_checkin(
            s,
            resident,
            source=CheckinSource.SIGNAL,
            reason="전화 기록 52시간 없음",
            now=clock.now(),
        )
        await s.commit()
        checkin_id = checkin.id

    closed: list[CheckinClosed] = []

    async def record(event: CheckinClosed) -> None:
        closed.append(event)

    dialer = AmiDialer(engine_ami, CallRegistry(), max_concurrent_calls=5)
    dispatcher = Dispatcher(
        sessions,
        dialer,
        clock,
        max_concurrent=5,
        ring_timeout_s=RING_S,
        channel_probe=AmiChannelProbe(engine_ami),
        listeners=[record, stack.service.on_checkin_closed],
        engine=db_engine,
    )
    runner = asyncio.create_task(dispatcher.run(poll_interval_s=0.2))
    try:
        sms = await esc_kannel.wait_received(
            lambda m: m.receiver == world.officials["primary"].phone, timeout_s=40
        )
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await dispatcher.drain()
        await dispatcher.close()
        await dialer.close()

    [event] = closed
    assert event.outcome is Outcome.UNREACHABLE
    incident = await incident_of(sessions, checkin_id)
    assert f"회신 {incident.code}" in sms.text  # the primary official's SMS, through Kannel
    primary = world.officials["primary"]
    await make_account(sessions, clock.now(), "kim", name="김주무관", official_id=primary.id)

    async with chromium() as browser:
        page = await (await browser.new_context(viewport={"width": 1100, "height": 800})).new_page()
        await log_in(page, stack.api_url, "kim")
        row = page.locator(f'a[href="/console/incidents/{incident.id}"]')
        assert await row.inner_text() == "김안부"
        await row.click()
        await page.wait_for_load_state()
        timeline = await page.locator("ol.timeline").inner_text()
        assert "1차 전화: 받지 않음" in timeline  # the real call, as the dialer recorded it
        assert "전화 기록 52시간 없음" in timeline
        await page.get_by_label("방문 확인").check()
        await page.get_by_label("메모").fill("방문, 건강함")
        await page.get_by_role("button", name="확인하고 기록").click()
        await page.wait_for_load_state()
        assert await page.locator("#status").inner_text() == "확인됨"
        assert await page.locator("#finding").inner_text() == "방문 확인 · 방문, 건강함"

    async with sessions() as s:
        stored = await s.get(Incident, incident.id)
        assert stored is not None
        assert stored.status is IncidentStatus.ACKNOWLEDGED
        assert stored.ack_channel is AckChannel.CONSOLE
        assert stored.finding is Finding.VISITED
    # Long past the primary's clock: the chain has stopped, the backup is never told.
    assert await stack.service.escalate_due(clock.now() + dt.timedelta(hours=2)) == 0
    async with sessions() as s:
        backup = world.officials["backup"].id
        rows = await s.execute(select(OutboxMessage).where(OutboxMessage.official_id == backup))
        assert rows.all() == []
    received = await asyncio.to_thread(esc_kannel.received)
    assert [m for m in received if m.receiver == world.officials["backup"].phone] == []
