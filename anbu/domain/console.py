"""The officials' console's rules, pure: roles and what each may see, the lockout, the idle
timeout, masking a phone number. Time comes in as an argument."""

from __future__ import annotations

import datetime as dt
import enum

MAX_FAILED_LOGINS = 5  # the fifth wrong password in a row locks the account
IDLE_TIMEOUT = dt.timedelta(minutes=30)
SESSION_MAX_AGE = dt.timedelta(hours=12)  # a session ends after a working day whatever its use
INVITE_VALID = dt.timedelta(days=7)


class ConsoleRole(enum.StrEnum):
    OFFICIAL = "official"  # 담당 공무원: own district (and dong, when the account names one)
    DISTRICT_ADMIN = "district_admin"  # 구 관리자: the whole district, invites officials
    ANALYST = "analyst"  # 재단 분석가: every district, read-only, no names or numbers


ROLE_LABELS: dict[ConsoleRole, str] = {
    ConsoleRole.OFFICIAL: "담당 공무원",
    ConsoleRole.DISTRICT_ADMIN: "구 관리자",
    ConsoleRole.ANALYST: "재단 분석가",
}


def sees_names(role: ConsoleRole) -> bool:
    """Analysts read figures, never who they are about."""
    return role is not ConsoleRole.ANALYST


def may_act(role: ConsoleRole) -> bool:
    """Acknowledge, record a finding, reveal a number: not for read-only analysts."""
    return role is not ConsoleRole.ANALYST


def locks_after(failed_logins: int) -> bool:
    """True when this many wrong passwords in a row lock the account."""
    return failed_logins >= MAX_FAILED_LOGINS


def session_expired(
    created_at: dt.datetime,
    last_seen_at: dt.datetime,
    now: dt.datetime,
    idle: dt.timedelta = IDLE_TIMEOUT,
    max_age: dt.timedelta = SESSION_MAX_AGE,
) -> bool:
    """A session ends when idle for ``idle`` or older than ``max_age``."""
    return now - last_seen_at >= idle or now - created_at >= max_age


def time_left(due: dt.datetime | None, now: dt.datetime) -> str:
    """The acknowledgement clock in words: "7분 30초 남음", "3분 초과", "" without a clock."""
    if due is None:
        return ""
    seconds = int((due - now).total_seconds())
    words = f"{abs(seconds) // 60}분 {abs(seconds) % 60}초"
    return f"{words} 남음" if seconds >= 0 else f"{words} 초과"


HANDOVER_ARROW = " → "
HANDOVER_NOTE = " · "


def handover_detail(giver: str, taker: str, note: str = "") -> str:
    """The timeline's line for a hand-over: who passed the incident to whom, and why."""
    text = f"{giver}{HANDOVER_ARROW}{taker}"
    return f"{text}{HANDOVER_NOTE}{note}" if note else text


def handover_taker(detail: str) -> str:
    """Who holds the incident after the hand-over ``detail`` (written by handover_detail)."""
    taker = detail.split(HANDOVER_ARROW, 1)[-1]
    return taker.split(HANDOVER_NOTE, 1)[0]
