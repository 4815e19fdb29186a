"""A person on the line, through real Asterisk (engine + carrier stand-in), on SQLite and
PostgreSQL: the resident presses 2 (or 0), the officials of their chain are called in order
(one answers and does not accept, one never answers, one is voicemail, one accepts), the
accepted one hears the whisper and is bridged; the timeline records every leg; the accepted
connection is the acknowledgement, and the SMS page happens only when nobody accepted.

Wired through the composition root (``Telephony.build`` with ``handoff_desk``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.app.parts import Telephony, build_container, handoff_desk, speech_listener
from anbu.db.models import CallAttempt, District, Resident
from anbu.db.models_escalation import (
    Incident,
    IncidentEvent,
    OutboxMessage,
)
from anbu.db.models_scheduling import DoNotCall
from anbu.domain.calls import CallResult
from anbu.domain.incidents import AckChannel, IncidentEventKind, IncidentStatus
from anbu.domain.replies import Reply
from anbu.ports import CallRecord, CallRequest
from anbu.settings import HandoffSettings
from escalation.service import EscalationConfig, EscalationService
from tests.call_rig import add_chain, new_attempt
from tests.fixtures_asterisk import AmiProbe, AsteriskPair

pytestmark = [pytest.mark.asterisk]

ACCEPTS = "01099990050"
DOES_NOT_ACCEPT = "01099990051"
NEVER_ANSWERS = "01099990052"
VOICEMAIL = "01099990053"
RESIDENT_PRESSES_2 = "01099990060"
RESIDENT_PRESSES_0 = "01099990061"


@dataclass
class World:
    resident_id: str
    officials: dict[str, str]  # phone -> official id


async def make_world(
    sessions: async_sessionmaker[AsyncSession], resident_phone: str, chain: Sequence[str]
) -> World:
    async with sessions() as s:
        district = District(code="11620", name="관악구")
        s.add(district)
        await s.flush()
        resident = Resident(
            district_id=district.id,
            district=district,
            name="김안부",
            phone=resident_phone,
            dong="신림동",
        )
        s.add(resident)
        officials = await add_chain(s, district, chain)
        await s.commit()
        return World(resident.id, officials)


@dataclass
class Rig:
    tel: Telephony
    sessions: async_sessionmaker[AsyncSession]
    carrier: AmiProbe

    async def call(self, attempt: CallAttempt) -> CallRecord:
        return await self.tel.dialer.call(
            CallRequest(channel_id=attempt.channel_id, number=attempt.number, ring_timeout_s=10)
        )

    async def incident(self, checkin_id: str) -> Incident:
        async with self.sessions() as s:
            return (
                await s.execute(select(Incident).where(Incident.checkin_id == checkin_id))
            ).scalar_one()

    async def timeline(self, incident_id: str) -> list[IncidentEvent]:
        async with self.sessions() as s:
            rows = await s.execute(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == incident_id)
                .order_by(IncidentEvent.id)
            )
            return list(rows.scalars())

    async def sms(self) -> list[OutboxMessage]:
        async with self.sessions() as s:
            return list((await s.execute(select(OutboxMessage))).scalars())


@contextlib.asynccontextmanager
async def open_rig(
    pair: AsteriskPair, db_url: str, *, speech: bool = False, max_call_s: float | None = None
) -> AsyncIterator[Rig]:
    ivr = pair.settings.ivr
    if max_call_s is not None:
        ivr = ivr.model_copy(update={"max_call_s": max_call_s})
    settings = pair.settings.model_copy(
        update={
            "database_url": db_url,
            "handoff": HandoffSettings(ring_timeout_s=4, accept_timeout_s=4, channel_wait_s=2),
            "ivr": ivr,
        }
    )
    container = build_container(settings)
    escalation = EscalationService(
        container.sessions, EscalationConfig(public_url="http://anbu.test", sender="0212345678")
    )
    # With speech, the listener of `anbu serve` (spoken replies, barge-in, machine detection).
    listener = await speech_listener(settings) if speech else None
    assert listener is not None or not speech
    tel = Telephony.build(
        settings, container.clock, listener, help_desk=handoff_desk(container, escalation)
    )
    await tel.start()
    try:
        async with pair.ami(pair.carrier) as carrier:
            yield Rig(tel, container.sessions, carrier)
    finally:
        await tel.stop()
        await container.aclose()


@pytest.fixture
async def rig(asterisk_pair: AsteriskPair, db_url: str, db_engine: object) -> AsyncIterator[Rig]:
    async with open_rig(asterisk_pair, db_url) as made:
        yield made


def kinds(timeline: Sequence[IncidentEvent]) -> list[tuple[IncidentEventKind, str | None]]:
    return [(e.kind, e.official_id) for e in timeline]


async def test_given_help_when_officials_refuse_ring_out_then_accept_then_bridged_and_acknowledged(
    rig: Rig,
) -> None:
    world = await make_world(
        rig.sessions, RESIDENT_PRESSES_2, [DOES_NOT_ACCEPT, NEVER_ANSWERS, ACCEPTS]
    )
    attempt = await new_attempt(rig.sessions, world.resident_id, RESIDENT_PRESSES_2)

    record = await rig.call(attempt)

    assert record.result is CallResult.ANSWERED
    assert record.reply is Reply.HELP
    incident = await rig.incident(attempt.checkin_id)
    ids = world.officials
    assert incident.status is IncidentStatus.ACKNOWLEDGED
    assert incident.ack_channel is AckChannel.CALL
    assert incident.acknowledged_by == ids[ACCEPTS]
    timeline = await rig.timeline(incident.id)
    assert kinds(timeline) == [
        (IncidentEventKind.OPENED, None),
        (IncidentEventKind.CALLING, ids[DOES_NOT_ACCEPT]),
        (IncidentEventKind.CALL_ENDED, ids[DOES_NOT_ACCEPT]),
        (IncidentEventKind.CALLING, ids[NEVER_ANSWERS]),
        (IncidentEventKind.CALL_ENDED, ids[NEVER_ANSWERS]),
        (IncidentEventKind.CALLING, ids[ACCEPTS]),
        (IncidentEventKind.CONNECTED, ids[ACCEPTS]),
        (IncidentEventKind.ACKNOWLEDGED, ids[ACCEPTS]),
        (IncidentEventKind.TALKED, ids[ACCEPTS]),
    ]
    assert timeline[2].detail.startswith("not_accepted")
    assert timeline[4].detail.startswith("no_answer")
    talked_s = float(timeline[-1].detail.split()[0])
    assert talked_s >= 2.5  # the official talks 3 s, then hangs up
    # The accepted official heard the whisper; nobody was paged by SMS.
    assert rig.carrier.user_events("CarrierWhisper", ACCEPTS)
    assert rig.carrier.user_events("CarrierTalked", ACCEPTS)
    assert rig.carrier.user_events("CarrierWhisper", DOES_NOT_ACCEPT)
    assert await rig.sms() == []


async def test_given_help_when_nobody_accepts_then_sms_page_after_every_leg(rig: Rig) -> None:
    world = await make_world(rig.sessions, RESIDENT_PRESSES_2, [NEVER_ANSWERS, DOES_NOT_ACCEPT])
    attempt = await new_attempt(rig.sessions, world.resident_id, RESIDENT_PRESSES_2)

    record = await rig.call(attempt)

    assert record.reply is Reply.HELP
    incident = await rig.incident(attempt.checkin_id)
    assert incident.status is IncidentStatus.OPEN
    ids = world.officials
    timeline = await rig.timeline(incident.id)
    assert kinds(timeline) == [
        (IncidentEventKind.OPENED, None),
        (IncidentEventKind.CALLING, ids[NEVER_ANSWERS]),
        (IncidentEventKind.CALL_ENDED, ids[NEVER_ANSWERS]),
        (IncidentEventKind.CALLING, ids[DOES_NOT_ACCEPT]),
        (IncidentEventKind.CALL_ENDED, ids[DOES_NOT_ACCEPT]),
        (IncidentEventKind.QUEUED, ids[NEVER_ANSWERS]),
    ]
    sms = await rig.sms()
    assert [m.to for m in sms] == [NEVER_ANSWERS]  # today's page: the chain's first step


async def test_given_key_0_during_greeting_then_connected_to_official(rig: Rig) -> None:
    world = await make_world(rig.sessions, RESIDENT_PRESSES_0, [ACCEPTS])
    attempt = await new_attempt(rig.sessions, world.resident_id, RESIDENT_PRESSES_0)

    record = await rig.call(attempt)

    assert record.reply is Reply.HELP
    assert record.keys == "0"
    incident = await rig.incident(attempt.checkin_id)
    assert incident.ack_channel is AckChannel.CALL
    assert await rig.sms() == []


async def test_given_resident_on_do_not_call_when_help_then_never_connected_and_paged(
    rig: Rig,
) -> None:
    world = await make_world(rig.sessions, RESIDENT_PRESSES_2, [ACCEPTS])
    attempt = await new_attempt(rig.sessions, world.resident_id, RESIDENT_PRESSES_2)
    async with rig.sessions() as s:
        s.add(DoNotCall(phone=RESIDENT_PRESSES_2, reason="본인 거부"))
        await s.commit()

    record = await rig.call(attempt)

    assert record.reply is Reply.HELP
    incident = await rig.incident(attempt.checkin_id)
    timeline = await rig.timeline(incident.id)
    assert [e.kind for e in timeline] == [
        IncidentEventKind.OPENED,
        IncidentEventKind.NO_TRANSFER,
        IncidentEventKind.QUEUED,
    ]
    assert not rig.carrier.user_events("CarrierWhisper", ACCEPTS)
    assert [m.to for m in await rig.sms()] == [ACCEPTS]


@pytest.fixture
async def speech_rig(
    asterisk_pair: AsteriskPair, db_url: str, db_engine: object
) -> AsyncIterator[Rig]:
    async with open_rig(asterisk_pair, db_url, speech=True) as made:
        yield made


async def test_given_official_on_voicemail_when_help_then_detected_hung_up_and_next_accepts(
    speech_rig: Rig,
) -> None:
    rig = speech_rig
    world = await make_world(rig.sessions, RESIDENT_PRESSES_2, [VOICEMAIL, ACCEPTS])
    attempt = await new_attempt(rig.sessions, world.resident_id, RESIDENT_PRESSES_2)

    record = await rig.call(attempt)

    assert record.reply is Reply.HELP
    incident = await rig.incident(attempt.checkin_id)
    ids = world.officials
    timeline = await rig.timeline(incident.id)
    assert kinds(timeline)[:5] == [
        (IncidentEventKind.OPENED, None),
        (IncidentEventKind.CALLING, ids[VOICEMAIL]),
        (IncidentEventKind.CALL_ENDED, ids[VOICEMAIL]),
        (IncidentEventKind.CALLING, ids[ACCEPTS]),
        (IncidentEventKind.CONNECTED, ids[ACCEPTS]),
    ]
    assert timeline[2].detail.startswith("voicemail")
    # Hung up on the 소리샘 before its beep: nothing recorded on the official's voicemail.
    assert not rig.carrier.user_events("CarrierRecording", VOICEMAIL)
    assert incident.ack_channel is AckChannel.CALL
    assert await rig.sms() == []


async def test_given_call_cap_shorter_than_the_conversation_when_connected_then_not_cut_off(
    asterisk_pair: AsteriskPair,
    db_url: str,
    db_engine: object,
) -> None:
    # The check-in call's own cap (ANBU_IVR__MAX_CALL_S) is shorter than greeting + transfer +
    # the official's 3 s of talk: the dialer must not hang up on a resident who asked for help.
    async with open_rig(asterisk_pair, db_url, max_call_s=4) as rig:
        world = await make_world(rig.sessions, RESIDENT_PRESSES_0, [ACCEPTS])
        attempt = await new_attempt(rig.sessions, world.resident_id, RESIDENT_PRESSES_0)

        record = await rig.call(attempt)

        assert record.reply is Reply.HELP
        assert record.answered_at is not None
        assert record.ended_at is not None
        assert (record.ended_at - record.answered_at).total_seconds() > 4
        incident = await rig.incident(attempt.checkin_id)
        timeline = await rig.timeline(incident.id)
        assert timeline[-1].kind is IncidentEventKind.TALKED
        assert float(timeline[-1].detail.split()[0]) >= 2.5  # the official's whole 3 s
        assert rig.carrier.user_events("CarrierTalked", ACCEPTS)


def test_given_the_engine_when_provisioned_then_the_holding_message_is_its_hold_class(
    asterisk_pair: AsteriskPair,
) -> None:
    # Dial(...,m(anbu-hold)) plays this class to the resident while the official's phone
    # rings: the holding message no longer delays the dial (bench transfer).
    hold_class = asterisk_pair.settings.handoff.hold_class
    assert hold_class == "anbu-hold"
    files = asterisk_pair.engine.rx("moh show files")
    assert f"Class: {hold_class}" in files, files
    lines = files.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"Class: {hold_class}")
    shown = " ".join(lines[start : start + 3])
    assert "1-hold" in shown, files
    assert "2-ring" in shown, files
