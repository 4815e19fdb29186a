"""The alert burst's set-based steps (issue 15), on SQLite and PostgreSQL: openings that share a
transaction, sends marked sent together, delivery reports stored together. Each batch must
give every item the answer it would get alone."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import Resident
from anbu.db.models_escalation import AckLink, Incident, IncidentEvent, OutboxMessage
from anbu.domain.calls import CallResult
from anbu.domain.incidents import (
    DeliveryStatus,
    IncidentEventKind,
    IncidentStatus,
    OutboxStatus,
)
from anbu.domain.replies import Reply
from anbu.domain.sms_text import OutgoingSms, SendReceipt, SmsKind
from escalation.dlr import DeliveryReport
from escalation.outbox import (
    DeliveryOutcome,
    OutboxConfig,
    OutboxWorker,
    enqueue,
    record_deliveries,
)
from escalation.service import EscalationService
from tests.test_escalation_service import (
    T0,
    FakeClock,
    ScriptedSender,
    close_case,
    config,
    make_world,
    messages,
)


class TickingSender(ScriptedSender):
    """Accepts each message a second after the one before: every row its own time."""

    async def send(self, message: OutgoingSms) -> SendReceipt:
        self.clock.advance(1)
        return await super().send(message)


def report(reference: str, status: DeliveryStatus) -> tuple[DeliveryReport, dt.datetime]:
    return DeliveryReport(reference, status, None, None, None, ""), T0


async def test_given_reports_for_several_messages_when_stored_as_one_batch_then_each_as_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        for ref in ("a.1", "b.1", "c.1"):
            enqueue(
                s,
                reference=ref,
                to="01012345678",
                sender="0212345678",
                text="안부 확인",
                kind=SmsKind.SMS,
                subject=None,
                now=T0,
            )
        await s.commit()
    batch = [
        report("a.1", DeliveryStatus.ACCEPTED),
        report("b.1", DeliveryStatus.DELIVERED),
        report("a.1", DeliveryStatus.DELIVERED),  # same message, later in the batch
        report("b.1", DeliveryStatus.ACCEPTED),  # "accepted" after "delivered": too late
        report("c.1", DeliveryStatus.BUFFERED),
        report("c.1", DeliveryStatus.BUFFERED),  # buffered again: keeps the latest
        report("zz.9", DeliveryStatus.DELIVERED),  # not ours
    ]
    async with sessions() as s:
        outcomes = await record_deliveries(s, batch)
        await s.commit()
    assert outcomes == [
        DeliveryOutcome.STORED,
        DeliveryOutcome.STORED,
        DeliveryOutcome.STORED,
        DeliveryOutcome.IGNORED,
        DeliveryOutcome.STORED,
        DeliveryOutcome.STORED,
        DeliveryOutcome.UNKNOWN,
    ]
    async with sessions() as s:
        rows = {r.reference: r for r in (await s.execute(select(OutboxMessage))).scalars()}
    assert rows["a.1"].delivery is DeliveryStatus.DELIVERED
    assert rows["a.1"].accepted_report_at is not None
    assert rows["b.1"].delivery is DeliveryStatus.DELIVERED
    assert rows["b.1"].accepted_report_at is None  # the late "accepted" changed nothing
    assert rows["c.1"].delivery is DeliveryStatus.BUFFERED


async def test_given_many_cases_closing_together_when_opened_then_one_incident_and_sms_each(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = await make_world(sessions)
    async with sessions() as s:
        resident = await s.get(Resident, world.resident_id)
        assert resident is not None
        others = [
            Resident(
                district_id=world.district_id,
                name="박안부",
                phone=f"0102000{i:04d}",
                dong=resident.dong,
            )
            for i in range(5)
        ]
        s.add_all(others)
        await s.commit()
        ids = [world.resident_id, *(r.id for r in others)]
    closed = [await close_case(sessions, rid, [CallResult.NO_ANSWER], T0) for rid in ids[:5]]
    fine = await close_case(sessions, ids[5], [Reply.OK], T0)  # answered "ok": no alert
    clock = FakeClock(T0 + dt.timedelta(minutes=1))
    service = EscalationService(sessions, config(), clock=clock)
    # All at once (one batch), the first case twice: it gets one incident, the second
    # call answers None as when the listener and the sweep race.
    opened = await asyncio.gather(
        *(service.open_incident(c.checkin_id, clock.now()) for c in closed),
        service.open_incident(closed[0].checkin_id, clock.now()),
        service.open_incident(fine.checkin_id, clock.now()),
    )
    assert all(opened[:5])
    assert len(set(opened[:5])) == 5
    assert opened[5:] == [None, None]
    async with sessions() as s:
        incidents = (await s.execute(select(Incident))).scalars().all()
        assert len(incidents) == 5
        assert {i.checkin_id for i in incidents} == {c.checkin_id for c in closed}
        assert len({i.code for i in incidents}) == 5  # a reply names one incident
        for incident in incidents:
            assert incident.status is IncidentStatus.OPEN
            assert incident.step_count == 1
            assert incident.step_position == 1
            assert incident.ack_due_at is None  # starts when the gateway accepts
        kinds = [
            (e.incident_id, e.kind)
            for e in (await s.execute(select(IncidentEvent).order_by(IncidentEvent.id))).scalars()
        ]
        assert await s.scalar(select(func.count()).select_from(AckLink)) == 5
    for incident in incidents:
        assert [k for i, k in kinds if i == incident.id] == [
            IncidentEventKind.OPENED,
            IncidentEventKind.QUEUED,
        ]
    sent = await messages(sessions)
    assert len(sent) == 5
    assert {m.id for m in sent} == {i.current_message_id for i in incidents}
    assert {m.to for m in sent} == {world.officials["primary"].phone}
    for incident in incidents:
        (message,) = [m for m in sent if m.incident_id == incident.id]
        assert message.reference == f"inc{incident.id}.1"
        assert incident.code in message.text

    # The worker sends them; the marks "sent" share transactions and each incident's
    # clock starts from its own message's acceptance.
    sender = TickingSender("kannel", clock)
    worker = OutboxWorker(sessions, [sender], clock=clock)
    await worker.drain()
    await worker.aclose()
    assert sorted(m.reference for m in sender.sent) == sorted(m.reference for m in sent)
    async with sessions() as s:
        rows = (await s.execute(select(OutboxMessage))).scalars().all()
        assert {r.status for r in rows} == {OutboxStatus.SENT}
        sent_at = {r.id: r.sent_at for r in rows}
        assert len(set(sent_at.values())) == 5
        for incident_id, message_id, due in await s.execute(
            select(Incident.id, Incident.current_message_id, Incident.ack_due_at)
        ):
            assert message_id is not None, incident_id
            assert due is not None, incident_id
            message_sent = sent_at[message_id]
            assert message_sent is not None
            assert due == message_sent + dt.timedelta(seconds=600)
        sent_events = await s.scalar(
            select(func.count())
            .select_from(IncidentEvent)
            .where(IncidentEvent.kind == IncidentEventKind.SENT)
        )
    assert sent_events == 5


class HeldSender(ScriptedSender):
    """Holds every send until ``release`` is set (a slow gateway)."""

    def __init__(self, name: str, clock: FakeClock) -> None:
        super().__init__(name, clock)
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def send(self, message: OutgoingSms) -> SendReceipt:
        self.started.set()
        await self.release.wait()
        return await super().send(message)


async def test_given_claimed_messages_queued_when_the_worker_stops_then_unsent_ones_go_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # One slot, claims of five: one message in flight, four waiting in the worker's queue.
    async with sessions() as s:
        for n in range(5):
            enqueue(
                s,
                reference=f"q.{n}",
                to="01012345678",
                sender="0212345678",
                text="안부 확인",
                kind=SmsKind.SMS,
                subject=None,
                now=T0,
            )
        await s.commit()
    clock = FakeClock(T0)
    sender = HeldSender("kannel", clock)
    worker = OutboxWorker(
        sessions, [sender], config=OutboxConfig(batch=5, concurrency=1), clock=clock
    )
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(sender.started.wait(), 30)
    async with sessions() as s:
        statuses = (await s.execute(select(OutboxMessage.status))).scalars().all()
    assert sorted(statuses) == sorted([OutboxStatus.SENDING] * 5)  # all five claimed at once
    worker.stop()
    sender.release.set()  # the send in flight finishes; the four queued are not sent
    await asyncio.wait_for(task, 30)
    await worker.aclose()
    assert len(sender.sent) == 1
    async with sessions() as s:
        rows = {r.reference: r for r in (await s.execute(select(OutboxMessage))).scalars()}
    (sent,) = [r for r in rows.values() if r.status is OutboxStatus.SENT]
    assert sent.reference == sender.sent[0].reference
    back = [r for r in rows.values() if r is not sent]
    assert {r.status for r in back} == {OutboxStatus.PENDING}
    assert {r.attempts for r in back} == {0}  # never sent: the attempt does not count
    assert {r.claim_token for r in back} == {None}
