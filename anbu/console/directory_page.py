"""설정 for a 구 관리자: the district's officials (the escalation directory) and its escalation
chains with duty hours.

The forms are read and checked here, in Korean; the writing is the escalation directory's, the
same functions the API's ``/v1/officials`` and ``/v1/escalation-chains`` use, reached through
the :class:`Directory` port the composition root binds (``anbu/`` never imports
``escalation/``). Every lookup is by (district, id): an admin of another district gets "not
found", never the row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.console.settings_page import SettingsRefusedError, hhmm, parse_hhmm
from anbu.db.models import District
from anbu.db.models_escalation import EscalationChain, EscalationStep, Official
from anbu.domain.incidents import OfficialRole
from anbu.domain.phone import mask_phone, normalize_mobile
from anbu.errors import InvalidPhoneNumberError

OFFICIAL_ROLE_LABELS: dict[OfficialRole, str] = {
    OfficialRole.DONG: "동 주민센터 담당",
    OfficialRole.GU: "구청 담당",
    OfficialRole.CENTRE: "야간·휴일 당직 센터",
}
WEEKDAYS = "월화수목금토일"  # 0 = Monday, as the chain's duty_days
MAX_STEPS = 10  # the API's ChainIn allows ten
BLANK_STEPS = 2  # empty rows the chain form offers after the existing steps
TIMEOUT_MIN_MAX = 7 * 24 * 60


@dataclass
class StepForm:
    """One step of a chain as the form gave it, checked."""

    official_id: str
    ack_timeout_s: int | None  # None: the service's default
    days: list[int]
    start: str  # "HH:MM"
    end: str  # "HH:MM", "24:00" = end of the day
    on_holidays: bool


@dataclass
class OfficialForm:
    name: str
    phone: str
    role: OfficialRole
    dong: str
    active: bool


class Directory(Protocol):
    """The escalation directory's writing use cases (escalation.directory, bound by the
    composition root)."""

    async def add_official(
        self, session: AsyncSession, district: District, checked: OfficialForm, now: dt.datetime
    ) -> Official:
        """A new (active) official; ``checked.active`` is not read."""

    async def edit_official(self, official: Official, checked: OfficialForm) -> None: ...

    async def put_chain(
        self,
        session: AsyncSession,
        district: District,
        dong: str,
        steps: list[StepForm],
        now: dt.datetime,
    ) -> EscalationChain: ...

    async def delete_chain(self, session: AsyncSession, chain: EscalationChain) -> None:
        """Raises :class:`anbu.errors.ChainInUseError` while anyone is alerted along it."""


@dataclass
class OfficialRow:
    id: str
    name: str
    dong: str
    phone_masked: str
    role: OfficialRole
    role_label: str
    active: bool


@dataclass
class StepRow:
    official_id: str = ""
    official_name: str = ""
    timeout_min: str = ""
    days: list[int] = field(default_factory=lambda: list(range(7)))
    start: str = "00:00"
    end: str = "24:00"
    on_holidays: bool = True

    def days_text(self) -> str:
        return "".join(WEEKDAYS[d] for d in self.days)


@dataclass
class ChainRow:
    id: str
    dong: str
    steps: list[StepRow]


def _official_row(o: Official) -> OfficialRow:
    return OfficialRow(
        o.id, o.name, o.dong, mask_phone(o.phone), o.role, OFFICIAL_ROLE_LABELS[o.role], o.active
    )


async def officials(session: AsyncSession, district_id: int) -> list[OfficialRow]:
    rows = await session.execute(
        select(Official)
        .where(Official.district_id == district_id)
        .order_by(Official.dong, Official.name, Official.id)
    )
    return [_official_row(o) for o in rows.scalars()]


def _step_row(s: EscalationStep) -> StepRow:
    return StepRow(
        official_id=s.official_id,
        official_name=s.official.name,
        timeout_min=str(s.ack_timeout_s // 60),
        days=[int(d) for d in s.duty_days],
        start=hhmm(s.duty_start_min),
        end=hhmm(s.duty_end_min) if s.duty_end_min else "24:00",
        on_holidays=s.duty_on_holidays,
    )


async def chains(session: AsyncSession, district_id: int) -> list[ChainRow]:
    rows = await session.execute(
        select(EscalationChain)
        .where(EscalationChain.district_id == district_id)
        .order_by(EscalationChain.dong)
    )
    return [ChainRow(c.id, c.dong, [_step_row(s) for s in c.steps]) for c in rows.scalars()]


async def chain_of(session: AsyncSession, district_id: int, dong: str) -> ChainRow | None:
    chain = await session.scalar(
        select(EscalationChain).where(
            EscalationChain.district_id == district_id, EscalationChain.dong == dong
        )
    )
    if chain is None:
        return None
    return ChainRow(chain.id, chain.dong, [_step_row(s) for s in chain.steps])


async def chain_in(session: AsyncSession, district_id: int, chain_id: str) -> EscalationChain:
    """The district's chain by id; another district's is "not found"."""
    chain = await session.get(EscalationChain, chain_id[:32])
    if chain is None or chain.district_id != district_id:
        raise SettingsRefusedError("알림 순서를 찾을 수 없습니다.")
    return chain


def in_use_reason(where: str, residents: int, open_incidents: int) -> str:
    """Why a chain cannot be deleted, in Korean."""
    users = []
    if residents:
        users.append(f"대상자 {residents}명의 알림이 이 순서로 갑니다")
    if open_incidents:
        users.append(f"확인 대기 중인 사건 {open_incidents}건이 이 순서로 알립니다")
    return (
        f"{where} 알림 순서는 지울 수 없습니다: {', '.join(users)}."
        " 알림 순서를 고치거나 사건을 먼저 확인하세요."
    )


async def official_in(session: AsyncSession, district_id: int, official_id: str) -> Official:
    official = await session.get(Official, official_id[:32])
    if official is None or official.district_id != district_id:
        raise SettingsRefusedError("담당자를 찾을 수 없습니다.")
    return official


def _dong(form: dict[str, str]) -> str:
    dong = form.get("dong", "").strip()
    if len(dong) > 50:
        raise SettingsRefusedError("행정동 이름은 50자 이하여야 합니다.")
    return dong


def official_form(form: dict[str, str]) -> OfficialForm:
    name = form.get("name", "").strip()
    if not name:
        raise SettingsRefusedError("이름을 쓰세요.")
    if len(name) > 100:
        raise SettingsRefusedError("이름은 100자 이하여야 합니다.")
    raw = form.get("phone", "")
    try:
        phone = normalize_mobile(raw[:24])
    except InvalidPhoneNumberError:
        raise SettingsRefusedError(
            "휴대전화 번호가 올바르지 않습니다 (문자를 받을 수 있는 010 번호를 쓰세요)."
        ) from None
    try:
        role = OfficialRole(form.get("role", ""))
    except ValueError:
        raise SettingsRefusedError("역할을 고르세요.") from None
    return OfficialForm(name, phone, role, _dong(form), form.get("active", "") == "1")


def chain_dong(form: dict[str, str]) -> str:
    return _dong(form)


async def step_forms(
    session: AsyncSession, district_id: int, form: dict[str, str]
) -> list[StepForm]:
    """Rows ``official-N``, ``timeout-N``, ``day-N-D``, ``start-N``, ``end-N``,
    ``holidays-N`` (N = 1..MAX_STEPS); a row without an official is no step."""
    steps: list[StepForm] = []
    seen: set[str] = set()
    for n in range(1, MAX_STEPS + 1):
        official_id = form.get(f"official-{n}", "").strip()
        if not official_id:
            continue
        official = await official_in(session, district_id, official_id)
        number = len(steps) + 1
        if not official.active:
            raise SettingsRefusedError(f"{number}단계의 {official.name}님은 비활성 담당자입니다.")
        if official.id in seen:
            raise SettingsRefusedError(f"{official.name}님이 두 단계에 있습니다.")
        seen.add(official.id)
        raw_timeout = form.get(f"timeout-{n}", "").strip()
        timeout: int | None = None
        if raw_timeout:
            try:
                minutes = int(raw_timeout)
            except ValueError:
                raise SettingsRefusedError(
                    f"{number}단계의 확인 대기 시간(분)은 숫자로 쓰세요."
                ) from None
            if not 1 <= minutes <= TIMEOUT_MIN_MAX:
                raise SettingsRefusedError(
                    f"{number}단계의 확인 대기 시간(분)은 1에서 {TIMEOUT_MIN_MAX} 사이여야 합니다."
                )
            timeout = minutes * 60
        days = [d for d in range(7) if form.get(f"day-{n}-{d}") == "1"]
        if not days:
            raise SettingsRefusedError(f"{number}단계의 근무 요일을 하나 이상 고르세요.")
        start = parse_hhmm(form.get(f"start-{n}", ""), f"{number}단계의 근무 시작 시각은")
        end = parse_hhmm(form.get(f"end-{n}", ""), f"{number}단계의 근무 끝 시각은")
        steps.append(
            StepForm(
                official.id,
                timeout,
                days,
                hhmm(start),
                hhmm(end),
                form.get(f"holidays-{n}", "") == "1",
            )
        )
    if not steps:
        raise SettingsRefusedError("단계를 하나 이상 정하세요 (담당자를 고르세요).")
    return steps


def form_rows(chain: ChainRow | None) -> list[StepRow]:
    """The chain form's rows: the existing steps, then empty ones up to MAX_STEPS."""
    rows = list(chain.steps) if chain else []
    blanks = min(BLANK_STEPS, MAX_STEPS - len(rows))
    return rows + [StepRow() for _ in range(blanks)]
