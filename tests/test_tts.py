"""Prompt rendering against the real tools (espeak-ng, sox) and a local gTTS endpoint."""

from __future__ import annotations

import json
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from anbu.domain.replies import Prompt
from anbu.settings import ROOT, Settings, TtsSettings
from ivr.tts import (
    CatalogueError,
    EngineError,
    EspeakSynthesizer,
    GttsSynthesizer,
    PromptRenderError,
    PromptSpec,
    RenderReport,
    Synthesizer,
    TtsEngine,
    cache_key,
    ensure_tools,
    espeak,
    load_catalogue,
    read_samples,
    render_catalogue,
    render_prompts_command,
    run_sox,
    speech_levels,
)
from tests.fakes.gtts_server import FakeGoogleTts

CATALOGUE = ROOT / "audio" / "catalogue.toml"
ESPEAK_ONLY = (TtsEngine.ESPEAK,)


class CountingSynthesizer:
    """The real espeak-ng synthesizer, counting calls; optionally failing for some texts."""

    def __init__(self, fail_when: str | None = None) -> None:
        self.inner = EspeakSynthesizer()
        self.engine = self.inner.engine
        self.suffix = self.inner.suffix
        self.calls: list[str] = []
        self.fail_when = fail_when

    def voice(self, spec: PromptSpec) -> str:
        return self.inner.voice(spec)

    def rate(self, spec: PromptSpec) -> str:
        return self.inner.rate(spec)

    def synthesize(self, text: str, spec: PromptSpec, out: Path) -> None:
        self.calls.append(text)
        if self.fail_when is not None and self.fail_when in text:
            raise EngineError(self.engine, "refused for the test")
        self.inner.synthesize(text, spec, out)


def wav_format(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as wav:
        return (
            wav.getframerate(),
            wav.getnchannels(),
            wav.getsampwidth(),
            wav.getnframes() / wav.getframerate(),
        )


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    ensure_tools()


@pytest.fixture
def mp3(tmp_path: Path) -> bytes:
    """A real MP3 (what Google returns), made offline."""
    raw = tmp_path / "src.wav"
    espeak("안녕하세요", raw, voice="ko", rate=150)
    out = tmp_path / "src.mp3"
    run_sox(raw, "-r", "24000", out)
    return out.read_bytes()


@pytest.fixture
def fake_google(mp3: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogleTts]:
    fake = FakeGoogleTts(audio=mp3).start()
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, fake.proxy_url)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield fake
    fake.stop()


def test_given_the_catalogue_when_rendered_offline_then_every_prompt_is_8khz_mono_speech(
    tmp_path: Path,
) -> None:
    report = render_catalogue(
        CATALOGUE, tmp_path / "out", "강남구", ESPEAK_ONLY, cache_dir=tmp_path
    )

    assert {p.prompt for p in report.prompts} == set(Prompt)
    for prompt in Prompt:
        path = tmp_path / "out" / f"{prompt.value}.wav"
        rate, channels, width, seconds = wav_format(path)
        assert (rate, channels, width) == (8000, 1, 2), prompt
        assert 1.0 < seconds < 30.0, prompt
        assert path.stat().st_mode & 0o044 == 0o044, prompt  # Asterisk's user reads it
        samples, _ = read_samples(path)
        level, peak = speech_levels(samples, rate)
        assert -22.0 < level < -16.0, (prompt, level)  # loudness normalised
        assert peak <= -0.9, (prompt, peak)  # never clipped
        lead_in = samples[: int(0.25 * rate)]
        assert max(abs(s) for s in lead_in) < 100, prompt  # silence before the first syllable
    assert report.fallbacks == ()
    greeting = next(p for p in report.prompts if p.prompt is Prompt.GREETING)
    assert "강남구" in greeting.text
    manifest = json.loads(report.manifest.read_text(encoding="utf-8"))
    assert set(manifest["prompts"]) == {p.value for p in Prompt}
    assert manifest["prompts"]["question"]["engine"] == "espeak"
    assert manifest["prompts"]["question"]["duration_s"] > 5


