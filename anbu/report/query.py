"""Read what the report needs from the database (SQLite or PostgreSQL, the same statements).

Counts are grouped by the database, one statement per table and month; only the rows that
percentiles need (alerts, their messages, findings, device tasks) and the evidence of the
check-ins that were raised by signals come back as rows. :mod:`anbu.report.figures` computes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import DateTime, and_, bindparam, case, func, literal, select, text, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.base import UtcDateTime
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


async def read_input(
    sessions: async_sessionmaker[AsyncSession],
    district_code: str,
    period: Period,
    dong: str | None = None,
    ack_target_s: float = 600.0,
) -> ReportInput:
    async with sessions() as session:
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
                raise ReportArgumentError(
                    f"no resident of district {district_code} in dong {dong!r}"
                )
        # A deployment usually serves one district: then every row is in scope and the filter
        # (a semi-join of every signal and check-in against the district's residents) is left out.
        others = await session.scalar(
            select(Resident.id).where(Resident.district_id != district.id).limit(1)
        )
        dialect = session.get_bind().dialect.name
    whole = dong is None and others is None
    members = select(Resident.id).where(*scope).scalar_subquery()

    def residents_in(column: Any) -> Any:
        return true() if whole else column.in_(members)

    start, end = period.start, period.end
    months = period.months()
    q: dict[str, Any] = {}
    q["tiers"] = (
        select(MonitoringProfile.tier, func.count())
        .select_from(Resident)
        .outerjoin(MonitoringProfile, MonitoringProfile.resident_id == Resident.id)
        .where(*scope, Resident.active.is_(True))
        .group_by(MonitoringProfile.tier)
    )
    q["call_records"] = (
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
    owners = (
        select(Device.kind, Device.resident_id)
        .where(residents_in(Device.resident_id), Device.active.is_(True))
        .distinct()
        .subquery()
    )  # DISTINCT as a hash aggregate: count(DISTINCT ...) sorts
    q["devices"] = select(owners.c.kind, func.count()).group_by(owners.c.kind)
    graded = (
        select(RiskAssessment.level, RiskAssessment.resident_id)
        .where(
            residents_in(RiskAssessment.resident_id),
            RiskAssessment.assessed_at >= start,
            RiskAssessment.assessed_at < end,
        )
        .distinct()
        .subquery()
    )
    q["levels"] = select(graded.c.level, func.count()).group_by(graded.c.level)
    sb = _bucket(SignalEvent.at, months, dialect)
    q["signals"] = (
        select(sb, SignalEvent.source, func.count())
        .where(residents_in(SignalEvent.resident_id), SignalEvent.at >= start,
               SignalEvent.at < end)
        .group_by(sb, SignalEvent.source)
    )  # fmt: skip
    opened = and_(
        residents_in(Checkin.resident_id), Checkin.created_at >= start, Checkin.created_at < end
    )
    cb = _bucket(Checkin.created_at, months, dialect)
    q["checkins"] = (
        select(cb, Checkin.source, Checkin.outcome, func.count())
        .where(opened)
        .group_by(cb, Checkin.source, Checkin.outcome)
    )
    q["attempts"] = (
        select(cb, CallAttempt.result, CallAttempt.hangup_cause, CallAttempt.attempt_no,
               func.count())
        .join(Checkin, Checkin.id == CallAttempt.checkin_id)
        .where(opened)
        .group_by(cb, CallAttempt.result, CallAttempt.hangup_cause, CallAttempt.attempt_no)
    )  # fmt: skip
    q["escalated"] = (
        select(cb, func.count())
        .select_from(Incident)
        .join(Checkin, Checkin.id == Incident.checkin_id)
        .where(opened)
        .group_by(cb)
    )
    ab = _bucket(RiskAssessment.assessed_at, months, dialect)
    q["changes"] = (
        select(ab, RiskAssessment.level, RiskAssessment.previous_level, func.count())
        .where(
            residents_in(RiskAssessment.resident_id),
            RiskAssessment.assessed_at >= start,
            RiskAssessment.assessed_at < end,
        )
        .group_by(ab, RiskAssessment.level, RiskAssessment.previous_level)
    )
    # What raised the signal check-ins of the period: (channel, rule) -> check-ins.
    scope_sql = "1 = 1"
    params: dict[str, Any] = {}
    if not whole:
        scope_sql = "c.resident_id IN (SELECT id FROM residents WHERE district_id = :district"
        scope_sql += " AND dong = :dong)" if dong else ")"
        params.update(district=district.id, **({"dong": dong} if dong else {}))
    period_sql = f"c.created_at >= :start AND c.created_at < :end AND {scope_sql}"
    q["triggers"] = text(
        f"SELECT channel, status, severe, COUNT(DISTINCT checkin_id)"
        f" FROM ({_raised_sql(dialect, period_sql)}) r GROUP BY channel, status, severe"
    ).bindparams(*_times(start, end), **params)
    alerted = and_(
        residents_in(Incident.resident_id), Incident.opened_at >= start, Incident.opened_at < end
    )
    q["alerts"] = (
        select(
            Incident.opened_at,
            Incident.case_closed_at,
            Incident.urgency,
            Incident.acknowledged_at,
            Incident.step_position,
            OutboxMessage.sent_at,
        )
        .outerjoin(OutboxMessage, OutboxMessage.id == Incident.current_message_id)
        .where(alerted)
    )
    q["messages"] = (
        select(OutboxMessage.created_at, OutboxMessage.sent_at, OutboxMessage.delivery_at,
               OutboxMessage.delivery, OutboxMessage.status)
        .join(Incident, Incident.id == OutboxMessage.incident_id)
        .where(alerted)
    )  # fmt: skip
    q["findings"] = (
        select(ResidentFinding.at, ResidentFinding.finding, Checkin.id, Checkin.source)
        .join(Incident, Incident.id == ResidentFinding.incident_id)
        .join(Checkin, Checkin.id == Incident.checkin_id)
        .where(
            residents_in(ResidentFinding.resident_id),
            ResidentFinding.at >= start,
            ResidentFinding.at < end,
        )
    )
    q["tasks"] = select(DeviceTask.kind, DeviceTask.opened_at, DeviceTask.resolved_at).where(
        residents_in(DeviceTask.resident_id),
        DeviceTask.opened_at >= start,
        DeviceTask.opened_at < end,
    )
    r = await _fetch_all(sessions, q, concurrent=dialect == "postgresql")

    by_tier: Counter[str] = Counter()
    for tier, n in r["tiers"]:
        by_tier[_v(tier) or "none"] += n
    by_source: Counter[str] = Counter()
    by_source["call_records"] = r["call_records"][0][0] or 0
    for kind, n in r["devices"]:
        by_source[_DEVICE_SOURCE[DeviceKind(_v(kind))]] += n
    levels = {_v(level): n for level, n in r["levels"]}

    signals: list[dict[str, int]] = [{} for _ in months]
    for b, source, n in r["signals"]:
        signals[b][source] = n
    checkins: list[Counter[str]] = [Counter() for _ in months]
    outcomes: list[Counter[str]] = [Counter() for _ in months]
    for b, source, outcome, n in r["checkins"]:
        checkins[b][_v(source)] += n
        outcomes[b][_v(outcome)] += n
    attempts: list[Counter[tuple[str, int | None]]] = [Counter() for _ in months]
    numbered: list[Counter[int]] = [Counter() for _ in months]  # attempt number -> attempts
    for b, res, cause, no, n in r["attempts"]:
        attempts[b][(_v(res), cause)] += n
        numbered[b][no] += n
    # Attempts are numbered 1, 2, ... per check-in, so the check-ins with exactly k attempts
    # are those with an attempt k less those with an attempt k + 1 (no grouping by check-in).
    per_case = [
        {k: v - m[k + 1] for k, v in sorted(m.items()) if v - m[k + 1] > 0} for m in numbered
    ]
    escalated = [0 for _ in months]
    for b, n in r["escalated"]:
        escalated[b] = n
    changes: list[Counter[str]] = [Counter() for _ in months]
    for b, level, previous, n in r["changes"]:
        if Level(_v(level)).rank > Level(_v(previous)).rank:
            changes[b][_v(level)] += n
    slices = [
        MonthSlice(m, signals[i], dict(checkins[i]), dict(outcomes[i]), dict(attempts[i]),
                   per_case[i], escalated[i], dict(changes[i]))
        for i, (m, _lo, _hi) in enumerate(months)
    ]  # fmt: skip
    triggers: Counter[tuple[str, str]] = Counter()
    for channel, status, severe, n in r["triggers"]:
        triggers[(channel, _rule(status, severe))] += n
    alerts = [
        AlertRow(opened_at, closed_at, _v(urgency), acked_at, step, sent_at)
        for opened_at, closed_at, urgency, acked_at, step, sent_at in r["alerts"]
    ]
    messages = [
        MessageRow(created, sent, delivered_at, _v(delivery) == "delivered",
                   _v(status) == "failed")
        for created, sent, delivered_at, delivery, status in r["messages"]
    ]  # fmt: skip
    # What raised the check-ins that findings closed (some opened before the period).
    raised: dict[str, set[tuple[str, str]]] = {}
    ids = sorted({cid for _, _, cid, _ in r["findings"]})
    by_ids = text(_raised_sql(dialect, "ra.checkin_id IN :ids")).bindparams(
        bindparam("ids", expanding=True)
    )
    async with sessions() as session:
        for chunk in (ids[i : i + 5000] for i in range(0, len(ids), 5000)):
            for cid, channel, status, severe in await session.execute(by_ids, {"ids": chunk}):
                raised.setdefault(cid, set()).add((channel, _rule(status, severe)))
    findings = [
        FindingRow(at, _v(finding), _v(source), tuple(sorted(raised.get(checkin_id, ()))))
        for at, finding, checkin_id, source in r["findings"]
    ]
    tasks = [TaskRow(_v(kind), opened, resolved) for kind, opened, resolved in r["tasks"]]
    return ReportInput(
        district_code=district.code,
        district_name=district.name,
        dong=dong,
        period=period,
        residents_by_tier=dict(by_tier),
        residents_by_source=dict(by_source),
        levels_reached=levels,
        triggers=dict(triggers),
        months=slices,
        alerts=alerts,
        messages=messages,
        findings=findings,
        tasks=tasks,
        ack_target_s=ack_target_s,
    )


async def _fetch_all(
    sessions: async_sessionmaker[AsyncSession], statements: dict[str, Any], *, concurrent: bool
) -> dict[str, list[Any]]:
    """Every statement's rows. On PostgreSQL they run at once, each on its own connection (one
    REPEATABLE READ snapshot is not shared, so figures of rows written during the report may
    differ by those rows); SQLite reads them one after the other."""

    async def one(stmt: Any) -> list[Any]:
        async with sessions() as session:
            return list((await session.execute(stmt)).all())

    if not concurrent:
        return {k: await one(v) for k, v in statements.items()}
    # Four at a time: enough to keep the server's cores busy.
    gate = asyncio.Semaphore(4)

    async def gated(stmt: Any) -> list[Any]:
        async with gate:
            return await one(stmt)

    names = list(statements)
    rows = await asyncio.gather(*(gated(statements[k]) for k in names))
    return dict(zip(names, rows, strict=True))


def _times(start: dt.datetime, end: dt.datetime) -> Any:
    return (
        bindparam("start", start, type_=UtcDateTime()),
        bindparam("end", end, type_=UtcDateTime()),
    )


def _rule(status: str, severe: Any) -> str:
    return "quiet_long" if status == "quiet" and bool(severe) else status


def _raised_sql(dialect: str, where: str) -> str:
    """Rows (checkin_id, channel, status, severe): each channel quiet or low in an assessment
    that opened or joined a check-in, read from the evidence JSON by the database itself
    (decoding every evidence document in Python costs seconds for a year of a district)."""
    if dialect == "postgresql":
        return (
            "SELECT ra.checkin_id AS checkin_id, e->>'channel' AS channel,"
            " e->>'status' AS status, COALESCE((e->>'severe')::boolean, false) AS severe"
            " FROM risk_assessments ra JOIN checkins c ON c.id = ra.checkin_id"
            " CROSS JOIN LATERAL json_array_elements(ra.evidence->'channels') AS e"
            f" WHERE e->>'status' IN ('quiet', 'low') AND {where}"
        )
    return (
        "SELECT ra.checkin_id AS checkin_id, json_extract(e.value, '$.channel') AS channel,"
        " json_extract(e.value, '$.status') AS status,"
        " COALESCE(json_extract(e.value, '$.severe'), 0) AS severe"
        " FROM risk_assessments ra JOIN checkins c ON c.id = ra.checkin_id,"
        " json_each(ra.evidence, '$.channels') AS e"
        f" WHERE json_extract(e.value, '$.status') IN ('quiet', 'low') AND {where}"
    )


def _bucket(column: Any, months: list[tuple[str, dt.datetime, dt.datetime]], dialect: str) -> Any:
    """The month index of ``column`` (rows are already inside the period), so one pass over a
    table answers every month: PostgreSQL's ``width_bucket`` over the month boundaries (a
    binary search), elsewhere a CASE."""
    if len(months) == 1:
        return literal(0)
    bounds = [hi for _m, _lo, hi in months[:-1]]
    if dialect == "postgresql":
        return func.width_bucket(
            column, bindparam(None, bounds, type_=postgresql.ARRAY(DateTime(timezone=True)))
        )
    return case(*((column < hi, i) for i, hi in enumerate(bounds)), else_=len(months) - 1)
