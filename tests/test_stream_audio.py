"""``ivr.stream.CallAudio`` fed synthetic audio directly (the real Vosk model, no Asterisk):
the tone detector, the machine window, and a reply cut out of a line by the segmenter."""

from __future__ import annotations

import math
import struct

import pytest

from anbu.domain.machine import Answerer
from anbu.domain.speech_intent import Intent
from ivr.speech import VoskRecognizer
from ivr.stream import CallAudio, Machine, Spoken

pytestmark = pytest.mark.voice
RATE = 8000


def tone(hz: float, seconds: float, amplitude: int = 8000) -> bytes:
    n = int(RATE * seconds)
    return struct.pack(
        f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * hz * i / RATE)) for i in range(n))
    )


def silence(seconds: float) -> bytes:
    return b"\0" * (2 * int(RATE * seconds))


def feed(audio: CallAudio, pcm: bytes) -> list[Machine | Spoken]:
    events: list[Machine | Spoken] = []
    for i in range(0, len(pcm), 3200):
        events += audio.feed(pcm[i : i + 3200])
    return events


def test_given_a_beep_after_answer_when_detecting_then_machine(recognizer: VoskRecognizer) -> None:
    audio = CallAudio(recognizer, spotter_model=recognizer.model)
    events = feed(audio, silence(1.0) + tone(1000, 0.6) + silence(0.5))
    machines = [e for e in events if isinstance(e, Machine)]
    assert [m.answerer for m in machines] == [Answerer.MACHINE]
    assert machines[0].evidence.tone_s >= 0.4


def test_given_a_short_click_when_detecting_then_no_verdict(recognizer: VoskRecognizer) -> None:
    audio = CallAudio(recognizer, spotter_model=recognizer.model)
    events = feed(audio, silence(1.0) + tone(1000, 0.2) + silence(1.0))
    assert not [e for e in events if isinstance(e, Machine)]


def test_given_detection_off_when_a_beep_comes_then_no_verdict(recognizer: VoskRecognizer) -> None:
    audio = CallAudio(recognizer)
    events = feed(audio, silence(0.5) + tone(1000, 0.8) + silence(1.0))
    assert not [e for e in events if isinstance(e, Machine)]


def test_given_the_machine_window_passed_when_a_beep_comes_then_no_verdict(
    recognizer: VoskRecognizer,
) -> None:
    audio = CallAudio(recognizer, spotter_model=recognizer.model, machine_window_s=2.0)
    events = feed(audio, silence(2.5) + tone(1000, 0.8) + silence(1.0))
    assert not audio.detecting
    assert not [e for e in events if isinstance(e, Machine)]


def test_given_a_tone_burst_as_speech_when_not_detecting_then_an_utterance_never_ok(
    recognizer: VoskRecognizer,
) -> None:
    audio = CallAudio(recognizer)
    events = feed(audio, silence(1.0) + tone(300, 0.6) + silence(1.5))
    spoken = [e for e in events if isinstance(e, Spoken)]
    assert all(e.result.intent is not Intent.OK for e in spoken)
