"""The console's pure rules, table-driven: the acknowledgement clock in words, the session's
idle and absolute timeouts, the lockout count, what each role may see and do."""

from __future__ import annotations

import datetime as dt

import pytest

from anbu.domain.console import (
    IDLE_TIMEOUT,
    SESSION_MAX_AGE,
    ConsoleRole,
    locks_after,
    may_act,
    sees_names,
    session_expired,
    time_left,
)

T = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        (None, ""),
        (T + 450 * S, "7분 30초 남음"),
        (T, "0분 0초 남음"),
        (T - 180 * S, "3분 0초 초과"),
        (T - 61 * S, "1분 1초 초과"),
    ],
)
def test_given_a_due_time_then_the_clock_reads(due: dt.datetime | None, expected: str) -> None:
    assert time_left(due, T) == expected


@pytest.mark.parametrize(
    ("created", "seen", "expired"),
    [
        (T, T, False),
        (T, T + IDLE_TIMEOUT - S, False),
        (T, T + IDLE_TIMEOUT, False),  # seen just now: not idle
        (T - SESSION_MAX_AGE + S, T, False),
        (T - SESSION_MAX_AGE, T, True),  # a working day is the most a session lasts
    ],
)
def test_given_a_session_then_expiry(
    created: dt.datetime, seen: dt.datetime, expired: bool
) -> None:
    assert session_expired(created, seen, seen) is expired


def test_given_an_idle_session_then_it_expires_at_the_idle_timeout() -> None:
    assert not session_expired(T, T, T + IDLE_TIMEOUT - S)
    assert session_expired(T, T, T + IDLE_TIMEOUT)


@pytest.mark.parametrize(("failed", "locked"), [(0, False), (4, False), (5, True), (6, True)])
def test_given_wrong_passwords_in_a_row_then_the_fifth_locks(failed: int, locked: bool) -> None:
    assert locks_after(failed) is locked


@pytest.mark.parametrize(
    ("role", "names", "acts"),
    [
        (ConsoleRole.OFFICIAL, True, True),
        (ConsoleRole.DISTRICT_ADMIN, True, True),
        (ConsoleRole.ANALYST, False, False),
    ],
)
def test_given_a_role_then_what_it_sees_and_does(
    role: ConsoleRole, names: bool, acts: bool
) -> None:
    assert sees_names(role) is names
    assert may_act(role) is acts
