"""Calling hours as tables: local windows, weekdays, Korean public holidays, holds, do-not-call,
and what a severe case may override. Time passed in, results in UTC."""

from __future__ import annotations

import datetime as dt

import pytest

from anbu.domain.calling_hours import (
    ALL_DAYS,
    END_OF_DAY,
    HOLIDAY_YEARS,
    KOREAN_PUBLIC_HOLIDAYS,
    Blocked,
    CallingWindow,
    Hold,
    ResidentHours,
    blocked_reason,
    holiday_name,
    is_allowed,
    next_allowed,
    resolve_window,
)

KST = dt.timezone(dt.timedelta(hours=9))


def kst(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=KST).astimezone(dt.UTC)


DEFAULT = CallingWindow()  # Mon-Fri 09-18, no holidays; severe any day 07-22
EVERY_DAY = CallingWindow(
    start=dt.time(10), end=dt.time(20), weekdays=ALL_DAYS, call_on_holidays=True
)


@pytest.mark.parametrize(
    ("now", "window", "severe", "expected"),
    [
        # inside the window: now
        (kst(2026, 11, 25, 10), DEFAULT, False, kst(2026, 11, 25, 10)),
        # before opening: same day's opening
        (kst(2026, 11, 25, 6, 30), DEFAULT, False, kst(2026, 11, 25, 9)),
        # end is exclusive: 18:00 on Wednesday -> Thursday 09:00
        (kst(2026, 11, 25, 18), DEFAULT, False, kst(2026, 11, 26, 9)),
        # Friday evening -> Monday morning
        (kst(2026, 11, 27, 19), DEFAULT, False, kst(2026, 11, 30, 9)),
        # Saturday noon, every-day window: now
        (kst(2026, 11, 28, 12), EVERY_DAY, False, kst(2026, 11, 28, 12)),
        # 설날 2026 (Mon-Wed 16-18 Feb) -> Thursday 19 Feb
        (kst(2026, 2, 16, 10), DEFAULT, False, kst(2026, 2, 19, 9)),
        # 추석 2026 Thu 24 - Sat 26 Sep -> Monday 28 Sep
        (kst(2026, 9, 23, 18, 30), DEFAULT, False, kst(2026, 9, 28, 9)),
        # 부처님오신날 substitute Monday 25 May 2026 -> Tuesday
        (kst(2026, 5, 25, 9), DEFAULT, False, kst(2026, 5, 26, 9)),
        # 설날 2027 (Sat 6 - Mon 8 Feb) + substitute Tue 9 Feb -> Wednesday 10 Feb
        (kst(2027, 2, 5, 18), DEFAULT, False, kst(2027, 2, 10, 9)),
        # 성탄절 2027 substitute Monday 27 Dec -> Tuesday
        (kst(2027, 12, 24, 18), DEFAULT, False, kst(2027, 12, 28, 9)),
        # holidays allowed: 추석 itself is a calling day
        (kst(2026, 9, 25, 11), EVERY_DAY, False, kst(2026, 9, 25, 11)),
        # severe: Saturday 08:00 allowed (any day, 07-22)
        (kst(2026, 11, 28, 8), DEFAULT, True, kst(2026, 11, 28, 8)),
        # severe: on 설날 at 21:59 allowed
        (kst(2026, 2, 17, 21, 59), DEFAULT, True, kst(2026, 2, 17, 21, 59)),
        # severe: 23:00 -> next day 07:00 (night stays quiet)
        (kst(2026, 11, 28, 23), DEFAULT, True, kst(2026, 11, 29, 7)),
        # midnight-inclusive window ends at 24:00
        (
            kst(2026, 11, 25, 23, 59),
            CallingWindow(start=dt.time(0), end=END_OF_DAY, weekdays=ALL_DAYS),
            False,
            kst(2026, 11, 25, 23, 59),
        ),
    ],
)
def test_given_window_when_asking_next_allowed_then_table_holds(
    now: dt.datetime, window: CallingWindow, severe: bool, expected: dt.datetime
) -> None:
    assert next_allowed(now, window, severe=severe) == expected


def test_given_resident_hours_when_resolved_then_they_replace_program_hours_not_severe() -> None:
    resident = ResidentHours(start=dt.time(14), end=dt.time(16), weekdays=frozenset({1, 3}))
    window = resolve_window(DEFAULT, resident)
    # Wednesday 10:00 -> Thursday 14:00 (resident only Tue/Thu 14-16)
    assert next_allowed(kst(2026, 11, 25, 10), window) == kst(2026, 11, 26, 14)
    # severe keeps the program's severe window, overriding the resident's narrower hours
    assert next_allowed(kst(2026, 11, 25, 10), window, severe=True) == kst(2026, 11, 25, 10)


