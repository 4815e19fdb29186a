"""Who answered: a person, the carrier's voicemail, or an answering machine. Pure rules.

Korean carriers send an unanswered or switched-off mobile to voicemail: SKT and KT *answer*
the call and play "...소리샘으로 연결되오며, 삐 소리 후 통화료가 부과됩니다", then beep and
record (billing starts at the beep); LG U+ answers, announces ("...꺼져 있어 연결되지
않습니다") and disconnects. A person's answering machine plays a greeting, then beeps. To the
engine all three are answered calls, and their words used to be taken for a reply (machine
greetings were heard as "help"). The listener (``ivr.stream``) gathers evidence in the first
seconds after answer and asks :func:`judge`:

- **carrier words**: the announcements are fixed texts, so a handful of their words, spotted
  by the recognizer against a word list, name them, once the far end has spoken
  ``min_speech_s`` in all (a reply is shorter; the spotter sometimes finds a carrier word in
  one). One *strong* word (소리샘, 음성사서함,
  사서함, 통화료, 부과) is enough; otherwise two distinct *weak* ones (거신, 전원, 꺼져, 고객님,
  연결되, 않아, 삐 ...), which a resident's short reply does not hold together;
- **machine words** (the same length rule): two distinct words of a greeting (메시지, 남겨,
  부재중, 녹음, 받을, 없습니다, 삐 ...);
- **a tone** (a beep, a ringback tone) of at least ``min_tone_s``: no voice holds one pitch;
- **a long sound**: an unbroken stretch of sound longer than ``max_greeting_s`` from the far
  end before any reply (a recorded greeting or music; a person says "여보세요" and listens).
  This is Asterisk AMD's "greeting too long" rule.

Carrier words decide "voicemail" (with or without the beep after them), and so does one
carrier word with a tone or a long sound; everything else is "machine". The costs are
lopsided the other way from the reply rule: a person taken for a machine is called again
(retried like no answer, never ok, never help); a machine taken for a person was a false alarm
to an official and a billed voicemail.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from anbu.domain.speech_intent import UNK, VOCABULARY, Vocabulary


class Answerer(enum.StrEnum):
    """What answered, when it was not a person."""

    VOICEMAIL = "voicemail"  # the carrier's voicemail or announcement (소리샘, LG U+)
    MACHINE = "machine"  # an answering machine, music, a tone


@dataclass(frozen=True, slots=True)
class MachineWords:
    """Word lists (Vosk morpheme pieces; every one is checked against the model at start-up)."""

    carrier_strong: frozenset[str]
    carrier_weak: frozenset[str]
    greeting: frozenset[str]

    @property
    def all(self) -> frozenset[str]:
        return self.carrier_strong | self.carrier_weak | self.greeting

    def grammar(self, replies: Vocabulary = VOCABULARY) -> tuple[str, ...]:
        """The spotting recognizer's word list: these words, the reply words (so a resident's
        "네" has somewhere to go) and ``<UNK>`` last."""
        return (*sorted((self.all | frozenset(replies.grammar(repeat=False))) - {UNK}), UNK)


MACHINE_WORDS = MachineWords(
    carrier_strong=frozenset({"소리샘", "음성사서함", "사서함", "통화료", "부과"}),
    carrier_weak=frozenset({"거신", "전원", "꺼져", "고객님", "전화기", "연결되", "않아", "삐"}),
    greeting=frozenset(
        {"메시지", "메시지를", "남겨", "남겨주", "남기", "부재중", "녹음", "받을", "없습니다", "삐"}
    ),
)


@dataclass(frozen=True, slots=True)
class MachineRules:
    min_weak_words: int = 2
    min_greeting_words: int = 2
    min_tone_s: float = 0.4
    max_greeting_s: float = 4.0
    # Words count only once the far end has spoken this long in all: an announcement or a
    # greeting runs 5-9 s, a resident's reply 0.5-2 s, and the spotter, given a short reply,
    # sometimes finds a carrier word in it (잘 안 들려요 came out as 사서함).
    min_speech_s: float = 2.5

    def __post_init__(self) -> None:
        if self.min_weak_words < 1 or self.min_greeting_words < 1:
            raise ValueError("word counts must be at least 1")
        if self.min_tone_s <= 0 or self.max_greeting_s <= 0 or self.min_speech_s < 0:
            raise ValueError("durations must be positive")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the first seconds after answer held.

    ``words``: the pieces the spotting recognizer heard (in order); ``tone_s``: the longest
    steady tone; ``longest_sound_s``: the longest unbroken sound from the far end before a
    reply was recognised; ``speech_s``: how long the far end has sounded in all.
    """

    words: tuple[str, ...] = ()
    tone_s: float = 0.0
    longest_sound_s: float = 0.0
    speech_s: float = 0.0  # all the far end's voiced time so far


def judge(
    evidence: Evidence, rules: MachineRules = MachineRules(), table: MachineWords = MACHINE_WORDS
) -> Answerer | None:
    """A machine verdict, or None while it still may be a person (module docstring)."""
    heard = set(evidence.words) if evidence.speech_s >= rules.min_speech_s else set()
    if heard & table.carrier_strong or len(heard & table.carrier_weak) >= rules.min_weak_words:
        return Answerer.VOICEMAIL
    if len(heard & table.greeting) >= rules.min_greeting_words:
        return Answerer.MACHINE
    if evidence.tone_s >= rules.min_tone_s or evidence.longest_sound_s > rules.max_greeting_s:
        # Not a person; one carrier word (삐 aside: greetings say it too) names the carrier.
        carrier = (table.carrier_strong | table.carrier_weak) - {"삐"}
        return Answerer.VOICEMAIL if set(evidence.words) & carrier else Answerer.MACHINE
    return None


__all__ = [
    "MACHINE_WORDS",
    "Answerer",
    "Evidence",
    "MachineRules",
    "MachineWords",
    "judge",
]
