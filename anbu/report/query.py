"""Read what the report needs from the database (SQLite or PostgreSQL, the same statements).

Counts are grouped by the database, one statement per table and month; only the rows that
percentiles need (alerts, their messages, findings, device tasks) and the evidence of the
check-ins that were raised by signals come back as rows. :mod:`anbu.report.figures` computes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import and_, case, distinct, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.db.models_escalation import Incident, OutboxMessage, ResidentFinding
from anbu.db.models_signals import (
    Device,
    DeviceTask,
    MonitoringProfile,
    RiskAssessment,
    SignalEvent,
)
from anbu.domain.feedback import raised_by
from anbu.domain.risk import DeviceKind, Level
from anbu.report.figures import (
    AlertRow,
    FindingRow,
    MessageRow,
    MonthSlice,
    Period,
    ReportArgumentError,
    ReportInput,
    TaskRow,
)

# Which registered device makes a resident watched on which source.
_DEVICE_SOURCE = {
    DeviceKind.APP: "app",
    DeviceKind.PLUG: "plug",
    DeviceKind.MOTION_SENSOR: "sensor",
    DeviceKind.DOOR_SENSOR: "sensor",
}


def _v(x: Any) -> str:
    """An enum column's value as its string ("" for NULL)."""
    if x is None:
        return ""
    return str(getattr(x, "value", x))


