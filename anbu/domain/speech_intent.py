"""What a spoken reply means: a small vocabulary and a strict decision rule.

Pure: the recognizer (``ivr.speech.VoskRecognizer``) hands in the words it heard; this module
decides. The rule is deliberately lopsided, because the costs are: a false "ok" can leave a
resident who needs help alone, a false "unknown" only costs a repeat of the question (and then
the keypad, then a no-response follow-up by an official).

- help     if any help word was heard (help wins: "네, 도와주세요" needs help);
- callback only if a callback word was heard and EVERY word fits a "busy, call later" reply
           (a callback delays the check-in, so it is held to the same standard as ok);
- ok       only if EVERY word is an ok-word, at least one is an ok anchor (네, 괜찮...), an
           ending (아요, 습니다) only directly after its stem (괜찮 아요), and every word
           reached ``sure_ok_confidence``;
- doubtful an ok whose weakest word is between ``min_ok_confidence`` and
           ``sure_ok_confidence``: not an ok, the question is asked again (a "다시" through
           the telephone band came out as a "네" at confidence 0.51-1.0 before the repeat
           decoys below; a doubtful yes must never be the one that closes a check-in);
- repeat   a repeat word ("다시", or what it sounds like to the model through the phone)
           with only polite fillers: say the question again;
- unknown  otherwise: nothing heard, only ``<UNK>``, distractors (여보세요, 아니요, 안 ...).

Words the recognizer marks as outside the voiced part of the recording (``in_speech=False``:
noise before the first syllable decodes as 해 or 아요) are ignored.

Vosk's Korean vocabulary is made of morpheme pieces (괜찮아요 is ``괜찮 아요``), so the lists
hold pieces, and a word list is not a phrase list: the decoder recombines pieces freely
(누구세요 came out as ``네 네 요``). That is why endings count only after their stem: "네 요"
is not Korean, it is a -세요 word split apart.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from anbu.domain.replies import Reply

UNK = "<UNK>"  # Vosk's catch-all token; "[unk]" is silently dropped by the Korean model


class Intent(enum.StrEnum):
    """What a recognised utterance asks for."""

    OK = "ok"
    HELP = "help"
    CALLBACK = "callback"
    REPEAT = "repeat"  # "다시", "다시 해 주세요": say the question again
    DOUBTFUL = "doubtful"  # an ok heard without enough confidence: ask again, never ok
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class HeardWord:
    """One recognised word (a Vosk morpheme piece) with its confidence and timing."""

    text: str
    confidence: float
    start_s: float = 0.0
    end_s: float = 0.0
    in_speech: bool = True  # False: decoded from noise outside the voiced frames


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The words the recognizer may return, by role.

    ``ok_anchors`` can make an utterance "ok"; ``ok_endings`` maps a stem to the endings
    that may follow it (괜찮 -> 아요): an ending anywhere else (noise and 여보세요 often come
    out as 아요) spoils the ok. ``callback_fillers`` may accompany a callback word
    ("나중에 전화 해 주세요"). ``others`` are distractors: they are in the grammar so that
    "안 괜찮아요" or "여보세요" has somewhere to go other than the ok words.
    """

    ok_anchors: frozenset[str]
    ok_endings: Mapping[str, frozenset[str]]
    help: frozenset[str]
    callback: frozenset[str]
    callback_fillers: frozenset[str] = field(default_factory=frozenset)
    others: frozenset[str] = field(default_factory=frozenset)
    repeat: frozenset[str] = field(default_factory=frozenset)
    repeat_fillers: frozenset[str] = field(default_factory=frozenset)

    def grammar(self, *, repeat: bool = True) -> tuple[str, ...]:
        """Every token for the recognizer's word list, sorted, ``<UNK>`` last.

        ``repeat=False`` leaves the repeat words and their decoys out: the machine spotter
        (``anbu.domain.machine``) listens to carriers' announcements, where a decoy took the
        place of announcement words (a 소리샘 was then named a machine, not a voicemail).
        """
        endings = frozenset().union(*self.ok_endings.values())
        words = (
            self.ok_anchors
            | endings
            | self.help
            | self.callback
            | self.callback_fillers
            | self.others
        )
        if repeat:
            words |= self.repeat | self.repeat_fillers
        return (*sorted(words - {UNK}), UNK)

    def is_ok(self, words: Sequence[str]) -> bool:
        """Only ok anchors, each ending right after a stem that takes it, one anchor at least."""
        previous = ""
        for word in words:
            if word not in self.ok_anchors and word not in self.ok_endings.get(previous, ()):
                return False
            previous = word
        return any(word in self.ok_anchors for word in words)


