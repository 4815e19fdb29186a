"""A person on the line: who is called when a resident asks for help, what they hear first,
and what each leg of the transfer came to. Pure: no I/O, time passed in.

The order is the escalation chain's own (:func:`anbu.domain.escalation.next_step`): the first
step on duty, then each later step on duty (the backup), and when nobody later is on duty the
chain's last step (the night/holiday centre). An official who does not take the call within
the accept window is followed by the next one; when nobody accepts, the SMS page of the chain
takes over.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from anbu.domain.escalation import SEOUL, Step, korean_holiday, mask_name, next_step


class LegResult(enum.StrEnum):
    """How one official's leg of a transfer ended."""

    ACCEPTED = "accepted"  # answered, heard the whisper, pressed 1: bridged to the resident
    NOT_ACCEPTED = "not_accepted"  # answered, no 1 within the accept window (or another key)
    VOICEMAIL = "voicemail"  # the carrier's voicemail or an answering machine answered
    NO_ANSWER = "no_answer"  # rang out
    BUSY = "busy"
    UNAVAILABLE = "unavailable"  # congestion, unreachable, no such number
    NO_CHANNEL = "no_channel"  # the channel caps were full: not dialled
    RESIDENT_GONE = "resident_gone"  # the resident hung up before anyone accepted


# Dial()'s DIALSTATUS for a leg that was never bridged.
_DIALSTATUS: dict[str, LegResult] = {
    "NOANSWER": LegResult.NO_ANSWER,
    "BUSY": LegResult.BUSY,
    "CONGESTION": LegResult.UNAVAILABLE,
    "CHANUNAVAIL": LegResult.UNAVAILABLE,
    "CANCEL": LegResult.RESIDENT_GONE,
}

LEG_WORDS: dict[LegResult, str] = {
    LegResult.ACCEPTED: "연결 수락",
    LegResult.NOT_ACCEPTED: "받았으나 수락 안 함",
    LegResult.VOICEMAIL: "음성사서함",
    LegResult.NO_ANSWER: "받지 않음",
    LegResult.BUSY: "통화중",
    LegResult.UNAVAILABLE: "연결 불가",
    LegResult.NO_CHANNEL: "회선 없음(동시 통화 한도)",
    LegResult.RESIDENT_GONE: "대상자가 먼저 끊음",
}


def leg_result(
    dialstatus: str, *, answered: bool, accepted: bool, machine: bool, resident_gone: bool
) -> LegResult:
    """One leg's result from what the whisper heard and Dial()'s DIALSTATUS.

    The whisper's own report wins: an official who answered is ACCEPTED / VOICEMAIL /
    NOT_ACCEPTED whatever DIALSTATUS says (a declined leg ends Dial with ANSWER or CANCEL
    depending on who hung up first)."""
    if accepted:
        return LegResult.ACCEPTED
    if machine:
        return LegResult.VOICEMAIL
    if answered:
        return LegResult.RESIDENT_GONE if resident_gone else LegResult.NOT_ACCEPTED
    if resident_gone:
        return LegResult.RESIDENT_GONE
    return _DIALSTATUS.get(dialstatus.strip().upper(), LegResult.UNAVAILABLE)


def handoff_order(
    steps: Sequence[Step],
    at: dt.datetime,
    *,
    tz: dt.tzinfo = SEOUL,
    holidays: Callable[[dt.date], bool] | None = korean_holiday,
) -> list[Step]:
    """The steps to call at ``at``, in order (the same walk as the SMS chain's)."""
    order: list[Step] = []
    after: int | None = None
    while (step := next_step(steps, after, at, tz=tz, holidays=holidays)) is not None:
        order.append(step)
        after = step.position
    return order


@dataclass(frozen=True, slots=True)
class Whisper:
    """What the official hears before accepting: ``text`` is shown (timeline), ``spoken`` is
    rendered (a mask sign is not pronounceable: the family name alone is said)."""

    text: str
    spoken: str


def whisper_for(resident_name: str, dong: str) -> Whisper:
    """ "안부확인 긴급 연결, 김○○ 어르신, 신림동": the name masked (PIPA: a wrong number may
    answer), the dong so the official knows where to go."""
    masked = mask_name(resident_name)
    family = masked.rstrip("○")
    place = f", {dong}" if dong else ""
    text = f"안부확인 긴급 연결, {masked} 어르신{place}"
    # Short and with few commas: espeak-ng pauses long at each one, and every second of the
    # whisper is a second the resident waits (bench/transfer.py).
    spoken = f"안부확인 긴급연결, {family} 어르신 {dong}, 받으시려면 일번"
    return Whisper(text, spoken)


__all__ = [
    "LEG_WORDS",
    "LegResult",
    "Whisper",
    "handoff_order",
    "leg_result",
    "whisper_for",
]
