"""Speech for the tests, shared by every module that needs it:

- ``recognizer`` (session): the real Vosk Korean model, loaded once per test process (1-3 s,
  ~540 MB).
- ``voice`` (session): an official's spoken greeting (espeak-ng stands in for a person), the
  recording the prompt pipeline and the console take in.

A missing model or tool fails the tests that use it; it never skips them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ivr.speech import VoskRecognizer
from ivr.tts import ensure_tools


@pytest.fixture(scope="session")
def recognizer() -> VoskRecognizer:
    ensure_tools()  # the speech tests render their clips with espeak-ng + sox
    return VoskRecognizer.load()


GREETING = "안녕하세요, 신림동 주민센터 김복지입니다."


def speak(text: str, out: Path) -> Path:
    """``text`` in espeak-ng's Korean voice at its own rate and level (22.05 kHz), to ``out``."""
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "140", "-w", str(out), text], check=True)
    return out


@pytest.fixture(scope="session")
def voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken greeting, as an official would record it."""
    return speak(GREETING, tmp_path_factory.mktemp("voice") / "greeting.wav")
