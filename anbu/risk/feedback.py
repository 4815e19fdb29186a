"""Outcome feedback, stored: a finding widens (or, for a true alarm, un-widens) a person's
thresholds for the sources that raised the alert (rule: :mod:`anbu.domain.feedback`).

Every widening is a row of ``feedback_steps``; the sum of the rows not reverted is kept on the
profile (``monitoring_profiles.widen_h``), which is what grading reads. Callers commit.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import false, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import Resident
from anbu.db.models_feedback import FeedbackStep, RuleFinding
from anbu.db.models_signals import MonitoringProfile, RiskAssessment
from anbu.domain.feedback import (
    FindingEffect,
    RuleRecord,
    decide,
    decode,
    effect_of,
    effective,
    encode,
    raised_by,
    strict_low_channels,
)
from anbu.domain.risk import Channel
from anbu.errors import NotFoundError
from anbu.risk.store import profile_rules

log = logging.getLogger(__name__)


async def on_finding(
    session: AsyncSession,
    *,
    resident_id: str,
    finding: str,
    now: dt.datetime,
    incident_id: str | None = None,
    checkin_id: str | None = None,
    assessment_id: str | None = None,
) -> list[FeedbackStep]:
    """Apply one finding about the alert that ``checkin_id`` (an alert's check-in) or
    ``assessment_id`` (a 관심 record, no call) stands for. Returns the new widening steps."""
    profile = await session.get(MonitoringProfile, resident_id)
    if profile is None:
        return []
    query = select(RiskAssessment.evidence).where(RiskAssessment.resident_id == resident_id)
    if checkin_id is not None:
        query = query.where(RiskAssessment.checkin_id == checkin_id)
    elif assessment_id is not None:
        query = query.where(RiskAssessment.id == assessment_id)
    else:
        query = query.where(false())
    pairs = {
        pair
        for evidence in (await session.execute(query)).scalars()
        for pair in raised_by(evidence)
    }
    await _count(session, resident_id, pairs, effect_of(finding), now)
    active = await _active(session, resident_id)
    current: dict[Channel, float] = {}
    for s in active:
        current[s.channel] = current.get(s.channel, 0.0) + s.hours
    decision = decide(finding, pairs, profile_rules(profile).window_h, current)
    if decision.revert_all:
        for s in active:
            s.reverted_at = now
            s.reverted_why = f"true alarm: {finding}"
        log.info("resident %s: %s, %d widening step(s) undone", resident_id, finding, len(active))
    steps = [
        FeedbackStep(
            resident_id=resident_id,
            channel=channel,
            hours=hours,
            finding=finding,
            incident_id=incident_id,
            assessment_id=assessment_id,
            created_at=now,
        )
        for channel, hours in decision.widen
    ]
    session.add_all(steps)
    if steps or decision.revert_all:
        await session.flush()
        await _refresh(session, profile, now)
        log.info("resident %s: %s widened %s", resident_id, finding, profile.widen_h or "nothing")
    return steps


async def _count(
    session: AsyncSession,
    resident_id: str,
    pairs: set[tuple[str, str]],
    effect: FindingEffect,
    now: dt.datetime,
) -> None:
    """Add one finding to its district's record of each (channel, rule) that raised the alert."""
    if effect is FindingEffect.NONE or not pairs:
        return
    district_id = (
        await session.execute(select(Resident.district_id).where(Resident.id == resident_id))
    ).scalar_one()
    for channel, rule in sorted(pairs):
        key = (district_id, Channel(channel), rule)
        row = await session.get(RuleFinding, key)
        if row is None:
            row = RuleFinding(
                district_id=district_id,
                channel=Channel(channel),
                rule=rule,
                false_alarms=0,
                true_alarms=0,
                updated_at=now,
            )
            try:
                async with session.begin_nested():
                    session.add(row)
            except IntegrityError:  # another finding in the district created it meanwhile
                row = await session.get(RuleFinding, key, populate_existing=True)
                assert row is not None
        record = RuleRecord(row.false_alarms, row.true_alarms).add(effect)
        row.false_alarms, row.true_alarms, row.updated_at = (
            record.false_alarms,
            record.true_alarms,
            now,
        )


async def strict_low_by_district(session: AsyncSession) -> dict[int, frozenset[Channel]]:
    """Per district, the channels whose lone LOW needs the stricter guard (one small read per
    grading pass: a handful of rows per district)."""
    records: dict[int, dict[tuple[str, str], RuleRecord]] = {}
    for r in (await session.execute(select(RuleFinding))).scalars():
        records.setdefault(r.district_id, {})[(r.channel.value, r.rule)] = RuleRecord(
            r.false_alarms, r.true_alarms
        )
    out = {d: strict_low_channels(rec) for d, rec in records.items()}
    return {d: chans for d, chans in out.items() if chans}


async def _active(session: AsyncSession, resident_id: str) -> list[FeedbackStep]:
    return list(
        (
            await session.execute(
                select(FeedbackStep)
                .where(FeedbackStep.resident_id == resident_id, FeedbackStep.reverted_at.is_(None))
                .order_by(FeedbackStep.created_at, FeedbackStep.id)
            )
        ).scalars()
    )


async def _refresh(session: AsyncSession, profile: MonitoringProfile, now: dt.datetime) -> None:
    steps = await _active(session, profile.resident_id)
    base = profile_rules(profile).window_h
    profile.widen_h = encode(effective(((s.channel, s.hours) for s in steps), base))
    profile.updated_at = now


async def list_steps(session: AsyncSession, resident_id: str) -> list[FeedbackStep]:
    """Every widening step of a resident, newest first (reverted ones included)."""
    return list(
        (
            await session.execute(
                select(FeedbackStep)
                .where(FeedbackStep.resident_id == resident_id)
                .order_by(FeedbackStep.created_at.desc(), FeedbackStep.channel)
            )
        ).scalars()
    )


async def get_step(session: AsyncSession, step_id: str) -> FeedbackStep:
    step = await session.get(FeedbackStep, step_id)
    if step is None:
        raise NotFoundError("feedback step", step_id)
    return step


async def revert(
    session: AsyncSession, step: FeedbackStep, now: dt.datetime, why: str = "reverted"
) -> FeedbackStep:
    """Undo one widening step (the profile's widening in force follows). Idempotent."""
    if step.reverted_at is None:
        step.reverted_at = now
        step.reverted_why = why[:200]
        await session.flush()
        profile = await session.get(MonitoringProfile, step.resident_id)
        if profile is not None:
            await _refresh(session, profile, now)
    return step


def widening_in_force(profile: MonitoringProfile) -> dict[str, float]:
    return {c.value: h for c, h in decode(profile.widen_h)}
