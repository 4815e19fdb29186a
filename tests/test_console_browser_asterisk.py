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

from anbu.domain.checkin import Outcome
from anbu.ports import SystemClock
from devstack.kannel import KannelInstance
from tests.console_support import make_account
from tests.test_console_browser import (
    acknowledge_visit,
    assert_nothing_for,
    assert_visit_stored,
    chromium,
    desk_page,
    log_in,
)
from tests.test_escalation_asterisk import (  # noqa: F401  (fixtures used by name)
    RingOut,
    rung_out,
)
from tests.test_escalation_e2e import (  # noqa: F401  (fixtures used by name)
    api_port,
    esc_kannel,
    stack_factory,
)
from tests.test_escalation_service import incident_of

pytestmark = [pytest.mark.asterisk, pytest.mark.kannel]


async def test_given_real_unanswered_call_when_official_acknowledges_in_browser_then_chain_stops(
    rung_out: RingOut,  # noqa: F811
    esc_kannel: KannelInstance,  # noqa: F811
) -> None:
    stack, world, checkin_id = rung_out.stack, rung_out.world, rung_out.checkin_id
    event, sms = rung_out.event, rung_out.sms
    sessions = stack.sessions
    clock = SystemClock()
    assert event.outcome is Outcome.UNREACHABLE
    incident = await incident_of(sessions, checkin_id)
    assert f"회신 {incident.code}" in sms.text  # the primary official's SMS, through Kannel
    primary = world.officials["primary"]
    await make_account(sessions, clock.now(), "kim", name="김주무관", official_id=primary.id)

    async with chromium() as browser:
        page = await desk_page(browser)
        await log_in(page, stack.api_url, "kim")
        row = page.locator(f'a[href="/console/incidents/{incident.id}"]')
        assert await row.inner_text() == "김안부"
        await row.click()
        await page.wait_for_load_state()
        timeline = await page.locator("ol.timeline").inner_text()
        assert "1차 전화: 받지 않음" in timeline  # the real call, as the dialer recorded it
        assert "전화 기록 52시간 없음" in timeline
        await acknowledge_visit(page)

    await assert_visit_stored(sessions, incident.id)
    # Long past the primary's clock: the chain has stopped, the backup is never told.
    assert await stack.service.escalate_due(clock.now() + dt.timedelta(hours=2)) == 0
    await assert_nothing_for(sessions, world.officials["backup"].id)
    received = await asyncio.to_thread(esc_kannel.received)
    assert [m for m in received if m.receiver == world.officials["backup"].phone] == []
