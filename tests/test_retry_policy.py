"""Retry policy as tables: result x attempts -> retry time or final outcome. Time passed in."""

from __future__ import annotations

import datetime as dt

import pytest

from anbu.domain.calls import CallResult
from anbu.domain.checkin import Outcome
from anbu.domain.retry import (
    GiveUp,
    RetryAt,
    RetryPolicy,
    decide_callback,
    decide_lost,
    decide_retry,
)

DIALED = dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC)
POLICY = RetryPolicy(
    max_attempts=3,
    interval=dt.timedelta(minutes=10),
    busy_interval=dt.timedelta(minutes=3),
    failure_interval=dt.timedelta(minutes=2),
    max_callbacks=1,
    callback_delay=dt.timedelta(hours=1),
)
M = dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("result", "dialed", "expected"),
    [
        (CallResult.NO_ANSWER, 1, RetryAt(DIALED + 10 * M)),
        (CallResult.NO_ANSWER, 2, RetryAt(DIALED + 10 * M)),
        (CallResult.NO_ANSWER, 3, GiveUp(Outcome.UNREACHABLE)),
        (CallResult.BUSY, 1, RetryAt(DIALED + 3 * M)),
        (CallResult.BUSY, 3, GiveUp(Outcome.UNREACHABLE)),
        (CallResult.FAILED, 1, RetryAt(DIALED + 2 * M)),
        (CallResult.CONGESTION, 2, RetryAt(DIALED + 2 * M)),
        (CallResult.REJECTED, 1, GiveUp(Outcome.DECLINED)),
        (CallResult.INVALID_NUMBER, 1, GiveUp(Outcome.INVALID_NUMBER)),
        (CallResult.UNREACHABLE, 1, RetryAt(DIALED + 10 * M)),
        (CallResult.UNREACHABLE, 3, GiveUp(Outcome.UNREACHABLE)),
        (CallResult.NETWORK_FAILURE, 1, RetryAt(DIALED + 2 * M)),
        (CallResult.REJECTED, 3, GiveUp(Outcome.DECLINED)),
        # A voicemail box or an answering machine: as if nobody answered.
        (CallResult.VOICEMAIL, 1, RetryAt(DIALED + 10 * M)),
        (CallResult.VOICEMAIL, 2, RetryAt(DIALED + 10 * M)),
        (CallResult.VOICEMAIL, 3, GiveUp(Outcome.UNREACHABLE)),
        (CallResult.MACHINE, 1, RetryAt(DIALED + 10 * M)),
        (CallResult.MACHINE, 3, GiveUp(Outcome.UNREACHABLE)),
    ],
)
def test_given_unanswered_result_when_deciding_then_table_holds(
    result: CallResult, dialed: int, expected: RetryAt | GiveUp
) -> None:
    assert decide_retry(POLICY, result, dialed, DIALED) == expected


def test_given_answered_result_when_deciding_retry_then_it_refuses() -> None:
    with pytest.raises(ValueError, match="answered"):
        decide_retry(POLICY, CallResult.ANSWERED, 1, DIALED)


def test_given_busy_when_compared_with_no_answer_then_busy_is_retried_sooner() -> None:
    busy = decide_retry(POLICY, CallResult.BUSY, 1, DIALED)
    silent = decide_retry(POLICY, CallResult.NO_ANSWER, 1, DIALED)
    assert isinstance(busy, RetryAt)
    assert isinstance(silent, RetryAt)
    assert busy.at < silent.at


def test_given_dial_time_when_deciding_then_clock_starts_at_dial_not_queue() -> None:
    queued = DIALED - dt.timedelta(hours=2)  # waited two hours for a free channel
    decision = decide_retry(POLICY, CallResult.NO_ANSWER, 1, DIALED)
    assert decision == RetryAt(DIALED + POLICY.interval)
    assert decision != RetryAt(queued + POLICY.interval)


@pytest.mark.parametrize(
    ("dialed", "expected"),
    [
        (1, RetryAt(DIALED + 10 * M)),
        (2, RetryAt(DIALED + 10 * M)),
        (3, GiveUp(Outcome.UNREACHABLE)),
    ],
)
def test_given_lost_attempt_when_deciding_then_it_counts_and_waits_a_full_interval(
    dialed: int, expected: RetryAt | GiveUp
) -> None:
    assert decide_lost(POLICY, dialed, DIALED) == expected


@pytest.mark.parametrize(
    ("used", "requested", "expected"),
    [
        (0, None, RetryAt(DIALED + dt.timedelta(hours=1))),
        (0, DIALED + dt.timedelta(hours=3), RetryAt(DIALED + dt.timedelta(hours=3))),
        (0, DIALED - dt.timedelta(hours=3), RetryAt(DIALED + dt.timedelta(hours=1))),
        (1, None, GiveUp(Outcome.CALLBACK)),
    ],
)
def test_given_call_me_later_when_deciding_then_callback_is_scheduled_within_budget(
    used: int, requested: dt.datetime | None, expected: RetryAt | GiveUp
) -> None:
    assert decide_callback(POLICY, used, DIALED, requested) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_callbacks": -1},
        {"interval": dt.timedelta(seconds=-1)},
    ],
)
def test_given_nonsense_settings_when_policy_built_then_it_refuses(
    kwargs: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match=r"must be|cannot"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_given_policy_when_asking_max_dials_then_attempts_plus_callbacks() -> None:
    assert POLICY.max_dials == 4
    assert RetryPolicy(max_attempts=2, max_callbacks=0).max_dials == 2