async def read_input(
    session: AsyncSession,
    district_code: str,
    period: Period,
    dong: str | None = None,
    ack_target_s: float = 600.0,
) -> ReportInput:
    district = (
        await session.execute(select(District).where(District.code == district_code))
    ).scalar_one_or_none()
    if district is None:
        raise ReportArgumentError(f"district {district_code!r} not found")
    scope = [Resident.district_id == district.id]
    if dong:
        scope.append(Resident.dong == dong)
        known = await session.scalar(select(func.count()).select_from(Resident).where(*scope))
        if not known:
            raise ReportArgumentError(f"no resident of district {district_code} in dong {dong!r}")
    residents = select(Resident.id).where(*scope).scalar_subquery()
    start, end = period.start, period.end

    by_tier: Counter[str] = Counter()
    rows = await session.execute(
        select(MonitoringProfile.tier, func.count())
        .select_from(Resident)
        .outerjoin(MonitoringProfile, MonitoringProfile.resident_id == Resident.id)
        .where(*scope, Resident.active.is_(True))
        .group_by(MonitoringProfile.tier)
    )
    for tier, n in rows:
        by_tier[_v(tier) or "none"] += n
    by_source: Counter[str] = Counter()
    by_source["call_records"] = (
        await session.scalar(
            select(func.count())
            .select_from(MonitoringProfile)
            .join(Resident, Resident.id == MonitoringProfile.resident_id)
            .where(
                *scope,
                Resident.active.is_(True),
                MonitoringProfile.enabled.is_(True),
                MonitoringProfile.consent_call_records.is_(True),
            )
        )
        or 0
    )
    for kind, n in await session.execute(
        select(Device.kind, func.count(distinct(Device.resident_id)))
        .where(Device.resident_id.in_(residents), Device.active.is_(True))
        .group_by(Device.kind)
    ):
        by_source[_DEVICE_SOURCE[DeviceKind(_v(kind))]] += n

    levels: dict[str, int] = {}
    for level, n in await session.execute(
        select(RiskAssessment.level, func.count(distinct(RiskAssessment.resident_id)))
        .where(
            RiskAssessment.resident_id.in_(residents),
            RiskAssessment.assessed_at >= start,
            RiskAssessment.assessed_at < end,
        )
        .group_by(RiskAssessment.level)
    ):
        levels[_v(level)] = n

    months = await _months(session, residents, period)

    # Signal check-ins of the period and what raised them (every assessment joined to one).
    in_period = and_(
        Checkin.resident_id.in_(residents), Checkin.created_at >= start, Checkin.created_at < end
    )
    evidence_rows = await session.execute(
        select(RiskAssessment.checkin_id, RiskAssessment.evidence)
        .join(Checkin, Checkin.id == RiskAssessment.checkin_id)
        .where(in_period)
    )
    raised: dict[str, set[tuple[str, str]]] = {}
    for checkin_id, evidence in evidence_rows:
        raised.setdefault(checkin_id, set()).update(raised_by(evidence))
    triggers: Counter[tuple[str, str]] = Counter()
    for pairs in raised.values():
        triggers.update(pairs)

    alerts: list[AlertRow] = []
    for opened_at, closed_at, urgency, acked_at, step, sent_at in await session.execute(
        select(
            Incident.opened_at,
            Incident.case_closed_at,
            Incident.urgency,
            Incident.acknowledged_at,
            Incident.step_position,
            OutboxMessage.sent_at,
        )
        .outerjoin(OutboxMessage, OutboxMessage.id == Incident.current_message_id)
        .where(
            Incident.resident_id.in_(residents),
            Incident.opened_at >= start,
            Incident.opened_at < end,
        )
    ):
        alerts.append(AlertRow(opened_at, closed_at, _v(urgency), acked_at, step, sent_at))
    messages = [
        MessageRow(created, sent, delivered_at, _v(delivery) == "delivered",
                   _v(status) == "failed")
        for created, sent, delivered_at, delivery, status in (
            await session.execute(
                select(OutboxMessage.created_at, OutboxMessage.sent_at, OutboxMessage.delivery_at,
                       OutboxMessage.delivery, OutboxMessage.status)
                .join(Incident, Incident.id == OutboxMessage.incident_id)
                .where(
                    Incident.resident_id.in_(residents),
                    Incident.opened_at >= start,
                    Incident.opened_at < end,
                )
            )
        ).all()
    ]  # fmt: skip

    findings: list[FindingRow] = []
    found = (
        await session.execute(
            select(ResidentFinding.at, ResidentFinding.finding, Checkin.id, Checkin.source)
            .join(Incident, Incident.id == ResidentFinding.incident_id)
            .join(Checkin, Checkin.id == Incident.checkin_id)
            .where(
                ResidentFinding.resident_id.in_(residents),
                ResidentFinding.at >= start,
                ResidentFinding.at < end,
            )
        )
    ).all()
    missing = [cid for _, _, cid, _ in found if cid not in raised]
    if missing:  # check-ins opened before the period, closed by a finding inside it
        for checkin_id, evidence in await session.execute(
            select(RiskAssessment.checkin_id, RiskAssessment.evidence).where(
                RiskAssessment.checkin_id.in_(missing)
            )
        ):
            raised.setdefault(checkin_id, set()).update(raised_by(evidence))
    for at, finding, checkin_id, source in found:
        findings.append(
            FindingRow(at, _v(finding), _v(source), tuple(sorted(raised.get(checkin_id, ()))))
        )

    tasks = [
        TaskRow(_v(kind), opened, resolved)
        for kind, opened, resolved in await session.execute(
            select(DeviceTask.kind, DeviceTask.opened_at, DeviceTask.resolved_at).where(
                DeviceTask.resident_id.in_(residents),
                DeviceTask.opened_at >= start,
                DeviceTask.opened_at < end,
            )
        )
    ]
    return ReportInput(
        district_code=district.code,
        district_name=district.name,
        dong=dong,
        period=period,
        residents_by_tier=dict(by_tier),
        residents_by_source=dict(by_source),
        levels_reached=levels,
        triggers=dict(triggers),
        months=months,
        alerts=alerts,
        messages=messages,
        findings=findings,
        tasks=tasks,
        ack_target_s=ack_target_s,
    )


async def _grouped(session: AsyncSession, stmt: Any) -> list[Any]:
    return list((await session.execute(stmt)).all())


