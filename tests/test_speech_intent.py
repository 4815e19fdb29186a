"""The strict spoken-reply rule, table-driven (pure, no model)."""

from __future__ import annotations

import pytest

from anbu.domain.replies import Reply
from anbu.domain.speech_intent import (
    UNK,
    VOCABULARY,
    HeardWord,
    Intent,
    SpeechResult,
    decide,
    reply_for_intent,
)

OK, HELP, CALLBACK, UNKNOWN = Intent.OK, Intent.HELP, Intent.CALLBACK, Intent.UNKNOWN


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        # ok: only ok words, endings right after their stem
        ("네", OK),
        ("네 네", OK),
        ("네네", OK),
        ("괜찮 아요", OK),
        ("네 괜찮 아요", OK),
        ("괜찮 습니다", OK),
        ("괜찮아 요", OK),
        ("괜찮아", OK),
        # endings out of place are a split -세요 word, not a yes (measured: 누구세요, 살려 주세요)
        ("네 요", UNKNOWN),
        ("네 네 요", UNKNOWN),
        ("아요 네 요", UNKNOWN),
        ("아요", UNKNOWN),
        ("요", UNKNOWN),
        ("괜찮 요", UNKNOWN),
        # anything else in the utterance spoils the ok
        ("안 괜찮 아요", UNKNOWN),
        ("아니요 괜찮 아요", UNKNOWN),
        ("네 예 아요", UNKNOWN),
        ("예", UNKNOWN),
        ("응", UNKNOWN),
        ("여보 세요", UNKNOWN),
        ("네 <UNK>", UNKNOWN),
        # help wins over everything
        ("도와주 세요", HELP),
        ("네 도와주 세요", HELP),
        ("살려 주세요", HELP),
        ("아파 요", HELP),
        ("괜찮 아요 아파 요", HELP),
        ("바빠 요 아파 요", HELP),
        ("<UNK> 도와줘 <UNK>", HELP),
        # callback only when every word fits "busy, call later"
        ("바빠 요", CALLBACK),
        ("지금 바빠 요", CALLBACK),
        ("네 나중에 전화 해 주세요", CALLBACK),
        ("바쁘 여보", UNKNOWN),
        ("아요 다음 요", UNKNOWN),
        ("예 바쁘", UNKNOWN),
        # nothing usable
        ("", UNKNOWN),
        ("<UNK>", UNKNOWN),
        ("<UNK> <UNK>", UNKNOWN),
        ("누구", UNKNOWN),
    ],
)
def test_given_recognised_words_when_decided_then_the_strict_rule_holds(
    words: str, expected: Intent
) -> None:
    assert decide(words.split()) is expected


def test_given_a_doubtful_yes_when_below_the_confidence_floor_then_it_is_not_ok() -> None:
    heard = [HeardWord("네", 0.9), HeardWord("괜찮", 0.4), HeardWord("아요", 1.0)]
    assert decide(heard, min_ok_confidence=0.5) is UNKNOWN
    assert decide(heard, min_ok_confidence=0.3) is OK


@pytest.mark.parametrize(
    ("confidences", "expected"),
    [
        ((1.0,), OK),
        ((0.8,), OK),
        ((0.79,), Intent.DOUBTFUL),
        ((0.51,), Intent.DOUBTFUL),  # what espeak-ng's "다시" was heard as through u-law
        ((0.5,), Intent.DOUBTFUL),
        ((0.49,), UNKNOWN),  # below the floor: a miss, as before
        ((1.0, 0.6), Intent.DOUBTFUL),  # the weakest word decides
    ],
)
def test_given_a_yes_when_below_the_sure_confidence_then_doubtful_never_ok(
    confidences: tuple[float, ...], expected: Intent
) -> None:
    heard = [HeardWord("네", c) for c in confidences]
    decided = decide(heard, min_ok_confidence=0.5, sure_ok_confidence=0.8)
    assert decided is expected
    assert reply_for_intent(decided) is (Reply.OK if expected is OK else None)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        # what "다시" sounds like to the model through the telephone band (bench/speechset.py)
        ("나비", Intent.REPEAT),
        ("라디 요", Intent.REPEAT),
        ("해 라기 요", Intent.REPEAT),
        ("다시한번", Intent.REPEAT),
        ("라디 안 어", Intent.REPEAT),  # 다시 한번: the ㅎ of 한번 is lost too
        ("나비 한번", Intent.REPEAT),
        # never an ok, and help still wins
        ("네 라디", UNKNOWN),
        ("라기 도와주 세요", HELP),
        ("나중에 다시 전화 해 주세요", CALLBACK),
        ("다시 여보", UNKNOWN),
    ],
)
def test_given_the_sound_of_dasi_through_the_phone_when_decided_then_repeat_never_ok(
    words: str, expected: Intent
) -> None:
    assert decide(words.split()) is expected


def test_given_the_repeat_decoys_then_they_are_in_the_grammar_and_not_ok_words() -> None:
    grammar = set(VOCABULARY.grammar())
    assert VOCABULARY.repeat <= grammar
    assert not VOCABULARY.repeat & VOCABULARY.ok_anchors


def test_given_a_doubtful_help_word_when_decided_then_help_still_wins() -> None:
    assert decide([HeardWord("도와주", 0.1)], min_ok_confidence=0.9) is HELP


def test_given_words_decoded_from_noise_outside_speech_when_decided_then_they_are_ignored() -> None:
    heard = [HeardWord("해", 1.0, 0.0, 0.3, in_speech=False), HeardWord("네", 1.0, 0.5, 0.8)]
    assert decide(heard) is OK
    assert decide([HeardWord("네", 1.0, in_speech=False)]) is UNKNOWN


@pytest.mark.parametrize(
    ("intent", "reply"),
    [(OK, Reply.OK), (HELP, Reply.HELP), (CALLBACK, Reply.CALLBACK), (UNKNOWN, None)],
)
def test_given_an_intent_then_it_maps_to_a_dialogue_reply(
    intent: Intent, reply: Reply | None
) -> None:
    assert reply_for_intent(intent) is reply


def test_given_words_when_a_result_is_built_then_transcript_and_weakest_confidence_are_kept() -> (
    None
):
    words = [HeardWord("네", 0.8), HeardWord("괜찮", 0.6), HeardWord("아요", 1.0)]
    result = SpeechResult.from_words(words, duration_s=2.0, voiced_s=0.7)
    assert result.intent is OK
    assert result.reply is Reply.OK
    assert result.transcript == "네 괜찮 아요"
    assert result.confidence == 0.6
    assert not result.gated
    assert SpeechResult(UNKNOWN, "").confidence is None


def test_given_the_vocabulary_then_the_grammar_ends_with_unk_and_has_every_role() -> None:
    grammar = VOCABULARY.grammar()
    assert grammar[-1] == UNK
    assert len(grammar) == len(set(grammar))
    for word in ("네", "아요", "도와주", "바빠", "여보", "안", "전화"):
        assert word in grammar
    # the ok anchors and the help/callback words never overlap
    assert not VOCABULARY.ok_anchors & VOCABULARY.help
    assert not VOCABULARY.ok_anchors & VOCABULARY.callback
    assert not VOCABULARY.help & VOCABULARY.callback
