"""Escalation over a real database (SQLite and PostgreSQL): incidents, the chain on a clock,
acknowledgements, findings, delivery reports, and the outbox's retries, failover and crash
recovery. The SMS side here is a scripted ``SmsSender``; Kannel itself is in the e2e tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import District, Resident
from anbu.db.models_escalation import (
    EscalationChain,
    EscalationStep,
    Incident,
    IncidentEvent,
    Official,
    OutboxMessage,
    ResidentFinding,
)
from anbu.domain.calls import CallResult
from anbu.domain.checkin import CheckinSource, Outcome
from anbu.domain.escalation import Finding
from anbu.domain.incidents import DeliveryStatus, IncidentStatus, OfficialRole, OutboxStatus
from anbu.domain.replies import Reply
from anbu.domain.retry import RetryPolicy
from anbu.domain.sms_text import OutgoingSms, SendReceipt, SendStatus, SmsKind
from anbu.errors import SmsError
from anbu.ports import CallRecord
from anbu.services.checkins import (
    CheckinClosed,
    claim_attempts,
    open_checkin,
    record_attempt,
)
from escalation.dlr import DeliveryReport, InboundSms
from escalation.outbox import OutboxConfig, OutboxWorker, enqueue
from escalation.service import EscalationConfig, EscalationService, ReplyOutcome
from tests.call_rig import scheduled_attempt

OUR_NUMBER = "0212345678"
# 2026-11-25 (Wednesday) 10:00 in Seoul: office hours.
T0 = dt.datetime(2026, 11, 25, 1, 0, 0, tzinfo=dt.UTC)
_phones = itertools.count(1)


def new_phone() -> str:
    return f"0105{next(_phones):07d}"


class FakeClock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.t = now

    def now(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> dt.datetime:
        self.t += dt.timedelta(seconds=seconds)
        return self.t


@dataclass
class ScriptedSender:
    """The ``SmsSender`` port, in memory: answers from a script (an exception or None =
    accept), then accepts everything."""

    name: str
    clock: FakeClock
    script: list[SmsError | None] = field(default_factory=list)
    sent: list[OutgoingSms] = field(default_factory=list)
    calls: int = 0

    async def send(self, message: OutgoingSms) -> SendReceipt:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.sent.append(message)
        return SendReceipt(
            message.reference, self.name, SendStatus.ACCEPTED, None, self.clock.now()
        )

    async def aclose(self) -> None:
        return None


@dataclass
class World:
    district_id: int
    resident_id: str
    officials: dict[str, Official]


async def make_world(
    sessions: async_sessionmaker[AsyncSession],
    *,
    timeouts: Sequence[int] = (600, 600, 900),
    code: str = "11620",
    name: str = "김안부",
    dong: str = "신림동",
    resident_phone: str = "01012345678",
) -> World:
    """A district with a resident and a three-step chain (primary, backup, centre), all on
    duty all day."""
    async with sessions() as s:
        district = (
            await s.execute(select(District).where(District.code == code))
        ).scalar_one_or_none()
        if district is None:
            district = District(code=code, name="관악구")
            s.add(district)
            await s.flush()
        resident = Resident(
            district_id=district.id, name=name, phone=resident_phone, dong=dong, district=district
        )
        s.add(resident)
        officials = {
            role: Official(
                district_id=district.id,
                district=district,
                dong=dong if role != "centre" else "",
                name=f"{role} 담당",
                phone=new_phone(),
                role=OfficialRole.CENTRE if role == "centre" else OfficialRole.DONG,
            )
            for role in ("primary", "backup", "centre")
        }
        s.add_all(officials.values())
        await s.flush()
        chain = EscalationChain(district_id=district.id, dong=dong, steps=[])
        for position, (role, timeout) in enumerate(
            zip(("primary", "backup", "centre"), timeouts, strict=True), start=1
        ):
            chain.steps.append(
                EscalationStep(
                    position=position, official_id=officials[role].id, ack_timeout_s=timeout
                )
            )
        s.add(chain)
        await s.commit()
        return World(district.id, resident.id, officials)


async def close_case(
    sessions: async_sessionmaker[AsyncSession],
    resident_id: str,
    results: Sequence[CallResult | Reply],
    now: dt.datetime,
    reason: str = "전화 기록 52시간 없음",
    max_callbacks: int = 1,
) -> CheckinClosed:
    """Run a check-in through real service calls: each item is one attempt's result (a Reply
    means answered with that reply). Returns the closing event."""
    policy = RetryPolicy(
        max_attempts=len(results), interval=dt.timedelta(0), max_callbacks=max_callbacks
    )
    async with sessions() as s:
        resident = await s.get(Resident, resident_id)
        assert resident is not None
        checkin, _ = await open_checkin(
            s, resident, source=CheckinSource.SIGNAL, reason=reason, now=now
        )
        await s.commit()
        checkin_id = checkin.id
    closed: CheckinClosed | None = None
    for n, item in enumerate(results):
        at = now + dt.timedelta(seconds=30 * n)
        async with sessions() as s:
            attempt_id = (await scheduled_attempt(s, checkin_id)).id
            assert await claim_attempts(s, [attempt_id], at)
            answered = isinstance(item, Reply)
            record = CallRecord(
                channel_id=attempt_id,
                result=CallResult.ANSWERED if answered else item,  # type: ignore[arg-type]
                hangup_cause=16 if answered else 19,
                originated_at=at,
                answered_at=at + dt.timedelta(seconds=3) if answered else None,
                ended_at=at + dt.timedelta(seconds=20),
                reply=item if answered else None,  # type: ignore[arg-type]
            )
            closed = await record_attempt(
                s, attempt_id, record, policy, at + dt.timedelta(seconds=20)
            )
            await s.commit()
    assert closed is not None, "the case did not close"
    return closed


def config() -> EscalationConfig:
    return EscalationConfig(public_url="http://anbu.test", sender=OUR_NUMBER)


def token_in(text: str) -> str:
    """The ack link's token in an alert's text (only its hash is stored)."""
    match = re.search(r"/ack/([A-Za-z0-9_-]+)$", text)
    assert match is not None, text
    return match.group(1)


async def link_token(sessions: async_sessionmaker[AsyncSession], incident_id: str) -> str:
    """The token of the latest link sent for an incident."""
    sent = [m for m in await messages(sessions) if m.incident_id == incident_id]
    return token_in(sent[-1].text)


async def incident_of(sessions: async_sessionmaker[AsyncSession], checkin_id: str) -> Incident:
    async with sessions() as s:
        incident = (
            await s.execute(select(Incident).where(Incident.checkin_id == checkin_id))
        ).scalar_one()
        return incident


async def messages(sessions: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessions() as s:
        return list(
            (await s.execute(select(OutboxMessage).order_by(OutboxMessage.created_at))).scalars()
        )


async def events(sessions: async_sessionmaker[AsyncSession], incident_id: str) -> list[str]:
    async with sessions() as s:
        rows = (
            await s.execute(
                select(IncidentEvent.kind)
                .where(IncidentEvent.incident_id == incident_id)
                .order_by(IncidentEvent.at, IncidentEvent.id)
            )
        ).scalars()
        return [str(k) for k in rows]


def worker_for(
    sessions: async_sessionmaker[AsyncSession], clock: FakeClock, *senders: ScriptedSender
) -> OutboxWorker:
    return OutboxWorker(
        sessions,
        list(senders),
        config=OutboxConfig(retry_initial_s=1, retry_max_s=4, failover_after=2),
        clock=clock,
    )


@dataclass
class Alerted:
    """A resident's case closed unanswered and its incident opened (the alert stored)."""

    world: World
    event: CheckinClosed
    clock: FakeClock
    kannel: ScriptedSender
    worker: OutboxWorker
    service: EscalationService