@pytest.mark.parametrize("severe", [False, True])
def test_given_hold_when_asking_then_call_waits_for_hold_end_even_if_severe(severe: bool) -> None:
    hold = Hold(kst(2026, 11, 24), kst(2026, 11, 26, 12), "입원")
    window = resolve_window(EVERY_DAY, holds=(hold,))
    assert next_allowed(kst(2026, 11, 25, 10), window, severe=severe) == kst(2026, 11, 26, 12)


def test_given_hold_ending_after_hours_when_asking_then_next_window_opening() -> None:
    hold = Hold(kst(2026, 11, 24), kst(2026, 11, 25, 21))
    window = resolve_window(EVERY_DAY, holds=(hold,))
    assert next_allowed(kst(2026, 11, 25, 10), window) == kst(2026, 11, 26, 10)


def test_given_back_to_back_holds_when_asking_then_both_are_skipped() -> None:
    holds = (
        Hold(kst(2026, 11, 24), kst(2026, 11, 25, 12)),
        Hold(kst(2026, 11, 25, 12), kst(2026, 11, 25, 15)),
    )
    window = resolve_window(EVERY_DAY, holds=holds)
    assert next_allowed(kst(2026, 11, 25, 10), window) == kst(2026, 11, 25, 15)


def test_given_future_hold_when_now_is_before_it_then_now_is_allowed() -> None:
    window = resolve_window(EVERY_DAY, holds=(Hold(kst(2026, 12, 1)),))
    assert next_allowed(kst(2026, 11, 25, 10), window) == kst(2026, 11, 25, 10)


@pytest.mark.parametrize(
    ("window", "severe", "reason"),
    [
        (resolve_window(DEFAULT, do_not_call=True), False, Blocked.DO_NOT_CALL),
        (resolve_window(DEFAULT, do_not_call=True), True, Blocked.DO_NOT_CALL),
        (resolve_window(DEFAULT, holds=(Hold(kst(2026, 1, 1)),)), True, Blocked.OPEN_HOLD),
        (CallingWindow(weekdays=frozenset()), False, Blocked.NO_CALLING_DAYS),
    ],
)
def test_given_blocking_rule_when_asking_then_never_and_reason_says_why(
    window: CallingWindow, severe: bool, reason: Blocked
) -> None:
    now = kst(2026, 11, 25, 10)
    assert next_allowed(now, window, severe=severe) is None
    assert blocked_reason(now, window, severe=severe) is reason


def test_given_no_calling_days_when_severe_then_severe_may_still_call() -> None:
    window = CallingWindow(weekdays=frozenset())
    assert next_allowed(kst(2026, 11, 25, 10), window, severe=True) == kst(2026, 11, 25, 10)


@pytest.mark.parametrize(
    ("at", "allowed"),
    [
        (kst(2026, 11, 25, 8, 59), False),
        (kst(2026, 11, 25, 9), True),
        (kst(2026, 11, 25, 17, 59), True),
        (kst(2026, 11, 25, 18), False),
        (kst(2026, 11, 28, 12), False),  # Saturday
        (kst(2026, 10, 5, 12), False),  # 개천절 substitute holiday
    ],
)
def test_given_instant_when_is_allowed_then_table_holds(at: dt.datetime, allowed: bool) -> None:
    assert is_allowed(at, DEFAULT) is allowed


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (dt.date(2026, 2, 17), "설날"),
        (dt.date(2026, 9, 25), "추석"),
        (dt.date(2026, 5, 24), "부처님오신날"),
        (dt.date(2026, 5, 25), "부처님오신날 대체공휴일"),
        (dt.date(2027, 2, 9), "설날 대체공휴일"),
        (dt.date(2027, 5, 13), "부처님오신날"),
        (dt.date(2027, 9, 15), "추석"),
        (dt.date(2027, 10, 11), "한글날 대체공휴일"),
        (dt.date(2026, 11, 25), None),
    ],
)
def test_given_date_when_looking_up_holiday_then_table_holds(
    day: dt.date, name: str | None
) -> None:
    assert holiday_name(day) == name


def test_given_holiday_table_then_it_covers_2026_and_2027_with_substitutes_on_weekdays() -> None:
    assert {2026, 2027} == HOLIDAY_YEARS
    for day, name in KOREAN_PUBLIC_HOLIDAYS.items():
        if "대체" in name:
            assert day.weekday() < 5, (day, name)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": dt.time(18), "end": dt.time(9)},
        {"severe_start": dt.time(22), "severe_end": dt.time(7)},
        {"weekdays": frozenset({7})},
    ],
)
def test_given_nonsense_window_when_built_then_it_refuses(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"window|weekdays"):
        CallingWindow(**kwargs)  # type: ignore[arg-type]


def test_given_naive_time_when_asking_then_it_refuses() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_allowed(dt.datetime(2026, 11, 25, 10), DEFAULT)
