"""Retry policy: given what an attempt got, dial again (when) or settle the case.

The retry clock starts at *dial* time (the Originate), never at queue time: a call that waited
for a free channel has not used up the resident's spacing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from anbu.domain.calls import CallResult
from anbu.domain.checkin import Outcome


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    interval: dt.timedelta = dt.timedelta(minutes=10)  # no answer: police "Are You OK?" spacing
    busy_interval: dt.timedelta = dt.timedelta(minutes=3)  # busy: they are on the phone, alive
    failure_interval: dt.timedelta = dt.timedelta(minutes=2)  # our side or the network failed
    # Results that mean the number itself does not work: redialing cannot help.
    no_redial: frozenset[CallResult] = field(
        default_factory=lambda: frozenset({CallResult.REJECTED, CallResult.UNREACHABLE})
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


@dataclass(frozen=True, slots=True)
class RetryAt:
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    outcome: Outcome


Decision = RetryAt | GiveUp


def decide_retry(
    policy: RetryPolicy, result: CallResult, attempts_dialed: int, dialed_at: dt.datetime
) -> Decision:
    """What to do after an *unanswered* attempt.

    ``attempts_dialed`` counts this attempt. Rejected calls or dead numbers give up at once as
    ``declined``/``invalid_number`` (escalate, do not redial); otherwise retry until
    ``max_attempts`` is used, then give up as ``unreachable``.
    """
    if result is CallResult.ANSWERED:
        raise ValueError("answered attempts settle the case; no retry decision")
    if result in policy.no_redial:
        return GiveUp(
            Outcome.INVALID_NUMBER if result is CallResult.UNREACHABLE else Outcome.DECLINED
        )
    if attempts_dialed >= policy.max_attempts:
        return GiveUp(Outcome.UNREACHABLE)
    if result is CallResult.BUSY:
        return RetryAt(dialed_at + policy.busy_interval)
    if result is CallResult.FAILED:
        return RetryAt(dialed_at + policy.failure_interval)
    return RetryAt(dialed_at + policy.interval)