def _bucket(column: Any, months: list[tuple[str, dt.datetime, dt.datetime]]) -> Any:
    """The month index of ``column`` (rows are already inside the period): one pass over a
    table answers every month, on both backends (no date functions)."""
    if len(months) == 1:
        return literal(0)
    return case(*((column < hi, i) for i, (_m, _lo, hi) in enumerate(months[:-1])),
                else_=len(months) - 1)  # fmt: skip


async def _months(session: AsyncSession, residents: Any, period: Period) -> list[MonthSlice]:
    months = period.months()
    start, end = period.start, period.end
    signals: list[dict[str, int]] = [{} for _ in months]
    sb = _bucket(SignalEvent.at, months)
    for b, source, n in await _grouped(
        session,
        select(sb, SignalEvent.source, func.count())
        .where(SignalEvent.resident_id.in_(residents), SignalEvent.at >= start,
               SignalEvent.at < end)
        .group_by(sb, SignalEvent.source),
    ):  # fmt: skip
        signals[b][source] = n
    opened = and_(
        Checkin.resident_id.in_(residents), Checkin.created_at >= start, Checkin.created_at < end
    )
    cb = _bucket(Checkin.created_at, months)
    checkins: list[dict[str, int]] = [{} for _ in months]
    outcomes: list[Counter[str]] = [Counter() for _ in months]
    for b, source, outcome, n in await _grouped(
        session,
        select(cb, Checkin.source, Checkin.outcome, func.count())
        .where(opened)
        .group_by(cb, Checkin.source, Checkin.outcome),
    ):
        checkins[b][_v(source)] = checkins[b].get(_v(source), 0) + n
        outcomes[b][_v(outcome)] += n
    attempts: list[dict[tuple[str, int | None], int]] = [{} for _ in months]
    for b, r, c, n in await _grouped(
        session,
        select(cb, CallAttempt.result, CallAttempt.hangup_cause, func.count())
        .join(Checkin, Checkin.id == CallAttempt.checkin_id)
        .where(opened)
        .group_by(cb, CallAttempt.result, CallAttempt.hangup_cause),
    ):
        attempts[b][(_v(r), c)] = n
    per = (
        select(cb.label("b"), func.count().label("n"))
        .select_from(CallAttempt)
        .join(Checkin, Checkin.id == CallAttempt.checkin_id)
        .where(opened)
        .group_by(CallAttempt.checkin_id, Checkin.created_at)
        .subquery()
    )
    per_case: list[dict[int, int]] = [{} for _ in months]
    for b, k, n in await _grouped(
        session, select(per.c.b, per.c.n, func.count()).group_by(per.c.b, per.c.n)
    ):
        per_case[b][int(k)] = n
    escalated = [0 for _ in months]
    for b, n in await _grouped(
        session,
        select(cb, func.count())
        .select_from(Incident)
        .join(Checkin, Checkin.id == Incident.checkin_id)
        .where(opened)
        .group_by(cb),
    ):
        escalated[b] = n
    changes: list[Counter[str]] = [Counter() for _ in months]
    ab = _bucket(RiskAssessment.assessed_at, months)
    for b, level, previous, n in await _grouped(
        session,
        select(ab, RiskAssessment.level, RiskAssessment.previous_level, func.count())
        .where(
            RiskAssessment.resident_id.in_(residents),
            RiskAssessment.assessed_at >= start,
            RiskAssessment.assessed_at < end,
        )
        .group_by(ab, RiskAssessment.level, RiskAssessment.previous_level),
    ):
        if Level(_v(level)).rank > Level(_v(previous)).rank:
            changes[b][_v(level)] += n
    return [
        MonthSlice(m, signals[i], checkins[i], dict(outcomes[i]), attempts[i], per_case[i],
                   escalated[i], dict(changes[i]))
        for i, (m, _lo, _hi) in enumerate(months)
    ]  # fmt: skip
