"""What the resident said or pressed, and the IVR dialogue as a pure state machine.

The dialogue: greeting + question -> wait for a key (keys pressed during the prompt count) ->
on silence repeat the question once -> then no response. The adapters (FastAGI, Vosk) feed
events in; this module only decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Reply(enum.StrEnum):
    """The resident's answer on an answered call."""

    OK = "ok"  # 1 or "네": 괜찮아요
    HELP = "help"  # 2 or "도와주세요": 도움이 필요해요
    CALLBACK = "callback"  # "바빠요 / 나중에": call me later
    NO_RESPONSE = "no_response"  # answered, but neither key nor word after the repeat
    HUNG_UP = "hung_up"  # answered and hung up before replying


# 0 at any time: "a person, please" (the operator key of every IVR), the same as help.
KEY_REPLIES: dict[str, Reply] = {"1": Reply.OK, "2": Reply.HELP, "0": Reply.HELP}


# 9 at any time: "say that again" (also the spoken "다시"): the question is repeated without
# counting as a missed answer.
REPEAT_KEY = "9"
MAX_REPEATS_ASKED = 3  # then a 9 counts as nothing heard (a stuck key must not loop forever)


def reply_for_key(key: str) -> Reply | None:
    """Map one DTMF digit to a reply; other keys are ignored (the question is asked again)."""
    return KEY_REPLIES.get(key)


class Prompt(enum.StrEnum):
    """Prompt ids in the audio catalogue (``audio/catalogue.toml``)."""

    GREETING = "greeting"
    QUESTION = "question"
    REPEAT = "repeat"
    THANKS = "thanks"
    HELP_ACK = "help_ack"
    CALLBACK = "callback"
    GOODBYE = "goodbye"
    GENERIC = "generic"


@dataclass(frozen=True, slots=True)
class Ask:
    """Play these prompts, then listen for a reply."""

    prompts: tuple[Prompt, ...]
    listen: bool = True


@dataclass(frozen=True, slots=True)
class Finish:
    """Play the closing prompt (if any) and hang up with this reply."""

    reply: Reply
    prompts: tuple[Prompt, ...]


Step = Ask | Finish


@dataclass(frozen=True, slots=True)
class Dialogue:
    """The check-in dialogue. ``asked`` counts how many times the question has been played."""

    max_asks: int = 2
    asked: int = 0
    repeats: int = 0  # repeats the resident asked for (key 9, "다시") or a doubtful yes got

    def start(self) -> tuple[Dialogue, Step]:
        return Dialogue(self.max_asks, 1), Ask((Prompt.GREETING, Prompt.QUESTION))

    def asked_again(self) -> tuple[Dialogue, Step]:
        """The resident asked to hear the question again: play it, the misses stay as they
        were. Past ``MAX_REPEATS_ASKED`` it counts as nothing heard."""
        if self.repeats >= MAX_REPEATS_ASKED:
            return self.heard_nothing()
        return Dialogue(self.max_asks, self.asked, self.repeats + 1), Ask((Prompt.QUESTION,))

    def doubted(self) -> tuple[Dialogue, Step]:
        """A yes heard without enough confidence (it may have been "다시"): say that it was
        not understood and ask again, without counting a miss (the resident did answer). Past
        ``MAX_REPEATS_ASKED`` it counts as nothing heard: a doubtful yes never closes a
        check-in as ok."""
        if self.repeats >= MAX_REPEATS_ASKED:
            return self.heard_nothing()
        return Dialogue(self.max_asks, self.asked, self.repeats + 1), Ask(
            (Prompt.REPEAT, Prompt.QUESTION)
        )

    def replied(self, reply: Reply) -> tuple[Dialogue, Step]:
        """A key or a recognised word arrived."""
        closing = {
            Reply.OK: (Prompt.THANKS, Prompt.GOODBYE),
            Reply.HELP: (Prompt.HELP_ACK, Prompt.GOODBYE),
            Reply.CALLBACK: (Prompt.CALLBACK, Prompt.GOODBYE),
        }.get(reply, ())
        return self, Finish(reply, closing)

    def heard_nothing(self) -> tuple[Dialogue, Step]:
        """Silence, an unknown key or an unrecognised utterance: repeat once, then give up."""
        if self.asked < self.max_asks:
            return Dialogue(self.max_asks, self.asked + 1, self.repeats), Ask(
                (Prompt.REPEAT, Prompt.QUESTION)
            )
        return self, Finish(Reply.NO_RESPONSE, (Prompt.GOODBYE,))

    def hung_up(self) -> tuple[Dialogue, Step]:
        return self, Finish(Reply.HUNG_UP, ())
