"""The call test rig shared by the real-call test modules: tone prompts of chosen lengths, and
AmiDialer + AgiServer + CheckinFlow wired as the app does against an ``AsteriskPair``.

One rig for every module (keys, speech, streamed speech, carrier network), so that a change to
how the app wires a call is made here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import struct
import uuid
import wave
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.db.models_escalation import EscalationChain, EscalationStep, Official
from anbu.db.models_scheduling import Program
from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus, Outcome
from anbu.domain.incidents import OfficialRole
from anbu.domain.replies import Prompt, Reply
from anbu.ports import CallRecord, CallRequest, IvrOutcome
from anbu.services.checkins import CheckinClosed, open_checkin
from anbu.settings import Settings
from ivr.agi import AgiServer
from ivr.ami import AmiClient, AmiState
from ivr.dialer import AmiDialer, CallRegistry
from ivr.flow import CheckinFlow, ReplyListener
from ivr.prompts import PromptLibrary
from scheduler.dispatcher import Dispatcher
from tests.fixtures_asterisk import AsteriskPair


def write_tone(path: Path, seconds: float) -> None:
    """8 kHz mono 16-bit, a quiet 440 Hz tone: the length is what matters here."""
    frames = b"".join(
        struct.pack("<h", int(2000 * math.sin(2 * math.pi * 440 * i / 8000)))
        for i in range(int(8000 * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)


def tone_prompts(root: Path, *, question_s: float, greeting_s: float = 0.3) -> Path:
    """An audio dir whose prompts are tones: the greeting and question as long as asked, every
    other prompt 0.3 s (a test about a prompt's words uses the rendered ones instead)."""
    (root / "rendered").mkdir()
    lengths = {Prompt.GREETING: greeting_s, Prompt.QUESTION: question_s}
    for prompt in Prompt:
        write_tone(root / "rendered" / f"{prompt.value}.wav", lengths.get(prompt, 0.3))
    assert PromptLibrary(root).missing() == []
    return root


class TeeSink:
    """Forwards outcomes to the registry and keeps them for assertions."""

    def __init__(self, registry: CallRegistry) -> None:
        self.registry = registry
        self.outcomes: dict[str, IvrOutcome] = {}

    def report(self, outcome: IvrOutcome) -> None:
        self.outcomes[outcome.channel_id] = outcome
        self.registry.report(outcome)


@dataclass
class Rig:
    pair: AsteriskPair
    ami: AmiClient
    agi: AgiServer
    dialer: AmiDialer
    sink: TeeSink
    states: list[AmiState] = field(default_factory=list)

    async def call(self, number: str, ring_timeout_s: float = 10.0) -> CallRecord:
        request = CallRequest(
            channel_id=f"it-{uuid.uuid4().hex[:12]}", number=number, ring_timeout_s=ring_timeout_s
        )
        return await asyncio.wait_for(self.dialer.call(request), 40.0)

    async def call_outcome(self, number: str) -> tuple[CallRecord, IvrOutcome]:
        """The call's record and the flow's outcome for it."""
        record = await self.call(number)
        return record, self.sink.outcomes[record.channel_id]


@contextlib.asynccontextmanager
async def open_rig(
    pair: AsteriskPair,
    audio_dir: Path,
    *,
    reply_timeout_s: float,
    listener: ReplyListener | None = None,
) -> AsyncIterator[Rig]:
    """AMI client + FastAGI server + flow (with ``listener`` for spoken replies) + dialer,
    wired as the app does, on ``pair``."""
    ami = AmiClient(
        "127.0.0.1",
        pair.ami_port,
        pair.ami_user,
        pair.ami_secret,
        reconnect_initial_s=0.1,
        reconnect_max_s=0.5,
        action_timeout_s=15.0,
    )
    states: list[AmiState] = []
    ami.on_state(states.append)
    await ami.connect(timeout_s=10.0)
    registry = CallRegistry()
    sink = TeeSink(registry)
    flow = CheckinFlow(
        PromptLibrary(audio_dir), sink, reply_timeout_s=reply_timeout_s, listener=listener
    )
    agi = AgiServer({"/checkin": flow}, host="127.0.0.1", port=pair.agi_port)
    dialer = AmiDialer.from_settings(pair.settings, ami, registry)
    try:
        await agi.start()
        dialer.start()
        yield Rig(pair, ami, agi, dialer, sink, states)
    finally:
        await dialer.close()
        await agi.stop(grace_s=2.0)
        await ami.close()


def assert_answered(record: CallRecord, reply: Reply, keys: str) -> None:
    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, reply, keys)
    assert record.answered_at is not None
    assert record.originated_at <= record.answered_at <= record.ended_at


async def add_chain(
    session: AsyncSession, district: District, phones: Sequence[str]
) -> dict[str, str]:
    """Officials of 신림동 on ``phones`` (the last one the centre's, the others the dong's) and the
    dong's escalation chain calling them in that order. Returns phone -> official id."""
    officials = {
        phone: Official(
            district_id=district.id,
            district=district,
            dong="신림동",
            name=f"담당 {i}",
            phone=phone,
            role=OfficialRole.DONG if i < len(phones) - 1 else OfficialRole.CENTRE,
        )
        for i, phone in enumerate(phones)
    }
    session.add_all(officials.values())
    await session.flush()
    session.add(
        EscalationChain(
            district_id=district.id,
            dong="신림동",
            steps=[
                EscalationStep(position=i, official_id=officials[p].id, ack_timeout_s=600)
                for i, p in enumerate(phones, start=1)
            ],
        )
    )
    return {p: o.id for p, o in officials.items()}


