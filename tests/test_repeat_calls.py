"""Accessibility through real calls (engine + carrier stand-in, SQLite and PostgreSQL): key 9
repeats the question without counting as a miss; a resident's profile with one more ask gets
it, in their own (louder, slower) voice variant.

The spoken "다시" through a real call: tests/test_voice_calls.py (carrier number 070).

Wired through the composition root (``Telephony.build`` with ``voice_profiles``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.app.parts import Telephony, build_container, voice_profiles
from anbu.db.models import District, Resident
from anbu.domain.replies import Prompt, Reply
from anbu.domain.voice import VoiceProfile
from anbu.ports import CallRequest, IvrOutcome
from anbu.services.voice import put_voice
from ivr.dialer import CallRegistry
from tests.call_rig import new_attempt
from tests.fixtures_asterisk import AsteriskPair

pytestmark = [pytest.mark.asterisk]

PRESSES_9_THEN_1 = "01099990062"
SILENT_LONG = "01099990063"  # silent for 120 s: three slow asks fit


class KeepingRegistry(CallRegistry):
    """The dialer's registry, keeping each IVR outcome for the assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, IvrOutcome] = {}

    def report(self, outcome: IvrOutcome) -> None:
        self.outcomes[outcome.channel_id] = outcome
        super().report(outcome)


@dataclass
class Rig:
    tel: Telephony
    registry: KeepingRegistry
    sessions: async_sessionmaker[AsyncSession]
    var_dir: Path

    async def call(self, number: str, profile: VoiceProfile | None = None) -> IvrOutcome:
        async with self.sessions() as s:
            district = District(code="11620", name="관악구")
            s.add(district)
            await s.flush()
            resident = Resident(district_id=district.id, name="김안부", phone=number)
            s.add(resident)
            await s.flush()
            if profile is not None:
                await put_voice(s, resident.id, profile, resident.created_at)
            resident_id = resident.id
            await s.commit()
        return await dial(self.tel, self.registry, self.sessions, resident_id, number)


async def dial(
    tel: Telephony,
    registry: KeepingRegistry,
    sessions: async_sessionmaker[AsyncSession],
    resident_id: str,
    number: str,
) -> IvrOutcome:
    """Ring ``resident_id`` at ``number`` through the engine as the dispatcher would; the
    IVR's outcome of the call."""
    attempt = await new_attempt(sessions, resident_id, number, reason="test")
    record = await tel.dialer.call(
        CallRequest(channel_id=attempt.channel_id, number=number, ring_timeout_s=10)
    )
    assert record.reply is not None, record
    return registry.outcomes[attempt.channel_id]


@contextlib.asynccontextmanager
async def open_rig(pair: AsteriskPair, db_url: str) -> AsyncIterator[Rig]:
    settings = pair.settings.model_copy(update={"database_url": db_url, "reply_timeout_s": 2.0})
    container = build_container(settings)
    registry = KeepingRegistry()
    tel = Telephony.build(
        settings,
        container.clock,
        registry=registry,
        voice_profiles=voice_profiles(container),
    )
    await tel.start()
    try:
        yield Rig(tel, registry, container.sessions, settings.var_dir)
    finally:
        await tel.stop()
        await container.aclose()


@pytest.fixture
async def keypad(asterisk_pair: AsteriskPair, db_url: str, db_engine: object) -> AsyncIterator[Rig]:
    async with open_rig(asterisk_pair, db_url) as made:
        yield made


async def test_given_9_pressed_during_greeting_then_question_repeated_and_not_a_miss(
    keypad: Rig,
) -> None:
    outcome = await keypad.call(PRESSES_9_THEN_1)

    assert outcome.reply is Reply.OK
    assert outcome.keys == "91"
    # Without the repeat, 9 would be a miss: the "잘 듣지 못했습니다" ask, counted (asks 2).
    assert outcome.asks == 1


async def test_given_profile_with_one_more_ask_when_silent_then_asked_three_times_louder(
    keypad: Rig,
) -> None:
    profile = VoiceProfile(gain_db=6, tempo=0.9, extra_repeats=1)

    outcome = await keypad.call(SILENT_LONG, profile)

    assert outcome.reply is Reply.NO_RESPONSE
    assert outcome.asks == 3  # the default is 2
    variants = keypad.var_dir / "voice" / profile.key / "tts"
    for prompt in (Prompt.GREETING, Prompt.QUESTION, Prompt.REPEAT, Prompt.GOODBYE):
        assert (variants / f"{prompt.value}.wav").is_file()
