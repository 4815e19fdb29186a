"""The real Vosk Korean model as a session fixture: loaded once per test process (1-3 s,
~540 MB), shared by every module that recognises speech. A missing model or tool fails the
tests that use it; it never skips them."""

from __future__ import annotations

import pytest

from ivr.speech import VoskRecognizer
from ivr.tts import ensure_tools


@pytest.fixture(scope="session")
def recognizer() -> VoskRecognizer:
    ensure_tools()  # the speech tests render their clips with espeak-ng + sox
    return VoskRecognizer.load()
