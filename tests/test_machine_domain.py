"""Voicemail and answering machines in the pure core: the verdict rules, the retry decision
for their call results, what the case and the alert make of them. Tables, time passed in."""

from __future__ import annotations

import datetime as dt

import pytest

from anbu.domain.calls import CallResult
from anbu.domain.checkin import AttemptStatus, Outcome, attempt_outcome
from anbu.domain.escalation import AlertFacts, AttemptFacts, Urgency, render_alert
from anbu.domain.machine import MACHINE_WORDS, Answerer, Evidence, MachineRules, judge
from anbu.domain.replies import Reply
from anbu.domain.retry import decide_retry
from anbu.domain.speech_intent import UNK, VOCABULARY
from tests.test_retry_policy import DIALED, POLICY

M = dt.timedelta(minutes=1)


def said(
    *words: str, speech_s: float = 4.0, tone_s: float = 0.0, longest_sound_s: float = 0.0
) -> Evidence:
    """Words from a far end that has spoken ``speech_s`` seconds."""
    return Evidence(words, tone_s, longest_sound_s, speech_s)


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        # SKT/KT 소리샘: one strong word is enough, with or without the beep.
        (said("소리샘"), Answerer.VOICEMAIL),
        (said("거신", "전원", "꺼져", "소리샘", "통화료", "부과"), Answerer.VOICEMAIL),
        (said("음성사서함"), Answerer.VOICEMAIL),
        (said("통화료", tone_s=0.5), Answerer.VOICEMAIL),
        # LG U+: "고객님의 전화기가 꺼져 있어 연결되지 않습니다": weak words, two of them.
        (said("고객님", "전화기", "꺼져", "연결되"), Answerer.VOICEMAIL),
        (said("꺼져", "<UNK>", "않아"), Answerer.VOICEMAIL),
        # One weak word alone is not a carrier: a resident may say "삐" or be heard so.
        (said("꺼져"), None),
        # A person's answering machine: two greeting words, or its beep.
        (said("받을", "없습니다", "메시지"), Answerer.MACHINE),
        (said("삐", "메시지를", "남겨"), Answerer.MACHINE),
        (said("메시지"), None),
        (Evidence(tone_s=0.5), Answerer.MACHINE),
        (Evidence(tone_s=0.3), None),  # a click, a held vowel of a high voice: not a beep
        # Music or a long recorded greeting: longer than any "여보세요".
        (Evidence(longest_sound_s=8.0), Answerer.MACHINE),
        # Long or tonal, with one carrier word: the carrier's announcement, not a greeting.
        (said("전화기", "여보", speech_s=4.0, longest_sound_s=4.1), Answerer.VOICEMAIL),
        (said("삐", speech_s=1.0, tone_s=0.5), Answerer.MACHINE),
        (Evidence(longest_sound_s=1.2), None),
        # A person.
        (said("네", longest_sound_s=0.6, speech_s=0.6), None),
        (said("여보", "세요", longest_sound_s=0.9, speech_s=0.9), None),
        (said("도와주", "주세요"), None),
        (Evidence(), None),
        # A short reply in which the spotter found carrier words: not enough speech to count.
        (said("사서함", speech_s=1.2), None),
        (said("녹음", "부과", speech_s=1.8), None),
        (said("사서함", speech_s=2.5), Answerer.VOICEMAIL),
    ],
)
def test_given_evidence_when_judged_then_table_holds(
    evidence: Evidence, expected: Answerer | None
) -> None:
    assert judge(evidence) is expected


def test_given_tuned_rules_when_judged_then_thresholds_move() -> None:
    strict = MachineRules(min_weak_words=3, min_tone_s=0.8, max_greeting_s=10.0)
    assert judge(said("꺼져", "않아"), strict) is None
    assert judge(Evidence(tone_s=0.5), strict) is None
    assert judge(Evidence(longest_sound_s=8.0), strict) is None


@pytest.mark.parametrize("bad", [{"min_weak_words": 0}, {"min_tone_s": 0}, {"max_greeting_s": -1}])
def test_given_nonsense_rules_when_built_then_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        MachineRules(**bad)  # type: ignore[arg-type]


def test_given_spotting_grammar_then_reply_and_machine_words_and_unk_last() -> None:
    grammar = MACHINE_WORDS.grammar()
    assert grammar[-1] == UNK
    assert set(VOCABULARY.grammar(repeat=False)) <= set(grammar)
    # the repeat decoys took the place of announcement words (a 소리샘 named a machine)
    assert not {"나비", "라디", "라기"} & set(grammar)
    assert {"소리샘", "음성사서함", "메시지"} <= set(grammar)
    assert len(grammar) == len(set(grammar))


@pytest.mark.parametrize("result", [CallResult.VOICEMAIL, CallResult.MACHINE])
@pytest.mark.parametrize("dialed", [1, 2, 3])
def test_given_machine_result_when_deciding_then_retried_like_no_answer(
    result: CallResult, dialed: int
) -> None:
    # The times themselves are in test_retry_policy's table, with every other result.
    assert decide_retry(POLICY, result, dialed, DIALED) == decide_retry(
        POLICY, CallResult.NO_ANSWER, dialed, DIALED
    )


@pytest.mark.parametrize("result", [CallResult.VOICEMAIL, CallResult.MACHINE])
@pytest.mark.parametrize("reply", [None, Reply.OK, Reply.HELP])
def test_given_machine_result_when_settling_then_never_ok_never_help(
    result: CallResult, reply: Reply | None
) -> None:
    # Even a reply wrongly attached to a machine's call settles nothing: the policy retries.
    assert attempt_outcome(result, reply) is None


T0 = dt.datetime(2026, 12, 2, 5, 3, 5, tzinfo=dt.UTC)


def unreachable_alert(*results: CallResult, dong: str = "", reason: str = "-") -> AlertFacts:
    """The alert for a case closed unreachable after one attempt per result, 10 min apart."""
    attempts = tuple(
        AttemptFacts(n, AttemptStatus.FINISHED, result, None, T0 + 10 * (n - 1) * M)
        for n, result in enumerate(results, start=1)
    )
    return AlertFacts(
        resident_name="김안부",
        dong=dong,
        district_name="관악구",
        outcome=Outcome.UNREACHABLE,
        urgency=Urgency.NORMAL,
        reason=reason,
        attempts=attempts,
        closed_at=T0 + (10 * (len(results) - 1) + 1) * M,
        code="1234",
        link="http://127.0.0.1:8080/ack/x",
    )


def test_given_two_voicemail_calls_when_alert_rendered_then_it_says_so() -> None:
    voicemail, no_answer = CallResult.VOICEMAIL, CallResult.NO_ANSWER
    facts = unreachable_alert(
        voicemail, no_answer, voicemail, dong="신림동", reason="전화 기록 52시간 없음"
    )
    lines = render_alert(facts).text.splitlines()
    assert "음성사서함 연결 2회" in lines
    assert "1) 12-02 14:03:05 음성사서함 연결" in lines
    assert "3) 12-02 14:23:05 음성사서함 연결" in lines


def test_given_no_machine_calls_when_alert_rendered_then_no_machine_line() -> None:
    facts = unreachable_alert(CallResult.NO_ANSWER, CallResult.MACHINE)
    text = render_alert(facts).text
    assert "음성사서함" not in text
    assert "자동응답기 연결 1회" in text.splitlines()
