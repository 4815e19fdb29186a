"""Evaluate residents: grade them, keep the level history, open check-ins and device tasks.

Shared by the ingestion fast path and the periodic sweep. A check-in is opened (or joined) only
when the level *rises* to 주의 or 심각, so a resident who stays quiet after answering "I'm fine"
is not called again every sweep; a further rise (주의 -> 심각) calls again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import Resident
from anbu.db.models_signals import DeviceTask, MonitoringProfile, RiskAssessment
from anbu.domain.checkin import CheckinSource
from anbu.domain.risk import DEFAULT_RULES, Assessment, Level, Rules, TaskStatus, assess
from anbu.risk.store import chunks, load_baselines, load_devices, load_holds, profile_rules
from anbu.services.checkins import open_checkin

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Evaluation:
    resident_id: str
    level: Level
    previous: Level
    explanation: str
    checkin_id: str | None = None
    checkin_created: bool = False
    tasks_opened: int = 0

    @property
    def changed(self) -> bool:
        return self.level is not self.previous


async def evaluate_residents(
    session: AsyncSession,
    resident_ids: Sequence[str],
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
) -> list[Evaluation]:
    """Assess each resident at ``now`` and act on the result. The caller commits."""
    ids = sorted(set(resident_ids))
    if not ids:
        return []
    profiles: dict[str, MonitoringProfile] = {}
    active: dict[str, bool] = {}
    for part in chunks(ids):
        rows = await session.execute(
            select(MonitoringProfile, Resident.active)
            .join(Resident, Resident.id == MonitoringProfile.resident_id)
            .where(MonitoringProfile.resident_id.in_(part))
        )
        for p, is_active in rows:
            profiles[p.resident_id] = p
            active[p.resident_id] = is_active
    ids = [i for i in ids if i in profiles]
    baselines = await load_baselines(session, ids)
    devices = await load_devices(session, ids)
    holds = await load_holds(session, ids, now)
    open_tasks: set[str] = set()
    for part in chunks(ids):
        open_tasks.update(
            (
                await session.execute(
                    select(DeviceTask.device_pk).where(
                        DeviceTask.resident_id.in_(part), DeviceTask.status == TaskStatus.OPEN
                    )
                )
            ).scalars()
        )

    out: list[Evaluation] = []
    for rid in ids:
        p = profiles[rid]
        rules_p = profile_rules(p)
        if not active[rid]:
            rules_p = type(rules_p)(enabled=False)
        devs = devices.get(rid, [])
        a = assess(
            rules_p, baselines.get(rid, {}), [v for _, v in devs], holds.get(rid, []), now, rules
        )
        out.append(await _act(session, p, a, devs, open_tasks, now))
    return out


async def _act(
    session: AsyncSession,
    p: MonitoringProfile,
    a: Assessment,
    devs: Sequence[tuple[str, object]],
    open_tasks: set[str],
    now: dt.datetime,
) -> Evaluation:
    previous = p.level
    checkin_id: str | None = None
    created = False
    if a.level is not previous:
        record = RiskAssessment(
            resident_id=p.resident_id,
            level=a.level,
            previous_level=previous,
            evidence=a.evidence(),
            explanation=a.explanation,
            assessed_at=now,
        )
        if a.level.opens_checkin and a.level.rank > previous.rank:
            resident = await session.get(Resident, p.resident_id)
            assert resident is not None  # FK
            checkin, created = await open_checkin(
                session,
                resident,
                source=CheckinSource.SIGNAL,
                reason=a.explanation,
                now=now,
                priority=a.level.priority,
            )
            checkin_id = record.checkin_id = checkin.id
            log.info(
                "resident %s risk %s -> %s: check-in %s (%s)",
                p.resident_id,
                previous.value,
                a.level.value,
                checkin.id,
                "opened" if created else "joined",
            )
        session.add(record)
        p.level = a.level
        p.level_since = now
    tasks = 0
    pk_by_device = {getattr(v, "device_id", ""): pk for pk, v in devs}
    for issue in a.device_issues:
        pk = pk_by_device.get(issue.device_id)
        if pk is None or pk in open_tasks:
            continue
        session.add(
            DeviceTask(
                device_pk=pk,
                resident_id=p.resident_id,
                kind=issue.kind,
                status=TaskStatus.OPEN,
                detail=issue.describe(),
                opened_at=now,
            )
        )
        open_tasks.add(pk)
        tasks += 1
        log.info("resident %s: device task for %s (%s)", p.resident_id, issue.device_id, issue.kind)
    return Evaluation(p.resident_id, a.level, previous, a.explanation, checkin_id, created, tasks)
