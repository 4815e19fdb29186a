"""Simulated life stories through ingestion and the sweep, on SQLite and PostgreSQL.

Each story runs three weeks of simulated signals through the real ingestion service (one batch
per simulated day, the clock at the batch's end), then the sweep; it must end in the right
level, the right check-in (or none), the right device task, and an explanation that names the
quiet sources and how long they have been quiet.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import Checkin
from anbu.db.models_signals import (
    DeviceTask,
    MonitoringProfile,
    RiskAssessment,
    SignalEvent,
    SignalState,
)
from anbu.domain.checkin import CheckinSource, CheckinStatus
from anbu.domain.risk import (
    DeviceIssueKind,
    Level,
    TaskStatus,
)
from anbu.risk.ingest import ingest
from anbu.risk.schemas import SignalEventIn
from anbu.risk.sweep import sweep
from devstack.sim import SimResident, Story, simulate
from tests.risk_support import END, START, TURN, feed, life_stories, person, register


async def _live(
    sessions: async_sessionmaker[AsyncSession], people: list[SimResident], until: dt.datetime
) -> None:
    """Daily batches of everyone's story (turning at TURN) up to ``until``."""
    events = (e for p in people for e in simulate(p, start=START, end=until, turn=TURN, seed=7))
    await feed(sessions, events, step=dt.timedelta(days=1), until=until)


async def _state(
    s: AsyncSession, rid: str
) -> tuple[Level, list[Checkin], list[DeviceTask], list[RiskAssessment]]:
    p = await s.get(MonitoringProfile, rid)
    assert p is not None
    checkins = list((await s.execute(select(Checkin).where(Checkin.resident_id == rid))).scalars())
    tasks = list(
        (await s.execute(select(DeviceTask).where(DeviceTask.resident_id == rid))).scalars()
    )
    history = list(
        (
            await s.execute(
                select(RiskAssessment)
                .where(RiskAssessment.resident_id == rid)
                .order_by(RiskAssessment.assessed_at)
            )
        ).scalars()
    )
    return p.level, checkins, tasks, history


async def test_given_five_life_stories_when_three_weeks_pass_then_each_ends_right(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    people = life_stories()
    await register(sessions, people)
    await _live(sessions, people, END)
    report = await sweep(sessions, END)
    assert report.candidates >= 3

    async with sessions() as s:
        level, checkins, tasks, _ = await _state(s, "normal")
        assert (level, checkins, tasks) == (Level.NONE, [], [])

        # Sudden stop, plug alive: calls, TV and lights all quiet for a week -> 심각, one call.
        level, checkins, tasks, history = await _state(s, "stop")
        assert level is Level.SERIOUS
        assert tasks == []  # the plug kept reporting standby power: not a device problem
        (c,) = checkins
        assert c.source is CheckinSource.SIGNAL
        assert c.status is CheckinStatus.PENDING
        assert c.priority == Level.SERIOUS.priority
        # Caught on ingestion, two days in, by the "below half of usual" rule on every source.
        for words in ("[심각]", "통화", "전력 사용", "걸음 수", "째 없음", "평소의 0%"):
            assert words in c.reason, c.reason
        (raised,) = [h for h in history if h.checkin_id is not None]
        assert raised.checkin_id == c.id
        assert raised.assessed_at < TURN + dt.timedelta(days=3)
        low = {e["channel"]: e for e in raised.evidence["channels"] if e["status"] == "low"}
        assert {"calls", "power", "steps"} <= set(low)
        assert low["calls"]["quiet_since"] < TURN.isoformat()

        # Unplugged: the person keeps phoning; a device task, no call.
        level, checkins, tasks, _ = await _state(s, "unplugged")
        assert level is Level.NONE
        assert checkins == []
        (t,) = tasks
        assert (t.kind, t.status) == (DeviceIssueKind.STALE, TaskStatus.OPEN)
        assert "plug-unplugged" in t.detail

        # Travel with a hold, back for three days: nothing.
        level, checkins, tasks, _ = await _state(s, "travel")
        assert (level, checkins, tasks) == (Level.NONE, [], [])

        # Gradual decline: activity falls below half of usual on every source -> a call.
        level, checkins, _, history = await _state(s, "decline")
        assert level.opens_checkin, history[-1].explanation if history else "no history"
        assert len(checkins) == 1
        assert "평소" in checkins[0].reason

        # Calls only (no plug): a week of no calls is 심각 on its own.
        level, checkins, tasks, _ = await _state(s, "callsonly")
        assert level is Level.SERIOUS
        assert len(checkins) == 1
        assert tasks == []
        assert "통화 " in checkins[0].reason


async def test_given_a_serious_case_when_swept_again_then_no_second_checkin_or_task(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    people = [person("stop", Story.SUDDEN_STOP), person("unplugged", Story.UNPLUGGED)]
    await register(sessions, people)
    await _live(sessions, people, END)
    await sweep(sessions, END)
    again = await sweep(sessions, END + dt.timedelta(hours=1))  # devices not stale yet
    assert (again.changed, again.checkins_opened, again.device_tasks_opened) == (0, 0, 0)
    async with sessions() as s:
        assert len((await s.execute(select(Checkin))).scalars().all()) == 1
        assert len((await s.execute(select(DeviceTask))).scalars().all()) == 1


async def test_given_unplugged_plug_when_it_reports_again_then_task_resolves(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    p = person("unplugged", Story.UNPLUGGED)
    await register(sessions, [p])
    await _live(sessions, [p], END)
    await sweep(sessions, END)
    back = SignalEventIn.model_validate(
        {
            "source": "sim-plug",
            "event_id": "back-1",
            "kind": "heartbeat",
            "device_id": p.plug_id,
            "at": END.isoformat(),
        }
    )
    async with sessions() as s:
        await ingest(s, [(0, back)], now=END + dt.timedelta(minutes=1))
    async with sessions() as s:
        (t,) = (await s.execute(select(DeviceTask))).scalars().all()
        assert t.status is TaskStatus.RESOLVED
        assert t.resolution == "device reported again"


async def _states(s: AsyncSession) -> list[tuple[object, ...]]:
    rows = await s.execute(select(SignalState).order_by(SignalState.channel))
    return [(x.channel, x.hourly, x.ring, x.days, x.last_activity_at) for x in rows.scalars()]


async def test_given_a_batch_when_resent_then_nothing_changes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    p = person("normal", Story.NORMAL)
    await register(sessions, [p])
    events = [
        (i, SignalEventIn.model_validate(e))
        for i, e in enumerate(simulate(p, start=START, end=START + dt.timedelta(days=2)))
    ]
    now = START + dt.timedelta(days=2)
    async with sessions() as s:
        first = await ingest(s, events, now=now)
    async with sessions() as s:
        before = await _states(s)
    async with sessions() as s:
        second = await ingest(s, events, now=now)
    assert first.accepted == len(events)
    assert first.duplicates == 0
    assert (second.accepted, second.duplicates) == (0, len(events))
    async with sessions() as s:
        after = await _states(s)
        count = len((await s.execute(select(SignalEvent.id))).all())
    assert after == before
    assert count == len(events)