async def new_attempt(
    sessions: async_sessionmaker[AsyncSession],
    resident_id: str,
    number: str,
    reason: str = "전화 기록 52시간 없음",
) -> CallAttempt:
    """A check-in of ``resident_id`` being dialed and its first attempt at ``number``, as the
    dispatcher leaves them just before it originates the call."""
    async with sessions() as s:
        checkin = Checkin(resident_id=resident_id, reason=reason)
        checkin.status = CheckinStatus.DIALING
        s.add(checkin)
        await s.flush()
        attempt = CallAttempt(checkin_id=checkin.id, attempt_no=1, number=number)
        s.add(attempt)
        await s.commit()
        return attempt


async def scheduled_attempt(session: AsyncSession, checkin_id: str) -> CallAttempt:
    """The attempt ``checkin_id`` waits on (the one the dispatcher would claim next)."""
    attempt = await session.scalar(
        select(CallAttempt).where(
            CallAttempt.checkin_id == checkin_id, CallAttempt.status == AttemptStatus.SCHEDULED
        )
    )
    assert attempt is not None, f"check-in {checkin_id} has no scheduled attempt"
    return attempt


@contextlib.asynccontextmanager
async def dispatching(
    dispatcher: Dispatcher,
    poll_interval_s: float = 0.2,
    *,
    then: Sequence[Callable[[], Awaitable[object]]] = (),
) -> AsyncIterator[Dispatcher]:
    """``dispatcher``'s loop running for the block; after it (also on a failure) the loop
    stopped, the calls in flight finished, the dispatcher closed, and ``then`` awaited in
    order (the dialer, the AMI client... that the dispatcher used)."""
    runner = asyncio.create_task(dispatcher.run(poll_interval_s))
    try:
        yield dispatcher
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await dispatcher.drain()
        await dispatcher.close()
        for close in then:
            await close()


def campaign_settings(
    pair: AsteriskPair, audio_dir: Path, db_dir: Path, *, admin: str, **updates: object
) -> Settings:
    """``pair``'s settings for a campaign through the composition root: ``audio_dir``'s
    prompts, a 1 s reply timeout, a SQLite database in ``db_dir``, ``admin`` paged by SMS (an
    SMS in the outbox); ``updates`` override any of it."""
    escalation = pair.settings.escalation.model_copy(update={"admin_phones": [admin]})
    return pair.settings.model_copy(
        update={
            "escalation": escalation,
            "audio_dir": audio_dir,
            "reply_timeout_s": 1.0,
            "database_url": f"sqlite+aiosqlite:///{db_dir / 'anbu.db'}",
            **updates,
        }
    )


# The carrier stand-in's campaign numbers: both answer and report the call id, then press 1 / 2.
CAMPAIGN_OK = "01099990040"
CAMPAIGN_HELP = "01099990041"


class Closings:
    """The cases the dispatcher closed, counted per check-in (one closed twice is a bug), for
    a test or a benchmark to wait on."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    async def on_closed(self, event: CheckinClosed) -> None:
        async with self._changed:
            self.count[event.checkin_id] += 1
            self._changed.notify_all()

    async def until(self, cases: int, timeout_s: float) -> None:
        """Waits until ``cases`` different cases have closed."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self.count) >= cases)


async def open_api_checkins(
    session: AsyncSession, phones: Sequence[str], *, reason: str, now: dt.datetime
) -> list[Checkin]:
    """A resident of 관악구 신림동 on each of ``phones``, each with a check-in asked through the
    API at ``now`` (flushed, not committed), in the order of ``phones``."""
    district = District(code="11620", name="관악구")
    people = [
        Resident(district=district, name=f"주민{i}", phone=phone, dong="신림동")
        for i, phone in enumerate(phones)
    ]
    session.add_all(people)
    await session.flush()
    return [
        (await open_checkin(session, person, source=CheckinSource.API, reason=reason, now=now))[0]
        for person in people
    ]


async def seed_campaign(
    sessions: async_sessionmaker[AsyncSession],
    n: int,
    *,
    tag: str,
    max_attempts: int,
    now: dt.datetime,
) -> dict[str, Outcome]:
    """A campaign: one any-hour programme ``tag`` and ``n`` residents, every other one on the
    number that presses 1 (ok) or 2 (help), each with a check-in asked through the API at
    ``now``. Returns the outcome each resident's case must close with."""
    async with sessions() as s:
        s.add(
            Program.any_hour(
                tag, max_attempts=max_attempts, interval_s=1, failure_interval_s=1, max_callbacks=0
            )
        )
        phones = [(CAMPAIGN_OK, CAMPAIGN_HELP)[i % 2] for i in range(n)]
        checkins = await open_api_checkins(s, phones, reason=tag, now=now)
        await s.commit()
    return {
        c.resident_id: (Outcome.OK if phone == CAMPAIGN_OK else Outcome.HELP)
        for c, phone in zip(checkins, phones, strict=True)
    }
