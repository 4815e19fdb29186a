"""``SpeechListener``: a :class:`ivr.flow.ReplyListener` that takes a key or a spoken word.

One listen: play the prompts (STREAM FILE with the escape digits, so a key pressed during a
prompt ends it and wins), then RECORD FILE with the same escape digits and silence detection,
then hand the recording to the :class:`anbu.ports.SpeechRecognizer` (Vosk decodes in a worker
thread) and map its intent to a reply. The recording is deleted as soon as it is decoded.

Why it is built this way:
- Keys first. A digit that reaches Asterisk between two AGI commands is dropped, so every
  command that runs while the resident might press (each prompt, each recording) carries the
  escape digits; a key ends the command and wins over anything said.
- Speech is heard only after the prompts: STREAM FILE cannot record, so words spoken while a
  prompt plays are lost (keys are not). Prompts therefore ask for the answer at their end.
- Asterisk's silence detection also counts the silence *before* the first word: with ``s=2``
  a resident who takes three seconds to start would be cut off. So the window is recorded in
  segments: a segment that ends on silence with nothing voiced in it (the energy gate says so,
  without decoding) is followed by another until ``timeout_s`` is used up; the first segment
  with speech in it is the answer. On a line that sends no audio at all (no RTP) Asterisk sees
  no frames, detects no silence, and one segment runs the whole window.
- A recording that cannot be made (Asterisk cannot write the directory) or read falls back to
  the keypad for that listen: the call goes on, the failure is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

from anbu.domain.replies import reply_for_key
from anbu.domain.speech_intent import SpeechResult
from anbu.errors import AnbuError, ValidationError
from anbu.ports import SpeechRecognizer
from anbu.settings import Settings
from ivr.agi import AgiCommandError, AgiSession
from ivr.flow import Heard

log = logging.getLogger(__name__)

# Asterisk's RECORD FILE takes whole seconds of silence (s=N).
MIN_SILENCE_S = 1
# A segment shorter than this cannot hold a reply worth decoding: the window is over.
MIN_SEGMENT_S = 1.0

_sequence = itertools.count(1)


def _wav(base: Path) -> Path:
    """What RECORD FILE writes for ``base`` and format wav. Not ``with_suffix``: Asterisk's own
    uniqueids hold a dot (``1700000000.12``), which with_suffix would take for an extension."""
    return base.parent / f"{base.name}.wav"


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


class SpeechListener:
    """Keys (1 = ok, 2 = help) or words ("네" = ok, "도와주세요" = help, "바빠요" = call back).

    Build one per process in the composition root and share it across calls::

        recognizer = await VoskRecognizer.from_settings(settings.speech)
        listener = SpeechListener.from_settings(settings, recognizer)
        flow = CheckinFlow.from_settings(settings, registry, listener=listener)

    ``recordings_dir`` must be writable by Asterisk and readable by this process under the
    same path (one host, or a volume shared by both containers). ``keep_recordings`` keeps the
    WAV files for debugging; otherwise each is deleted right after decoding (privacy).
    """

    def __init__(
        self,
        recognizer: SpeechRecognizer,
        recordings_dir: Path,
        *,
        escape_digits: str = "1209",
        silence_s: int = 2,
        keep_recordings: bool = False,
    ) -> None:
        if silence_s < MIN_SILENCE_S:
            raise ValidationError(f"silence_s must be a whole number of seconds >= 1: {silence_s}")
        self._recognizer = recognizer
        # absolute() touches no disk: safe on the event loop. Asterisk needs an absolute path.
        self.recordings_dir = Path(recordings_dir).absolute()
        self.escape_digits = escape_digits
        self.silence_s = silence_s
        self.keep_recordings = keep_recordings
        self._dir_ready = False

    @classmethod
    def from_settings(cls, settings: Settings, recognizer: SpeechRecognizer) -> SpeechListener:
        speech = settings.speech
        return cls(
            recognizer,
            speech.recordings_dir or settings.var_dir / "recordings",
            silence_s=speech.record_silence_s,
            keep_recordings=speech.keep_recordings,
        )

    async def listen(self, session: AgiSession, prompts: Sequence[str], timeout_s: float) -> Heard:
        """Play ``prompts``; then up to ``timeout_s`` for a key or a spoken reply.

        Raises AgiHangupError on hangup (any recording made is deleted first).
        """
        for path in prompts:
            digit = await session.stream_file(path, self.escape_digits)
            if digit is not None:
                return Heard(key=digit, reply=reply_for_key(digit))
        deadline = time.monotonic() + timeout_s
        # A silent segment lasts silence_s on a real line; the cap only guards against a peer
        # that returns at once (it would otherwise spin until the deadline).
        max_segments = math.ceil(timeout_s / self.silence_s) + 1
        segment = 0
        while segment < max_segments and (
            (remaining := deadline - time.monotonic()) >= MIN_SEGMENT_S or segment == 0
        ):
            segment += 1
            base = await self._new_recording(session)
            try:
                result = await session.record_file(
                    str(base),
                    "wav",
                    self.escape_digits,
                    timeout_ms=max(1, round(remaining * 1000)),
                    silence_s=self.silence_s,
                )
            except AgiCommandError as exc:
                await self._cleanup(base)
                log.warning(
                    "agi %s: cannot record the reply (%s); keypad only for this listen",
                    session.uniqueid,
                    exc,
                )
                return await self._keypad(session, deadline)
            except BaseException:
                await self._cleanup(base)
                raise
            if result.digit is not None:
                await self._cleanup(base)
                return Heard(key=result.digit, reply=reply_for_key(result.digit))
            speech = await self._recognise(session, base, segment)
            if speech is None:
                return Heard()
            if not speech.gated:
                return self._heard(session, speech, segment)
            log.debug(
                "agi %s: segment %d silent (%.1f s, reason %s)",
                session.uniqueid,
                segment,
                speech.duration_s,
                result.reason,
            )
        log.info("agi %s: nothing said within %.1f s", session.uniqueid, timeout_s)
        return Heard()

    # ---- helpers -------------------------------------------------------------------------------

    async def _new_recording(self, session: AgiSession) -> Path:
        """A fresh path without extension (RECORD FILE adds ``.wav``)."""
        if not self._dir_ready:
            # 0o700: recordings of residents' voices are nobody else's business. A directory
            # made beforehand (a shared volume) keeps its own mode.
            await asyncio.to_thread(
                self.recordings_dir.mkdir, mode=0o700, parents=True, exist_ok=True
            )
            self._dir_ready = True
        channel = "".join(c if c.isalnum() or c in "-." else "_" for c in session.uniqueid)
        return self.recordings_dir / f"reply-{channel or 'call'}-{next(_sequence)}"

    async def _recognise(
        self, session: AgiSession, base: Path, segment: int
    ) -> SpeechResult | None:
        wav = _wav(base)
        started = time.perf_counter()
        try:
            speech = await self._recognizer.listen(wav)
        except AnbuError as exc:  # SpeechAudioError: Asterisk left no readable file
            log.warning("agi %s: reply recording unusable: %s", session.uniqueid, exc)
            return None
        finally:
            await self._cleanup(base)
        log.debug(
            "agi %s: segment %d decoded in %.3f s (%.1f s of audio, gated %s)",
            session.uniqueid,
            segment,
            time.perf_counter() - started,
            speech.duration_s,
            speech.gated,
        )
        return speech

    def _heard(self, session: AgiSession, speech: SpeechResult, segment: int) -> Heard:
        log.info(
            "agi %s: heard %r -> %s (confidence %s, %.1f s voiced, segment %d)",
            session.uniqueid,
            speech.transcript,
            speech.intent,
            f"{speech.confidence:.2f}" if speech.confidence is not None else "-",
            speech.voiced_s,
            segment,
        )
        # transcript "" = speech energy but no word recognised; None (a gated recording, or a
        # key) leaves the flow's earlier transcript in place.
        return Heard.of(speech)

    async def _keypad(self, session: AgiSession, deadline: float) -> Heard:
        remaining = deadline - time.monotonic()
        key = await session.wait_for_digit(max(1, round(remaining * 1000)))
        if key is None:
            return Heard()
        return Heard(key=key, reply=reply_for_key(key))

    async def _cleanup(self, base: Path) -> None:
        wav = _wav(base)
        if self.keep_recordings:
            log.debug("kept reply recording %s", wav)
            return
        # In a thread: if this task is cancelled meanwhile, the unlink still runs.
        with contextlib.suppress(OSError):
            await asyncio.shield(asyncio.to_thread(_discard, wav))


__all__ = ["SpeechListener"]