def test_given_a_rendered_catalogue_when_rendered_again_then_nothing_is_synthesised(
    tmp_path: Path,
) -> None:
    synth = CountingSynthesizer()
    engines: dict[TtsEngine, Synthesizer] = {TtsEngine.ESPEAK: synth}
    first = render_catalogue(
        CATALOGUE, tmp_path / "a", None, ESPEAK_ONLY, cache_dir=tmp_path, synthesizers=engines
    )
    assert len(synth.calls) == len(Prompt) == first.synthesized

    second = render_catalogue(
        CATALOGUE, tmp_path / "b", None, ESPEAK_ONLY, cache_dir=tmp_path, synthesizers=engines
    )

    assert len(synth.calls) == len(Prompt)  # no new engine call
    assert second.synthesized == 0
    assert second.cache_hits == len(Prompt)
    for prompt in Prompt:
        a = (tmp_path / "a" / f"{prompt.value}.wav").read_bytes()
        assert a == (tmp_path / "b" / f"{prompt.value}.wav").read_bytes()


def test_given_another_district_when_rendered_then_only_the_greeting_is_synthesised_again(
    tmp_path: Path,
) -> None:
    synth = CountingSynthesizer()
    engines: dict[TtsEngine, Synthesizer] = {TtsEngine.ESPEAK: synth}
    render_catalogue(
        CATALOGUE, tmp_path / "a", "강남구", ESPEAK_ONLY, cache_dir=tmp_path, synthesizers=engines
    )
    synth.calls.clear()

    render_catalogue(
        CATALOGUE, tmp_path / "b", "서초구", ESPEAK_ONLY, cache_dir=tmp_path, synthesizers=engines
    )

    assert len(synth.calls) == 1
    assert "서초구" in synth.calls[0]


def _render_with(synth: Synthesizer, tmp_path: Path) -> RenderReport:
    """The catalogue rendered into ``tmp_path/out`` by ``synth`` as the only (espeak) engine."""
    return render_catalogue(
        CATALOGUE,
        tmp_path / "out",
        None,
        ESPEAK_ONLY,
        cache_dir=tmp_path,
        synthesizers={TtsEngine.ESPEAK: synth},
    )


def test_given_a_prompt_no_engine_can_render_when_rendered_then_it_plays_the_generic_prompt(
    tmp_path: Path,
) -> None:
    synth = CountingSynthesizer(fail_when="일번")  # only the question contains 일번
    report = _render_with(synth, tmp_path)

    question = next(p for p in report.prompts if p.prompt is Prompt.QUESTION)
    assert question.fallback is Prompt.GENERIC
    assert report.fallbacks == (Prompt.QUESTION,)
    out = tmp_path / "out"
    assert (out / "question.wav").read_bytes() == (out / "generic.wav").read_bytes()
    manifest = json.loads(report.manifest.read_text(encoding="utf-8"))
    assert manifest["prompts"]["question"]["fallback"] == "generic"


def test_given_nothing_renders_and_no_earlier_file_when_rendered_then_it_raises(
    tmp_path: Path,
) -> None:
    synth = CountingSynthesizer(fail_when="")  # every text
    with pytest.raises(PromptRenderError, match="generic"):
        _render_with(synth, tmp_path)


def test_given_google_reachable_when_rendered_then_gtts_renders_korean_through_its_protocol(
    tmp_path: Path, fake_google: FakeGoogleTts
) -> None:
    report = render_catalogue(
        CATALOGUE, tmp_path / "out", "강남구", cache_dir=tmp_path, gtts_timeout_s=10
    )

    assert {p.engine for p in report.prompts} == {TtsEngine.GTTS}
    assert fake_google.connects == ["translate.google.com:443"] * len(Prompt)
    by_text = {r.text: r for r in fake_google.requests}
    catalogue = load_catalogue(CATALOGUE)
    for prompt, spec in catalogue.prompts.items():
        request = by_text[spec.render_text("강남구")]
        assert request.lang == "ko"
        assert request.slow is spec.slow, prompt
        rate, channels, width, _ = wav_format(tmp_path / "out" / f"{prompt.value}.wav")
        assert (rate, channels, width) == (8000, 1, 2)


