"""Sweep benchmark: the periodic risk sweep over 100,000 and 1,000,000 residents (PostgreSQL).

Each resident has a monitoring profile (IoT tier), a smart plug, and two baseline rows (calls and
power) holding a month of history summarised: 24-hour profiles, the 56-hour ring, 30 folded
days. The population is mostly living normally; 1% went quiet on calls past their window,
0.5% have a stale plug and 0.5% already carry a level. Rows are loaded with COPY, then the sweep
runs in a fresh process (so its peak RSS is its own) at a fixed "now". Writes
bench/results/sweep.json.

    python -m bench.sweep [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from anbu.db.migrate import upgrade
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.risk import RING_H, epoch_hour

PG_ADMIN = os.environ.get("ANBU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).resolve().parent / "results" / "sweep.json"
NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
CHUNK = 50_000


def _url(name: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


def _dsn(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def load(name: str, n: int) -> None:
    engine = make_engine(_url(name))
    await upgrade(engine)
    await engine.dispose()
    conn = await asyncpg.connect(_dsn(name))
    rng = random.Random(n)
    now_h = epoch_hour(NOW)
    calls_hourly = json.dumps([0.0] * 7 + [0.3] * 14 + [0.1] * 3)
    power_hourly = json.dumps([0.0] * 8 + [0.5] * 4 + [0.1] * 7 + [0.9] * 4 + [0.0])
    ring = json.dumps([round(rng.random(), 2) for _ in range(RING_H)])
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
                last_call = NOW - dt.timedelta(hours=80 if quiet else rng.uniform(0.5, 20))
                last_seen = NOW - dt.timedelta(hours=30 if stale else rng.uniform(0, 0.4))
                residents.append((rid, 1, None, rid, "01099990001", "", True, NOW, NOW))
                profiles.append(
                    (rid, "iot", "medium", None, True, True, True, True,
                     "concern" if graded else "none", NOW if graded else None, NOW, NOW)
                )  # fmt: skip
                for ch, hourly, last in (
                    ("calls", calls_hourly, last_call),
                    ("power", power_hourly, last_seen),
                ):
                    states.append(
                        (rid, ch, 30, hourly, ring, now_h - 1, now_h - 30 * 24, last, last,
                         None, last + dt.timedelta(days=3), NOW)
                    )  # fmt: skip
                devices.append(
                    (uuid.uuid4().hex, f"plug-{rid}", rid, "plug", 600, True, True, last_seen,
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
                         "quiet_due_at", "updated_at"],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "devices", records=devices,
                columns=["id", "device_id", "resident_id", "kind", "expected_interval_s",
                         "active", "online", "last_seen_at", "stale_due_at", "created_at"],
            )  # fmt: skip
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run_sweep(name: str) -> dict[str, Any]:
    from anbu.risk.sweep import sweep

    engine = make_engine(_url(name))
    sessions = make_sessionmaker(engine)
    t0 = time.perf_counter()
    report = await sweep(sessions, NOW)
    seconds = time.perf_counter() - t0
    await engine.dispose()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_rss_mb": rss_mb, "report": report.as_dict()}


async def bench(n: int) -> dict[str, Any]:
    name = f"anbu_sweep_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        t0 = time.perf_counter()
        await load(name, n)
        load_s = time.perf_counter() - t0
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.sweep", "--sweep-only", name,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"sweep process failed ({proc.returncode})")
        result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
        result["load_s"] = load_s
        return result
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--sweep-only", metavar="DB")
    args = ap.parse_args(argv)
    if args.sweep_only:
        print(json.dumps(await run_sweep(args.sweep_only)))
        return 0
    results: dict[str, Any] = {"backend": "postgresql", "now": NOW.isoformat()}
    peak = 0.0
    for n in (int(s) for s in args.sizes.split(",")):
        r = await bench(n)
        print(n, json.dumps(r))
        results[f"sweep_s_{n}"] = round(r["seconds"], 3)
        results[f"candidates_{n}"] = r["report"]["candidates"]
        results[f"levels_{n}"] = r["report"]["levels"]
        results[f"device_tasks_opened_{n}"] = r["report"]["device_tasks_opened"]
        results[f"checkins_opened_{n}"] = r["report"]["checkins_opened"]
        results[f"peak_rss_mb_{n}"] = round(r["peak_rss_mb"], 1)
        results[f"load_s_{n}"] = round(r["load_s"], 1)
        peak = max(peak, r["peak_rss_mb"])
    results["peak_rss_mb"] = round(peak, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