# Every token must exist in the model's word list; ivr.speech checks this at start-up.
# Measured on the synthetic set (bench/speech.py): every change here moves the false-ok rate.
VOCABULARY = Vocabulary(
    ok_anchors=frozenset({"네", "네네", "괜찮", "괜찮아"}),
    ok_endings={"괜찮": frozenset({"아요", "습니다"}), "괜찮아": frozenset({"요"})},
    help=frozenset(
        {"도와주", "도와줘", "살려", "살려주", "아파", "아파서", "아프", "도움", "병원", "구급차"}
    ),
    # "이따(가)" and "나중" alone are not in the model; "나중에" is one token. "다음" is left
    # out: 아파요 decoded as "아요 다음 요", and a sick resident must not become a callback.
    callback=frozenset({"바빠", "바빠서", "바쁘", "바쁜", "나중에"}),
    callback_fillers=frozenset(
        {"네", "네네", "요", "아요", "지금", "좀", "다시", "전화", "해", "주세요", "세요"}
    ),
    others=frozenset(
        {
            # 예/예예 sound like the 요 ending everywhere (heard inside 안 괜찮아요), so they
            # may not count as "yes": a resident who says 예 is asked again, then uses a key.
            "예",
            "예예",
            "응",
            "그래",
            "여보",
            "누구",
            "아니",
            "아니요",
            "안",
            "못",
            "몰라",
            "다음",
            "뭐",
            "뭐라",  # 뭐라고요? (what?) and 잘 안 들려요 (I can't hear): common, not a yes
            "잘",
            "왜",
            "들려",
            "어",
            "음",
            "아",
        }
    ),
    # "다시" (again) with only polite fillers asks for the question again; anything more
    # ("다시 전화 해 주세요": call again) does not. Through the telephone band (8 kHz) the
    # ㅅ of 다시 is gone (its energy lies above 4 kHz): the model hears espeak-ng's 다시 as
    # 나비, 라디 or 라기 in free decoding, and with only the words above it chose 네 (an ok,
    # at confidence up to 1.0). Those three are decoys: a resident who answers "괜찮으세요?"
    # never says 나비 (butterfly), so hearing one costs at most a repeat of the question, and
    # it gives the sound of 다시 somewhere to go other than 네. Measured on 18 renditions
    # each (3 voices x 2 speeds x clean / u-law / u-law + noise): 다시 and 다시요 18/18
    # repeat, 네 still 18/18 ok. "다시 한번" (one token in the model) loses its ㅎ:
    # 안 어 or 아 안 어.
    repeat=frozenset({"다시", "다시한번", "나비", "라디", "라기"}),
    repeat_fillers=frozenset({"요", "좀", "해", "주세요", "한번", "아", "안", "어"}),
)


def decide(
    words: Iterable[HeardWord | str],
    *,
    vocabulary: Vocabulary = VOCABULARY,
    min_ok_confidence: float = 0.0,
    sure_ok_confidence: float = 0.0,
) -> Intent:
    """Apply the strict rule (module docstring) to the recognised words, in order.

    An ok whose weakest word is below ``min_ok_confidence`` is unknown (a miss); between it
    and ``sure_ok_confidence`` it is doubtful (asked again without counting a miss).
    """
    heard = [w if isinstance(w, HeardWord) else HeardWord(w, 1.0) for w in words]
    heard = [w for w in heard if w.in_speech and w.text.strip()]
    texts = [w.text for w in heard]
    distinct = set(texts)
    if not distinct or distinct == {UNK}:
        return Intent.UNKNOWN
    if distinct & vocabulary.help:
        return Intent.HELP
    if distinct & vocabulary.callback:
        if distinct <= vocabulary.callback | vocabulary.callback_fillers:
            return Intent.CALLBACK
        return Intent.UNKNOWN
    if vocabulary.is_ok(texts):
        weakest = min(w.confidence for w in heard)
        if weakest >= max(min_ok_confidence, sure_ok_confidence):
            return Intent.OK
        if weakest >= min_ok_confidence:
            return Intent.DOUBTFUL
        return Intent.UNKNOWN
    if distinct & vocabulary.repeat and distinct <= vocabulary.repeat | vocabulary.repeat_fillers:
        return Intent.REPEAT
    return Intent.UNKNOWN


INTENT_REPLIES: dict[Intent, Reply] = {
    Intent.OK: Reply.OK,
    Intent.HELP: Reply.HELP,
    Intent.CALLBACK: Reply.CALLBACK,
}


def reply_for_intent(intent: Intent) -> Reply | None:
    """The dialogue reply for an intent; ``None`` means "heard nothing usable" (ask again)."""
    return INTENT_REPLIES.get(intent)


@dataclass(frozen=True, slots=True)
class SpeechResult:
    """What the recognizer made of one recorded reply.

    ``gated`` is true when the energy gate found no speech and the decoder never ran;
    ``transcript`` is the recognised pieces joined by spaces ("" when nothing was heard).
    """

    intent: Intent
    transcript: str
    words: tuple[HeardWord, ...] = ()
    duration_s: float = 0.0
    voiced_s: float = 0.0
    gated: bool = False

    @property
    def reply(self) -> Reply | None:
        return reply_for_intent(self.intent)

    @property
    def confidence(self) -> float | None:
        """The weakest word's confidence (what the ok rule checks); ``None`` if no words."""
        return min((w.confidence for w in self.words), default=None)

    @classmethod
    def from_words(
        cls,
        words: Sequence[HeardWord],
        *,
        duration_s: float,
        voiced_s: float,
        vocabulary: Vocabulary = VOCABULARY,
        min_ok_confidence: float = 0.0,
        sure_ok_confidence: float = 0.0,
    ) -> SpeechResult:
        intent = decide(
            words,
            vocabulary=vocabulary,
            min_ok_confidence=min_ok_confidence,
            sure_ok_confidence=sure_ok_confidence,
        )
        return cls(
            intent=intent,
            transcript=" ".join(w.text for w in words),
            words=tuple(words),
            duration_s=duration_s,
            voiced_s=voiced_s,
        )
