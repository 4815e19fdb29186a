"""설정: what an official may change from the console (their own password and SMS number),
and what a district admin may change (their district's calling programmes' hours and retries).

A district admin sees the shared programmes and their district's own. Editing a shared one
edits the district's own version of it (created at the first edit, standing in for the shared
one in this district only: anbu.domain.program_scope), so another district's calls keep their
hours.

Every check answers in Korean (:class:`SettingsRefusedError`); nothing is stored unless the
whole form is right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.console import accounts
from anbu.db.models import District, Resident
from anbu.db.models_console import ConsoleAccount
from anbu.db.models_escalation import Official
from anbu.db.models_scheduling import Program, ResidentSchedule, RoutineSchedule
from anbu.domain.phone import mask_phone, normalize_mobile
from anbu.errors import InvalidPhoneNumberError, ValidationError
from anbu.services.rules import Programs, followed_programs

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
    own: bool  # the district's own (or its version of a shared one); False: shared, untouched


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


async def _district_programs(session: AsyncSession, district_id: int) -> Programs:
    rows = await session.execute(
        select(Program).where(
            or_(Program.district_id.is_(None), Program.district_id == district_id)
        )
    )
    return Programs(rows.scalars().all())


async def programs(session: AsyncSession, district_id: int) -> list[ProgramRow]:
    """The programmes as this district applies them: its own, and the shared ones it has no
    version of. The default is the one a resident without a programme of their own follows."""
    found = await _district_programs(session, district_id)
    default = found.resolve(district_id, None)
    replaced = {p.replaces_id for p in found.by_id.values() if p.district_id == district_id}
    rows = [
        p
        for p in sorted(found.by_id.values(), key=lambda p: (p.replaces_id or p.id, p.id))
        if p.district_id == district_id or p.id not in replaced
    ]
    return [
        ProgramRow(
            p.id,
            p.name,
            hhmm(p.start_min),
            hhmm(p.end_min),
            p.max_attempts,
            p.interval_s // 60,
            default is not None and p.id == default.id,
            p.district_id is not None,
        )
        for p in rows
    ]


# The columns a district's version of a shared programme starts from (then the form applies).
_COPIED = (
    "max_attempts",
    "interval_s",
    "busy_interval_s",
    "failure_interval_s",
    "max_callbacks",
    "callback_delay_s",
    "tz",
    "start_min",
    "end_min",
    "weekdays",
    "call_on_holidays",
    "severe_start_min",
    "severe_end_min",
)


async def _version_name(session: AsyncSession, shared: Program, district: District) -> str:
    """A name for the district's version: programme names are unique across the deployment."""
    base = f"{shared.name} ({district.name})"[:100]
    name, n = base, 1
    while await session.scalar(select(Program.id).where(Program.name == name)) is not None:
        n += 1
        suffix = f" {n}"
        name = base[: 100 - len(suffix)] + suffix
    return name


async def _check_followers(
    session: AsyncSession, district_id: int, program: Program, start: int, end: int
) -> None:
    """Refuse hours that would leave a resident of the district who follows this programme
    with no window (their own start after the new end) or a routine call outside it: the
    dispatcher could not apply them (the API answers 409 for the same)."""
    in_district = select(Resident.id).where(Resident.district_id == district_id)
    own = set(
        (
            await session.execute(
                select(ResidentSchedule.resident_id).where(
                    ResidentSchedule.resident_id.in_(in_district),
                    or_(
                        ResidentSchedule.start_min.is_not(None),
                        ResidentSchedule.end_min.is_not(None),
                    ),
                )
            )
        ).scalars()
    )
    routines: dict[str, list[int]] = {}
    for rid, minute in await session.execute(
        select(RoutineSchedule.resident_id, RoutineSchedule.time_min).where(
            RoutineSchedule.resident_id.in_(in_district), RoutineSchedule.active.is_(True)
        )
    ):
        routines.setdefault(rid, []).append(minute)
    followed = await followed_programs(session, own | set(routines))
    # The programme as the district applies it now: the shared one, or its version here.
    broken = 0
    for rid, found in followed.items():
        if found.program is None or program.id not in (found.program.id, found.program.replaces_id):
            continue
        sched = found.schedule
        lo = sched.start_min if sched is not None and sched.start_min is not None else start
        hi = sched.end_min if sched is not None and sched.end_min is not None else end
        if lo >= hi or any(not lo <= m < hi for m in routines.get(rid, [])):
            broken += 1
    if broken:
        raise SettingsRefusedError(
            f"이 시간으로 바꾸면 대상자 {broken}명의 개인 통화 시간이나 정기 안부 전화가 통화"
            " 시간 밖에 놓입니다. 그분들의 시간을 먼저 바꾸세요."
        )


async def update_program(
    session: AsyncSession, district: District, program_id: str, form: dict[str, str]
) -> Program:
    """Store the form on this district's programme: a shared one is changed in the district's
    own version of it (made now if there is none yet). Another district's programme is "not
    found". Nothing is changed unless the whole form is right."""
    try:
        program = await session.get(Program, int(program_id))
    except (ValueError, OverflowError):
        program = None
    if program is None or program.district_id not in (None, district.id):
        raise SettingsRefusedError("프로그램을 찾을 수 없습니다.")
    start = parse_hhmm(form.get("start", ""), "시작 시각은")
    end = parse_hhmm(form.get("end", ""), "끝 시각은")
    if end <= start:
        raise SettingsRefusedError("끝 시각은 시작 시각보다 늦어야 합니다.")
    attempts = _int(form.get("max_attempts", ""), "시도 횟수는", 1, MAX_ATTEMPTS)
    interval = _int(form.get("interval_min", ""), "재시도 간격(분)은", INTERVAL_MIN, INTERVAL_MAX)
    await _check_followers(session, district.id, program, start, end)
    if program.district_id is None:
        # The page may be older than the district's version (another admin made it): edit that.
        version = await session.scalar(
            select(Program).where(
                Program.district_id == district.id, Program.replaces_id == program.id
            )
        )
        if version is None:
            version = Program(
                name=await _version_name(session, program, district),
                district_id=district.id,
                replaces_id=program.id,
                is_default=False,
                **{column: getattr(program, column) for column in _COPIED},
            )
            session.add(version)
        program = version
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
