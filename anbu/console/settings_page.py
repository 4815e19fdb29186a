"""설정: what an official may change from the console (their own password and SMS number),
and what a district admin may change (the calling programmes' hours and retries).

Every check answers in Korean (:class:`SettingsRefusedError`); nothing is stored unless the
whole form is right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.console import accounts
from anbu.db.models_console import ConsoleAccount
from anbu.db.models_escalation import Official
from anbu.db.models_scheduling import Program
from anbu.domain.phone import mask_phone, normalize_mobile
from anbu.errors import InvalidPhoneNumberError, ValidationError

_HHMM = re.compile(r"^([01]?[0-9]|2[0-4]):([0-5][0-9])$")
MAX_ATTEMPTS = 5
INTERVAL_MIN, INTERVAL_MAX = 1, 240  # minutes between retries


class SettingsRefusedError(ValueError):
    """The form cannot be stored; the message is the Korean text the page shows."""


@dataclass
class ProgramRow:
    id: int
    name: str
    start: str
    end: str
    max_attempts: int
    interval_min: int
    is_default: bool


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_hhmm(text: str, what: str) -> int:
    """'09:30' -> 570; '24:00' is the end of the day. ``what`` is the field's name with its
    Korean particle ("시작 시각은")."""
    match = _HHMM.match(text.strip())
    if match is None:
        raise SettingsRefusedError(f"{what} 09:00처럼 시:분으로 쓰세요.")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > 24 * 60:
        raise SettingsRefusedError(f"{what} 24:00을 넘을 수 없습니다.")
    return minutes


def _int(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SettingsRefusedError(f"{what} 숫자로 쓰세요.") from None
    if not low <= value <= high:
        raise SettingsRefusedError(f"{what} {low}에서 {high} 사이여야 합니다.")
    return value


async def programs(session: AsyncSession) -> list[ProgramRow]:
    rows = (await session.execute(select(Program).order_by(Program.id))).scalars()
    return [
        ProgramRow(
            p.id,
            p.name,
            hhmm(p.start_min),
            hhmm(p.end_min),
            p.max_attempts,
            p.interval_s // 60,
            p.is_default,
        )
        for p in rows
    ]


async def update_program(session: AsyncSession, program_id: str, form: dict[str, str]) -> Program:
    try:
        program = await session.get(Program, int(program_id))
    except ValueError:
        program = None
    if program is None:
        raise SettingsRefusedError("프로그램을 찾을 수 없습니다.")
    start = parse_hhmm(form.get("start", ""), "시작 시각은")
    end = parse_hhmm(form.get("end", ""), "끝 시각은")
    if end <= start:
        raise SettingsRefusedError("끝 시각은 시작 시각보다 늦어야 합니다.")
    attempts = _int(form.get("max_attempts", ""), "시도 횟수는", 1, MAX_ATTEMPTS)
    interval = _int(form.get("interval_min", ""), "재시도 간격(분)은", INTERVAL_MIN, INTERVAL_MAX)
    program.start_min, program.end_min = start, end
    program.max_attempts, program.interval_s = attempts, interval * 60
    await session.flush()
    return program


async def my_phone(session: AsyncSession, account: ConsoleAccount) -> str:
    """The SMS number of the directory official this account is (masked), '' if none."""
    if account.official_id is None:
        return ""
    official = await session.get(Official, account.official_id)
    return mask_phone(official.phone) if official else ""


async def change_phone(session: AsyncSession, account: ConsoleAccount, raw: str) -> Official:
    if account.official_id is None:
        raise SettingsRefusedError("알림 명단에 연결되지 않은 계정입니다.")
    official = await session.get(Official, account.official_id)
    if official is None:
        raise SettingsRefusedError("알림 명단에 연결되지 않은 계정입니다.")
    try:
        official.phone = normalize_mobile(raw)
    except InvalidPhoneNumberError:
        raise SettingsRefusedError("문자를 받을 수 있는 휴대전화 번호를 쓰세요.") from None
    await session.flush()
    return official


async def change_password(
    session: AsyncSession, account: ConsoleAccount, form: dict[str, str]
) -> None:
    if account.password_hash is None or not await accounts.verify_password(
        account.password_hash, form.get("current", "")
    ):
        raise SettingsRefusedError("지금 비밀번호가 틀립니다.")
    new = form.get("new", "")
    if new != form.get("new2", ""):
        raise SettingsRefusedError("새 비밀번호 두 개가 다릅니다.")
    try:
        account.password_hash = await accounts.hash_password(new)
    except ValidationError:
        raise SettingsRefusedError(
            f"새 비밀번호는 {accounts.MIN_PASSWORD}자 이상 200자 이하여야 합니다."
        ) from None
    await session.flush()
