"""Barge-in and voicemail / answering-machine detection through the real Asterisk pair.

AmiDialer + AgiServer + CheckinFlow + StreamListener (AudioSocket) + the real Vosk model,
dialling the carrier stand-in's numbers 010-9999-0030..0034 over a real PJSIP trunk: the
carrier's 소리샘 announcement and beep, LG U+'s announcement and disconnect, a person's
answering machine, and "네" / "도와주세요" said while the engine's question still plays. The
carrier raises ``CarrierBeep`` when its beep starts: a voicemail must be hung up before it.

Then through the dispatcher and the database (both backends): a resident whose phone goes to
소리샘 every time gets the configured attempts, each stored ``voicemail``, and the case ends
``unreachable`` (never ok, never help); the alert says "음성사서함 연결 N회".

Needs the ``voice`` extra and the two real Asterisk instances: these tests fail without them,
they never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.db.models_scheduling import Program
from anbu.domain.calls import CallResult
from anbu.domain.checkin import CheckinSource, CheckinStatus, Outcome
from anbu.domain.escalation import AttemptFacts, machine_counts
from anbu.domain.replies import Reply
from anbu.ports import CallRecord, IvrOutcome, SystemClock
from anbu.services.checkins import CheckinClosed, open_checkin
from ivr.audiosocket import AudioSocketServer
from ivr.listen import SpeechListener
from ivr.speech import VoskRecognizer
from ivr.stream import StreamListener
from scheduler.dispatcher import AmiChannelProbe, Dispatcher
from tests.call_rig import Rig, dispatching, open_rig, tone_prompts
from tests.fixtures_asterisk import AmiProbe, AsteriskPair

pytestmark = [pytest.mark.asterisk, pytest.mark.voice]

GREETING_S = 0.3
QUESTION_S = 6.0  # the barge-in numbers speak 1.5 s after answering: well inside it
REPLY_TIMEOUT_S = 3.0

OK_KEY = "01099990001"
SILENT = "01099990003"
SAYS_NE_AFTER = "01099990009"
SAYS_HELLO = "01099990011"
VOICEMAIL_SKT = "01099990030"
VOICEMAIL_LGU = "01099990031"
ANSWERING_MACHINE = "01099990032"
SAYS_NE_DURING = "01099990033"
SAYS_HELP_DURING = "01099990034"


@pytest.fixture(scope="module")
def stream_audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream-audio")
    return tone_prompts(root, greeting_s=GREETING_S, question_s=QUESTION_S)


@dataclass
class StreamRig:
    rig: Rig
    carrier: AmiProbe

    async def call(self, number: str) -> tuple[CallRecord, IvrOutcome]:
        return await self.rig.call_outcome(number)


@contextlib.asynccontextmanager
async def open_stream_rig(
    pair: AsteriskPair, audio_dir: Path, recognizer: VoskRecognizer, tmp: Path
) -> AsyncIterator[StreamRig]:
    listener = StreamListener(
        recognizer,
        AudioSocketServer("127.0.0.1", 0),
        fallback=SpeechListener(recognizer, tmp / "rec"),
    )
    await listener.start()
    try:
        async with (
            open_rig(pair, audio_dir, reply_timeout_s=REPLY_TIMEOUT_S, listener=listener) as rig,
            pair.ami(pair.carrier) as carrier,
        ):
            yield StreamRig(rig, carrier)
    finally:
        await listener.stop()


@pytest.fixture
async def stream(
    asterisk_pair: AsteriskPair, stream_audio_dir: Path, recognizer: VoskRecognizer, tmp_path: Path
) -> AsyncIterator[StreamRig]:
    async with open_stream_rig(asterisk_pair, stream_audio_dir, recognizer, tmp_path) as made:
        yield made


def _prompt_s() -> float:
    return GREETING_S + QUESTION_S


# ---- voicemail and answering machines --------------------------------------------------------


async def test_given_skt_soriseam_voicemail_when_called_then_voicemail_hung_up_before_the_beep(
    stream: StreamRig,
) -> None:
    record, outcome = await stream.call(VOICEMAIL_SKT)

    assert (record.result, record.reply) == (CallResult.VOICEMAIL, None)
    assert outcome.machine is not None
    assert outcome.reply is None
    assert record.answered_at is not None
    # Hung up before the beep: the carrier never started it (billing and recording start there).
    await asyncio.sleep(0.5)
    assert stream.carrier.user_events("CarrierBeep", VOICEMAIL_SKT) == []
    assert stream.carrier.user_events("CarrierRecording", VOICEMAIL_SKT) == []


# What the carrier must never have started on each number (its recording costs the resident).
@pytest.mark.parametrize(
    ("number", "result", "never_started"),
    [
        (VOICEMAIL_LGU, CallResult.VOICEMAIL, ()),
        (ANSWERING_MACHINE, CallResult.MACHINE, ("CarrierRecording",)),
    ],
    ids=["lgu-announcement-then-disconnect-is-voicemail", "answering-machine-never-help"],
)
async def test_given_a_recorded_voice_on_the_line_when_called_then_told_apart_from_a_person(
    stream: StreamRig, number: str, result: CallResult, never_started: tuple[str, ...]
) -> None:
    record, outcome = await stream.call(number)

    assert (record.result, record.reply) == (result, None)
    assert outcome.asks == 1
    if never_started:
        await asyncio.sleep(0.5)
    for event in never_started:
        assert stream.carrier.user_events(event, number) == []


# ---- barge-in ----------------------------------------------------------------------------------


async def test_given_ne_said_during_the_question_when_called_then_ok_before_the_question_ends(
    stream: StreamRig,
) -> None:
    record, outcome = await stream.call(SAYS_NE_DURING)

    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, Reply.OK, "")
    assert outcome.asks == 1
    assert record.transcript is not None
    assert "네" in record.transcript.split()
    assert outcome.replied_at is not None
    # Heard while the question was still playing, not after it.
    assert (outcome.replied_at - outcome.started_at).total_seconds() < _prompt_s()


async def test_given_dowajuseyo_said_during_the_question_when_called_then_never_ok_nor_machine(
    stream: StreamRig,
) -> None:
    # The synthetic 도와주세요 is rarely recognised (see bench/results/speech.json): whatever it
    # becomes, never ok, and a person is never taken for a machine.
    record, outcome = await stream.call(SAYS_HELP_DURING)

    assert record.result is CallResult.ANSWERED
    assert record.reply in (Reply.HELP, Reply.NO_RESPONSE)
    assert outcome.machine is None
    assert stream.carrier.user_events("CarrierSpoke", SAYS_HELP_DURING)


async def test_given_key_1_during_the_question_when_streaming_then_ok_from_the_dtmf_message(
    stream: StreamRig,
) -> None:
    record, outcome = await stream.call(OK_KEY)

    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, Reply.OK, "1")
    assert outcome.replied_at is not None
    assert (outcome.replied_at - outcome.started_at).total_seconds() < _prompt_s()


async def test_given_ne_said_after_the_question_when_streaming_then_ok(stream: StreamRig) -> None:
    record, _ = await stream.call(SAYS_NE_AFTER)

    assert (record.result, record.reply) == (CallResult.ANSWERED, Reply.OK)


async def test_given_silent_person_when_streaming_then_no_response_not_machine(
    stream: StreamRig,
) -> None:
    record, outcome = await stream.call(SILENT)

    assert (record.result, record.reply) == (CallResult.ANSWERED, Reply.NO_RESPONSE)
    assert outcome.asks == 2
    assert outcome.machine is None


async def test_given_hello_when_streaming_then_never_ok_and_not_machine(stream: StreamRig) -> None:
    record, outcome = await stream.call(SAYS_HELLO)

    assert record.result is CallResult.ANSWERED
    assert record.reply is Reply.NO_RESPONSE
    assert outcome.machine is None


# ---- through the dispatcher and the database ---------------------------------------------------


async def test_given_phone_always_on_voicemail_when_dispatched_then_retried_and_unreachable(
    asterisk_pair: AsteriskPair,
    stream_audio_dir: Path,
    recognizer: VoskRecognizer,
    tmp_path: Path,
    db_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = SystemClock()
    closed: list[CheckinClosed] = []
    done = asyncio.Event()

    async def on_closed(event: CheckinClosed) -> None:
        closed.append(event)
        done.set()

    async with open_stream_rig(asterisk_pair, stream_audio_dir, recognizer, tmp_path) as rig:
        dispatcher = Dispatcher(
            sessions,
            rig.rig.dialer,
            clock,
            max_concurrent=5,
            ring_timeout_s=5.0,
            channel_probe=AmiChannelProbe(rig.rig.ami),
            listeners=[on_closed],
            engine=db_engine,
        )
        async with sessions() as s:
            s.add(
                Program.any_hour(
                    "test",
                    max_attempts=2,
                    interval_s=1,
                    busy_interval_s=1,
                    failure_interval_s=1,
                    max_callbacks=0,
                )
            )
            person = Resident(
                district=District(code="11620", name="관악구"),
                name="김안부",
                phone=VOICEMAIL_SKT,
                dong="신림동",
            )
            s.add(person)
            await s.flush()
            checkin, _ = await open_checkin(
                s, person, source=CheckinSource.API, reason="test", now=clock.now()
            )
            checkin_id = checkin.id
            await s.commit()
        async with dispatching(dispatcher):
            await asyncio.wait_for(done.wait(), 60)

    async with sessions() as s:
        case = await s.get(Checkin, checkin_id)
        attempts = (
            (
                await s.execute(
                    select(CallAttempt)
                    .where(CallAttempt.checkin_id == checkin_id)
                    .order_by(CallAttempt.attempt_no)
                )
            )
            .scalars()
            .all()
        )
    assert case is not None
    assert (case.status, case.outcome) == (CheckinStatus.EXHAUSTED, Outcome.UNREACHABLE)
    assert [a.result for a in attempts] == [CallResult.VOICEMAIL, CallResult.VOICEMAIL]
    assert [a.reply for a in attempts] == [None, None]
    # Retried like no answer: the second dial waited the no-answer interval after the first.
    first, second = attempts
    assert first.originated_at is not None
    assert second.originated_at is not None
    assert second.originated_at - first.originated_at >= dt.timedelta(seconds=1)
    assert [e.outcome for e in closed] == [Outcome.UNREACHABLE]
    facts = [
        AttemptFacts(a.attempt_no, a.status, a.result, a.reply, a.originated_at) for a in attempts
    ]
    assert machine_counts(facts) == "음성사서함 연결 2회"
