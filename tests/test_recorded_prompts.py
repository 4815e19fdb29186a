"""Recorded prompts: the pipeline with real sox on real speech (espeak-ng stands in for a voice
talent), loudness within ±1 LU of the target for every source, bad files refused with a
reason, the manifest's sources, and the upload through the CLI's function and the API."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from anbu.domain.replies import Prompt, Reply
from anbu.domain.voice import VoiceProfile
from anbu.ports import CallVoice, IvrOutcome
from anbu.settings import ROOT, Settings
from ivr.agi import AgiServer
from ivr.flow import CheckinFlow
from ivr.prompts import PromptLibrary
from ivr.recording import (
    DEFAULT_MAX_S,
    LOUDNESS_TOLERANCE_LU,
    TARGET_LUFS,
    RecordingRefusedError,
    RecordingStore,
    Refusal,
    ingest,
    loudness_of,
)
from ivr.tts import PEAK_CEILING_DBFS, read_samples, wav_duration
from tests.api_support import api_over, h
from tests.ivr_fakes import FakeAgiPeer, FakeChannel, agi_env


def sox(*args: str | Path) -> None:
    subprocess.run(["sox", "-q", *map(str, args)], check=True)


def source(voice: Path, tmp: Path, name: str, *effects: str, fmt: tuple[str, ...] = ()) -> Path:
    out = tmp / name
    sox(voice, *fmt, out, *effects)
    return out


@pytest.mark.parametrize(
    ("name", "effects", "fmt"),
    [
        ("as-is.wav", (), ()),
        ("quiet.wav", ("gain", "-28"), ()),  # a phone held far from the mouth
        ("loud.wav", ("gain", "-n", "-0.5"), ()),  # right up to full scale
        ("studio.flac", ("rate", "48k", "channels", "2", "gain", "-12"), ()),  # 48 kHz stereo
        ("padded.wav", ("pad", "1.5", "2.0", "gain", "-6"), ()),  # silence around it
        ("mulaw.wav", ("rate", "8k"), ("-e", "mu-law")),  # a phone recording
    ],
)
def test_given_any_source_when_ingested_then_8khz_and_within_1_lu_of_target(
    voice: Path, tmp_path: Path, name: str, effects: tuple[str, ...], fmt: tuple[str, ...]
) -> None:
    src = source(voice, tmp_path, name, *effects, fmt=fmt)
    dst = tmp_path / "out" / "greeting.wav"

    result = ingest(src, dst)

    samples, rate = read_samples(dst)
    assert rate == 8000
    measured = loudness_of(dst)
    assert abs(measured - TARGET_LUFS) <= LOUDNESS_TOLERANCE_LU, (name, measured)
    assert result.peak_dbfs <= PEAK_CEILING_DBFS + 0.05
    assert max(abs(s) for s in samples) < 32767
    # Silence trimmed: at most the lead-in and tail added back around the speech.
    assert wav_duration(dst) <= wav_duration(voice) + 0.6


def test_given_padded_source_when_ingested_then_silence_trimmed(
    voice: Path, tmp_path: Path
) -> None:
    padded = source(voice, tmp_path, "padded.wav", "pad", "3", "3")
    result = ingest(padded, tmp_path / "a.wav")
    plain = ingest(voice, tmp_path / "b.wav")
    assert result.duration_s == pytest.approx(plain.duration_s, abs=0.15)


def _text_file(_voice: Path, tmp: Path) -> Path:
    bogus = tmp / "greeting.wav"
    bogus.write_text("안녕하세요, 이건 소리가 아닙니다", encoding="utf-8")
    return bogus


def _clipped(voice: Path, tmp: Path) -> Path:
    return source(voice, tmp, "clipped.wav", "gain", "18")  # sox clips it


def _hiss(_voice: Path, tmp: Path) -> Path:
    hiss = tmp / "hiss.wav"
    sox("-n", "-r", "8000", "-c", "1", "-b", "16", hiss, "synth", "4", "whitenoise", "vol", "0.001")
    return hiss


def _eight_times_over(voice: Path, tmp: Path) -> Path:
    long = tmp / "long.wav"
    sox(voice, voice, voice, voice, voice, voice, voice, voice, long)
    return long


@pytest.mark.parametrize(
    ("make", "max_s", "reason", "says"),
    [
        (_text_file, DEFAULT_MAX_S, Refusal.NOT_AUDIO, ""),
        (_clipped, DEFAULT_MAX_S, Refusal.CLIPPED, ""),
        (_hiss, DEFAULT_MAX_S, Refusal.SILENT, ""),
        (_eight_times_over, 10, Refusal.TOO_LONG, "at most 10 s"),
    ],
    ids=["text-file", "clipped", "silent", "too-long"],
)
def test_given_unfit_recording_when_ingested_then_refused_with_its_reason_and_nothing_written(
    voice: Path,
    tmp_path: Path,
    make: Callable[[Path, Path], Path],
    max_s: float,
    reason: Refusal,
    says: str,
) -> None:
    with pytest.raises(RecordingRefusedError) as err:
        ingest(make(voice, tmp_path), tmp_path / "out.wav", max_s=max_s)
    assert err.value.reason is reason
    assert says in str(err.value)
    assert not (tmp_path / "out.wav").exists()


def test_given_uploads_when_manifest_read_then_each_prompt_names_its_source(
    voice: Path, tmp_path: Path
) -> None:
    store = RecordingStore(tmp_path / "recordings")
    store.upload(Prompt.GREETING, voice)  # the default voice talent
    store.upload(Prompt.QUESTION, voice, "11620")  # 관악구's own

    gwanak = store.sources("11620")
    assert gwanak["greeting"] == "recording:default"
    assert gwanak["question"] == "recording:district-11620"
    assert gwanak["thanks"] == "tts"
    other = store.sources("11680")
    assert other["question"] == "tts"
    assert store.path(Prompt.QUESTION, "11680") is None
    assert store.path(Prompt.QUESTION, "11620") == store.file(Prompt.QUESTION, "11620")
    manifest = json.loads(store.manifest_path.read_text("utf-8"))
    entry = manifest["recordings"]["district-11620"]["question"]
    assert abs(entry["loudness_lufs"] - TARGET_LUFS) <= LOUDNESS_TOLERANCE_LU


async def test_given_api_when_recording_uploaded_then_stored_and_bad_file_refused_with_reason(
    voice: Path, tmp_path: Path, db_url: str
) -> None:
    audio = voice.read_bytes()  # noqa: ASYNC240 (a test fixture's file)
    wav = {"content-type": "audio/wav"}
    settings = Settings(database_url=db_url, var_dir=tmp_path)
    async with api_over(db_url, settings) as api:
        gwanak, admin = h(api.keys["gwanak"]), h(api.keys["admin"])
        r = await api.client.put(
            "/v1/prompts/greeting/recording",
            params={"district_code": "11620"},
            content=audio,
            headers=gwanak | wav,
        )
        assert r.status_code == 200, r.text
        assert abs(r.json()["loudness_lufs"] - TARGET_LUFS) <= LOUDNESS_TOLERANCE_LU
        r = await api.client.get("/v1/prompts", params={"district_code": "11620"}, headers=gwanak)
        assert r.json()["sources"]["greeting"] == "recording:district-11620"
        assert r.json()["sources"]["question"] == "tts"

        # Another district's key cannot touch 관악구's voice; only an admin sets the default.
        r = await api.client.put(
            "/v1/prompts/greeting/recording",
            params={"district_code": "11620"},
            content=audio,
            headers=h(api.keys["gangnam"]) | wav,
        )
        assert r.status_code == 422
        r = await api.client.put(
            "/v1/prompts/greeting/recording", content=audio, headers=gwanak | wav
        )
        assert r.status_code == 403
        r = await api.client.put(
            "/v1/prompts/question/recording", content=audio, headers=admin | wav
        )
        assert r.status_code == 200, r.text

        r = await api.client.put(
            "/v1/prompts/greeting/recording", content=b"not audio at all", headers=admin | wav
        )
        assert r.status_code == 422
        assert r.json()["reason"] == "not_audio"
        r = await api.client.put("/v1/prompts/nope/recording", content=audio, headers=admin | wav)
        assert r.status_code == 404


class DistrictVoice:
    """The VoiceProfiles port: every call is in 관악구, with this profile."""

    def __init__(self, profile: VoiceProfile) -> None:
        self.profile = profile

    async def for_call(self, channel_id: str) -> CallVoice:
        return CallVoice(self.profile, "11620")


@pytest.mark.parametrize("profile", [VoiceProfile(), VoiceProfile(gain_db=6, tempo=0.8)])
async def test_given_district_recording_when_call_runs_then_recording_plays_else_tts(
    voice: Path, tmp_path: Path, profile: VoiceProfile
) -> None:
    store = RecordingStore(tmp_path / "recordings")
    await asyncio.to_thread(store.upload, Prompt.GREETING, voice, "11620")
    sink = Sink()
    flow = CheckinFlow(
        PromptLibrary(ROOT / "audio"),
        sink,
        reply_timeout_s=0.5,
        profiles=DistrictVoice(profile),
        variants_dir=tmp_path / "variants",
        recordings=store,
    )
    server = AgiServer({"/checkin": flow}, host="127.0.0.1", port=0)
    await server.start()
    try:
        peer = FakeAgiPeer(server.port, FakeChannel(press=[("question", "1")]), agi_env("c-1"))
        await asyncio.wait_for(peer.run(), 10.0)
    finally:
        await server.stop()

    assert sink.outcomes[0].reply is Reply.OK
    greeting = peer.commands[1]
    question = peer.commands[2]
    if profile.changes_audio:
        assert f"/variants/{profile.key}/district-11620/greeting" in greeting
        assert f"/variants/{profile.key}/tts/question" in question
    else:
        assert str(store.file(Prompt.GREETING, "11620").with_suffix("")) in greeting
        assert f"{ROOT}/audio/rendered/question" in question


class Sink:
    def __init__(self) -> None:
        self.outcomes: list[IvrOutcome] = []

    def report(self, outcome: IvrOutcome) -> None:
        self.outcomes.append(outcome)
