"""Sweep benchmark: the periodic risk sweep over 100,000 and 1,000,000 residents (PostgreSQL).

Each resident has a monitoring profile (IoT tier), a smart plug, and two baseline rows (calls and
power) holding a month of history summarised: 24-hour profiles, the 56-hour ring, 30 folded
days. The population is mostly living normally; 1% went quiet on calls past their window,
0.5% have a stale plug and 0.5% already carry a level. Another 1% made almost no calls for the
last 45 hours (LOW now, quiet only a day later) and 1% none for the last 30 hours (LOW in some
hours): the sweep must grade the first and leave the second. Every baseline row carries the due
time ingestion would store (anbu.domain.risk.status_due_at). Rows are loaded with COPY, then the
sweep runs in a fresh process (so its peak RSS is its own) at a fixed "now".

At the first size, another process then grades every resident at the same "now" without
writing (anbu.risk.sweep.regrade_all) and counts the residents whose level differs from what
the sweep left: ``sweep_vs_full_differences_N`` must be 0. ``status_due_at_us`` is the cost of
one due-time computation on baselines from the simulator (ingestion runs it per resident and
channel in each batch). Writes bench/results/sweep.json.

    python -m bench.sweep [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import random
import resource
import sys
import time
import uuid
from typing import Any

import asyncpg

from anbu.db.migrate import upgrade
from anbu.db.models_signals import pack_floats
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.risk import (
    RING_H,
    Baseline,
    Channel,
    RiskCategory,
    SignalKind,
    epoch_hour,
    observe,
    status_due_at,
)
from bench.common import write_results

PG_ADMIN = os.environ.get("ANBU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
CHUNK = 50_000
WINDOW_H = RiskCategory.MEDIUM.window_h


def _url(name: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


def _dsn(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def due_time_cost_us(residents: int = 200, days: int = 14) -> float:
    """Mean cost of status_due_at over the baselines of simulated residents (every tier and
    story), in microseconds: what ingestion adds per resident and channel in each batch."""
    from devstack.sim import population, simulate

    start = NOW - dt.timedelta(days=days)
    baselines: dict[tuple[str, Channel], Baseline] = {}
    for p in population(residents, prefix="due", seed=1):
        for e in simulate(p, start=start, end=NOW, seed=1):
            kind = SignalKind(e["kind"])
            if kind.channel is None:
                continue
            key = (p.resident_id, kind.channel)
            b = baselines.setdefault(key, Baseline(kind.channel))
            attrs: dict[str, Any] = {
                k: e[k] for k in ("direction", "duration_s", "interval_s") if k in e
            }
            observe(b, kind, dt.datetime.fromisoformat(e["at"]), e.get("value"), attrs)
    rounds = 20
    t0 = time.perf_counter()
    for _ in range(rounds):
        for b in baselines.values():
            status_due_at(b, WINDOW_H)
    return (time.perf_counter() - t0) / (rounds * len(baselines)) * 1e6


async def load(name: str, n: int) -> None:
    engine = make_engine(_url(name))
    await upgrade(engine)
    await engine.dispose()
    conn = await asyncpg.connect(_dsn(name))
    rng = random.Random(n)
    now_h = epoch_hour(NOW)
    end = now_h - 1
    calls_hourly = [0.0] * 7 + [0.3] * 14 + [0.1] * 3
    power_hourly = [0.0] * 8 + [0.5] * 4 + [0.1] * 7 + [0.9] * 4 + [0.0]
    ring = [round(rng.random(), 2) for _ in range(RING_H)]
    # Calls that stopped ``k`` hours before the ring's end: the same ring with those hours empty.
    rings = {
        k: [0.0 if (end - i) % RING_H < k else v for i, v in enumerate(ring)] for k in (45, 30)
    }
    rings[0] = ring
    # As the model stores them (anbu.db.models_signals.pack_floats).
    profiles_json = {
        Channel.CALLS: pack_floats(calls_hourly),
        Channel.POWER: pack_floats(power_hourly),
    }
    rings_json = {k: pack_floats(v) for k, v in rings.items()}
    dues: dict[tuple[Channel, int, dt.datetime], dt.datetime | None] = {}

    def due(channel: Channel, stop: int, last: dt.datetime) -> dt.datetime | None:
        """What ingestion stores for this row (rows share a few shapes: computed once each)."""
        key = (channel, stop, last)
        if key not in dues:
            hourly = calls_hourly if channel is Channel.CALLS else power_hourly
            b = Baseline(channel, list(hourly), 30, list(rings[stop]), end, now_h - 30 * 24,
                         last, last)  # fmt: skip
            dues[key] = status_due_at(b, WINDOW_H)
        return dues[key]

    try:
        await conn.execute(
            "INSERT INTO districts (id, code, name, created_at) VALUES (1, '11620', '관악구', $1)",
            NOW,
        )
        for start in range(0, n, CHUNK):
            ids = [f"r{i:09d}" for i in range(start, min(n, start + CHUNK))]
            residents, profiles, states, devices = [], [], [], []
            for rid in ids:
                u = rng.random()
                quiet = u < 0.01
                stale = 0.01 <= u < 0.015
                graded = 0.015 <= u < 0.02
                stop = 45 if 0.02 <= u < 0.03 else 30 if 0.03 <= u < 0.04 else 0
                # Whole minutes, so that rows share their due-time computation.
                ago = 80 * 60 if quiet else (stop + 1) * 60 if stop else rng.randrange(30, 1200)
                last_call = NOW - dt.timedelta(minutes=ago)
                ago = 30 * 60 if stale else rng.randrange(0, 24)
                last_seen = NOW - dt.timedelta(minutes=ago)
                residents.append((rid, 1, None, rid, "01099990001", "", True, NOW, NOW))
                profiles.append(
                    (rid, "iot", "medium", None, True, True, True, True,
                     "concern" if graded else "none", NOW if graded else None, NOW, NOW)
                )  # fmt: skip
                for ch, ring_stop, last in (
                    (Channel.CALLS, stop, last_call),
                    (Channel.POWER, 0, last_seen),
                ):
                    states.append(
                        (rid, ch.value, 30, profiles_json[ch], rings_json[ring_stop], end,
                         now_h - 30 * 24, last, last, None, due(ch, ring_stop, last), NOW)
                    )  # fmt: skip
                devices.append(
                    (uuid.uuid4().hex, f"plug-{rid}", 1, rid, "plug", 600, True, True, last_seen,
                     last_seen + dt.timedelta(hours=2), NOW)
                )  # fmt: skip
            await conn.copy_records_to_table(
                "residents", records=residents,
                columns=["id", "district_id", "external_ref", "name", "phone", "dong", "active",
                         "created_at", "updated_at"],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "monitoring_profiles", records=profiles,
                columns=["resident_id", "tier", "category", "window_h_override",
                         "consent_call_records", "consent_app", "consent_iot", "enabled",
                         "level", "level_since", "created_at", "updated_at"],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "signal_states", records=states,
                columns=["resident_id", "channel", "days", "hourly", "ring", "ring_end",
                         "first_hour", "last_activity_at", "last_event_at", "last_value",
                         "status_due_at", "updated_at"],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "devices", records=devices,
                columns=["id", "device_id", "district_id", "resident_id", "kind",
                         "expected_interval_s", "active", "online", "last_seen_at", "stale_due_at",
                         "created_at"],
            )  # fmt: skip
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run_sweep(name: str) -> dict[str, Any]:
    from anbu.risk.sweep import sweep

    engine = make_engine(_url(name))
    sessions = make_sessionmaker(engine)
    # The sweep runs in the server's process, which freezes its start-up heap out of the
    # garbage collector's full passes (anbu.app.processes.serve): the same here.
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    report = await sweep(sessions, NOW)
    seconds = time.perf_counter() - t0
    await engine.dispose()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_rss_mb": rss_mb, "report": report.as_dict()}


async def run_regrade(name: str) -> dict[str, Any]:
    from anbu.risk.sweep import regrade_all

    engine = make_engine(_url(name))
    report = await regrade_all(make_sessionmaker(engine), NOW)
    await engine.dispose()
    return {
        "seconds": report.seconds,
        "residents": report.residents,
        "differences": len(report.differences),
        "sample": [(rid, a.value, b.value) for rid, a, b in report.differences[:10]],
    }


async def _child(mode: str, name: str) -> dict[str, Any]:
    """Run ``--MODE-only NAME`` in a fresh process (its peak RSS is its own)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sweep", f"--{mode}-only", name,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} process failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def bench(n: int, regrade: bool) -> dict[str, Any]:
    name = f"anbu_sweep_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        t0 = time.perf_counter()
        await load(name, n)
        load_s = time.perf_counter() - t0
        result = await _child("sweep", name)
        result["load_s"] = load_s
        if regrade:
            result["regrade"] = await _child("regrade", name)
        return result
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--sweep-only", metavar="DB")
    ap.add_argument("--regrade-only", metavar="DB")
    args = ap.parse_args(argv)
    if args.sweep_only:
        print(json.dumps(await run_sweep(args.sweep_only)))
        return 0
    if args.regrade_only:
        print(json.dumps(await run_regrade(args.regrade_only)))
        return 0
    results: dict[str, Any] = {"backend": "postgresql", "now": NOW.isoformat()}
    results["status_due_at_us"] = round(due_time_cost_us(), 1)
    peak = 0.0
    for i, n in enumerate(int(s) for s in args.sizes.split(",")):
        r = await bench(n, regrade=i == 0)
        print(n, json.dumps(r))
        results[f"sweep_s_{n}"] = round(r["seconds"], 3)
        if "regrade" in r:
            results[f"full_regrade_s_{n}"] = round(r["regrade"]["seconds"], 3)
            results[f"sweep_vs_full_differences_{n}"] = r["regrade"]["differences"]
        results[f"candidates_{n}"] = r["report"]["candidates"]
        results[f"levels_{n}"] = r["report"]["levels"]
        results[f"device_tasks_opened_{n}"] = r["report"]["device_tasks_opened"]
        results[f"checkins_opened_{n}"] = r["report"]["checkins_opened"]
        results[f"peak_rss_mb_{n}"] = round(r["peak_rss_mb"], 1)
        results[f"load_s_{n}"] = round(r["load_s"], 1)
        peak = max(peak, r["peak_rss_mb"])
    results["peak_rss_mb"] = round(peak, 1)
    write_results("sweep", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
