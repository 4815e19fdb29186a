"""The indexed sweep leaves every resident at the level a full re-grade gives, on both backends.

A seeded population (mixed tiers, risk categories and life stories, turning at different times,
travellers on hold) is ingested through the real ingestion service. Then, at a series of later
times, with and without further events in between, the sweep runs and every resident is graded
again from the database (anbu.risk.sweep.regrade_all): the levels must agree for everyone. A
resident the sweep's candidate query misses while their grade has moved shows up as a
difference.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models_signals import MonitoringProfile
from anbu.domain.risk import KST, Level, RiskCategory
from anbu.risk.sweep import regrade_all, sweep
from devstack.sim import SimResident, population, simulate
from tests.risk_support import feed, register

START = dt.datetime(2026, 11, 2, tzinfo=KST).astimezone(dt.UTC)
END = START + dt.timedelta(days=8)  # the history everyone lives before the checks
BATCH = dt.timedelta(hours=12)
SEED = 20261125
N = 90


def _people(rng: random.Random) -> list[tuple[SimResident, RiskCategory, dt.datetime]]:
    """The population, each with a risk category and the time their story turns: from three
    days before END (a stop or decline well under way) to after it (not yet)."""
    out = []
    for p in population(N, prefix="eq", seed=SEED):
        turn = END - dt.timedelta(hours=rng.uniform(-24, 72))
        # Hourly plug readings: half the events of the default, the same rules at work.
        p = dataclasses.replace(p, plug_interval_s=3600)
        out.append((p, rng.choice(list(RiskCategory)), turn))
    return out


def _heartbeats(
    people: list[tuple[SimResident, RiskCategory, dt.datetime]], at: dt.datetime, tag: str
) -> list[dict[str, Any]]:
    """Devices saying they are alive, and nothing about the person: the devices stay up, so
    their channels are judged on the activity alone."""
    return [
        {"source": "eq-hb", "event_id": f"{did}-{tag}", "kind": "heartbeat", "device_id": did,
         "at": at.isoformat(), "online": True}
        for p, _, _ in people
        for did in (p.plug_id, p.app_id)
        if did
    ]  # fmt: skip


async def _check(sessions: async_sessionmaker[AsyncSession], at: dt.datetime) -> Counter[str]:
    await sweep(sessions, at)
    full = await regrade_all(sessions, at)
    assert full.residents == N
    assert full.differences == [], f"at {at.isoformat()}: {full.differences}"
    async with sessions() as s:
        levels = (await s.execute(select(MonitoringProfile.level))).scalars().all()
    return Counter(level.value for level in levels)


async def test_given_a_mixed_population_when_time_passes_then_sweep_equals_full_regrade(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    rng = random.Random(SEED)
    people = _people(rng)
    category = {p.resident_id: c for p, c, _ in people}
    turns = {p.resident_id: t for p, _, t in people}
    await register(
        sessions,
        [p for p, _, _ in people],
        category=lambda p: category[p.resident_id],
        travel_from=lambda p: turns[p.resident_id],
    )
    history = [
        e for p, _, turn in people for e in simulate(p, start=START, end=END, turn=turn, seed=SEED)
    ]
    await feed(sessions, history, step=BATCH, until=END)
    seen: Counter[str] = Counter()

    # No events at all: devices go stale within hours, so past the first checks only residents
    # without devices (call records only) rely on the per-channel due times.
    for hours in (1.0, 4, 9, 17, 26, 38):
        seen += await _check(sessions, END + dt.timedelta(hours=hours))

    # Devices report they are alive (no activity): their channels are judged again, by time.
    alive_at = END + dt.timedelta(hours=39)
    await feed(sessions, _heartbeats(people, alive_at, "a"), step=BATCH, until=alive_at,
               start=END)  # fmt: skip
    for minutes in (30, 100):
        seen += await _check(sessions, alive_at + dt.timedelta(minutes=minutes))

    # Half the residents send the rest of their story up to now, some of it late (older than
    # the last sweep), and every device is alive again; then time passes once more.
    resumed = END + dt.timedelta(hours=50)
    later = [
        e
        for p, _, turn in people
        if rng.random() < 0.5
        for e in simulate(p, start=START, end=resumed, turn=turn, seed=SEED)
        if dt.datetime.fromisoformat(e["at"]) >= END
    ]
    later += _heartbeats(people, resumed - dt.timedelta(minutes=10), "b")
    # One batch (as a resent backlog arrives), at ``resumed``.
    await feed(sessions, later, step=resumed - START, until=resumed)
    for hours in (0.5, 1.5, 7, 20, 45):
        seen += await _check(sessions, resumed + dt.timedelta(hours=hours))

    # The population exercised every level the rules give without a reply to a check-in.
    assert {lv.value for lv in (Level.NONE, Level.CONCERN, Level.CAUTION, Level.SERIOUS)} <= set(
        seen
    ), seen
