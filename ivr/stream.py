"""Listening while the prompt plays: barge-in and voicemail / answering-machine detection.

``StreamListener`` is a :class:`ivr.flow.ReplyListener`. For one listen it runs Asterisk's
``AudioSocket`` application on the call (``EXEC AudioSocket <uuid>,<host:port>``), plays the
prompts itself over that socket, and hears the far end the whole time: keys (DTMF messages),
spoken replies, and in the first listen what kind of thing answered.

Why AudioSocket, of what Asterisk 22 ships (measured here, ``../shared/notes/asterisk.md``):
- **EAGI** hands a local AGI *process* the audio on file descriptor 3; our IVR is a FastAGI
  server over TCP (one process, many calls, several engines), which EAGI cannot feed.
- **TALK_DETECT** raises AMI events when the far end starts and stops talking, but gives no
  audio to recognise and cannot stop a STREAM FILE: we would still record after the prompt,
  and what was said during it would be lost (the flaw being fixed).
- **AudioSocket** gives the call's audio both ways over one TCP connection (8 kHz signed
  linear, 20 ms frames) plus DTMF digits (Asterisk >= 22.3 forwards them), from the AGI
  session we already hold. We play the prompt frames and can stop at any frame; everything
  the far end sends is heard, from the moment of answer.

What is heard (``CallAudio``, synchronous, fed 20 ms frames; run in a worker thread):
- an energy segmenter cuts utterances (speech rising above the line's running noise floor,
  ended by ``end_silence_s`` of quiet); each utterance goes through the same recognizer and
  strict rule as a recorded reply (:class:`ivr.speech.VoskRecognizer`). During the prompt only
  a usable reply (ok / help / callback) stops it: a "여보세요" on answering does not cut the
  question short. After the prompt the first utterance is the answer, as before;
- in the first listen only, machine detection (:mod:`anbu.domain.machine`): a spotting
  recognizer over the carriers' announcement words and greeting words (partial results, so
  a 소리샘 announcement is named before its beep), a tone detector (FFT: one or two spectral
  peaks holding most of the energy, steady for ``min_tone_s``: a beep, a ringback tone), and
  the length of unbroken sound (a recorded greeting, music). A verdict ends the listen at
  once: the flow hangs up, nothing is recorded, the carrier's billing (from the beep) never
  starts.

Echo: on a real line the far end may return an echo of our prompt. The phones' and carriers'
echo cancellers remove most of it; what is left is quieter than the caller and rarely words
of the vocabulary, and the strict ok rule still applies. Not measured on real lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import wave
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from anbu.domain.machine import MACHINE_WORDS, Answerer, Evidence, MachineRules, judge
from anbu.domain.replies import reply_for_key
from anbu.domain.speech_intent import UNK, Intent, SpeechResult
from anbu.settings import Settings
from ivr.agi import AgiError, AgiHangupError, AgiResponse, AgiSession
from ivr.audiosocket import FRAME_BYTES, FRAME_S, AudioSocketServer, AudioStream, Kind
from ivr.flow import Heard, ReplyListener
from ivr.speech import VoskRecognizer, check_grammar

log = logging.getLogger(__name__)

RATE = 8000
FRAME_SAMPLES = FRAME_BYTES // 2
USABLE = (Intent.OK, Intent.HELP, Intent.CALLBACK)


# --------------------------------------------------------------------------- tone detector


@dataclass(frozen=True, slots=True)
class ToneDetector:
    """Is a 20 ms frame (with the frame before it: a 40 ms window, 25 Hz bins) a steady tone?

    A beep or a ringback tone puts nearly all its energy in one or two narrow peaks; a voice,
    even a synthetic one, spreads it over many harmonics and formants.
    """

    min_dbfs: float = -40.0
    purity: float = 0.8  # share of the band's energy in the two strongest peaks (+-2 bins)
    low_hz: float = 300.0
    high_hz: float = 3400.0

    def peaks(self, windows: np.ndarray) -> list[int | None]:
        """Per window (rows of 320 samples): the strongest bin when the window is a tone."""
        if len(windows) == 0:
            return []
        spectrum = np.abs(np.fft.rfft(windows * np.hanning(windows.shape[1]), axis=1)) ** 2
        bin_hz = RATE / windows.shape[1]
        lo, hi = int(self.low_hz / bin_hz), int(self.high_hz / bin_hz) + 1
        band = spectrum[:, lo:hi]
        total = band.sum(axis=1)
        rms = np.sqrt(np.mean(windows**2, axis=1))
        level = 20 * np.log10(np.maximum(rms, 1e-9) / 32768.0)
        out: list[int | None] = []
        for row, energy, db in zip(band, total, level, strict=True):
            if db < self.min_dbfs or energy <= 0:
                out.append(None)
                continue
            first = int(np.argmax(row))
            masked = row.copy()
            masked[max(0, first - 2) : first + 3] = 0
            second = int(np.argmax(masked))
            masked[max(0, second - 2) : second + 3] = 0
            held = energy - masked.sum()
            out.append(first + lo if held / energy >= self.purity else None)
        return out


# --------------------------------------------------------------------------- call audio


@dataclass(frozen=True, slots=True)
class Spoken:
    """One utterance, recognised; times in seconds from the start of the listen."""

    result: SpeechResult
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Machine:
    answerer: Answerer
    evidence: Evidence
    at_s: float


Event = Spoken | Machine


@dataclass
class CallAudio:
    """The far end's audio of one listen, fed in 20 ms frames; returns what it made of it.

    Synchronous and CPU-bound (FFT, Vosk): the listener runs :meth:`feed` in a worker thread.
    The benchmark feeds clips through the same class.
    """

    recognizer: VoskRecognizer
    spotter_model: Any = None  # a vosk.Model: machine detection on when given
    rules: MachineRules = field(default_factory=MachineRules)
    tone: ToneDetector = field(default_factory=ToneDetector)
    end_silence_s: float = 0.8
    # Kept before the first voiced frame and after the last one (up to the end of the quiet
    # that ended the utterance): the recognizer's gate measures the line's floor there, and
    # Vosk needs the trailing quiet to settle a soft last syllable (바빠 요).
    lead_s: float = 0.5
    tail_s: float = 1.0
    max_utterance_s: float = 8.0
    floor_dbfs: float = -45.0
    above_noise_db: float = 12.0
    noise_window_s: float = 3.0
    # Machine detection runs this long after answer, then stops (it costs ~30 ms of CPU per
    # second of call, ~15x the rest): every machine clip of the benchmark was judged within
    # 5 s, and the carriers' beeps come 6-9 s after answer.
    machine_window_s: float = 12.0

    def __post_init__(self) -> None:
        self._pcm = bytearray()
        self._frames = 0
        self._levels: deque[float] = deque(maxlen=int(self.noise_window_s / FRAME_S))
        self._start: int | None = None  # first frame of the utterance in progress
        self._voiced = 0  # voiced frames in all
        self._last_voiced = 0
        self._quiet = 0
        self._tail = np.zeros(FRAME_SAMPLES)
        self._tone_run = 0
        self._tone_bin: int | None = None
        self._evidence = Evidence()
        self._spot_final: list[str] = []
        self._spot_partial: list[str] = []
        self._spotter: Any = None
        self.detecting = self.spotter_model is not None
        if self.detecting:
            import vosk

            grammar = MACHINE_WORDS.grammar()
            check_grammar(self.spotter_model, grammar)
            self._spotter = vosk.KaldiRecognizer(
                self.spotter_model, float(RATE), json.dumps(list(grammar), ensure_ascii=False)
            )

    @property
    def heard_s(self) -> float:
        return self._frames * FRAME_S

    @property
    def evidence(self) -> Evidence:
        return self._evidence

    @property
    def in_utterance(self) -> bool:
        return self._start is not None

    def stop_detecting(self) -> None:
        """A person replied: no machine verdict from here on."""
        self.detecting = False
        self._spotter = None

    def feed(self, pcm: bytes) -> list[Event]:
        """Take whole 20 ms frames (a partial frame is kept for the next call)."""
        self._pcm += pcm
        usable = (len(self._pcm) // FRAME_BYTES - self._frames) * FRAME_BYTES
        if usable <= 0:
            return []
        start = self._frames * FRAME_BYTES
        chunk = bytes(self._pcm[start : start + usable])
        samples = np.frombuffer(chunk, dtype="<i2").astype(np.float64).reshape(-1, FRAME_SAMPLES)
        events: list[Event] = []
        if self.detecting and self.heard_s >= self.machine_window_s:
            self.stop_detecting()
        if self.detecting:
            self._spot(chunk)
            self._tones(samples)
        rms = np.sqrt(np.mean(samples**2, axis=1))
        levels = 20 * np.log10(np.maximum(rms, 1e-9) / 32768.0)
        for level in levels:
            self._levels.append(float(level))
            floor = float(np.percentile(self._levels, 10))
            voiced = level > max(self.floor_dbfs, floor + self.above_noise_db)
            index = self._frames
            self._frames += 1
            if voiced:
                if self._start is None:
                    self._start = max(0, index - int(self.lead_s / FRAME_S))
                self._last_voiced = index
                self._quiet = 0
                self._voiced += 1
            elif self._start is not None:
                self._quiet += 1
            if self._start is not None:
                length_s = (index + 1 - self._start) * FRAME_S
                if self.detecting:
                    sound_s = (self._last_voiced + 1 - self._start) * FRAME_S - self.lead_s
                    if sound_s > self._evidence.longest_sound_s:
                        self._evidence = replace(self._evidence, longest_sound_s=sound_s)
                if self._quiet * FRAME_S >= self.end_silence_s or length_s >= self.max_utterance_s:
                    events.extend(self._end_utterance())
        self._evidence = replace(self._evidence, speech_s=self._voiced * FRAME_S)
        if self.detecting and not any(isinstance(e, Machine) for e in events):
            verdict = self._judge()
            if verdict is not None:
                events.append(verdict)
        return events

    def flush(self) -> list[Event]:
        """The listen is over: decide the utterance in progress, if any."""
        events: list[Event] = []
        if self.detecting:
            self._finalise_spotter()
            verdict = self._judge()
            if verdict is not None:
                return [verdict]
        if self._start is not None:
            events.extend(self._end_utterance())
        return events

    # ---- internals -----------------------------------------------------------------------

    def _end_utterance(self) -> list[Event]:
        assert self._start is not None
        tail = int(self.tail_s / FRAME_S)
        first, last = self._start, min(self._frames, self._last_voiced + 1 + tail)
        self._start, self._quiet = None, 0
        if self.detecting:
            # The announcement's last words may still sit in the spotter: flush it first, a
            # machine's greeting must not be decided as a reply.
            self._finalise_spotter()
            verdict = self._judge()
            if verdict is not None:
                return [verdict]
        segment = bytes(self._pcm[first * FRAME_BYTES : last * FRAME_BYTES])
        result = self.recognizer.recognize_pcm(segment, RATE)
        if result.gated:
            return []
        return [Spoken(result, first * FRAME_S, last * FRAME_S)]

    def _spot(self, chunk: bytes) -> None:
        if self._spotter.AcceptWaveform(chunk):
            self._spot_final.extend(_text(self._spotter.Result(), "text"))
            self._spot_partial = []
        else:
            self._spot_partial = _text(self._spotter.PartialResult(), "partial")
        words = tuple(w for w in (*self._spot_final, *self._spot_partial) if w != UNK)
        self._evidence = replace(self._evidence, words=words)

    def _finalise_spotter(self) -> None:
        if self._spotter is None:
            return
        self._spot_final.extend(_text(self._spotter.FinalResult(), "text"))
        self._spot_partial = []
        words = tuple(w for w in self._spot_final if w != UNK)
        self._evidence = replace(self._evidence, words=words)

    def _tones(self, samples: np.ndarray) -> None:
        windows = np.concatenate([self._tail[None, :], samples])
        pairs = np.concatenate([windows[:-1], windows[1:]], axis=1)
        self._tail = samples[-1]
        longest = self._evidence.tone_s
        for peak in self.tone.peaks(pairs):
            if peak is not None and (self._tone_bin is None or abs(peak - self._tone_bin) <= 2):
                self._tone_run += 1
                self._tone_bin = peak
            else:
                self._tone_run = 1 if peak is not None else 0
                self._tone_bin = peak
            longest = max(longest, self._tone_run * FRAME_S)
        self._evidence = replace(self._evidence, tone_s=longest)

    def _judge(self) -> Machine | None:
        answerer = judge(self._evidence, self.rules)
        if answerer is None:
            return None
        self.stop_detecting()
        return Machine(answerer, self._evidence, self.heard_s)


def _text(result_json: str, key: str) -> list[str]:
    return str(json.loads(result_json).get(key, "")).split()


# --------------------------------------------------------------------------- the listener


def read_prompt(path: str) -> bytes:
    """A prompt's PCM as AudioSocket wants it (8 kHz 16-bit mono). Blocking."""
    with wave.open(f"{path}.wav", "rb") as wav:
        if (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) != (RATE, 2, 1):
            raise ValueError(f"{path}.wav is not 8 kHz 16-bit mono")
        pcm = wav.readframes(wav.getnframes())
    return pcm + b"\0" * (-len(pcm) % FRAME_BYTES)


