"""A district's day on one node: 100,000 residents, PostgreSQL, what one day of their signals,
sweeps, calls and alerts costs in CPU.

Every stage runs here, on the production code, and is measured in this run; the stages that
would take hours of wall time are **sampled and scaled** (each figure says by how much):

- ``feed``: the carrier's daily call-record feed (``anbu.risk.ingest.ingest``, batches of
  5,000 as the API takes them): ``--feed-sample`` residents' day of calls (3 each), scaled to
  every resident;
- ``plugs``: a reading every 15 minutes from 10% of the residents' smart plugs: one hour of
  them (4 readings each), scaled to 24 hours;
- ``sweep``: the hourly risk sweep (``anbu.risk.sweep.sweep``) over the 100,000, run once,
  times 24;
- ``calls``: weekly routine calls for a seventh of the residents (100,000 / 7 / 7 a day) plus the
  check-ins the sweep opened: ``--call-sample`` calls through the real Asterisk engine and
  carrier stand-in, the real dialer, dispatcher and FastAGI flow (bench.calls' set-up; its
  prompts are the real ones, not shortened, so the engine's share is an upper bound), CPU of
  anbu's process and of the engine per call, times the day's calls;
- ``sms``: an SMS for each case that ends unanswered (``--unanswered`` of the calls): a burst of
  ``--sms-sample`` alerts through the real outbox and Kannel (bench.escalation's set-up), CPU of
  anbu's process per alert, times the day's alerts.

CPU counted: this process (anbu's code) plus, for the database stages, the PostgreSQL
backends serving this database (read from /proc), plus the Asterisk engine for calls. Not
counted: the carrier stand-in and Kannel's fake SMSC (they stand in for the phone network).

Figures (bench/results/day.json): ``residents``, ``cpu_share_of_day`` (CPU seconds a day over
86,400), ``peak_rss_mb``, ``stage_share`` (each stage's part of the day's CPU) and the per-unit
costs behind them. Aim: 100,000 residents in under 25% of a day's CPU.

    python -m bench.day [--residents 100000] [--feed-sample 20000] [--call-sample 20]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import resource
import time
import uuid
from typing import Any

import asyncpg

from anbu.db.session import make_engine, make_sessionmaker
from anbu.risk.ingest import ingest
from anbu.risk.schemas import SignalEventIn
from anbu.risk.sweep import sweep
from bench import calls as calls_bench
from bench import escalation as escalation_bench
from bench.common import cpu_seconds, write_results
from bench.sweep import NOW, PG_ADMIN, load

DAY_S = 86_400
BATCH = 5000


def _dsn(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _url(name: str) -> str:
    return _dsn(name).replace("postgresql://", "postgresql+asyncpg://")


def _num(value: object) -> float:
    assert isinstance(value, int | float), value
    return float(value)


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DbCpu:
    """CPU of the PostgreSQL backends serving one database (ours only: the server is shared)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: dict[int, float] = {}

    async def sample(self) -> float:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            pids = [
                r[0]
                for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.name
                )
            ]
        finally:
            await conn.close()
        for pid in pids:
            try:
                self.seen[pid] = _proc_cpu(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue
        return sum(self.seen.values())


async def _ingest(sessions: Any, events: list[dict[str, Any]], db: DbCpu) -> tuple[float, int]:
    """Ingest ``events`` in API-sized batches: CPU seconds (ours + the database's), checks-ins."""
    c0, d0 = cpu_seconds(), await db.sample()
    opened = 0
    for k in range(0, len(events), BATCH):
        items = [(i, SignalEventIn.model_validate(e)) for i, e in enumerate(events[k : k + BATCH])]
        async with sessions() as s:
            report = await ingest(s, items, now=NOW)
        assert not report.errors, report.errors[:3]
        opened += sum(1 for e in report.evaluations if e.checkin_id)
        # The pool's backends are alive here: read their CPU before any of them is closed.
        await db.sample()
    return (cpu_seconds() - c0) + (await db.sample() - d0), opened


def _feed(residents: int, sample: int, rng: random.Random) -> list[dict[str, Any]]:
    """The day's call records of ``sample`` residents (3 calls each), in time order."""
    start = NOW - dt.timedelta(days=1)
    out: list[dict[str, Any]] = []
    for i in rng.sample(range(residents), sample):
        for n in range(3):
            out.append(
                {
                    "source": "carrier-cdr",
                    "event_id": f"r{i:09d}-{n}",
                    "kind": "call",
                    "resident_id": f"r{i:09d}",
                    "at": (start + dt.timedelta(seconds=rng.randrange(DAY_S - 60))).isoformat(),
                    "direction": "out" if rng.random() < 0.5 else "in",
                    "duration_s": float(rng.randrange(0, 600)),
                }
            )
    out.sort(key=lambda e: e["at"])
    return out


def _plugs(residents: int, rng: random.Random) -> list[dict[str, Any]]:
    """One hour of 15-minute readings from the plugs of a tenth of the residents."""
    start = NOW - dt.timedelta(hours=1)
    out: list[dict[str, Any]] = []
    for i in range(0, residents, 10):
        for q in range(4):
            out.append(
                {
                    "source": "plug-cloud",
                    "event_id": f"p{i:09d}-{q}",
                    "kind": "power",
                    "device_id": f"plug-r{i:09d}",
                    "at": (start + dt.timedelta(minutes=15 * q + 1)).isoformat(),
                    "value": float(rng.choice((0, 3, 40, 120))),
                    "interval_s": 900,
                }
            )
    out.sort(key=lambda e: e["at"])
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"anbu_bench_day_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    rng = random.Random(7)
    try:
        t_load = time.perf_counter()
        await load(name, args.residents)
        load_s = time.perf_counter() - t_load
        engine = make_engine(_url(name))
        sessions = make_sessionmaker(engine)
        db = DbCpu(name)

        feed = _feed(args.residents, args.feed_sample, rng)
        feed_cpu, feed_opened = await _ingest(sessions, feed, db)
        feed_scale = args.residents / args.feed_sample

        plugs = _plugs(args.residents, rng)
        plugs_cpu, plugs_opened = await _ingest(sessions, plugs, db)

        c0, d0 = cpu_seconds(), await db.sample()
        report = await sweep(sessions, NOW)
        sweep_cpu = (cpu_seconds() - c0) + (await db.sample() - d0)
        sweep_opened = report.checkins_opened
        await engine.dispose()
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    # Calls: the real engine and carrier stand-in (bench.calls), a sample scaled to the day.
    call_figures = await calls_bench.run(argparse.Namespace(calls=args.call_sample, cap=10))
    call_cpu_s = (
        _num(call_figures["anbu_cpu_ms_per_call"])
        + _num(call_figures["engine_cpu_ms_per_call_anbu"])
    ) / 1000
    routine_calls = args.residents / 7 / 7
    # Check-ins the rules open in a day: the feed's scaled, the plugs' hour times 24, and the
    # sweep's (it runs 24 times, but a case opened once is not opened again the next hour).
    rule_checkins = feed_opened * feed_scale + plugs_opened * 24 + sweep_opened
    day_calls = routine_calls + rule_checkins
    # SMS: the real outbox and Kannel (bench.escalation), a burst scaled to the day's alerts.
    sms_figures = await escalation_bench.run(
        argparse.Namespace(db="postgresql", cases=5, burst=args.sms_sample, listeners=50)
    )
    sms_cpu_s = _num(sms_figures["burst_cpu_ms_per_message"]) / 1000
    day_alerts = day_calls * args.unanswered

    stages = {
        "feed": feed_cpu * feed_scale,
        "plugs": plugs_cpu * 24,
        "sweep": sweep_cpu * 24,
        "calls": call_cpu_s * day_calls,
        "sms": sms_cpu_s * day_alerts,
    }
    total = sum(stages.values())
    return {
        "residents": args.residents,
        "database": "postgresql",
        "cpu_share_of_day": round(total / DAY_S, 4),
        "cpu_s_per_day": round(total, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "stage_share": {k: round(v / total, 3) for k, v in stages.items()},
        "stage_cpu_s_per_day": {k: round(v, 1) for k, v in stages.items()},
        "sampled": {
            "feed": f"{args.feed_sample} residents' day of calls (3 each), x{feed_scale:g}",
            "plugs": f"one hour of {args.residents // 10} plugs' readings, x24",
            "sweep": "one sweep over every resident, x24",
            "calls": f"{args.call_sample} real calls (anbu + engine CPU), x{day_calls:.0f}",
            "sms": f"a burst of {args.sms_sample} alerts, x{day_alerts:.0f}",
        },
        "feed_events_per_day": 3 * args.residents,
        "feed_cpu_us_per_event": round(feed_cpu / len(feed) * 1e6, 1),
        "plug_events_per_day": len(plugs) * 24,
        "plugs_cpu_us_per_event": round(plugs_cpu / len(plugs) * 1e6, 1),
        "sweep_cpu_s": round(sweep_cpu, 2),
        "calls_per_day": round(day_calls),
        "routine_calls_per_day": round(routine_calls),
        "rule_checkins_per_day": round(rule_checkins),
        "call_cpu_ms": round(call_cpu_s * 1000, 1),
        "call_sample_outcomes_right": call_figures["all_outcomes_right"],
        "unanswered_share_assumed": args.unanswered,
        "alerts_per_day": round(day_alerts),
        "sms_cpu_ms": round(sms_cpu_s * 1000, 2),
        "sms_delivered_once": sms_figures["burst_delivered_once"],
        "seed_s": round(load_s, 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.day")
    ap.add_argument("--residents", type=int, default=100_000)
    ap.add_argument("--feed-sample", type=int, default=20_000)
    ap.add_argument("--call-sample", type=int, default=20)
    ap.add_argument("--sms-sample", type=int, default=200)
    ap.add_argument(
        "--unanswered", type=float, default=0.1, help="share of the day's calls that end unanswered"
    )
    args = ap.parse_args(argv)
    figures = asyncio.run(run(args))
    write_results("day", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
