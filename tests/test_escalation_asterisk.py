"""The whole path with real telephony: the dispatcher dials the carrier stand-in's number
that rings and never answers (real engine + carrier Asterisk, real AMI dialer), the one-attempt
policy gives up, the case closes, the escalation listener stores the alert, the outbox sends
it through a real Kannel, and the primary official's SMS arrives at the fake SMSC with the
exact Korean text."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from anbu.db.models import Checkin, Resident
from anbu.db.models_scheduling import Program
from anbu.domain.calls import CallResult
from anbu.domain.checkin import CheckinSource, Outcome
from anbu.ports import SystemClock
from anbu.services.checkins import CheckinClosed, open_checkin
from devstack.kannel import KannelInstance, ReceivedSms
from ivr.ami import AmiClient
from ivr.dialer import AmiDialer, CallRegistry
from scheduler.dispatcher import AmiChannelProbe, Dispatcher
from tests.call_rig import dispatching
from tests.test_escalation_e2e import (  # noqa: F401  (fixtures used by name)
    Stack,
    StackFactory,
    api_port,
    esc_kannel,
    local,
    stack_factory,
)
from tests.test_escalation_service import OUR_NUMBER, World, incident_of, make_world, token_in

pytestmark = [pytest.mark.asterisk, pytest.mark.kannel]

NEVER_ANSWERS = "01099990004"
RING_S = 1.0


@dataclass
class RingOut:
    """A case whose one call rang out through the real engine, closed, and whose primary
    official's SMS arrived at Kannel's fake SMSC."""

    stack: Stack
    world: World
    checkin_id: str
    event: CheckinClosed
    sms: ReceivedSms


@pytest.fixture
async def rung_out(
    engine_ami: AmiClient,
    db_engine: AsyncEngine,
    stack_factory: StackFactory,  # noqa: F811
    esc_kannel: KannelInstance,  # noqa: F811
) -> RingOut:
    """One attempt to the never-answering number, dispatched for real, until the SMS is out."""
    stack = await stack_factory(kannel=esc_kannel)
    kannel = esc_kannel
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
    async with dispatching(dispatcher, then=[dialer.close]):
        sms = await kannel.wait_received(
            lambda m: m.receiver == world.officials["primary"].phone, timeout_s=40
        )

    [event] = closed
    return RingOut(stack, world, checkin_id, event, sms)


async def test_given_resident_never_answers_when_attempt_rings_out_then_official_gets_sms(
    rung_out: RingOut,
) -> None:
    stack, checkin_id, event, sms = (
        rung_out.stack,
        rung_out.checkin_id,
        rung_out.event,
        rung_out.sms,
    )
    sessions = stack.sessions
    assert event.outcome is Outcome.UNREACHABLE
    async with sessions() as s:
        case = (await s.execute(select(Checkin).where(Checkin.id == checkin_id))).scalar_one()
        [attempt] = case.attempts
    assert attempt.result is CallResult.NO_ANSWER
    assert attempt.originated_at is not None
    incident = await incident_of(sessions, checkin_id)
    assert sms.sender == OUR_NUMBER
    assert sms.text == (
        f"[안부] 김○○(신림동) 전화 안받음. 회신 {incident.code}\n"
        "대상: 김○○ (관악구 신림동)\n"
        "사유: 전화 기록 52시간 없음\n"
        f"통화: 1회 시도, {local(incident.case_closed_at)} 종료\n"
        f"1) {local(attempt.originated_at)} 받지 않음\n"
        f"확인: {incident.code} 회신 또는 {stack.api_url}/ack/{token_in(sms.text)}"
    )
