"""Accessibility per resident: the profile (API, both databases), the dialogue's "again"
(key 9 / "다시"), and the settings audible in the rendered audio (real sox)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anbu.domain.replies import MAX_REPEATS_ASKED, Ask, Dialogue, Finish, Prompt, Reply
from anbu.domain.speech_intent import Intent, decide
from anbu.domain.voice import VoiceProfile
from anbu.errors import ValidationError
from anbu.settings import ROOT
from ivr.prompts import PromptLibrary
from ivr.tts import PEAK_CEILING_DBFS, read_samples, speech_levels, wav_duration
from ivr.voice import VoicedPrompts, render_variant
from tests.api_support import Api, h, new_resident

QUESTION = Path(PromptLibrary(ROOT / "audio").path(Prompt.QUESTION) + ".wav")


# ---- the dialogue ------------------------------------------------------------------------------


def test_given_question_when_asked_again_then_question_replayed_and_misses_unchanged() -> None:
    d, _ = Dialogue(2).start()
    d, step = d.asked_again()
    assert step == Ask((Prompt.QUESTION,))
    assert (d.asked, d.repeats) == (1, 1)
    # The resident still gets their one repeat after silence.
    d, step = d.heard_nothing()
    assert step == Ask((Prompt.REPEAT, Prompt.QUESTION))
    d, step = d.heard_nothing()
    assert step == Finish(Reply.NO_RESPONSE, (Prompt.GOODBYE,))


def test_given_many_agains_then_they_stop_counting_as_a_request() -> None:
    d, _ = Dialogue(2).start()
    for _ in range(MAX_REPEATS_ASKED):
        d, step = d.asked_again()
        assert step == Ask((Prompt.QUESTION,))
    d, step = d.asked_again()  # a stuck key: counted as nothing heard
    assert step == Ask((Prompt.REPEAT, Prompt.QUESTION))


def test_given_extra_repeat_profile_then_one_more_ask_before_no_response() -> None:
    d, _ = Dialogue(2 + VoiceProfile(extra_repeats=1).extra_repeats).start()
    d, step = d.heard_nothing()
    d, step = d.heard_nothing()
    assert isinstance(step, Ask)
    d, step = d.heard_nothing()
    assert step == Finish(Reply.NO_RESPONSE, (Prompt.GOODBYE,))


def test_given_a_doubtful_yes_when_heard_then_asked_again_without_a_miss_and_never_ok() -> None:
    d, _ = Dialogue(max_asks=2).start()
    d, step = d.doubted()
    assert step == Ask((Prompt.REPEAT, Prompt.QUESTION))
    assert (d.asked, d.repeats) == (1, 1)
    for _ in range(MAX_REPEATS_ASKED - 1):
        d, step = d.doubted()
    # past the repeats a doubtful yes counts as nothing heard: then no response, never ok
    d, step = d.doubted()
    assert step == Ask((Prompt.REPEAT, Prompt.QUESTION))
    assert d.asked == 2
    d, step = d.doubted()
    assert step == Finish(Reply.NO_RESPONSE, (Prompt.GOODBYE,))


@pytest.mark.parametrize(
    ("words", "intent"),
    [
        (["다시"], Intent.REPEAT),
        (["다시", "해", "주세요"], Intent.REPEAT),
        (["다시", "전화", "해", "주세요"], Intent.UNKNOWN),  # call again: not "say it again"
        (["나중에", "다시", "전화", "해", "주세요"], Intent.CALLBACK),
        (["다시", "도와주"], Intent.HELP),  # help wins
        (["네"], Intent.OK),
    ],
)
def test_given_words_when_decided_then_repeat_only_for_a_plain_dasi(
    words: list[str], intent: Intent
) -> None:
    assert decide(words) is intent


@pytest.mark.parametrize(
    "kwargs",
    [{"gain_db": -1}, {"gain_db": 13}, {"tempo": 0.5}, {"tempo": 1.2}, {"extra_repeats": 3}],
)
def test_given_out_of_range_profile_then_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        VoiceProfile(**kwargs)  # type: ignore[arg-type]


# ---- audible in the rendered audio (real sox) -------------------------------------------------


def levels(path: Path) -> tuple[float, float, int]:
    samples, rate = read_samples(path)
    level, peak = speech_levels(samples, rate)
    return level, peak, sum(1 for s in samples if abs(s) >= 32767)


@pytest.mark.parametrize("gain_db", [4.0, 8.0, 12.0])
def test_given_louder_profile_when_rendered_then_speech_louder_and_never_clipped(
    tmp_path: Path, gain_db: float
) -> None:
    out = tmp_path / "q.wav"
    render_variant(QUESTION, out, VoiceProfile(gain_db=gain_db))

    base_level, _, _ = levels(QUESTION)
    level, peak, full_scale = levels(out)
    assert level - base_level >= gain_db / 2 - 0.5  # the limiter gives about half
    assert peak <= PEAK_CEILING_DBFS + 0.05
    assert full_scale == 0


@pytest.mark.parametrize("tempo", [0.9, 0.8, 0.7])
def test_given_slower_profile_when_rendered_then_longer_by_the_tempo(
    tmp_path: Path, tempo: float
) -> None:
    out = tmp_path / "q.wav"
    render_variant(QUESTION, out, VoiceProfile(tempo=tempo))

    assert wav_duration(out) == pytest.approx(wav_duration(QUESTION) / tempo, rel=0.03)
    _, peak, full_scale = levels(out)
    assert peak <= PEAK_CEILING_DBFS + 0.05
    assert full_scale == 0


async def test_given_profile_when_prompt_path_then_variant_rendered_once_default_is_catalogue(
    tmp_path: Path,
) -> None:
    voiced = VoicedPrompts(PromptLibrary(ROOT / "audio"), tmp_path)
    assert await voiced.path(Prompt.QUESTION, VoiceProfile()) == str(QUESTION.with_suffix(""))

    profile = VoiceProfile(gain_db=6, tempo=0.8)
    path = Path(await voiced.path(Prompt.QUESTION, profile) + ".wav")
    assert path.parent == tmp_path / profile.key / "tts"
    first = os.stat(path).st_mtime_ns
    again = Path(await voiced.path(Prompt.QUESTION, profile) + ".wav")
    assert os.stat(again).st_mtime_ns == first
    assert wav_duration(path) == pytest.approx(wav_duration(QUESTION) / 0.8, rel=0.03)


# ---- the API (SQLite and PostgreSQL) -----------------------------------------------------------


async def test_given_resident_when_voice_put_then_read_back_and_default_before(
    api: Api,
) -> None:
    rid = await new_resident(api)
    key = h(api.keys["gwanak"])
    r = await api.client.get(f"/v1/residents/{rid}/voice", headers=key)
    assert r.status_code == 200
    assert r.json() == {"resident_id": rid, "gain_db": 0.0, "tempo": 1.0, "extra_repeats": 0}

    body = {"gain_db": 6, "tempo": 0.8, "extra_repeats": 1}
    r = await api.client.put(f"/v1/residents/{rid}/voice", headers=key, json=body)
    assert r.status_code == 200, r.text
    r = await api.client.get(f"/v1/residents/{rid}/voice", headers=key)
    assert r.json() == {"resident_id": rid, "gain_db": 6.0, "tempo": 0.8, "extra_repeats": 1}


@pytest.mark.parametrize(
    "body",
    [{"gain_db": 20}, {"tempo": 0.3}, {"extra_repeats": 5}, {"volume": 3}],
)
async def test_given_bad_voice_when_put_then_422_with_reason(
    api: Api, body: dict[str, float]
) -> None:
    rid = await new_resident(api)
    r = await api.client.put(f"/v1/residents/{rid}/voice", headers=h(api.keys["gwanak"]), json=body)
    assert r.status_code == 422
    assert r.json()


async def test_given_other_district_key_when_voice_read_then_404(api: Api) -> None:
    rid = await new_resident(api)
    r = await api.client.get(f"/v1/residents/{rid}/voice", headers=h(api.keys["gangnam"]))
    assert r.status_code == 404


@pytest.mark.parametrize("body", [{"extra_repeats": False}, {"gain_db": True}, {"tempo": "0.8"}])
async def test_given_other_types_when_voice_put_then_refused_not_coerced(
    api: Api, body: dict[str, object]
) -> None:
    rid = await new_resident(api)
    r = await api.client.put(f"/v1/residents/{rid}/voice", headers=h(api.keys["gwanak"]), json=body)
    assert r.status_code == 422