async def alerted(
    sessions: async_sessionmaker[AsyncSession],
    *,
    timeouts: Sequence[int] = (600, 600, 900),
    wake: bool = False,
) -> Alerted:
    """make_world + one unanswered attempt + the listener: the first alert is in the outbox
    (``wake``: the service wakes the worker, as the app wires it)."""
    a = await unanswered(sessions, timeouts=timeouts, wake=wake)
    await a.service.on_checkin_closed(a.event)
    return a


async def unanswered(
    sessions: async_sessionmaker[AsyncSession],
    *,
    timeouts: Sequence[int] = (600, 600, 900),
    wake: bool = False,
) -> Alerted:
    """make_world + one unanswered attempt: the case is closed, the listener not yet told."""
    world = await make_world(sessions, timeouts=timeouts)
    event = await close_case(sessions, world.resident_id, [CallResult.NO_ANSWER], T0)
    clock = FakeClock(event.at)
    kannel = ScriptedSender("kannel", clock)
    worker = worker_for(sessions, clock, kannel)
    service = EscalationService(sessions, config(), clock=clock, wake=worker.wake if wake else None)
    return Alerted(world, event, clock, kannel, worker, service)


# --- opening ------------------------------------------------------------------------------


async def test_given_unreachable_case_when_closed_then_incident_and_exact_sms_are_stored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = await make_world(sessions)
    event = await close_case(sessions, world.resident_id, [CallResult.NO_ANSWER] * 3, T0)
    assert event.outcome is Outcome.UNREACHABLE
    clock = FakeClock(event.at)
    service = EscalationService(sessions, config(), clock=clock)
    await service.on_checkin_closed(event)

    incident = await incident_of(sessions, event.checkin_id)
    assert incident.status is IncidentStatus.OPEN
    assert incident.step_position == 1
    assert incident.ack_due_at is None  # the clock starts when the gateway accepts
    [msg] = await messages(sessions)
    assert msg.to == world.officials["primary"].phone
    assert msg.reference == f"inc{incident.id}.1"
    assert msg.kind is SmsKind.LMS
    assert msg.subject == "[안부] 안부확인 알림"
    assert msg.text == (
        f"[안부] 김○○(신림동) 전화 안받음. 회신 {incident.code}\n"
        "대상: 김○○ (관악구 신림동)\n"
        "사유: 전화 기록 52시간 없음\n"
        "통화: 3회 시도, 11-25 10:01:20 종료\n"
        "1) 11-25 10:00:00 받지 않음\n"
        "2) 11-25 10:00:30 받지 않음\n"
        "3) 11-25 10:01:00 받지 않음\n"
        f"확인: {incident.code} 회신 또는 http://anbu.test/ack/{token_in(msg.text)}"
    )
    assert msg.priority == 1
    assert await events(sessions, incident.id) == ["opened", "queued"]