class StreamListener:
    """Keys, spoken replies during and after the prompt, and machine detection (module doc).

    ``fallback`` serves a listen when AudioSocket cannot (a prompt that is not 8 kHz WAV, the
    connection never came): the call goes on without barge-in, the failure is logged.
    """

    def __init__(
        self,
        recognizer: VoskRecognizer,
        server: AudioSocketServer,
        *,
        fallback: ReplyListener,
        escape_digits: str = "1209",
        detect_machines: bool = True,
        rules: MachineRules | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._recognizer = recognizer
        self._server = server
        self._fallback = fallback
        self.escape_digits = escape_digits
        self.detect_machines = detect_machines
        self.rules = rules or MachineRules()
        self.connect_timeout_s = connect_timeout_s
        self._prompts: dict[str, bytes] = {}
        self._listened: weakref.WeakSet[AgiSession] = weakref.WeakSet()

    @classmethod
    def from_settings(
        cls, settings: Settings, recognizer: VoskRecognizer, *, fallback: ReplyListener
    ) -> StreamListener:
        speech = settings.speech
        server = AudioSocketServer(
            speech.audiosocket_host or settings.agi_host,
            speech.audiosocket_port,
            advertise_host=speech.audiosocket_advertise,
        )
        return cls(recognizer, server, fallback=fallback, detect_machines=speech.detect_machines)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    async def listen(self, session: AgiSession, prompts: Sequence[str], timeout_s: float) -> Heard:
        await self._server.start()  # once; a no-op after
        try:
            pcm = b"".join([await self._prompt(p) for p in prompts])
        except (OSError, ValueError, EOFError, wave.Error) as exc:
            log.warning("agi %s: prompt not playable over AudioSocket (%s)", session.uniqueid, exc)
            return await self._fallback.listen(session, prompts, timeout_s)
        first = session not in self._listened
        self._listened.add(session)
        key, connected = self._server.expect()
        command = f"EXEC AudioSocket {key},{self._server.address}"
        running = asyncio.create_task(
            session.command(command, timeout_s=len(pcm) / 2 / RATE + timeout_s + 30.0)
        )
        try:
            waiting: set[asyncio.Future[Any]] = {running, connected}
            done, _ = await asyncio.wait(
                waiting,
                timeout=self.connect_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if connected not in done:
                connected.cancel()
                if running.done():
                    running.result()  # a hangup raises here
                log.warning("agi %s: no AudioSocket connection; no barge-in", session.uniqueid)
                await _finish(running)
                return await self._fallback.listen(session, prompts, timeout_s)
            stream = connected.result()
            audio = CallAudio(
                self._recognizer,
                spotter_model=self._recognizer.model if first and self.detect_machines else None,
                rules=self.rules,
            )
            try:
                heard = await self._converse(session, stream, audio, pcm, timeout_s)
            finally:
                await stream.close()
            try:
                await running
            except AgiHangupError:
                if heard.machine is None:
                    raise
            return heard
        finally:
            if not running.done():
                running.cancel()
                with contextlib.suppress(BaseException):
                    await running

    async def _prompt(self, path: str) -> bytes:
        if path not in self._prompts:
            self._prompts[path] = await asyncio.to_thread(read_prompt, path)
        return self._prompts[path]

    async def _converse(
        self,
        session: AgiSession,
        stream: AudioStream,
        audio: CallAudio,
        pcm: bytes,
        timeout_s: float,
    ) -> Heard:
        cid = session.uniqueid
        prompt_over = asyncio.Event()
        player = asyncio.create_task(_play(stream, pcm, prompt_over))
        deadline: float | None = None
        pending = bytearray()
        said: Spoken | None = None  # an unusable utterance heard during the prompt
        try:
            while True:
                if deadline is None and prompt_over.is_set():
                    deadline = time.monotonic() + timeout_s
                wait = 0.1 if deadline is None else deadline - time.monotonic()
                if wait <= 0 and not audio.in_utterance:
                    break
                try:
                    message = await asyncio.wait_for(stream.read(), max(wait, 0.05))
                except TimeoutError:
                    if deadline is not None and time.monotonic() >= deadline + 3.0:
                        break  # a line that went quiet mid-utterance: stop waiting
                    continue
                if message is None:  # Asterisk closed it: the far end hung up
                    for event in await asyncio.to_thread(audio.flush):
                        if isinstance(event, Machine):
                            return self._machine(cid, event)
                    return Heard.of(said.result) if said else Heard()
                if message.kind == Kind.DTMF:
                    digit = message.payload[:1].decode("ascii", "replace")
                    if digit and digit in self.escape_digits:
                        log.info("agi %s: key %s (%.1f s)", cid, digit, audio.heard_s)
                        return Heard(key=digit, reply=reply_for_key(digit))
                    continue
                if message.kind != Kind.AUDIO:
                    continue
                pending += message.payload
                if len(pending) < 10 * FRAME_BYTES:
                    continue
                events = await asyncio.to_thread(audio.feed, bytes(pending))
                pending.clear()
                for event in events:
                    if isinstance(event, Machine):
                        return self._machine(cid, event)
                    over = prompt_over.is_set()
                    log.info(
                        "agi %s: heard %r -> %s at %.1f-%.1f s (%s)",
                        cid,
                        event.result.transcript,
                        event.result.intent,
                        event.start_s,
                        event.end_s,
                        "after the prompt" if over else "during the prompt",
                    )
                    if event.result.intent in USABLE:
                        audio.stop_detecting()
                        return Heard.of(event.result)
                    if over:
                        return Heard.of(event.result)
                    said = event
            for event in await asyncio.to_thread(audio.flush):
                if isinstance(event, Machine):
                    return self._machine(cid, event)
                return Heard.of(event.result)
            log.info("agi %s: nothing usable said within %.1f s", cid, timeout_s)
            return Heard.of(said.result) if said else Heard()
        finally:
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await player

    @staticmethod
    def _machine(cid: str, event: Machine) -> Heard:
        log.info(
            "agi %s: %s after %.1f s (words %s, tone %.2f s, longest sound %.1f s)",
            cid,
            event.answerer,
            event.at_s,
            " ".join(event.evidence.words) or "-",
            event.evidence.tone_s,
            event.evidence.longest_sound_s,
        )
        return Heard(machine=event.answerer)


async def _play(stream: AudioStream, pcm: bytes, over: asyncio.Event) -> None:
    """Send ``pcm`` at the pace it plays (3 frames at a time, at most 60 ms ahead), set
    ``over`` when its last frame has played, then keep sending silence until cancelled: a line
    with no audio at all looks dead to some far ends (and the carrier stand-in's voice numbers
    wait for the silence after the prompt before they answer, as people do)."""
    step = 3 * FRAME_BYTES
    silence = b"\0" * step
    started = time.monotonic()
    end = len(pcm) / FRAME_BYTES * FRAME_S
    sent = 0
    while not stream.closed:
        ahead = started + (sent / FRAME_BYTES) * FRAME_S - time.monotonic()
        if ahead > 0.06:
            await asyncio.sleep(ahead - 0.06)
        if not over.is_set() and time.monotonic() - started >= end:
            over.set()
        chunk = pcm[sent : sent + step] if sent < len(pcm) else silence
        await stream.send_audio(chunk.ljust(step, b"\0"))
        sent += step


async def _finish(running: asyncio.Task[AgiResponse]) -> None:
    with contextlib.suppress(AgiError, asyncio.CancelledError):
        await asyncio.wait_for(running, 5.0)


__all__ = ["CallAudio", "Machine", "Spoken", "StreamListener", "ToneDetector", "read_prompt"]
