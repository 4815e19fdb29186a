"""The check-in call, run on the FastAGI session once the resident answers.

The decisions are the pure :class:`anbu.domain.replies.Dialogue`; this module plays its prompts,
listens, and reports the outcome to an :class:`OutcomeSink` (the dialer's ``CallRegistry``)
under the channel's uniqueid, which is the ``channel_id`` the dialer originated with.

Listening is a seam: :class:`ReplyListener` plays the prompts *and* listens, because keys
pressed while a prompt plays must count (a digit that arrives between two AGI commands is
dropped by Asterisk). :class:`KeypadListener` is the keypad-only implementation; a spoken
reply (RECORD FILE with the same escape digits, then Vosk) implements the same protocol.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from anbu.domain.machine import Answerer
from anbu.domain.replies import (
    REPEAT_KEY,
    Ask,
    Dialogue,
    Finish,
    Prompt,
    Reply,
    Step,
    reply_for_key,
)
from anbu.domain.speech_intent import Intent, SpeechResult
from anbu.ports import CallVoice, Clock, IvrOutcome, OutcomeSink, SystemClock, VoiceProfiles
from anbu.settings import Settings
from ivr.agi import AgiError, AgiHangupError, AgiSession
from ivr.prompts import PromptLibrary
from ivr.recording import RecordingStore
from ivr.voice import VoicedPrompts

log = logging.getLogger(__name__)

NORMAL_CLEARING = 16  # the Q.850 cause our own hang-up reports


def utc_ms(clock: Clock) -> dt.datetime:
    """Now, aware UTC, truncated to milliseconds (what we store and show)."""
    now = clock.now().astimezone(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class Heard:
    """What one listen got. ``reply`` is None for silence, an unknown key or an unrecognised
    utterance (the dialogue then repeats the question once). ``machine`` says a voicemail or an
    answering machine answered, not a person: the flow hangs up at once."""

    key: str | None = None
    reply: Reply | None = None
    transcript: str | None = None
    confidence: float | None = None
    machine: Answerer | None = None
    # The resident asked to hear the question again ("다시"); key 9 says it by itself.
    again: bool = False
    # A yes heard below the sure confidence: not an ok, the question is asked again.
    doubtful: bool = False

    @property
    def asks_again(self) -> bool:
        return self.again or self.key == REPEAT_KEY

    @classmethod
    def of(cls, speech: SpeechResult) -> Heard:
        """What a recognised utterance says (the FastAGI recording's, or the streamed one's)."""
        return cls(
            reply=speech.reply,
            transcript=speech.transcript,
            confidence=speech.confidence,
            again=speech.intent is Intent.REPEAT,
            doubtful=speech.intent is Intent.DOUBTFUL,
        )


class Transfer(Protocol):
    """A person on the line (``ivr.handoff.AgiTransfer``)."""

    async def connect(self, session: AgiSession) -> bool:
        """Connect the resident to an official; True when one accepted and they talked."""
        ...


class ReplyListener(Protocol):
    async def listen(self, session: AgiSession, prompts: Sequence[str], timeout_s: float) -> Heard:
        """Play ``prompts`` (absolute paths without extension), keys pressed during them count,
        then wait up to ``timeout_s`` for a reply. Raises AgiHangupError on hangup."""
        ...


class KeypadListener:
    """Keypad only: 1 = OK, 2 or 0 = HELP, 9 = say it again, any other key = nothing usable.

    Every prompt but the last is a STREAM FILE that only ``escape_digits`` interrupt; the last
    is a GET DATA, so playing it and waiting for the key is one command with no gap in which a
    digit could be lost.
    """

    def __init__(self, escape_digits: str = "1209") -> None:
        self.escape_digits = escape_digits

    async def listen(self, session: AgiSession, prompts: Sequence[str], timeout_s: float) -> Heard:
        timeout_ms = max(1, round(timeout_s * 1000))
        for path in prompts[:-1]:
            digit = await session.stream_file(path, self.escape_digits)
            if digit is not None:
                return Heard(key=digit, reply=reply_for_key(digit))
        if prompts:
            digits = await session.get_data(prompts[-1], timeout_ms, 1)
            key = digits[:1] or None
        else:
            key = await session.wait_for_digit(timeout_ms)
        if key is None:
            return Heard()
        return Heard(key=key, reply=reply_for_key(key))


@dataclass(slots=True)
class _CallState:
    started_at: dt.datetime
    dialogue: Dialogue
    keys: list[str] = field(default_factory=list)
    reply: Reply | None = None
    replied_at: dt.datetime | None = None
    transcript: str | None = None
    confidence: float | None = None
    machine: Answerer | None = None
    reported: bool = False
    voice: CallVoice = field(default_factory=CallVoice)
    played: list[str] = field(default_factory=list)


class CheckinFlow:
    """The AGI handler for ``/checkin``. One instance serves every call."""

    def __init__(
        self,
        prompts: PromptLibrary,
        sink: OutcomeSink,
        *,
        reply_timeout_s: float,
        listener: ReplyListener | None = None,
        clock: Clock | None = None,
        max_asks: int = 2,
        transfer: Transfer | None = None,
        profiles: VoiceProfiles | None = None,
        variants_dir: Path | None = None,
        recordings: RecordingStore | None = None,
    ) -> None:
        """``profiles``: each resident's voice profile (louder, slower, one more ask), whose
        prompt variants are rendered into ``variants_dir`` on first use; ``recordings``: the
        recorded prompts that play instead of the TTS voice (``ivr.recording``)."""
        self._prompts = prompts
        self._voiced = VoicedPrompts(
            prompts, variants_dir or prompts.rendered_dir / "variants", recordings
        )
        self.profiles = profiles
        self.transfer = transfer
        self._sink = sink
        self._reply_timeout_s = reply_timeout_s
        self._listener: ReplyListener = listener or KeypadListener()
        self._clock: Clock = clock or SystemClock()
        self._max_asks = max_asks

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sink: OutcomeSink,
        *,
        listener: ReplyListener | None = None,
        clock: Clock | None = None,
    ) -> CheckinFlow:
        return cls(
            PromptLibrary(settings.audio_dir),
            sink,
            reply_timeout_s=settings.reply_timeout_s,
            listener=listener,
            clock=clock,
            variants_dir=settings.var_dir / "voice",
            recordings=RecordingStore(settings.var_dir / "recordings"),
        )

    async def __call__(self, session: AgiSession) -> None:
        channel_id = session.uniqueid
        state = _CallState(utc_ms(self._clock), Dialogue(self._max_asks))
        error: str | None = None
        try:
            await self._converse(session, state)
        except AgiHangupError:
            if state.reply is None:
                cause = await self._hangup_cause(session)
                if cause:
                    state.dialogue, step = state.dialogue.hung_up()
                    assert isinstance(step, Finish)
                    state.reply = step.reply
                else:
                    # Cause 0 or unreadable: Asterisk tore the channel down (shutdown, crash),
                    # the resident did not hang up. Not a reply.
                    error = f"channel torn down by Asterisk (hangup cause {cause})"
            if error:
                log.warning("agi %s: %s", channel_id, error)
            else:
                log.info("agi %s: hung up (reply %s)", channel_id, state.reply)
        except AgiError as exc:
            error = str(exc)
            log.warning("agi %s: IVR failed: %s", channel_id, exc)
        except Exception as exc:  # a bug here must still end the call with an outcome
            error = f"IVR crashed: {exc!r}"
            log.exception("agi %s: IVR crashed", channel_id)
        finally:
            if not state.reported:
                self._report(channel_id, state, error or (None if state.reply else "cancelled"))

    async def _converse(self, session: AgiSession, state: _CallState) -> None:
        channel_id = session.uniqueid
        await session.answer()
        if self.profiles is not None:
            try:
                state.voice = await self.profiles.for_call(channel_id)
            except Exception:  # the call goes on in the default voice
                log.exception("agi %s: voice profile unreadable; default voice", channel_id)
            state.dialogue = Dialogue(self._max_asks + state.voice.profile.extra_repeats)
        state.dialogue, step = state.dialogue.start()
        while isinstance(step, Ask):
            step = await self._ask(session, state, step)
            if state.machine is not None:
                # Hang up at once: before a voicemail's beep nothing is billed or recorded.
                log.info("agi %s: answered by %s; hanging up", channel_id, state.machine)
                self._report(channel_id, state, None)
                await session.hangup(NORMAL_CLEARING)
                return
        state.reply = step.reply
        log.info(
            "agi %s: reply %s (keys %r, asked %d)",
            channel_id,
            step.reply,
            "".join(state.keys),
            state.dialogue.asked,
        )
        prompts = step.prompts
        # A person on the line at once; the closing "an official will call you" only when
        # nobody could be connected (the chain was paged by SMS instead).
        transfer = self.transfer if step.reply is Reply.HELP else None
        if transfer is not None and await transfer.connect(session):
            prompts = (Prompt.GOODBYE,)
        for prompt in prompts:
            await session.stream_file(await self._path(prompt, state))
        # Report before hanging up, so the outcome is there when the dialer sees the Hangup.
        self._report(channel_id, state, None)
        await session.hangup(NORMAL_CLEARING)

    async def _path(self, prompt: Prompt, state: _CallState) -> str:
        voice = state.voice
        path = await self._voiced.path(
            prompt, voice.profile, voice.district_code, voice.official_id
        )
        # Every path resolved here is played next: the outcome says what the resident heard.
        state.played.append(path)
        return path

    @staticmethod
    async def _hangup_cause(session: AgiSession) -> int | None:
        try:
            value = await session.get_variable("HANGUPCAUSE")
        except AgiError:
            return None  # the AGI socket itself is gone
        return int(value) if value and value.isdigit() else None

    async def _ask(self, session: AgiSession, state: _CallState, step: Ask) -> Step:
        paths = [await self._path(p, state) for p in step.prompts]
        heard = await self._listener.listen(session, paths, self._reply_timeout_s)
        if heard.key is not None:
            state.keys.append(heard.key)
        if heard.transcript is not None:
            state.transcript, state.confidence = heard.transcript, heard.confidence
        if heard.machine is not None:
            state.machine = heard.machine
            return step
        if heard.reply is None and heard.doubtful:
            log.info(
                "agi %s: a doubtful yes (confidence %s): asking again",
                session.uniqueid,
                heard.confidence,
            )
            state.dialogue, next_step = state.dialogue.doubted()
            return next_step
        if heard.reply is None and heard.asks_again:
            log.info("agi %s: asked to hear the question again", session.uniqueid)
            state.dialogue, next_step = state.dialogue.asked_again()
            return next_step
        if heard.reply is None:
            log.info(
                "agi %s: nothing usable heard (key %r) after ask %d",
                session.uniqueid,
                heard.key,
                state.dialogue.asked,
            )
            state.dialogue, next_step = state.dialogue.heard_nothing()
            return next_step
        state.replied_at = utc_ms(self._clock)
        state.dialogue, next_step = state.dialogue.replied(heard.reply)
        return next_step

    def _report(self, channel_id: str, state: _CallState, error: str | None) -> None:
        state.reported = True
        outcome = IvrOutcome(
            channel_id=channel_id,
            reply=state.reply,
            keys="".join(state.keys),
            started_at=state.started_at,
            ended_at=utc_ms(self._clock),
            replied_at=state.replied_at,
            asks=state.dialogue.asked,
            transcript=state.transcript,
            confidence=state.confidence,
            error=error,
            machine=state.machine,
            played=tuple(state.played),
        )
        try:
            self._sink.report(outcome)
        except Exception:
            log.exception("agi %s: reporting the outcome failed", channel_id)


__all__ = [
    "CheckinFlow",
    "Heard",
    "KeypadListener",
    "ReplyListener",
    "Transfer",
    "utc_ms",
]