@pytest.mark.parametrize("reply", [Reply.OK, Reply.CALLBACK])
async def test_given_ok_or_callback_when_closed_then_no_incident(
    sessions: async_sessionmaker[AsyncSession], reply: Reply
) -> None:
    world = await make_world(sessions)
    # A callback past its budget closes the case as "callback": still not an alert.
    event = await close_case(sessions, world.resident_id, [reply], T0, max_callbacks=0)
    assert event.outcome == reply.value
    service = EscalationService(sessions, config(), clock=FakeClock(event.at))
    await service.on_checkin_closed(event)
    assert await service.escalate_due(event.at + dt.timedelta(minutes=5)) == 0
    assert await messages(sessions) == []


async def test_given_help_reply_when_closed_then_urgent_alert_with_priority(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = await make_world(sessions)
    event = await close_case(sessions, world.resident_id, [Reply.HELP], T0)
    assert event.outcome is Outcome.HELP
    await EscalationService(sessions, config(), clock=FakeClock(event.at)).on_checkin_closed(event)
    [msg] = await messages(sessions)
    incident = await incident_of(sessions, event.checkin_id)
    assert msg.text.splitlines()[0] == f"[안부] 긴급 김○○(신림동) 도움요청. 회신 {incident.code}"
    assert msg.priority == 2
    assert msg.subject == "[안부] 긴급 도움요청"


async def test_given_listener_twice_and_sweep_when_opening_then_one_incident(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a = await unanswered(sessions)
    event, service = a.event, a.service
    await asyncio.gather(service.on_checkin_closed(event), service.on_checkin_closed(event))
    await service.escalate_due(event.at + dt.timedelta(minutes=1))
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Incident)) == 1
    assert len(await messages(sessions)) == 1


