"""What each console page shows, read from the database for one official's scope.

Every query is limited to the scope's district (and dong) here, in one place: a page cannot
forget it. Names are masked for analysts. The routes turn these into HTML and write the access
log for every person a page shows.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.db.models_console import ConsoleAccount
from anbu.db.models_escalation import (
    Incident,
    IncidentEvent,
    Official,
    OutboxMessage,
    ResidentFinding,
)
from anbu.db.models_feedback import FeedbackStep
from anbu.db.models_scheduling import (
    CallHold,
    DoNotCall,
    RoutineSchedule,
    SelfTestRun,
)
from anbu.db.models_signals import Device, DeviceTask, MonitoringHold, MonitoringProfile
from anbu.domain.calls import CallResult
from anbu.domain.console import (
    ConsoleRole,
    handover_detail,
    handover_taker,
    sees_names,
    time_left,
)
from anbu.domain.escalation import (
    FINDING_LABELS,
    OUTCOME_WORDS,
    RESULT_WORDS,
    SEOUL,
    Finding,
    Urgency,
    mask_name,
)
from anbu.domain.incidents import IncidentEventKind, IncidentStatus
from anbu.domain.phone import mask_phone
from anbu.domain.risk import DeviceIssueKind, DeviceKind, HoldReason, Level, TaskStatus
from anbu.risk import feedback
from anbu.services import rules

PAGE_SIZE = 50
S = TypeVar("S", bound=Select[*tuple[Any, ...]])
R = TypeVar("R")
TODAY_LIMIT = 100  # per list; the rest by the clock's order next time

STATUS_WORDS = {
    IncidentStatus.OPEN: "확인 대기",
    IncidentStatus.ACKNOWLEDGED: "확인됨",
    IncidentStatus.EXHAUSTED: "확인 대기 (모든 담당자에게 알림)",
}
CHECKIN_WORDS = {
    "pending": "전화 대기",
    "dialing": "통화 중",
    "completed": "완료",
    "exhausted": "응답 없음",
    "cancelled": "취소",
}
SMS_WORDS = {
    "pending": "발송 대기",
    "sending": "발송 중",
    "sent": "발송됨",
    "failed": "발송 실패",
    "cancelled": "보내지 않음",
    "delivered": "수신됨",
    "undeliverable": "전달 불가",
    "buffered": "전달 대기",
    "accepted": "통신사 접수",
    "rejected": "통신사 거부",
}
EVENT_WORDS = {
    IncidentEventKind.OPENED: "사건 열림",
    IncidentEventKind.QUEUED: "문자 대기열",
    IncidentEventKind.SENT: "문자 발송",
    IncidentEventKind.DELIVERED: "문자 수신 확인",
    IncidentEventKind.FAILED: "문자 실패",
    IncidentEventKind.ESCALATED: "다음 담당자에게",
    IncidentEventKind.ACKNOWLEDGED: "확인",
    IncidentEventKind.FINDING: "확인 결과",
    IncidentEventKind.AMENDED: "결과 정정",
    IncidentEventKind.EXHAUSTED: "모든 담당자에게 알림",
    IncidentEventKind.NO_CHAIN: "알릴 담당자 없음",
    IncidentEventKind.REPLY: "답장",
    IncidentEventKind.HANDED_OVER: "담당 넘김",
    IncidentEventKind.CALLING: "담당자 연결 시도",
    IncidentEventKind.CALL_ENDED: "연결 안 됨",
    IncidentEventKind.CONNECTED: "담당자와 통화 연결",
    IncidentEventKind.TALKED: "통화 종료",
    IncidentEventKind.NO_TRANSFER: "통화 연결 안 함",
}


def local(t: dt.datetime | None) -> str:
    return t.astimezone(SEOUL).strftime("%m-%d %H:%M:%S") if t is not None else ""


@dataclass(frozen=True, slots=True)
class Scope:
    """What one account may see: a district (None = every district) and maybe one dong."""

    account_id: str
    district_id: int | None
    dong: str
    names: bool

    @classmethod
    def of(cls, account: ConsoleAccount) -> Scope:
        return cls(account.id, account.district_id, account.dong, sees_names(account.role))

    def residents(self, query: S) -> S:
        if self.district_id is not None:
            query = query.where(Resident.district_id == self.district_id)
        if self.dong:
            query = query.where(Resident.dong == self.dong)
        return query

    def allows(self, resident: Resident) -> bool:
        return (self.district_id is None or resident.district_id == self.district_id) and (
            not self.dong or resident.dong == self.dong
        )

    def name(self, name: str) -> str:
        return name if self.names else mask_name(name)


@dataclass
class IncidentRow:
    id: str
    resident_id: str
    district_id: int
    who: str
    dong: str
    urgent: bool
    what: str
    status: str
    clock: str
    overdue: bool
    messaged: list[str]
    opened: str
    holder: str = ""  # who it was handed over to, last


@dataclass
class CheckinRow:
    id: str
    resident_id: str
    district_id: int
    who: str
    dong: str
    reason: str
    state: str
    attempts: int
    opened: str


@dataclass
class TaskRow:
    resident_id: str
    district_id: int
    who: str
    dong: str
    what: str
    detail: str
    opened: str


@dataclass
class SelfTest:
    when: str
    ok: bool
    text: str


@dataclass
class Today:
    incidents: list[IncidentRow]
    checkins: list[CheckinRow]
    now: str
    tasks: list[TaskRow] = field(default_factory=list)
    self_test: SelfTest | None = None


TASK_WORDS = {
    DeviceIssueKind.STALE: "보고 없음",
    DeviceIssueKind.OFFLINE: "꺼짐",
}


async def device_tasks(session: AsyncSession, scope: Scope) -> list[TaskRow]:
    """Open device tasks (a plug or app that stopped reporting: a visit, not a call)."""
    query = (
        select(
            DeviceTask.kind,
            DeviceTask.detail,
            DeviceTask.opened_at,
            Resident.id,
            Resident.district_id,
            Resident.name,
            Resident.dong,
        )
        .join(Resident, Resident.id == DeviceTask.resident_id)
        .where(DeviceTask.status == TaskStatus.OPEN)
        .order_by(DeviceTask.opened_at)
        .limit(TODAY_LIMIT)
    )
    return [
        TaskRow(
            rid,
            district_id,
            scope.name(name),
            dong,
            TASK_WORDS.get(kind, str(kind)),
            detail,
            local(opened),
        )
        for kind, detail, opened, rid, district_id, name, dong in (
            await session.execute(scope.residents(query))
        ).all()
    ]


async def last_self_test(session: AsyncSession) -> SelfTest | None:
    """The daily self-test call's latest run (the whole telephony path, one test line)."""
    run = await session.scalar(select(SelfTestRun).order_by(SelfTestRun.started_at.desc()).limit(1))
    if run is None:
        return None
    if run.ended_at is None:
        return SelfTest(local(run.started_at), False, "진행 중")
    if run.ok:
        return SelfTest(local(run.started_at), True, "정상")
    try:
        why = RESULT_WORDS.get(CallResult(run.result), run.result)
    except ValueError:  # "error": the dialer itself failed (the log has the exception)
        why = "전화 장비 오류" if run.result == "error" else (run.result or "원인 모름")
    if run.result == CallResult.ANSWERED:
        why = "받았으나 1번을 누르지 않음"
    return SelfTest(local(run.started_at), False, f"실패: {why} (구 관리자에게 알리세요)")


