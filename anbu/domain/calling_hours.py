"""Calling hours: when a resident may be dialed, and the next moment that is allowed.

Pure: every function takes the time it reasons about; nothing here reads a clock.

Rules (per program, narrowed or replaced per resident):

- A daily window in local time (Asia/Seoul by default), ``start`` inclusive, ``end`` exclusive.
- Allowed weekdays (Monday = 0 ... Sunday = 6) and whether public holidays are calling days.
- Holds: periods when the resident asked not to be called or is known to be away (hospital,
  travel). A hold without an end is open-ended.
- Do-not-call: the resident (or the number) must never be dialed by the system.

What a 심각 (severe) case may override -- the documented rule:

- It MAY ignore the weekday list and public holidays (a crisis does not wait for Monday), and it
  uses the program's *severe window* (default 07:00-22:00 local) instead of the normal daily
  window and instead of a resident's narrower preferred hours.
- It may NOT override do-not-call (the resident's refusal is binding: the case goes straight to
  an official instead, see :func:`blocked_reason`), nor a hold (the resident is known to be
  elsewhere; the call waits for the end of the hold, and an open-ended hold blocks like
  do-not-call so the official is told at once).
- A program may widen the severe window to the whole day (00:00-24:00) if its officials agree
  that waking a resident is acceptable; the default keeps night hours quiet.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SEOUL_TZ_NAME = "Asia/Seoul"
ALL_DAYS: frozenset[int] = frozenset(range(7))
WEEKDAYS: frozenset[int] = frozenset(range(5))
END_OF_DAY = dt.time(23, 59, 59, 999999)  # stands for 24:00 (end is exclusive)

# Korean public holidays (관공서의 공휴일에 관한 규정), 2026-2027, including the lunar ones
# (설날, 부처님오신날, 추석), election days and substitute holidays (대체공휴일: 설/추석/어린이날
# when they fall on Sunday or another holiday; 국경일, 부처님오신날 and 성탄절 on Saturday or
# Sunday). 제헌절 is a public holiday again from 2026 and 노동절 (May 1) from 2026.
# Cross-checked against the ``holidays`` package 0.108 (KR). Extend the table every year: a
# date outside the covered years is treated as an ordinary day (see :func:`holiday_name`).
KOREAN_PUBLIC_HOLIDAYS: dict[dt.date, str] = {
    dt.date(2026, 1, 1): "신정",
    dt.date(2026, 2, 16): "설날 전날",
    dt.date(2026, 2, 17): "설날",
    dt.date(2026, 2, 18): "설날 다음날",
    dt.date(2026, 3, 1): "삼일절",
    dt.date(2026, 3, 2): "삼일절 대체공휴일",
    dt.date(2026, 5, 1): "노동절",
    dt.date(2026, 5, 5): "어린이날",
    dt.date(2026, 5, 24): "부처님오신날",
    dt.date(2026, 5, 25): "부처님오신날 대체공휴일",
    dt.date(2026, 6, 3): "전국동시지방선거일",
    dt.date(2026, 6, 6): "현충일",
    dt.date(2026, 7, 17): "제헌절",
    dt.date(2026, 8, 15): "광복절",
    dt.date(2026, 8, 17): "광복절 대체공휴일",
    dt.date(2026, 9, 24): "추석 전날",
    dt.date(2026, 9, 25): "추석",
    dt.date(2026, 9, 26): "추석 다음날",
    dt.date(2026, 10, 3): "개천절",
    dt.date(2026, 10, 5): "개천절 대체공휴일",
    dt.date(2026, 10, 9): "한글날",
    dt.date(2026, 12, 25): "성탄절",
    dt.date(2027, 1, 1): "신정",
    dt.date(2027, 2, 6): "설날 전날",
    dt.date(2027, 2, 7): "설날",
    dt.date(2027, 2, 8): "설날 다음날",
    dt.date(2027, 2, 9): "설날 대체공휴일",
    dt.date(2027, 3, 1): "삼일절",
    dt.date(2027, 5, 1): "노동절",
    dt.date(2027, 5, 3): "노동절 대체공휴일",
    dt.date(2027, 5, 5): "어린이날",
    dt.date(2027, 5, 13): "부처님오신날",
    dt.date(2027, 6, 6): "현충일",
    dt.date(2027, 7, 17): "제헌절",
    dt.date(2027, 7, 19): "제헌절 대체공휴일",
    dt.date(2027, 8, 15): "광복절",
    dt.date(2027, 8, 16): "광복절 대체공휴일",
    dt.date(2027, 9, 14): "추석 전날",
    dt.date(2027, 9, 15): "추석",
    dt.date(2027, 9, 16): "추석 다음날",
    dt.date(2027, 10, 3): "개천절",
    dt.date(2027, 10, 4): "개천절 대체공휴일",
    dt.date(2027, 10, 9): "한글날",
    dt.date(2027, 10, 11): "한글날 대체공휴일",
    dt.date(2027, 12, 25): "성탄절",
    dt.date(2027, 12, 27): "성탄절 대체공휴일",
}
HOLIDAY_YEARS = frozenset(d.year for d in KOREAN_PUBLIC_HOLIDAYS)


def holiday_name(day: dt.date) -> str | None:
    """The public holiday on ``day`` (local date), or None. Years outside the table: None."""
    return KOREAN_PUBLIC_HOLIDAYS.get(day)


def zone(name: str) -> dt.tzinfo:
    """The named time zone. Korea has had no DST since 1988, so a fixed +09:00 stands in for
    Asia/Seoul on a machine without tz data."""
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        if name == SEOUL_TZ_NAME:
            return dt.timezone(dt.timedelta(hours=9), "KST")
        raise


@dataclass(frozen=True, slots=True)
class Hold:
    """No calls from ``starts_at`` until ``ends_at`` (exclusive); ``ends_at=None``: open-ended."""

    starts_at: dt.datetime
    ends_at: dt.datetime | None = None
    reason: str = ""

    def covers(self, at: dt.datetime) -> bool:
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """When calls are allowed. ``end`` is exclusive; ``END_OF_DAY`` stands for 24:00.

    Defaults: weekdays 09:00-18:00, not on public holidays (the hours when a dong official can
    follow up an unanswered call); severe cases any day 07:00-22:00.
    """

    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(18, 0)
    weekdays: frozenset[int] = WEEKDAYS
    call_on_holidays: bool = False
    tz: str = SEOUL_TZ_NAME
    severe_start: dt.time = dt.time(7, 0)
    severe_end: dt.time = dt.time(22, 0)
    do_not_call: bool = False
    holds: tuple[Hold, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError("calling window start must be before its end (no overnight windows)")
        if not self.severe_start < self.severe_end:
            raise ValueError("severe window start must be before its end")
        if not self.weekdays <= ALL_DAYS:
            raise ValueError("weekdays are 0 (Monday) .. 6 (Sunday)")


@dataclass(frozen=True, slots=True)
class ResidentHours:
    """A resident's own preferences; ``None`` fields keep the program's value."""

    start: dt.time | None = None
    end: dt.time | None = None
    weekdays: frozenset[int] | None = None
    call_on_holidays: bool | None = None
    tz: str | None = None


def resolve_window(
    program: CallingWindow,
    resident: ResidentHours | None = None,
    *,
    holds: tuple[Hold, ...] = (),
    do_not_call: bool = False,
) -> CallingWindow:
    """The window that applies to one resident: the program's, with the resident's overrides,
    holds and do-not-call added. The severe window always stays the program's."""
    r = resident or ResidentHours()
    return CallingWindow(
        start=r.start if r.start is not None else program.start,
        end=r.end if r.end is not None else program.end,
        weekdays=r.weekdays if r.weekdays is not None else program.weekdays,
        call_on_holidays=(
            r.call_on_holidays if r.call_on_holidays is not None else program.call_on_holidays
        ),
        tz=r.tz or program.tz,
        severe_start=program.severe_start,
        severe_end=program.severe_end,
        do_not_call=program.do_not_call or do_not_call,
        holds=program.holds + holds,
    )


