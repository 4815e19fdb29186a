"""Retry policy: given what an attempt got, dial again (when) or settle the case.

The retry clock starts at *dial* time (the Originate), never at queue time: a call that waited
for a free channel has not used up the resident's spacing. Calling hours are applied after the
policy (:func:`anbu.domain.calling_hours.next_allowed`): the policy says "not before t", the
hours say "and only when allowed".

Budget per check-in: at most ``max_attempts`` *unanswered* dials (no answer, busy, failures,
attempts lost in a crash) plus at most ``max_callbacks`` dials the resident asked for ("바빠요,
나중에 전화해 주세요"). :attr:`RetryPolicy.max_dials` is the hard upper bound.
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
    # Phone off / out of coverage (480): retried like no answer, with its own spacing (a phone
    # switched off for the night needs longer than a ring-out) and its own count in the case.
    unreachable_interval: dt.timedelta = dt.timedelta(minutes=10)
    # Results that mean the number itself does not work or the person refused: redialing
    # cannot help, an official follows up.
    no_redial: frozenset[CallResult] = field(
        default_factory=lambda: frozenset({CallResult.REJECTED, CallResult.INVALID_NUMBER})
    )
    max_callbacks: int = 1
    callback_delay: dt.timedelta = dt.timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_callbacks < 0:
            raise ValueError("max_callbacks cannot be negative")
        for name in (
            "interval",
            "busy_interval",
            "failure_interval",
            "unreachable_interval",
            "callback_delay",
        ):
            if getattr(self, name) < dt.timedelta(0):
                raise ValueError(f"{name} cannot be negative")
        if CallResult.ANSWERED in self.no_redial:
            raise ValueError("answered attempts settle the case; they cannot be no_redial")

    @property
    def max_dials(self) -> int:
        """The most dials one check-in can ever make under this policy."""
        return self.max_attempts + self.max_callbacks


# Results the network (not the phone, not us) caused: retried at ``failure_interval``.
_FAILURE_RESULTS = frozenset({CallResult.FAILED, CallResult.CONGESTION, CallResult.NETWORK_FAILURE})


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

    ``attempts_dialed`` counts the unanswered dials of the case including this one. A declined
    call or a number that does not exist (404/484, causes 1/28) gives up at once as
    ``declined``/``invalid_number`` (escalate, do not redial); otherwise retry until
    ``max_attempts`` is used, then give up as ``unreachable``. A phone that is off or out of
    coverage (480) is never a wrong number: it is retried like no answer, after
    ``unreachable_interval``. Busy retries sooner (the person is alive and on the phone);
    failures on our side or the network's (``failed``, ``congestion``, ``network_failure``)
    retry after ``failure_interval``. Voicemail and answering machines (``voicemail``,
    ``machine``) are no answer from the resident: the no-answer interval, and the case ends
    ``unreachable`` like unanswered calls.
    """
    if result is CallResult.ANSWERED:
        raise ValueError("answered attempts settle the case; no retry decision")
    if result in policy.no_redial:
        return GiveUp(
            Outcome.INVALID_NUMBER if result is CallResult.INVALID_NUMBER else Outcome.DECLINED
        )
    if attempts_dialed >= policy.max_attempts:
        return GiveUp(Outcome.UNREACHABLE)
    if result is CallResult.BUSY:
        return RetryAt(dialed_at + policy.busy_interval)
    if result in _FAILURE_RESULTS:
        return RetryAt(dialed_at + policy.failure_interval)
    if result is CallResult.UNREACHABLE:
        return RetryAt(dialed_at + policy.unreachable_interval)
    return RetryAt(dialed_at + policy.interval)


def decide_lost(policy: RetryPolicy, attempts_dialed: int, noticed_at: dt.datetime) -> Decision:
    """What to do after an attempt whose result was lost (crash, Asterisk gone).

    The attempt counts as dialed: it may have rung. Its dial time is unknown, so the clock
    starts when the loss is *noticed* (always at or after the real dial) with the full
    no-answer interval: a lost attempt can never make the next dial come sooner than the policy
    allows.
    """
    if attempts_dialed >= policy.max_attempts:
        return GiveUp(Outcome.UNREACHABLE)
    return RetryAt(noticed_at + policy.interval)


def decide_callback(
    policy: RetryPolicy,
    callbacks_used: int,
    answered_at: dt.datetime,
    requested_at: dt.datetime | None = None,
) -> Decision:
    """The resident answered and asked to be called later.

    ``callbacks_used`` counts earlier callback requests of this case (not this one). Within
    ``max_callbacks`` the call is repeated at ``requested_at`` (a time the resident named, if it
    is after the answer) or else ``callback_delay`` after the answer. Past the budget the case
    settles as ``callback`` and an official follows up.
    """
    if callbacks_used >= policy.max_callbacks:
        return GiveUp(Outcome.CALLBACK)
    at = answered_at + policy.callback_delay
    if requested_at is not None and requested_at > answered_at:
        at = requested_at
    return RetryAt(at)


def doubling_backoff(initial_s: float, max_s: float, attempts: int) -> dt.timedelta:
    """The wait before attempt ``attempts + 1`` of a delivery (SMS outbox, webhooks): initial,
    2x, 4x ... capped at ``max_s``."""
    return dt.timedelta(seconds=min(max_s, initial_s * 2 ** max(0, attempts - 1)))