async def test_given_listener_lost_in_crash_when_tick_runs_then_sweep_opens_incident(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a = await unanswered(sessions)
    event, service = a.event, a.service
    # Within the grace the listener may still be running: the sweep leaves the case alone.
    assert await service.escalate_due(event.at + dt.timedelta(seconds=2)) == 0
    assert await service.escalate_due(event.at + dt.timedelta(seconds=11)) == 1
    incident = await incident_of(sessions, event.checkin_id)
    assert incident.step_position == 1


# --- the chain on a clock -------------------------------------------------------------------


async def test_given_no_ack_when_clocks_run_out_then_backup_then_centre_then_exhausted(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a = await alerted(sessions, timeouts=(600, 300, 900), wake=True)
    a.clock.advance(1)
    await a.worker.drain()
    incident = await incident_of(sessions, a.event.checkin_id)
    sent_at = a.clock.now()
    assert incident.ack_due_at == sent_at + dt.timedelta(seconds=600)

    assert await a.service.escalate_due(sent_at + dt.timedelta(seconds=599)) == 0
    a.clock.t = sent_at + dt.timedelta(seconds=600)
    assert await a.service.escalate_due(a.clock.t) == 1
    await a.worker.drain()
    assert [m.to for m in a.kannel.sent] == [
        a.world.officials["primary"].phone,
        a.world.officials["backup"].phone,
    ]
    assert "2차 알림: 앞 담당자가 확인하지 않음" in a.kannel.sent[1].text
    incident = await incident_of(sessions, a.event.checkin_id)
    assert incident.ack_due_at == a.clock.t + dt.timedelta(seconds=300)

    a.clock.advance(300)
    assert await a.service.escalate_due(a.clock.t) == 1
    await a.worker.drain()
    assert a.kannel.sent[-1].to == a.world.officials["centre"].phone
    a.clock.advance(900)
    assert await a.service.escalate_due(a.clock.t) == 1
    incident = await incident_of(sessions, a.event.checkin_id)
    assert incident.status is IncidentStatus.EXHAUSTED
    assert await events(sessions, incident.id) == [
        "opened",
        "queued",
        "sent",
        "escalated",
        "queued",
        "sent",
        "escalated",
        "queued",
        "sent",
        "escalated",
        "exhausted",
    ]
    # Still acknowledgeable by link after the chain is used up.
    token = await link_token(sessions, incident.id)
    await a.service.acknowledge_link(token, Finding.VISITED, "방문, 이상 없음")
    assert (await incident_of(sessions, a.event.checkin_id)).status is IncidentStatus.ACKNOWLEDGED


async def test_given_no_chain_when_case_closes_then_incident_waits_and_routes_once_added(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = await make_world(sessions)
    async with sessions() as s:
        await s.execute(
            update(Resident).where(Resident.id == world.resident_id).values(dong="봉천동")
        )
        # Only the dong chain of 신림동 exists: 봉천동 has none and there is no district default.
        await s.commit()
    event = await close_case(sessions, world.resident_id, [CallResult.NO_ANSWER], T0)
    service = EscalationService(sessions, config(), clock=FakeClock(event.at))
    await service.on_checkin_closed(event)
    incident = await incident_of(sessions, event.checkin_id)
    assert incident.step_count == 0
    assert await messages(sessions) == []
    async with sessions() as s:
        chain = EscalationChain(district_id=world.district_id, dong="", steps=[])
        chain.steps.append(
            EscalationStep(position=1, official_id=world.officials["centre"].id, ack_timeout_s=600)
        )
        s.add(chain)
        await s.commit()
    assert await service.escalate_due(event.at + dt.timedelta(seconds=30)) == 0
    assert await service.escalate_due(event.at + dt.timedelta(seconds=61)) == 1
    [msg] = await messages(sessions)
    assert msg.to == world.officials["centre"].phone
    assert await events(sessions, incident.id) == ["opened", "no_chain", "queued"]


# --- acknowledgements -----------------------------------------------------------------------


async def test_given_reply_with_code_from_primary_when_received_then_ack_and_chain_stops(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a = await alerted(sessions, timeouts=(60, 60, 60))
    await a.worker.drain()
    incident = await incident_of(sessions, a.event.checkin_id)
    primary = a.world.officials["primary"].phone

    stranger = InboundSms(new_phone(), OUR_NUMBER, incident.code, None, "m1", "inject")
    assert (await a.service.handle_reply(stranger)).outcome is ReplyOutcome.NO_MATCH
    no_code = InboundSms(primary, OUR_NUMBER, "확인했습니다", None, "m2", "inject")
    assert (await a.service.handle_reply(no_code)).outcome is ReplyOutcome.NO_CODE

    a.clock.advance(42)
    reply = InboundSms(primary, OUR_NUMBER, f"{incident.code} 확인", None, "m3", "inject")
    result = await a.service.handle_reply(reply)
    assert result.outcome is ReplyOutcome.ACKNOWLEDGED
    assert result.incident_ids == (incident.id,)
    assert (await a.service.handle_reply(reply)).outcome is ReplyOutcome.DUPLICATE
    again = InboundSms(primary, OUR_NUMBER, incident.code, None, "m4", "inject")
    assert (await a.service.handle_reply(again)).outcome is ReplyOutcome.ALREADY

    incident = await incident_of(sessions, a.event.checkin_id)
    assert incident.status is IncidentStatus.ACKNOWLEDGED
    assert incident.acknowledged_by == a.world.officials["primary"].id
    assert incident.acknowledged_at == a.clock.now()
    a.clock.advance(3600)
    assert await a.service.escalate_due(a.clock.t) == 0
    await a.worker.drain()
    assert len(a.kannel.sent) == 1


async def test_given_backup_queued_when_primary_acks_first_then_backup_sms_is_cancelled(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a = await alerted(sessions, timeouts=(60, 60, 60))
    await a.worker.drain()
    a.clock.advance(60)
    assert await a.service.escalate_due(a.clock.t) == 1  # the backup's SMS is stored, not yet sent
    incident = await incident_of(sessions, a.event.checkin_id)
    primary = a.world.officials["primary"].phone
    await a.service.handle_reply(InboundSms(primary, OUR_NUMBER, incident.code, None, "a", None))
    await a.worker.drain()
    assert [m.to for m in a.kannel.sent] == [primary]
    statuses = [m.status for m in await messages(sessions)]
    assert statuses == [OutboxStatus.SENT, OutboxStatus.CANCELLED]


async def test_given_link_when_official_records_finding_then_resident_record_has_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a = await alerted(sessions)
    event, clock, service = a.event, a.clock, a.service
    incident = await incident_of(sessions, event.checkin_id)
    clock.advance(1800)
    token = await link_token(sessions, incident.id)
    await service.acknowledge_link(token, Finding.HOSPITALISED, "관악병원 입원 중")
    clock.advance(60)
    await service.acknowledge_link(token, Finding.SAFE, "", amend=True)
    incident = await incident_of(sessions, event.checkin_id)
    assert incident.status is IncidentStatus.ACKNOWLEDGED
    assert incident.ack_channel == "link"
    assert incident.finding is Finding.SAFE
    async with sessions() as s:
        rows = list(
            (
                await s.execute(
                    select(ResidentFinding.finding, ResidentFinding.note).order_by(
                        ResidentFinding.at
                    )
                )
            ).all()
        )
    assert rows == [(Finding.HOSPITALISED, "관악병원 입원 중"), (Finding.SAFE, "")]
    assert await events(sessions, incident.id) == [
        "opened",
        "queued",
        "acknowledged",
        "finding",
        "finding",
        "amended",
    ]


# --- delivery reports -----------------------------------------------------------------------


async def test_given_final_report_when_late_accepted_arrives_then_status_stays_final(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a = await alerted(sessions)
    clock, service = a.clock, a.service
    [msg] = await messages(sessions)

    def report(status: DeliveryStatus) -> DeliveryReport:
        return DeliveryReport(msg.reference, status, clock.now(), "fake", None, "")

    await service.record_delivery(report(DeliveryStatus.ACCEPTED))
    await service.record_delivery(report(DeliveryStatus.DELIVERED))
    await service.record_delivery(report(DeliveryStatus.ACCEPTED))
    await service.record_delivery(report(DeliveryStatus.BUFFERED))
    await service.record_delivery(report(DeliveryStatus.UNDELIVERABLE))
    [msg] = await messages(sessions)
    assert msg.delivery is DeliveryStatus.DELIVERED
    assert msg.accepted_report_at is not None
    assert not await service.record_delivery(
        DeliveryReport("unknown-ref", DeliveryStatus.DELIVERED, None, None, None, "")
    )


async def test_given_undeliverable_report_when_received_then_next_step_is_told_at_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a = await alerted(sessions)
    await a.worker.drain()
    [msg] = await messages(sessions)
    a.clock.advance(5)
    await a.service.record_delivery(
        DeliveryReport(msg.reference, DeliveryStatus.UNDELIVERABLE, None, "fake", None, "err:1")
    )
    assert await a.service.escalate_due(a.clock.t) == 1
    await a.worker.drain()
    assert a.kannel.sent[-1].to == a.world.officials["backup"].phone


# --- the outbox -----------------------------------------------------------------------------


async def _store(
    sessions: async_sessionmaker[AsyncSession], clock: FakeClock, n: int, prefix: str = "m"
) -> list[str]:
    refs = [f"{prefix}{i}" for i in range(n)]
    async with sessions() as s:
        for ref in refs:
            enqueue(
                s,
                reference=ref,
                to=new_phone(),
                sender=OUR_NUMBER,
                text=f"[안부] 시험 {ref}",
                kind=SmsKind.SMS,
                subject=None,
                now=clock.now(),
            )
        await s.commit()
    return refs


async def test_given_retryable_errors_when_sending_then_backoff_then_failover_to_second(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = FakeClock()
    down = SmsError("connection refused", retryable=True)
    kannel = ScriptedSender("kannel", clock, [down, down])
    solapi = ScriptedSender("solapi", clock)
    worker = worker_for(sessions, clock, kannel, solapi)
    await _store(sessions, clock, 1)
    assert await worker.run_once() == 1
    [row] = await messages(sessions)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 1)
    assert row.next_attempt_at == clock.now() + dt.timedelta(seconds=1)
    assert await worker.run_once() == 0  # not due yet
    clock.advance(1)
    assert await worker.run_once() == 1
    [row] = await messages(sessions)
    assert row.next_attempt_at == clock.now() + dt.timedelta(seconds=2)
    clock.advance(2)
    assert await worker.run_once() == 1
    [row] = await messages(sessions)
    assert (row.status, row.provider, row.attempts) == (OutboxStatus.SENT, "solapi", 3)
    assert [m.reference for m in solapi.sent] == ["m0"]
    assert kannel.sent == []


async def test_given_refusal_when_sending_then_other_provider_at_once_and_failed_if_both(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = FakeClock()
    refused = SmsError("HTTP 400 bad sender", retryable=False)
    kannel = ScriptedSender("kannel", clock, [refused, refused])
    solapi = ScriptedSender("solapi", clock, [None, refused])
    worker = worker_for(sessions, clock, kannel, solapi)
    await _store(sessions, clock, 2)
    await worker.drain()
    rows = {m.reference: m for m in await messages(sessions)}
    sent = {m.reference for m in solapi.sent}
    assert len(sent) == 1
    [ok] = sent
    [bad] = set(rows) - sent
    assert rows[ok].status is OutboxStatus.SENT
    assert rows[bad].status is OutboxStatus.FAILED
    assert rows[bad].refused_by == "kannel,solapi"


async def test_given_rows_left_sending_by_a_crash_when_recovering_then_report_decides(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = FakeClock()
    await _store(sessions, clock, 2)
    async with sessions() as s:
        await s.execute(
            update(OutboxMessage).values(
                status=OutboxStatus.SENDING,
                claim_token="dead-worker",
                claimed_at=clock.now(),
                attempts=1,
                provider="kannel",
            )
        )
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.reference == "m0")
            .values(delivery=DeliveryStatus.ACCEPTED, accepted_report_at=clock.now())
        )
        await s.commit()
    kannel = ScriptedSender("kannel", clock)
    worker = OutboxWorker(sessions, [kannel], config=OutboxConfig(sending_lease_s=30), clock=clock)
    clock.advance(29)
    assert await worker.recover() == 0  # a live worker may still be sending
    clock.advance(2)
    assert await worker.recover() == 2
    await worker.drain()
    rows = {m.reference: m for m in await messages(sessions)}
    assert rows["m0"].status is OutboxStatus.SENT
    assert rows["m1"].status is OutboxStatus.SENT
    assert [m.reference for m in kannel.sent] == ["m1"]  # m0 is proven sent: not again


async def test_given_two_workers_when_draining_together_then_each_message_sent_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = FakeClock()
    refs = await _store(sessions, clock, 60)
    a = ScriptedSender("kannel", clock)
    b = ScriptedSender("kannel", clock)
    wa = worker_for(sessions, clock, a)
    wb = worker_for(sessions, clock, b)
    await asyncio.gather(wa.drain(), wb.drain(), wa.drain(), wb.drain())
    sent = [m.reference for m in a.sent + b.sent]
    assert sorted(sent) == sorted(refs)


# --- the daily device digest ----------------------------------------------------------------


async def test_given_dead_devices_when_digest_runs_then_one_sms_per_district_per_day(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    from anbu.db.models_signals import Device, DeviceTask
    from anbu.domain.risk import DeviceIssueKind, DeviceKind, TaskStatus

    world = await make_world(sessions)
    async with sessions() as s:
        # The digest goes to the district's default chain (dong ""), first step.
        chain = EscalationChain(district_id=world.district_id, dong="", steps=[])
        chain.steps.append(
            EscalationStep(position=1, official_id=world.officials["centre"].id, ack_timeout_s=60)
        )
        s.add(chain)
        for n, (kind, issue, hours) in enumerate(
            [
                (DeviceKind.PLUG, DeviceIssueKind.STALE, 26),
                (DeviceKind.APP, DeviceIssueKind.OFFLINE, 50),
            ]
        ):
            owner = await s.get(Resident, world.resident_id)
            assert owner is not None
            device = Device(
                device_id=f"dev-{n}",
                district_id=owner.district_id,
                resident_id=world.resident_id,
                kind=kind,
                last_seen_at=T0 - dt.timedelta(hours=hours),
            )
            s.add(device)
            await s.flush()
            s.add(
                DeviceTask(
                    device_pk=device.id,
                    resident_id=world.resident_id,
                    kind=issue,
                    status=TaskStatus.OPEN,
                    detail="",
                    opened_at=T0 - dt.timedelta(hours=1),
                )
            )
        await s.commit()
    service = EscalationService(sessions, config(), clock=FakeClock(T0))
    assert await service.send_device_digest(T0) == 1
    assert await service.send_device_digest(T0 + dt.timedelta(hours=1)) == 0  # same local day
    [msg] = await messages(sessions)
    assert msg.to == world.officials["centre"].phone
    assert msg.incident_id is None
    assert msg.priority == 0
    assert msg.text == (
        "[안부] 관악구 기기점검 2건 (11-25)\n"
        "김○○(신림동) 스마트플러그 무신호 26시간\n"
        "김○○(신림동) 걸음앱 꺼짐 50시간"
    )
    assert await service.send_device_digest(T0 + dt.timedelta(days=1)) == 1
