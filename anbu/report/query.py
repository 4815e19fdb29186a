"""Read what the report needs from the database (SQLite or PostgreSQL, the same statements).

Counts are grouped by the database, one statement per table and month; only the rows that
percentiles need (alerts, their messages, findings, device tasks) and the evidence of the
check-ins that were raised by signals come back as rows. :mod:`anbu.report.figures` computes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import and_, distinct, func, select
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


def triggers_of(evidence: dict[str, Any]) -> set[tuple[str, str]]:
    """The (channel, rule) pairs that raised an assessment: quiet, long quiet, or low."""
    out: set[tuple[str, str]] = set()
    for c in evidence.get("channels", []):
        status = c.get("status")
        if status == "quiet":
            out.add((c["channel"], "quiet_long" if c.get("severe") else "quiet"))
        elif status == "low":
            out.add((c["channel"], "low"))
    return out


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

    months = [await _month(session, residents, m, lo, hi) for m, lo, hi in period.months()]

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
        raised.setdefault(checkin_id, set()).update(triggers_of(evidence))
    triggers: Counter[tuple[str, str]] = Counter()
    for pairs in raised.values():
        triggers.update(pairs)

    alerts: list[AlertRow] = []
    alert_ids: list[str] = []
    for inc, sent_at in await session.execute(
        select(Incident, OutboxMessage.sent_at)
        .outerjoin(OutboxMessage, OutboxMessage.id == Incident.current_message_id)
        .where(
            Incident.resident_id.in_(residents),
            Incident.opened_at >= start,
            Incident.opened_at < end,
        )
    ):
        alert_ids.append(inc.id)
        alerts.append(
            AlertRow(
                inc.opened_at,
                inc.case_closed_at,
                _v(inc.urgency),
                inc.acknowledged_at,
                inc.step_position,
                sent_at,
            )
        )
    messages = [
        MessageRow(m.created_at, m.sent_at, m.delivery_at, _v(m.delivery) == "delivered",
                   _v(m.status) == "failed")
        for m in (
            await session.execute(
                select(OutboxMessage)
                .join(Incident, Incident.id == OutboxMessage.incident_id)
                .where(
                    Incident.resident_id.in_(residents),
                    Incident.opened_at >= start,
                    Incident.opened_at < end,
                )
            )
        ).scalars()
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
            raised.setdefault(checkin_id, set()).update(triggers_of(evidence))
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


async def _month(
    session: AsyncSession, residents: Any, month: str, lo: dt.datetime, hi: dt.datetime
) -> MonthSlice:
    signals: dict[str, int] = dict(
        await _grouped(
            session,
            select(SignalEvent.source, func.count())
            .where(
                SignalEvent.resident_id.in_(residents), SignalEvent.at >= lo, SignalEvent.at < hi
            )
            .group_by(SignalEvent.source),
        )
    )
    opened = and_(
        Checkin.resident_id.in_(residents), Checkin.created_at >= lo, Checkin.created_at < hi
    )
    checkins = {
        _v(s): n
        for s, n in await _grouped(
            session, select(Checkin.source, func.count()).where(opened).group_by(Checkin.source)
        )
    }
    outcomes = {
        _v(o): n
        for o, n in await _grouped(
            session, select(Checkin.outcome, func.count()).where(opened).group_by(Checkin.outcome)
        )
    }
    attempts = {
        (_v(r), c): n
        for r, c, n in await _grouped(
            session,
            select(CallAttempt.result, CallAttempt.hangup_cause, func.count())
            .join(Checkin, Checkin.id == CallAttempt.checkin_id)
            .where(opened)
            .group_by(CallAttempt.result, CallAttempt.hangup_cause),
        )
    }
    per = (
        select(func.count().label("n"))
        .select_from(CallAttempt)
        .join(Checkin, Checkin.id == CallAttempt.checkin_id)
        .where(opened)
        .group_by(CallAttempt.checkin_id)
        .subquery()
    )
    per_case = {
        int(k): n
        for k, n in await _grouped(session, select(per.c.n, func.count()).group_by(per.c.n))
    }
    escalated = (
        await session.scalar(
            select(func.count())
            .select_from(Incident)
            .join(Checkin, Checkin.id == Incident.checkin_id)
            .where(opened)
        )
        or 0
    )
    changes: Counter[str] = Counter()
    for level, previous, n in await _grouped(
        session,
        select(RiskAssessment.level, RiskAssessment.previous_level, func.count())
        .where(
            RiskAssessment.resident_id.in_(residents),
            RiskAssessment.assessed_at >= lo,
            RiskAssessment.assessed_at < hi,
        )
        .group_by(RiskAssessment.level, RiskAssessment.previous_level),
    ):
        if Level(_v(level)).rank > Level(_v(previous)).rank:
            changes[_v(level)] += n
    return MonthSlice(
        month,
        signals,
        checkins,
        outcomes,
        attempts,
        per_case,
        escalated,
        dict(changes),
    )
