"""Check-in cases: statuses, outcomes, and how one attempt's record moves the case on.

A check-in is a case ("is this person well?") opened for a reason; it owns call attempts.
Retry timing lives in :mod:`anbu.domain.retry`; this module says what an attempt *means*.
"""

from __future__ import annotations

import enum

from anbu.domain.calls import CallResult
from anbu.domain.replies import Reply


class CheckinStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for an attempt to be dialed (first or retry)
    DIALING = "dialing"  # an attempt is in flight
    COMPLETED = "completed"  # the resident answered and replied (or clearly did not)
    EXHAUSTED = "exhausted"  # every allowed attempt went unanswered
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = {CheckinStatus.COMPLETED, CheckinStatus.EXHAUSTED, CheckinStatus.CANCELLED}


class Outcome(enum.StrEnum):
    """What the case found. ``ok`` closes it; everything else is a reason to tell an official."""

    OK = "ok"
    HELP = "help"
    CALLBACK = "callback"  # asked to be called later
    NO_RESPONSE = "no_response"  # answered but never replied, or hung up
    UNREACHABLE = "unreachable"  # never answered after all attempts
    DECLINED = "declined"  # the call was rejected: no redial, an official follows up
    INVALID_NUMBER = "invalid_number"  # the number does not work: no redial


class CheckinSource(enum.StrEnum):
    API = "api"
    SIGNAL = "signal"
    ROUTINE = "routine"
    SELF_TEST = "self_test"


class AttemptStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    DIALING = "dialing"
    FINISHED = "finished"
    UNKNOWN = "unknown"  # lost track (crash, Asterisk gone): reconciled, counted, retried


def reply_outcome(reply: Reply) -> Outcome:
    return {
        Reply.OK: Outcome.OK,
        Reply.HELP: Outcome.HELP,
        Reply.CALLBACK: Outcome.CALLBACK,
        Reply.NO_RESPONSE: Outcome.NO_RESPONSE,
        Reply.HUNG_UP: Outcome.NO_RESPONSE,
    }[reply]


def attempt_outcome(result: CallResult, reply: Reply | None) -> Outcome | None:
    """The outcome one attempt settles, or None when the attempt settles nothing (retry).

    An answered call settles the case with the reply; a call that reached a person who then
    said nothing is ``no_response`` (not ``ok``: silence never means well). Unanswered results
    settle nothing; the retry policy decides whether to dial again.
    """
    if result is CallResult.ANSWERED:
        return reply_outcome(reply) if reply is not None else Outcome.NO_RESPONSE
    return None
