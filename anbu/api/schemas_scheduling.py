"""Request and response bodies of the scheduling API: programs, a resident's schedule, call
holds, do-not-call, routine check-ins.

Times of day travel as ``"HH:MM"`` local time (``"24:00"`` allowed as the end of a window);
weekdays as numbers 0 (Monday) .. 6 (Sunday) or names (``"mon"``, ``"monday"``, ``"월"``,
``"월요일"``) and come back as numbers. Time zones are IANA names (``"Asia/Seoul"``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from anbu.api.deps import MAX_ROW_ID
from anbu.api.strict import IsoDatetime, StrictBool, StrictInt, Timestamp
from anbu.domain.calling_hours import SEOUL_TZ_NAME

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_KOREAN_NAMES = ("월", "화", "수", "목", "금", "토", "일")
_WEEKDAY_BY_NAME: dict[str, int] = {
    **{n: i for i, n in enumerate(WEEKDAY_NAMES)},
    **{n: i for i, n in enumerate(_FULL_NAMES)},
    **{n: i for i, n in enumerate(_KOREAN_NAMES)},
    **{f"{n}요일": i for i, n in enumerate(_KOREAN_NAMES)},
}


def hhmm_to_minutes(text: str) -> int:
    """``"HH:MM"`` -> minutes after midnight (``"24:00"`` -> 1440). Input already validated."""
    hour, minute = text.split(":")
    return int(hour) * 60 + int(minute)


def minutes_to_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _time_of_day(value: str) -> str:
    hour, sep, minute = value.partition(":")
    digits = hour + minute
    if not (sep and len(hour) == 2 and len(minute) == 2 and digits.isascii() and digits.isdigit()):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 24:00)")
    h, m = int(hour), int(minute)
    if not (m < 60 and (h < 24 or (h == 24 and m == 0))):
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 24:00)")
    return value


def _clock_time(value: str) -> str:
    if _time_of_day(value) == "24:00":
        raise ValueError("a call time must be 00:00 to 23:59")
    return value


def _weekday(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a weekday is 0 (Monday) .. 6 (Sunday) or a name such as 'mon'")
    if isinstance(value, int):
        if 0 <= value <= 6:
            return value
        raise ValueError(f"weekday {value} is out of range: 0 (Monday) .. 6 (Sunday)")
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isascii() and text.isdigit():
            return _weekday(int(text))
        day = _WEEKDAY_BY_NAME.get(text)
        if day is not None:
            return day
        raise ValueError(f"unknown weekday {value!r}: use 0-6 or mon, tue, ... sun")
    raise ValueError("a weekday is 0 (Monday) .. 6 (Sunday) or a name such as 'mon'")


def _weekday_set(days: list[int]) -> list[int]:
    return sorted(set(days))


TimeOfDay = Annotated[
    str, AfterValidator(_time_of_day), Field(examples=["09:00"], description="HH:MM local")
]
ClockTime = Annotated[str, AfterValidator(_clock_time), Field(examples=["10:30"])]


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" for c in word)


# What _weekday takes, said in the document (a name in any case, or the digit as text too).
_WEEKDAY_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 6},
        {
            "type": "string",
            "pattern": r"^\s*([0-6]|" + "|".join(_any_case(n) for n in WEEKDAY_NAMES) + r")\s*$",
        },
    ],
    "description": "0 = Monday .. 6 = Sunday, or mon .. sun",
}
Weekday = Annotated[
    int,
    BeforeValidator(_weekday),
    WithJsonSchema(_WEEKDAY_SCHEMA),
]
Weekdays = Annotated[
    list[Weekday],
    Field(min_length=1, max_length=7, examples=[[0, 1, 2, 3, 4]]),
    AfterValidator(_weekday_set),
]
TzName = Annotated[str, Field(min_length=1, max_length=64, examples=[SEOUL_TZ_NAME])]
Seconds = Annotated[StrictInt, Field(ge=1, le=86_400)]


# -- programs -----------------------------------------------------------------------------------


class RetryIn(BaseModel):
    """How often and how far apart a check-in is redialed. Defaults: the police "Are You OK?"
    pattern (3 tries about 10 minutes apart)."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: StrictInt = Field(default=3, ge=1, le=10, description="unanswered dials per case")
    interval_s: Seconds = Field(default=600, description="no answer: next dial this long after")
    busy_interval_s: Seconds = Field(default=180, description="busy: sooner (they are alive)")
    failure_interval_s: Seconds = Field(default=120, description="network or our side failed")
    max_callbacks: StrictInt = Field(default=1, ge=0, le=5, description="'call me later' redials")
    callback_delay_s: StrictInt = Field(default=3600, ge=1, le=7 * 86_400)


class RetryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_attempts: StrictInt | None = Field(default=None, ge=1, le=10)
    interval_s: Seconds | None = None
    busy_interval_s: Seconds | None = None
    failure_interval_s: Seconds | None = None
    max_callbacks: StrictInt | None = Field(default=None, ge=0, le=5)
    callback_delay_s: StrictInt | None = Field(default=None, ge=1, le=7 * 86_400)