@pytest.mark.parametrize("mode", ["error", "hang"])
def test_given_google_failing_when_rendered_then_espeak_takes_over_after_one_try(
    tmp_path: Path, fake_google: FakeGoogleTts, mode: str
) -> None:
    fake_google.mode = mode  # type: ignore[assignment]
    gtts = GttsSynthesizer(timeout_s=1.0)
    espeak_synth = CountingSynthesizer()

    report = render_catalogue(
        CATALOGUE,
        tmp_path / "out",
        None,
        cache_dir=tmp_path,
        synthesizers={TtsEngine.GTTS: gtts, TtsEngine.ESPEAK: espeak_synth},
    )

    assert {p.engine for p in report.prompts} == {TtsEngine.ESPEAK}
    assert len(fake_google.requests) == 1  # disabled for the run after the first failure
    assert gtts.disabled_because is not None
    if mode == "hang":
        assert "no answer within 1 s" in gtts.disabled_because
    else:
        assert "500" in gtts.disabled_because
    assert report.fallbacks == ()
    assert len(espeak_synth.calls) == len(Prompt)


def test_given_offline_cache_when_google_comes_back_then_gtts_is_preferred_and_cached(
    tmp_path: Path, fake_google: FakeGoogleTts
) -> None:
    fake_google.mode = "error"
    render_catalogue(CATALOGUE, tmp_path / "out", None, cache_dir=tmp_path, gtts_timeout_s=5)
    fake_google.mode = "ok"

    again = render_catalogue(CATALOGUE, tmp_path / "out", None, cache_dir=tmp_path)
    third = render_catalogue(CATALOGUE, tmp_path / "out", None, cache_dir=tmp_path)

    assert {p.engine for p in again.prompts} == {TtsEngine.GTTS}
    assert again.synthesized == len(Prompt)
    assert third.synthesized == 0
    assert third.cache_hits == len(Prompt)


def test_given_a_catalogue_missing_a_prompt_when_loaded_then_it_names_the_id(
    tmp_path: Path,
) -> None:
    text = CATALOGUE.read_text(encoding="utf-8")
    broken = tmp_path / "catalogue.toml"
    broken.write_text(text.replace("[prompts.goodbye]", "[prompts.farewell]"), encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"unknown prompt ids \['farewell'\].*'goodbye'"):
        load_catalogue(broken)


def test_given_an_unknown_parameter_when_loaded_then_it_is_refused(tmp_path: Path) -> None:
    text = CATALOGUE.read_text(encoding="utf-8").replace("{district}에서", "{name}에서")
    broken = tmp_path / "catalogue.toml"
    broken.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"greeting.*name"):
        load_catalogue(broken)


def test_given_the_shipped_audio_then_it_matches_the_catalogue_as_espeak_renders_it() -> None:
    """audio/rendered ships: a catalogue edit without a re-render fails here."""
    rendered = ROOT / "audio" / "rendered"
    manifest = json.loads((rendered / "manifest.json").read_text(encoding="utf-8"))
    catalogue = load_catalogue(CATALOGUE)
    synths: dict[str, Synthesizer] = {"espeak": EspeakSynthesizer(), "gtts": GttsSynthesizer()}
    padding = f"{catalogue.lead_in_s:.3f}+{catalogue.tail_s:.3f}"
    for prompt, spec in catalogue.prompts.items():
        entry = manifest["prompts"][prompt.value]
        text = spec.render_text(manifest["district"])
        assert entry["text"] == text, f"{prompt}: run `anbu prompts render`"
        assert entry["fallback"] is None, prompt
        synth = synths[entry["engine"]]  # espeak as shipped; gtts where make run reached it
        expected = cache_key(
            text, synth.engine, synth.voice(spec), synth.rate(spec), padding=padding
        )
        assert entry["cache_key"] == expected, f"{prompt}: run `anbu prompts render`"
        rate, channels, width, _ = wav_format(rendered / f"{prompt.value}.wav")
        assert (rate, channels, width) == (8000, 1, 2)


def test_given_settings_when_the_cli_command_runs_then_it_renders_into_audio_dir(
    tmp_path: Path,
) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "catalogue.toml").write_bytes(CATALOGUE.read_bytes())
    settings = Settings(
        audio_dir=audio, cache_dir=tmp_path / "cache", tts=TtsSettings(engines=("espeak",))
    )

    report = render_prompts_command(settings)

    assert report.out_dir == audio / "rendered"
    assert all((audio / "rendered" / f"{p.value}.wav").is_file() for p in Prompt)
    assert (tmp_path / "cache" / "prompts").is_dir()