async def _messaged(session: AsyncSession, ids: list[str]) -> dict[str, list[str]]:
    """Per incident: who was messaged, with the SMS's state, in order."""
    out: dict[str, list[str]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = await session.execute(
        select(
            OutboxMessage.incident_id, Official.name, OutboxMessage.status, OutboxMessage.delivery
        )
        .join(Official, Official.id == OutboxMessage.official_id)
        .where(OutboxMessage.incident_id.in_(ids))
        .order_by(OutboxMessage.created_at)
    )
    for incident_id, name, status, delivery in rows:
        state = str(delivery) if delivery is not None else str(status)
        out[str(incident_id)].append(f"{name} ({SMS_WORDS.get(state, state)})")
    return out


async def _whole_table(session: AsyncSession, scope: Scope) -> bool:
    """True when the scope holds every resident (an analyst, or the deployment's only
    district): a page's list can then be sorted and cut on its own table first and joined to
    the 100 residents it shows, instead of joining all 100,000 before the sort."""
    if scope.dong:
        return False
    district = scope.district_id
    if district is None:
        return True
    other = await session.scalar(
        select(Resident.id)
        .where(
            or_(Resident.district_id < scope.district_id, Resident.district_id > scope.district_id)
        )
        .limit(1)
    )
    return other is None


async def today(session: AsyncSession, scope: Scope, now: dt.datetime) -> Today:
    whole = await _whole_table(session, scope)
    # Urgent first, then the clock that runs out first; no clock yet (SMS not sent) last.
    order = (
        (Incident.urgency == Urgency.URGENT).desc(),
        Incident.ack_due_at.is_(None),
        Incident.ack_due_at,
        Incident.opened_at,
    )
    open_ = Incident.status.in_((IncidentStatus.OPEN, IncidentStatus.EXHAUSTED))
    # Plain columns, not entities: no eager loads of districts and attempts per row.
    rows_of = select(
        Incident.id,
        Incident.urgency,
        Incident.outcome,
        Incident.status,
        Incident.ack_due_at,
        Incident.opened_at,
        Resident.id,
        Resident.district_id,
        Resident.name,
        Resident.dong,
    ).join(Resident, Resident.id == Incident.resident_id)
    if not scope.dong:
        # incidents.district_id says the district: sort and cut the open incidents alone,
        # then fetch their 100 residents by primary key.
        cut = select(Incident.id).where(open_)
        if scope.district_id is not None:
            cut = cut.where(Incident.district_id == scope.district_id)
        ids = list((await session.execute(cut.order_by(*order).limit(TODAY_LIMIT))).scalars())
        rows = {r[0]: r for r in (await session.execute(rows_of.where(Incident.id.in_(ids))))}
        found = [rows[i] for i in ids if i in rows]
    else:
        query = rows_of.where(open_).order_by(*order).limit(TODAY_LIMIT)
        found = list((await session.execute(scope.residents(query))).all())
    messaged = await _messaged(session, [row[0] for row in found])
    held = await holders(session, [row[0] for row in found])
    incidents = [
        IncidentRow(
            id=iid,
            resident_id=rid,
            district_id=district_id,
            who=scope.name(name),
            dong=dong,
            urgent=urgency is Urgency.URGENT,
            what=OUTCOME_WORDS.get(outcome, str(outcome)),
            status=STATUS_WORDS[status],
            clock=time_left(due, now) or "문자 발송 대기",
            overdue=due is not None and due < now,
            messaged=messaged[iid],
            opened=local(opened),
            holder=held.get(iid, ""),
        )
        for iid, urgency, outcome, status, due, opened, rid, district_id, name, dong in found
    ]
    midnight = now.astimezone(SEOUL).replace(hour=0, minute=0, second=0, microsecond=0)
    calls = (
        select(func.count(CallAttempt.id))
        .where(CallAttempt.checkin_id == Checkin.id)
        .correlate(Checkin)
        .scalar_subquery()
    )
    since = midnight.astimezone(dt.UTC)
    if whole:
        # Every resident is in scope: cut today's check-ins first, join their residents after.
        latest = (
            select(Checkin.id)
            .where(Checkin.created_at >= since)
            .order_by(Checkin.created_at.desc())
            .limit(TODAY_LIMIT)
            .scalar_subquery()
        )
        today_only: ColumnElement[bool] = Checkin.id.in_(latest)
    else:
        today_only = Checkin.created_at >= since
    cq = (
        select(
            Checkin.reason,
            Checkin.status,
            Checkin.outcome,
            Checkin.created_at,
            calls,
            Resident.id,
            Resident.district_id,
            Resident.name,
            Resident.dong,
        )
        .join(Resident, Resident.id == Checkin.resident_id)
        .where(today_only)
        .order_by(Checkin.created_at.desc())
        .limit(TODAY_LIMIT)
    )
    checkins = [
        CheckinRow(
            id="",
            resident_id=rid,
            district_id=district_id,
            who=scope.name(name),
            dong=dong,
            reason=reason,
            state=CHECKIN_WORDS.get(str(status), str(status))
            + (f" · {OUTCOME_WORDS.get(outcome, str(outcome))}" if outcome else ""),
            attempts=int(n or 0),
            opened=local(created),
        )
        for reason, status, outcome, created, n, rid, district_id, name, dong in (
            await session.execute(cq if whole else scope.residents(cq))
        ).all()
    ]
    return Today(
        incidents,
        checkins,
        local(now),
        await device_tasks(session, scope),
        await last_self_test(session),
    )


async def holders(session: AsyncSession, ids: list[str]) -> dict[str, str]:
    """Per incident: the colleague it was last handed over to (none when never handed over)."""
    if not ids:
        return {}
    rows = await session.execute(
        select(IncidentEvent.incident_id, IncidentEvent.detail)
        .where(
            IncidentEvent.incident_id.in_(ids),
            IncidentEvent.kind == IncidentEventKind.HANDED_OVER,
        )
        .order_by(IncidentEvent.at, IncidentEvent.id)
    )
    return {str(iid): handover_taker(detail) for iid, detail in rows}


async def queue_version(session: AsyncSession, scope: Scope) -> tuple[int, int]:
    """Changes whenever the scope's queue does: an incident opens (its OPENED event), is
    told, escalated, acknowledged or handed over (each writes an event). The live 오늘 page
    polls this, cheaply, and reloads its queue only when it moved."""
    query = select(func.count(IncidentEvent.id), func.coalesce(func.max(IncidentEvent.id), 0)).join(
        Incident, Incident.id == IncidentEvent.incident_id
    )
    if scope.dong:
        query = scope.residents(query.join(Resident, Resident.id == Incident.resident_id))
    elif scope.district_id is not None:
        query = query.where(Incident.district_id == scope.district_id)
    count, top = (await session.execute(query)).one()
    return int(count), int(top)


class HandOverError(ValueError):
    """A hand-over the console refuses; the message is the Korean text the page shows."""


async def colleagues(session: AsyncSession, account: ConsoleAccount) -> list[tuple[str, str]]:
    """Accounts of the same district that may take an incident over: (id, name)."""
    if account.district_id is None:
        return []
    rows = await session.execute(
        select(ConsoleAccount.id, ConsoleAccount.name)
        .where(
            ConsoleAccount.district_id == account.district_id,
            ConsoleAccount.active.is_(True),
            ConsoleAccount.role != ConsoleRole.ANALYST,
            ConsoleAccount.id != account.id,
        )
        .order_by(ConsoleAccount.name)
    )
    return [(str(i), str(n)) for i, n in rows]


async def hand_over(
    session: AsyncSession,
    scope: Scope,
    account: ConsoleAccount,
    incident_id: str,
    taker_id: str,
    note: str,
    now: dt.datetime,
) -> Incident:
    """Pass an open incident to a colleague of the same district: a timeline event (the
    caller commits). The acknowledgement clock and the SMS chain are unchanged: the chain
    stops only on an acknowledgement."""
    incident = await session.get(Incident, incident_id)
    resident = await session.get(Resident, incident.resident_id) if incident else None
    if incident is None or resident is None or not scope.allows(resident):
        raise HandOverError("사건을 찾을 수 없습니다.")
    if incident.status is IncidentStatus.ACKNOWLEDGED:
        raise HandOverError("이미 확인된 사건은 넘길 수 없습니다.")
    taker = await session.get(ConsoleAccount, taker_id) if taker_id else None
    if taker is None or (taker.id, taker.name) not in await colleagues(session, account):
        raise HandOverError("넘겨받을 동료를 고르세요.")
    if len(note) > 500:
        raise HandOverError("메모는 500자까지 쓸 수 있습니다.")
    session.add(
        IncidentEvent(
            incident_id=incident.id,
            at=now,
            kind=IncidentEventKind.HANDED_OVER,
            official_id=taker.official_id,
            detail=handover_detail(account.name, taker.name, note.strip()),
        )
    )
    await session.flush()
    return incident


@dataclass
class TimelineItem:
    at: dt.datetime
    kind: str
    text: str
    when: str = ""


@dataclass
class IncidentPage:
    incident: Incident
    resident: Resident
    who: str
    what: str
    status: str
    clock: str
    timeline: list[TimelineItem] = field(default_factory=list)
    finding: str = ""
    holder: str = ""


async def incident_page(
    session: AsyncSession, scope: Scope, incident_id: str, now: dt.datetime
) -> IncidentPage | None:
    """None when there is no such incident or it lies outside the scope (the same answer)."""
    incident = await session.get(Incident, incident_id)
    if incident is None:
        return None
    resident = await session.get(Resident, incident.resident_id)
    if resident is None or not scope.allows(resident):
        return None
    checkin = await session.get(Checkin, incident.checkin_id)
    items: list[TimelineItem] = []
    if checkin is not None:
        items.append(TimelineItem(checkin.created_at, "안부 확인 시작", checkin.reason))
        for a in checkin.attempts:
            result = RESULT_WORDS.get(a.result, str(a.result)) if a.result else str(a.status)
            bits = [f"{a.attempt_no}차 전화: {result}"]
            if a.hangup_cause is not None:
                bits.append(f"원인 {a.hangup_cause}")
            if a.sip_status is not None:
                bits.append(f"SIP {a.sip_status}")
            if a.keys:
                bits.append(f"누른 키 {a.keys}")
            if a.transcript and scope.names:
                bits.append(f"말씀: {a.transcript}")
            items.append(TimelineItem(a.originated_at or a.scheduled_for, "전화", " · ".join(bits)))
        if checkin.closed_at is not None:
            outcome = (
                OUTCOME_WORDS.get(checkin.outcome, str(checkin.outcome)) if checkin.outcome else ""
            )
            items.append(TimelineItem(checkin.closed_at, "안부 확인 종료", outcome))
    sms = await session.execute(
        select(OutboxMessage, Official.name)
        .outerjoin(Official, Official.id == OutboxMessage.official_id)
        .where(OutboxMessage.incident_id == incident.id)
    )
    for m, name in sms:
        state = SMS_WORDS.get(str(m.status), str(m.status))
        if m.delivery is not None:
            state += f", {SMS_WORDS.get(str(m.delivery), str(m.delivery))}"
        items.append(
            TimelineItem(m.sent_at or m.created_at, "문자", f"{name or mask_phone(m.to)}: {state}")
        )
    events = await session.execute(
        select(IncidentEvent, Official.name)
        .outerjoin(Official, Official.id == IncidentEvent.official_id)
        .where(IncidentEvent.incident_id == incident.id)
        .order_by(IncidentEvent.at, IncidentEvent.id)
    )
    for e, name in events:
        if e.kind in (IncidentEventKind.QUEUED, IncidentEventKind.SENT):
            continue  # the SMS rows above say it, with their delivery
        if e.kind is IncidentEventKind.HANDED_OVER:
            name = ""  # the detail names giver and taker
        text = " · ".join(x for x in (name or "", e.detail) if x)
        items.append(TimelineItem(e.at, EVENT_WORDS.get(e.kind, str(e.kind)), text))
    items.sort(key=lambda i: i.at)
    for item in items:
        item.when = local(item.at)
    finding = ""
    if incident.finding is not None:
        finding = FINDING_LABELS.get(incident.finding, str(incident.finding))
        if incident.finding_note and scope.names:
            finding += f" · {incident.finding_note}"
    return IncidentPage(
        incident=incident,
        resident=resident,
        who=scope.name(resident.name),
        what=OUTCOME_WORDS.get(incident.outcome, str(incident.outcome)),
        status=STATUS_WORDS[incident.status],
        clock=time_left(incident.ack_due_at, now),
        timeline=items,
        finding=finding,
        holder=(await holders(session, [incident.id])).get(incident.id, ""),
    )


@dataclass
class ResidentRow:
    id: str
    district_id: int
    who: str
    dong: str
    phone: str
    level: str
    active: bool


@dataclass
class ResidentList:
    rows: list[ResidentRow]
    page: int
    more: bool


LEVELS = {level.value: level for level in Level}


class CaseFilter(enum.StrEnum):
    OPEN = "open"  # an incident waiting for an acknowledgement
    NONE = "none"


class DeviceFilter(enum.StrEnum):
    ONLINE = "online"  # has active devices, every one reporting
    STALE = "stale"  # at least one active device silent or offline
    NONE = "none"  # no active device


class ContactFilter(enum.StrEnum):
    """Last contact: the last call the resident answered (a person, not a machine)."""

    WEEK = "7"  # no answered call in the last 7 days
    MONTH = "30"  # none in 30 days
    NEVER = "never"  # never answered one


def _filters(
    dong: str, case: str, device: str, now: dt.datetime, contact: str = ""
) -> list[ColumnElement[bool]]:
    """The list's filters beyond level, as conditions on Resident (unknown values: none)."""
    conds: list[ColumnElement[bool]] = []
    answered = (
        select(CallAttempt.id)
        .join(Checkin, Checkin.id == CallAttempt.checkin_id)
        .where(
            Checkin.resident_id == Resident.id,
            CallAttempt.result == CallResult.ANSWERED,
        )
    )
    if contact == ContactFilter.NEVER:
        conds.append(~answered.exists())
    elif contact in (ContactFilter.WEEK, ContactFilter.MONTH):
        since = now - dt.timedelta(days=int(contact))
        conds.append(~answered.where(CallAttempt.answered_at >= since).exists())
    if dong:
        conds.append(Resident.dong == dong)
    open_case = (
        select(Incident.id)
        .where(
            Incident.resident_id == Resident.id,
            Incident.status.in_((IncidentStatus.OPEN, IncidentStatus.EXHAUSTED)),
        )
        .exists()
    )
    if case == CaseFilter.OPEN:
        conds.append(open_case)
    elif case == CaseFilter.NONE:
        conds.append(~open_case)
    active = select(Device.id).where(Device.resident_id == Resident.id, Device.active.is_(True))
    stale = active.where(
        or_(
            Device.online.is_(False),
            (Device.stale_due_at.is_not(None)) & (Device.stale_due_at <= now),
        )
    ).exists()
    if device == DeviceFilter.STALE:
        conds.append(stale)
    elif device == DeviceFilter.ONLINE:
        conds.extend([active.exists(), ~stale])
    elif device == DeviceFilter.NONE:
        conds.append(~active.exists())
    return conds


async def residents(
    session: AsyncSession,
    scope: Scope,
    q: str,
    level: str,
    page: int,
    *,
    dong: str = "",
    case: str = "",
    device: str = "",
    contact: str = "",
    now: dt.datetime | None = None,
) -> ResidentList:
    columns = (
        Resident.id,
        Resident.district_id,
        Resident.name,
        Resident.dong,
        Resident.phone,
        Resident.active,
        MonitoringProfile.level,
    )
    # ix_residents_district_name serves this order within a district.
    order = (Resident.district_id, Resident.name, Resident.id)
    matches = []
    if q:
        like = f"%{q}%"
        # Analysts search by dong only: a name search would tell them who is enrolled.
        matches.append(
            or_(Resident.name.like(like), Resident.dong.like(like))
            if scope.names
            else Resident.dong.like(like)
        )
    matches.extend(_filters(dong, case, device, now or dt.datetime.now(dt.UTC), contact))
    if level not in LEVELS:
        # No level filter: page through the residents' index alone (deep pages skip
        # thousands of rows), then join the 51 shown to their profiles.
        cut = scope.residents(select(Resident.id).where(*matches)).order_by(*order)
        cut = cut.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
        ids = list((await session.execute(cut)).scalars())
        fetched = await session.execute(
            select(*columns)
            .outerjoin(MonitoringProfile, MonitoringProfile.resident_id == Resident.id)
            .where(Resident.id.in_(ids))
        )
        by_id = {row[0]: row for row in fetched}
        found = [by_id[i] for i in ids if i in by_id]
    else:
        query = (
            select(*columns)
            .outerjoin(MonitoringProfile, MonitoringProfile.resident_id == Resident.id)
            .where(*matches)
            .order_by(*order)
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
        query = scope.residents(query)
        chosen = LEVELS[level]
        if chosen is Level.NONE:
            query = query.where(
                or_(MonitoringProfile.level.is_(None), MonitoringProfile.level == chosen)
            )
        else:
            query = query.where(MonitoringProfile.level == chosen)
        found = list((await session.execute(query)).all())
    rows = [
        ResidentRow(
            id=rid,
            district_id=district_id,
            who=scope.name(name),
            dong=dong,
            phone=mask_phone(phone),
            level=(lvl or Level.NONE).label,
            active=active,
        )
        for rid, district_id, name, dong, phone, active, lvl in found[:PAGE_SIZE]
    ]
    return ResidentList(rows, page, len(found) > PAGE_SIZE)


@dataclass
class ResidentPage:
    resident: Resident
    who: str
    district: str
    phone: str
    profile: MonitoringProfile | None
    level: str
    checkins: list[CheckinRow]
    incidents: list[tuple[str, str, str, str]]  # id, opened, what, status
    findings: list[tuple[str, str, str]]  # when, finding, note
    # Outcome feedback: how officials' findings widened this person's thresholds, and undo.
    widenings: list[WideningRow] = field(default_factory=list)
    devices: list[DeviceRow] = field(default_factory=list)
    holds: list[HoldRow] = field(default_factory=list)
    do_not_call: str | None = None  # the reason, when the number is on the do-not-call list
    calling_hours: str = ""
    routines: list[str] = field(default_factory=list)  # "월 10:00"


DEVICE_KIND_WORDS: dict[DeviceKind, str] = {
    DeviceKind.PLUG: "스마트 플러그",
    DeviceKind.APP: "걸음 수 앱",
    DeviceKind.MOTION_SENSOR: "동작 감지기",
    DeviceKind.DOOR_SENSOR: "문 열림 감지기",
}
HOLD_WORDS: dict[HoldReason, str] = {
    HoldReason.HOSPITAL: "입원",
    HoldReason.TRAVEL: "여행·외출",
    HoldReason.OTHER: "기타",
}
WEEKDAY_WORDS = "월화수목금토일"


class DeviceStatus(enum.StrEnum):
    """A device as the resident list filters it and the resident page shows it."""

    ONLINE = "online"  # reporting on time
    STALE = "stale"  # past its expected report, or reporting offline
    INACTIVE = "inactive"  # switched off by the district

    @property
    def label(self) -> str:
        return {"online": "정상", "stale": "보고 없음", "inactive": "사용 안 함"}[self.value]


def device_status(device: Device, now: dt.datetime) -> DeviceStatus:
    if not device.active:
        return DeviceStatus.INACTIVE
    overdue = device.stale_due_at is not None and device.stale_due_at <= now
    return DeviceStatus.STALE if overdue or not device.online else DeviceStatus.ONLINE


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    kind: str
    last_seen: str
    status: DeviceStatus


@dataclass(frozen=True, slots=True)
class HoldRow:
    what: str  # 입원, 여행·외출, 통화 보류
    starts: str
    ends: str  # "" = until lifted
    note: str
    current: bool
    kind: str = ""  # "monitoring" or "call" (anbu.console.resident_edits.HoldKind): its end form
    id: str = ""


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days(weekdays: str) -> str:
    return "".join(WEEKDAY_WORDS[int(d)] for d in weekdays if d.isdigit() and int(d) < 7)


async def _calling_hours(session: AsyncSession, resident_id: str) -> str:
    """The resident's own hours over their programme's (as their district applies it) over
    the default programme's, as the scheduler resolves them; "" when nothing is set anywhere
    (the scheduler's defaults)."""
    found = (await rules.followed_programs(session, [resident_id])).get(resident_id)
    own = found.schedule if found is not None else None
    program = found.program if found is not None else None
    start = own.start_min if own is not None and own.start_min is not None else None
    end = own.end_min if own is not None and own.end_min is not None else None
    weekdays = own.weekdays if own is not None and own.weekdays is not None else None
    holidays = own.call_on_holidays if own is not None else None
    if program is not None:
        start = program.start_min if start is None else start
        end = program.end_min if end is None else end
        weekdays = program.weekdays if weekdays is None else weekdays
        holidays = program.call_on_holidays if holidays is None else holidays
    if start is None or end is None:
        return ""
    where = f" ({program.name})" if program is not None else " (개인 설정)"
    days = _days(weekdays or "01234")
    return f"{days} {_hhmm(start)}-{_hhmm(end)}{'' if holidays else ' · 공휴일 제외'}{where}"


@dataclass(frozen=True, slots=True)
class WideningRow:
    id: str
    when: str
    channel: str  # 통화, 걸음 수, ...
    hours: float
    finding: str
    reverted: str  # "" while in force, else when it was undone


def _finding_label(value: str) -> str:
    try:
        return FINDING_LABELS.get(Finding(value), value)
    except ValueError:
        return value


async def _recent(
    session: AsyncSession,
    model: type[R],
    where: ColumnElement[bool],
    at: InstrumentedAttribute[dt.datetime],
) -> Sequence[R]:
    """The resident page's last 20 rows of one kind, newest (by column ``at``) first."""
    return (await session.scalars(select(model).where(where).order_by(at.desc()).limit(20))).all()


async def resident_page(
    session: AsyncSession,
    scope: Scope,
    resident_id: str,
    *,
    reveal: bool,
    now: dt.datetime | None = None,
) -> ResidentPage | None:
    resident = await session.get(Resident, resident_id)
    if resident is None or not scope.allows(resident):
        return None
    district = await session.get(District, resident.district_id)
    profile = await session.get(MonitoringProfile, resident.id)
    checkins = await _recent(
        session, Checkin, Checkin.resident_id == resident.id, Checkin.created_at
    )
    incidents = await _recent(
        session, Incident, Incident.resident_id == resident.id, Incident.opened_at
    )
    findings = await _recent(
        session, ResidentFinding, ResidentFinding.resident_id == resident.id, ResidentFinding.at
    )
    at = now or dt.datetime.now(dt.UTC)
    devices = (
        await session.scalars(
            select(Device).where(Device.resident_id == resident.id).order_by(Device.device_id)
        )
    ).all()
    holds = [
        HoldRow(
            HOLD_WORDS.get(h.reason, str(h.reason)),
            local(h.starts_at),
            local(h.ends_at),
            h.note if scope.names else "",
            h.starts_at <= at < h.ends_at,
            "monitoring",
            h.id,
        )
        for h in await session.scalars(
            select(MonitoringHold)
            .where(MonitoringHold.resident_id == resident.id, MonitoringHold.ends_at > at)
            .order_by(MonitoringHold.starts_at)
        )
    ] + [
        HoldRow(
            "통화 보류",
            local(h.starts_at),
            local(h.ends_at) if h.ends_at else "",
            h.reason if scope.names else "",
            h.starts_at <= at and (h.ends_at is None or at < h.ends_at),
            "call",
            str(h.id),
        )
        for h in await session.scalars(
            select(CallHold)
            .where(
                CallHold.resident_id == resident.id,
                or_(CallHold.ends_at.is_(None), CallHold.ends_at > at),
            )
            .order_by(CallHold.starts_at)
        )
    ]
    dnc = await session.get(DoNotCall, resident.phone)
    routines = (
        await session.scalars(
            select(RoutineSchedule)
            .where(RoutineSchedule.resident_id == resident.id, RoutineSchedule.active.is_(True))
            .order_by(RoutineSchedule.weekday, RoutineSchedule.time_min)
        )
    ).all()
    return ResidentPage(
        devices=[
            DeviceRow(
                d.device_id,
                DEVICE_KIND_WORDS.get(d.kind, str(d.kind)),
                local(d.last_seen_at) if d.last_seen_at else "보고 없음",
                device_status(d, at),
            )
            for d in devices
        ],
        holds=holds,
        do_not_call=(dnc.reason or "사유 없음") if dnc is not None else None,
        calling_hours=await _calling_hours(session, resident.id),
        routines=[f"{WEEKDAY_WORDS[r.weekday % 7]} {_hhmm(r.time_min)}" for r in routines],
        resident=resident,
        who=scope.name(resident.name),
        district=district.name if district else "",
        phone=resident.phone if reveal and scope.names else mask_phone(resident.phone),
        profile=profile,
        level=(profile.level if profile else Level.NONE).label,
        checkins=[
            CheckinRow(
                id=c.id,
                resident_id=resident.id,
                district_id=resident.district_id,
                who="",
                dong=resident.dong,
                reason=c.reason,
                state=CHECKIN_WORDS.get(str(c.status), str(c.status))
                + (f" · {OUTCOME_WORDS.get(c.outcome, str(c.outcome))}" if c.outcome else ""),
                attempts=len(c.attempts),
                opened=local(c.created_at),
            )
            for c in checkins
        ],
        incidents=[
            (
                i.id,
                local(i.opened_at),
                OUTCOME_WORDS.get(i.outcome, str(i.outcome)),
                STATUS_WORDS[i.status],
            )
            for i in incidents
        ],
        findings=[
            (
                local(f.at),
                FINDING_LABELS.get(f.finding, str(f.finding)),
                f.note if scope.names else "",
            )
            for f in findings
        ],
        widenings=[
            WideningRow(
                id=w.id,
                when=local(w.created_at),
                channel=w.channel.label,
                hours=w.hours,
                finding=_finding_label(w.finding),
                reverted=local(w.reverted_at) if w.reverted_at is not None else "",
            )
            for w in await feedback.list_steps(session, resident.id)
        ],
    )


class FeedbackRevertError(Exception):
    """The step is not this resident's (or not in the official's scope): nothing changed."""


async def revert_widening(
    session: AsyncSession, scope: Scope, resident_id: str, step_id: str, now: dt.datetime, by: str
) -> Resident:
    """Undo one widening step from the console (as ``POST /v1/feedback/{id}/revert``): the
    person's thresholds tighten again at the next grading."""
    resident = await session.get(Resident, resident_id)
    step = await session.get(FeedbackStep, step_id[:64])
    if resident is None or not scope.allows(resident) or step is None:
        raise FeedbackRevertError("되돌릴 기록을 찾을 수 없습니다.")
    if step.resident_id != resident.id:
        raise FeedbackRevertError("되돌릴 기록을 찾을 수 없습니다.")
    await feedback.revert(session, step, now, f"console: {by}"[:200])
    await session.commit()
    return resident