class CallingHoursIn(BaseModel):
    """When calls may ring: ``start`` inclusive, ``end`` exclusive, no overnight windows.
    A 심각 (severe) case ignores weekdays and holidays and uses the severe window instead."""

    model_config = ConfigDict(extra="forbid")
    start: TimeOfDay = "09:00"
    end: TimeOfDay = "18:00"
    weekdays: Weekdays = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    call_on_holidays: StrictBool = False
    severe_start: TimeOfDay = "07:00"
    severe_end: TimeOfDay = "22:00"
    tz: TzName = SEOUL_TZ_NAME


class CallingHoursPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: TimeOfDay | None = None
    end: TimeOfDay | None = None
    weekdays: Weekdays | None = None
    call_on_holidays: StrictBool | None = None
    severe_start: TimeOfDay | None = None
    severe_end: TimeOfDay | None = None
    tz: TzName | None = None


class ProgramIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, examples=["관악구 안부확인"])
    district_code: str | None = Field(
        default=None,
        pattern=r"^[0-9]{5}$",
        description="the district whose own programme this is; null: a shared programme (every"
        " district may use it; administrators only)",
    )
    replaces_id: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_ROW_ID,
        description="a shared programme this district programme stands in for in its district:"
        " its residents on that programme follow this one (district programmes only)",
    )
    is_default: StrictBool = Field(
        default=False,
        description="residents without a program of their own use it: a district programme for"
        " its district, a shared one where the district has no default of its own",
    )
    retry: RetryIn = Field(default_factory=RetryIn)
    calling_hours: CallingHoursIn = Field(default_factory=CallingHoursIn)


class ProgramPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    is_default: StrictBool | None = None
    retry: RetryPatch | None = None
    calling_hours: CallingHoursPatch | None = None


class RetryOut(BaseModel):
    max_attempts: int
    interval_s: int
    busy_interval_s: int
    failure_interval_s: int
    max_callbacks: int
    callback_delay_s: int


class CallingHoursOut(BaseModel):
    start: str
    end: str
    weekdays: list[int]
    call_on_holidays: bool
    severe_start: str
    severe_end: str
    tz: str


class ProgramOut(BaseModel):
    id: int
    name: str
    district_code: str | None = Field(description="null: shared by every district")
    replaces_id: int | None
    is_default: bool
    retry: RetryOut
    calling_hours: CallingHoursOut
    created_at: Timestamp
    updated_at: Timestamp


# -- a resident's schedule ----------------------------------------------------------------------


class ScheduleIn(BaseModel):
    """A resident's programme and own hours. Every field left out (or null) keeps the
    programme's value; ``program_id`` null means the district's default programme (else the
    shared one). The programme must be shared or the resident's district's own; a shared one the
    district has its own version of is followed in that version. Replaces what was set."""

    model_config = ConfigDict(extra="forbid")
    program_id: StrictInt | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    start: TimeOfDay | None = None
    end: TimeOfDay | None = None
    weekdays: Weekdays | None = None
    call_on_holidays: StrictBool | None = None
    tz: TzName | None = None


class EffectiveScheduleOut(BaseModel):
    """What the dispatcher applies to this resident now."""

    program_id: int | None = Field(description="null: no programme exists, built-in defaults")
    program_name: str | None
    retry: RetryOut
    calling_hours: CallingHoursOut
    do_not_call: bool
    on_hold: bool = Field(description="a call hold covers this moment")
    blocked: str | None = Field(description="why no call can ever ring (an official is told)")
    next_allowed_at: Timestamp | None = Field(
        description="first moment an ordinary call may ring, holds and hours applied"
    )


class ScheduleOut(BaseModel):
    resident_id: str
    program_id: int | None
    start: str | None
    end: str | None
    weekdays: list[int] | None
    call_on_holidays: bool | None
    tz: str | None
    updated_at: Timestamp | None
    effective: EffectiveScheduleOut


# -- call holds ---------------------------------------------------------------------------------


class CallHoldIn(BaseModel):
    """No calls to the resident from ``starts_at`` (default: now) until ``ends_at``
    (exclusive; null: until the hold is lifted)."""

    model_config = ConfigDict(extra="forbid")
    starts_at: IsoDatetime | None = None
    ends_at: IsoDatetime | None = None
    reason: str = Field(min_length=1, max_length=200, examples=["입원 (3주)", "여행"])


class CallHoldOut(BaseModel):
    id: int
    resident_id: str
    starts_at: Timestamp
    ends_at: Timestamp | None
    reason: str
    active: bool = Field(description="the hold covers this moment")
    created_at: Timestamp


# -- do-not-call --------------------------------------------------------------------------------


class DoNotCallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=200, examples=["본인 거부 (2026-11-20 통화)"])


class DoNotCallOut(BaseModel):
    phone: str
    phone_masked: str
    reason: str
    created_at: Timestamp


class DoNotCallPage(BaseModel):
    items: list[DoNotCallOut]
    next_cursor: str | None


# -- routine check-ins --------------------------------------------------------------------------


class RoutineIn(BaseModel):
    """A standing weekly check-in call at the time the resident chose (their time zone)."""

    model_config = ConfigDict(extra="forbid")
    weekday: Weekday
    time: ClockTime


class RoutineOut(BaseModel):
    id: int
    resident_id: str
    weekday: int
    weekday_name: str
    time: str
    tz: str
    active: bool
    last_slot_at: Timestamp | None
    next_slot_at: Timestamp | None
    created_at: Timestamp
