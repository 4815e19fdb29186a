"""Ingestion grades residents from what the batch holds in memory; the sweep grades them from
what is stored. Both must reach the same verdict, on SQLite and PostgreSQL.

The ingestion path never reads the baselines, devices and profiles back after storing them (it
folds the batch into the baselines it loaded and applies the new device liveness itself). If
that in-memory picture drifted from the stored one (a channel seen for the first time, a device
that came back online, rounding), the fast path and the sweep would disagree about a resident.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models_signals import MonitoringProfile, RiskAssessment, SignalEvent, SignalState
from anbu.domain.risk import Level, RiskCategory, Tier
from anbu.risk.evaluate import Subject, evaluate_residents, grade
from anbu.risk.ingest import IngestReport, ingest
from anbu.risk.schemas import SignalEventIn
from anbu.risk.store import rules_from
from anbu.risk.sweep import sweep
from devstack.sim import Story, simulate
from tests.risk_support import END, START, TURN, feed, life_stories, person, register


async def test_given_life_stories_when_each_day_is_ingested_then_its_grades_match_a_stored_read(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    people = [*life_stories(), person("app", Story.DECLINE, Tier.APP)]
    await register(sessions, people)
    compared = 0
    seen_levels: set[Level] = set()

    async def same_as_stored(report: IngestReport, now: dt.datetime) -> None:
        nonlocal compared
        fast = {e.resident_id: (e.level, e.explanation) for e in report.evaluations}
        async with sessions() as s:
            stored = await evaluate_residents(s, sorted(fast), now)
            await s.rollback()
        assert {e.resident_id: (e.level, e.explanation) for e in stored} == fast, now
        compared += len(fast)
        seen_levels.update(level for level, _ in fast.values())

    events = (e for p in people for e in simulate(p, start=START, end=END, turn=TURN, seed=11))
    # Half-day batches, so a day's profile folds inside a batch as well as between batches.
    await feed(sessions, events, step=dt.timedelta(hours=12), until=END, after=same_as_stored)

    assert compared > 200
    # The stories reach every level, so the comparison covered more than quiet days.
    assert {Level.NONE, Level.CONCERN, Level.CAUTION, Level.SERIOUS} <= seen_levels


async def test_given_a_level_changed_meanwhile_when_a_stale_grade_is_recorded_then_it_is_dropped(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register(sessions, [person("r1", Story.NORMAL)])
    async with sessions() as s:
        p = await s.get(MonitoringProfile, "r1")
        assert p is not None
        p.level = Level.SERIOUS  # graded by someone else (the sweep) after our batch read it
        await s.commit()
    stale = Subject("r1", rules_from(Tier.IOT, RiskCategory.MEDIUM, None, True, True, True, True),
                    Level.CONCERN, {}, [])  # fmt: skip
    async with sessions() as s:
        (result,) = await grade(s, [stale], START)
        await s.commit()
    assert result.level is Level.NONE  # what this grading saw (no history: nothing to judge)
    assert not result.changed  # ... and did not record
    async with sessions() as s:
        p = await s.get(MonitoringProfile, "r1")
        assert p is not None
        assert p.level is Level.SERIOUS
        assert (await s.execute(select(func.count()).select_from(RiskAssessment))).scalar() == 0


async def test_given_due_times_marked_stale_when_swept_then_refreshed_and_not_candidates_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    people = [person("n1", Story.NORMAL), person("n2", Story.NORMAL, Tier.CALLS)]
    await register(sessions, people)
    end = START + dt.timedelta(days=5)
    events = sorted(
        (e for p in people for e in simulate(p, start=START, end=end, turn=end, seed=3)),
        key=lambda e: e["at"],
    )
    async with sessions() as s:
        batch = [(i, SignalEventIn.model_validate(e)) for i, e in enumerate(events)]
        assert (await ingest(s, batch, now=end)).errors == []
    async with sessions() as s:
        computed = await _due_times(s, "n1")
        # As migration 0005 leaves them: every row due now.
        await s.execute(update(SignalState).values(status_due_at=end))
        await s.commit()
    first = await sweep(sessions, end)
    assert first.candidates == 2
    async with sessions() as s:
        rows = (await s.execute(select(SignalState.resident_id, SignalState.status_due_at))).all()
        refreshed = await _due_times(s, "n1")
    assert first.due_refreshed == len(rows) > 2
    assert refreshed == computed  # what ingestion had stored
    assert all(due is None or due > end for _, due in rows)
    assert (await sweep(sessions, end)).candidates == 0


async def _due_times(s: AsyncSession, rid: str) -> dict[object, object]:
    q = select(SignalState.channel, SignalState.status_due_at).where(SignalState.resident_id == rid)
    return {row[0]: row[1] for row in (await s.execute(q)).all()}


async def test_given_recording_grades_fails_when_ingested_then_events_kept_and_residents_due(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    people = [person("f1", Story.NORMAL, Tier.CALLS)]
    await register(sessions, people)
    end = START + dt.timedelta(days=2)
    events = simulate(people[0], start=START, end=end, turn=end, seed=5)

    async def broken(*_a: object, **_k: object) -> list[object]:
        raise RuntimeError("check-in service down")

    monkeypatch.setattr("anbu.risk.ingest.act", broken)
    async with sessions() as s:
        batch = [(i, SignalEventIn.model_validate(e)) for i, e in enumerate(events)]
        report = await ingest(s, batch, now=end)
    assert (report.accepted, report.errors, report.evaluations) == (len(events), [], [])
    async with sessions() as s:
        stored = (await s.execute(select(func.count()).select_from(SignalEvent))).scalar()
        dues = await _due_times(s, "f1")
    assert stored == len(events)
    assert set(dues.values()) == {end}  # the next sweep grades them
    assert (await sweep(sessions, end)).candidates == 1