class Blocked(enum.StrEnum):
    """Why a resident can never be dialed under a window (the case goes to an official)."""

    DO_NOT_CALL = "do_not_call"
    OPEN_HOLD = "open_hold"
    NO_CALLING_DAYS = "no_calling_days"


def _day_open(day: dt.date, window: CallingWindow, severe: bool) -> bool:
    if severe:
        return True
    if day.weekday() not in window.weekdays:
        return False
    return window.call_on_holidays or holiday_name(day) is None


def _bounds(
    day: dt.date, window: CallingWindow, severe: bool, tz: dt.tzinfo
) -> tuple[dt.datetime, dt.datetime]:
    start, end = (window.severe_start, window.severe_end) if severe else (window.start, window.end)
    lo = dt.datetime.combine(day, start, tz)
    hi = (
        dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz)
        if end == END_OF_DAY
        else dt.datetime.combine(day, end, tz)
    )
    return lo, hi


def _next_in_days(
    at: dt.datetime, window: CallingWindow, severe: bool, horizon_days: int
) -> dt.datetime | None:
    tz = zone(window.tz)
    local = at.astimezone(tz)
    for offset in range(horizon_days + 1):
        day = local.date() + dt.timedelta(days=offset)
        if not _day_open(day, window, severe):
            continue
        lo, hi = _bounds(day, window, severe, tz)
        candidate = max(local, lo)
        if candidate < hi:
            return candidate.astimezone(dt.UTC)
    return None


def blocked_reason(
    now: dt.datetime, window: CallingWindow, *, severe: bool = False
) -> Blocked | None:
    """Why ``window`` will never allow a call from ``now`` on, or None if it will some day."""
    if window.do_not_call:
        return Blocked.DO_NOT_CALL
    if any(h.ends_at is None and h.starts_at <= now for h in window.holds):
        return Blocked.OPEN_HOLD
    if not severe and not window.weekdays:
        return Blocked.NO_CALLING_DAYS
    return None


def next_allowed(
    now: dt.datetime,
    window: CallingWindow,
    *,
    severe: bool = False,
    horizon_days: int = 400,
) -> dt.datetime | None:
    """The first moment at or after ``now`` when a call is allowed, in UTC; None if never.

    ``now`` itself is returned when calling is allowed right now. A retry that the policy wants
    at ``t`` is dialed at ``next_allowed(t, window)``: a slot outside the hours moves to the
    opening of the next allowed day, a slot inside a hold to the hold's end (then re-checked).
    """
    if now.tzinfo is None:
        raise ValueError("next_allowed needs an aware datetime")
    if blocked_reason(now, window, severe=severe) is not None:
        return None
    at = now
    # Each turn either returns or jumps past one hold; holds are finite, so this ends.
    for _ in range(len(window.holds) + 2):
        candidate = _next_in_days(at, window, severe, horizon_days)
        if candidate is None:
            return None
        hold = next((h for h in window.holds if h.covers(candidate)), None)
        if hold is None:
            return candidate
        if hold.ends_at is None:
            return None
        at = hold.ends_at
    return None


def is_allowed(at: dt.datetime, window: CallingWindow, *, severe: bool = False) -> bool:
    """Whether a call may start at ``at``."""
    return next_allowed(at, window, severe=severe) == at.astimezone(dt.UTC)
