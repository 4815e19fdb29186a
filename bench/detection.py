"""Detection benchmark: how often a check-in call is about a real crisis, on a simulated district.

The issue's background: Seoul's plugs raised 46,974 signals for 154 real crises (0.33%).
This runs a mixed population through the real ingestion service and the sweep (PostgreSQL) and
counts, per life story, who got a check-in call, a 관심 record, or a device task:

- crises: ``sudden_stop`` (stops at the turning point, the plug keeps reporting standby) and
  ``decline`` (activity fades);
- people who are fine: ``normal``; ``away`` (out for 1.5-3 days without telling anyone: phone
  and step-count app along, the home quiet); ``travel`` (away with a hold entered);
  ``unplugged`` (the plug goes dark while the person keeps phoning: a device task, not a call).

Everyone lives 14 days of normal life (the baselines learn), then their story turns at a
random hour of the next day; the run ends 7 days after. Events arrive in 6-hour batches and the
sweep runs after each. Figures (bench/results/detection.json):

- ``true_alarm_rate``: of the residents who got a check-in call, the share in crisis (and called
  after their turn);
- ``crisis_detected_rate`` and ``detection_delay_h_p50`` / ``_p90``: crises that got a call, and
  how long after the turn;
- per story: residents, with a call, with a 관심 record (recorded, nobody called), with a
  device task, with a smart plug.

The run is repeated under the plain ratio rule (``low_z = 0``, as Seoul's plugs): the
difference is what the chance guard on LOW removes, and what it costs.

Simulated people are regular in a way real people are not: these figures say how the rules
behave on the stories they were written for, not how they do in a district.

    python -m bench.detection [--residents 1000] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import random
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import asyncpg
from sqlalchemy import select

from anbu.db.migrate import upgrade
from anbu.db.models import Checkin
from anbu.db.models_signals import DeviceTask, RiskAssessment
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.checkin import CheckinSource
from anbu.domain.risk import DEFAULT_RULES, Level, Rules
from anbu.risk.ingest import IngestReport
from anbu.risk.sweep import sweep
from bench.common import percentile, write_results
from devstack.sim import SimResident, Story, population, simulate
from tests.db_fixtures import PG_ADMIN_DSN as PG_ADMIN
from tests.risk_support import START, feed, register

HISTORY = dt.timedelta(days=14)
AFTER = dt.timedelta(days=7)
BATCH = dt.timedelta(hours=6)
MIX = {
    Story.NORMAL: 70,
    Story.AWAY: 10,
    Story.TRAVEL: 5,
    Story.UNPLUGGED: 5,
    Story.SUDDEN_STOP: 5,
    Story.DECLINE: 5,
}
CRISES = (Story.SUDDEN_STOP, Story.DECLINE)


def _people(n: int, seed: int) -> tuple[list[SimResident], dict[str, dt.datetime]]:
    rng = random.Random(seed)
    stories = [s for s, weight in MIX.items() for _ in range(weight)]
    people: list[SimResident] = []
    turns: dict[str, dt.datetime] = {}
    for p in population(n, prefix="d", seed=seed):
        people.append(
            dataclasses.replace(
                p,
                story=rng.choice(stories),
                plug_interval_s=3600,  # hourly readings: fewer events, the same rules at work
                travel_days=rng.uniform(1.5, 3.0),
            )
        )
        turns[p.resident_id] = START + HISTORY + dt.timedelta(hours=rng.uniform(0, 24))
    return people, turns


async def run(n: int, seed: int, rules: Rules = DEFAULT_RULES) -> dict[str, Any]:
    people, turns = _people(n, seed)
    name = f"anbu_detect_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    engine = make_engine(f"{base}/{name}")
    try:
        await upgrade(engine)
        sessions = make_sessionmaker(engine)
        await register(sessions, people, travel_from=lambda p: turns[p.resident_id])
        end = START + HISTORY + AFTER
        events = [
            e
            for p in people
            for e in simulate(p, start=START, end=end, turn=turns[p.resident_id], seed=seed)
        ]
        t0 = time.perf_counter()

        async def sweep_after(_report: IngestReport, now: dt.datetime) -> None:
            await sweep(sessions, now, rules=rules)

        await feed(sessions, events, step=BATCH, until=end, after=sweep_after, rules=rules)
        await sweep(sessions, end, rules=rules)
        seconds = time.perf_counter() - t0
        async with sessions() as s:
            calls = {
                c.resident_id: c.created_at
                for c in (
                    await s.execute(
                        select(Checkin)
                        .where(Checkin.source == CheckinSource.SIGNAL)
                        .order_by(Checkin.created_at.desc())
                    )
                ).scalars()
            }  # newest first, so each resident keeps their earliest check-in
            concern = set(
                (
                    await s.execute(
                        select(RiskAssessment.resident_id).where(
                            RiskAssessment.level == Level.CONCERN
                        )
                    )
                ).scalars()
            )
            tasks = set((await s.execute(select(DeviceTask.resident_id))).scalars())
    finally:
        await engine.dispose()
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    by_story: dict[str, Counter[str]] = defaultdict(Counter)
    true_calls = 0
    delays: list[float] = []
    for p in people:
        row = by_story[p.story.value]
        row["residents"] += 1
        called = calls.get(p.resident_id)
        if called is not None:
            row["called"] += 1
            if p.story in CRISES and called >= turns[p.resident_id]:
                true_calls += 1
                delays.append((called - turns[p.resident_id]).total_seconds() / 3600)
        row["concern"] += p.resident_id in concern
        row["device_task"] += p.resident_id in tasks
        row["with_plug"] += p.plug_id is not None  # only a plug can go dark in these stories
    crises = sum(by_story[s.value]["residents"] for s in CRISES)
    return {
        "residents": n,
        "events": len(events),
        "seconds": round(seconds, 1),
        "checkins": len(calls),
        "true_alarm_rate": round(true_calls / len(calls), 3) if calls else None,
        "crises": crises,
        "crisis_detected_rate": round(true_calls / crises, 3) if crises else None,
        "detection_delay_h_p50": round(percentile(delays, 50), 1) if delays else None,
        "detection_delay_h_p90": round(percentile(delays, 90), 1) if delays else None,
        "by_story": {k: dict(v) for k, v in sorted(by_story.items())},
    }


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--residents", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    figures = await run(args.residents, args.seed)
    # The same district under the plain ratio rule (low_z = 0): what the chance guard removes,
    # and what it costs in crises found.
    plain = await run(args.residents, args.seed, dataclasses.replace(DEFAULT_RULES, low_z=0.0))
    figures["plain_ratio_rule"] = {
        k: v for k, v in plain.items() if k not in ("residents", "events")
    }
    write_results("detection", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
