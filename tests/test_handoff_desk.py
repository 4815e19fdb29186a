"""The escalation side of a person on the line, on SQLite and PostgreSQL, without a call: the
help incident opens once, the case's later close does not open a second one or page twice,
and a transfer that never reports back (the process died mid-transfer) is paged by the tick."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin
from anbu.db.models_escalation import Incident, OutboxMessage
from anbu.domain.checkin import CheckinStatus, Outcome
from anbu.domain.handoff import LegResult
from anbu.domain.incidents import AckChannel, IncidentStatus
from anbu.ports import HandoffPlan
from escalation.handoff import HandoffDesk
from escalation.service import EscalationConfig, EscalationService
from tests.call_rig import new_attempt
from tests.test_handoff_calls import make_world

FIRST, SECOND = "01099990050", "01099990051"
BUDGET = dt.timedelta(seconds=120)


class Clock:
    def __init__(self) -> None:
        self.at = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self.at


@dataclass
class Desk:
    service: EscalationService
    desk: HandoffDesk
    clock: Clock
    attempt: CallAttempt  # the call in which the resident asked for help
    plan: HandoffPlan  # the transfer the desk began for it


async def build(sessions: async_sessionmaker[AsyncSession]) -> Desk:
    """The desk, and a resident (chain: FIRST then SECOND) who asked for help on a call: the
    desk has begun the transfer."""
    clock = Clock()
    service = EscalationService(
        sessions, EscalationConfig(public_url="http://anbu.test", sender="0212345678"), clock=clock
    )
    world = await make_world(sessions, "01099990060", [FIRST, SECOND])
    attempt = await new_attempt(sessions, world.resident_id, "01099990060")
    desk = HandoffDesk(sessions, service, budget=BUDGET, clock=clock)
    plan = await desk.begin(attempt.channel_id)
    assert plan is not None
    return Desk(service, desk, clock, attempt, plan)


async def close_as_help(sessions: async_sessionmaker[AsyncSession], checkin_id: str) -> None:
    async with sessions() as s:
        checkin = await s.get(Checkin, checkin_id)
        assert checkin is not None
        checkin.status = CheckinStatus.COMPLETED
        checkin.outcome = Outcome.HELP
        checkin.closed_at = dt.datetime(2026, 12, 3, 10, 1, tzinfo=dt.UTC)
        await s.commit()


async def counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as s:
        incidents = await s.scalar(select(func.count()).select_from(Incident))
        sms = await s.scalar(select(func.count()).select_from(OutboxMessage))
    return int(incidents or 0), int(sms or 0)


async def test_given_accepted_transfer_when_case_closes_then_one_incident_and_no_sms(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    made = await build(sessions)
    service, desk, clock, attempt, plan = (
        made.service,
        made.desk,
        made.clock,
        made.attempt,
        made.plan,
    )

    assert [t.phone for t in plan.targets] == [FIRST, SECOND]
    assert plan.whisper.text == "안부확인 긴급 연결, 김○○ 어르신, 신림동"
    assert await desk.begin(attempt.channel_id) is None  # a second help: not run twice
    await desk.calling(plan.incident_id, plan.targets[0])
    await desk.leg_ended(plan.incident_id, plan.targets[0], LegResult.ACCEPTED, True)
    await close_as_help(sessions, attempt.checkin_id)

    assert await service.open_incident(attempt.checkin_id, clock.now()) is None
    clock.at += BUDGET * 2
    assert await service.escalate_due() == 0  # acknowledged: the tick leaves it alone
    async with sessions() as s:
        incident = await s.get(Incident, plan.incident_id)
        assert incident is not None
        assert incident.status is IncidentStatus.ACKNOWLEDGED
        assert incident.ack_channel is AckChannel.CALL
    assert await counts(sessions) == (1, 0)


async def test_given_transfer_that_never_reports_when_budget_runs_out_then_tick_pages(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    made = await build(sessions)
    service, desk, clock, plan = made.service, made.desk, made.clock, made.plan

    clock.at += BUDGET - dt.timedelta(seconds=1)
    assert await service.escalate_due() == 0  # still within the transfer's time
    clock.at += dt.timedelta(seconds=2)
    assert await service.escalate_due() == 1
    async with sessions() as s:
        sms = (await s.execute(select(OutboxMessage))).scalars().all()
    assert [m.to for m in sms] == [FIRST]
    # The transfer's own fallback, arriving late, does not page again, even once the first
    # SMS's acknowledgement clock runs (it would skip that step's time).
    async with sessions() as s:
        incident = await s.get(Incident, plan.incident_id)
        assert incident is not None
        incident.ack_due_at = clock.at + dt.timedelta(minutes=10)
        await s.commit()
    await desk.page(plan.incident_id)
    assert await counts(sessions) == (1, 1)
