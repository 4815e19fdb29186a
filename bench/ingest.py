"""Batch ingestion benchmark: anbu's ingest() vs a bare executemany of the same rows.

For each backend (PostgreSQL at 127.0.0.1:5432, SQLite in a temp file) a fresh database is
migrated and residents registered, then simulated events are ingested in batches of 5,000 in
time order through ``anbu.risk.ingest.ingest``: storing (binary COPY on PostgreSQL, executemany
on SQLite; a batch holding an event stored before falls back to ON CONFLICT DO NOTHING
RETURNING), baseline updates, device liveness and the grading of every touched resident
included. Each batch is held as its JSON request body and parsed and validated into
SignalEventIn objects just before it is stored (as the API does; parsing is not timed).

Two scenarios:
- main (metric names without suffix): 200 residents with IoT profiles, plugs and apps, four days
  of normal life (~100k events: plug power and light every 30 min, hourly steps, calls); every
  batch touches all 200 residents, ~25 events each.
- ``*_spread``: 20,000 residents on call records only, one day (~100k calls); a batch touches
  ~4,000 residents with one or two events each, as a carrier's feed does. Here the work per
  resident (reading and writing the baseline, grading) is not shared by several events.

The baseline stores the same rows (same values, same received_at, one transaction per batch,
each right after ours stored that batch, so both run under the same conditions) with a bare
executemany of plain tuples straight through the driver (asyncpg / aiosqlite) into
``bare_events``, a copy of signal_events with the same columns, primary key, unique constraint
and index -- and nothing else: no conflict handling, no baselines, no grading. For continuity
with earlier results it also reports the same executemany through SQLAlchemy's text()
(``baseline_sqlalchemy_*``). CPU per event: ``cpu_us_per_event_*`` (this process during ours;
with SQLite the database's work included), ``baseline_cpu_us_per_event_*`` (the same during
the bare insert) and, with PostgreSQL on this machine, ``server_cpu_us_per_event_*`` /
``baseline_server_cpu_us_per_event_*`` (its backends' CPU during each): on a loaded machine
the ratio of wall times is noisy, and these say where the cost is. Writes
bench/results/ingest.json.

    python -m bench.ingest [--residents 200] [--days 4] [--batch 5000] [--spread-residents N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy import text

from anbu.db.migrate import upgrade
from anbu.db.models_signals import Device, MonitoringProfile
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.risk import KST, DeviceKind, RiskCategory, Tier
from anbu.risk.ingest import ingest
from anbu.risk.schemas import SignalEventIn
from bench.common import RESULTS, cpu_seconds, write_results
from devstack.sim import SimResident, Story, simulate

PG_ADMIN = os.environ.get("ANBU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
START = dt.datetime(2026, 11, 2, tzinfo=KST).astimezone(dt.UTC)


async def _setup(url: str, people: list[SimResident]) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    async with engine.begin() as conn:
        t0 = START if url.startswith("postgresql") else START.replace(tzinfo=None)
        await conn.execute(
            text("INSERT INTO districts (id, code, name, created_at) VALUES (1, '11620', 'g', :t)"),
            {"t": t0},
        )
    sessions = make_sessionmaker(engine)
    from anbu.db.models import Resident

    async with sessions() as s:
        for i, p in enumerate(people):
            s.add(Resident(id=p.resident_id, district_id=1, name=f"r{i}", phone="01099990001"))
        await s.flush()
        for p in people:
            s.add(
                MonitoringProfile(
                    resident_id=p.resident_id, tier=p.tier, category=RiskCategory.MEDIUM,
                    consent_call_records=True, consent_app=True, consent_iot=True,
                    created_at=START, updated_at=START,
                )
            )  # fmt: skip
            for did, kind, interval in (
                (p.plug_id, DeviceKind.PLUG, 1800),
                (p.app_id, DeviceKind.APP, 3600),
            ):
                if did is None:
                    continue
                s.add(Device(device_id=did, district_id=1, resident_id=p.resident_id, kind=kind,
                             expected_interval_s=interval, created_at=START,
                             stale_due_at=START + dt.timedelta(hours=2)))  # fmt: skip
        await s.commit()
    # The baseline's table: the same columns, primary key (with its sequence / rowid), unique
    # constraint and index as signal_events.
    async with engine.begin() as conn:
        if url.startswith("postgresql"):
            await conn.execute(text("CREATE TABLE bare_events (LIKE signal_events INCLUDING ALL)"))
        else:
            ddl = (
                await conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :n"),
                    {"n": "signal_events"},
                )
            ).scalar_one()
            await conn.execute(text(ddl.replace("signal_events", "bare_events", 1)))
            await conn.execute(text("CREATE INDEX ix_bare ON bare_events (resident_id, at)"))
    await engine.dispose()


def _events(blob: bytes) -> list[tuple[int, SignalEventIn]]:
    """One request body, parsed and validated as the API does (not timed)."""
    return [(i, SignalEventIn.model_validate(e)) for i, e in enumerate(json.loads(blob))]


def _bare_rows(blob: bytes, pg: bool) -> list[tuple[Any, ...]]:
    """The same rows as ingest() stores for one request, already in the driver's types
    (timestamps as the UtcDateTime column stores them, attrs as JSON text). Not timed."""
    batch = _events(blob)
    now = _db_time(max(e.at for _, e in batch), pg)
    return [
        (e.source, e.event_id,
         e.device_id.split("-", 1)[1] if e.device_id else e.resident_id,
         e.device_id, e.kind.value, _db_time(e.at, pg), e.value, json.dumps(e.attrs()), now)
        for _, e in batch
    ]  # fmt: skip


async def _run(
    url: str, blobs: list[bytes], server_cpu: Callable[[], Awaitable[float]] | None = None
) -> dict[str, float]:
    """Each batch is held as its request body (bytes) and parsed just before it is stored, as
    a server holds one request at a time: holding 100k parsed events for the whole run would
    make every garbage collection walk them, a cost no server pays.

    ``server_cpu``: the database server's CPU seconds so far (PostgreSQL's backends), read
    between the timed stretches."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    # As the server does once started (anbu.app.processes.serve): what exists now stays, so it is
    # frozen out of the garbage collector's full passes. Both measurements run after this.
    gc.collect()
    gc.freeze()
    pg = url.startswith("postgresql")
    cols = "source, event_id, resident_id, device_id, kind, at, value, attrs, received_at"
    marks = ", ".join(f"${i}" for i in range(1, 10)) if pg else ", ".join("?" * 9)
    bare_sql = f"INSERT INTO bare_events ({cols}) VALUES ({marks})"
    n = 0
    ours = 0.0
    ours_cpu = 0.0  # this process's CPU (with SQLite: the database's too) during ours
    bare = 0.0
    bare_cpu = 0.0
    ours_server = bare_server = 0.0  # the database server's CPU during each (PostgreSQL)
    probe = server_cpu or _no_server
    accepted = 0
    # Batch by batch, ours then the baseline's, so that both see the same machine and tables of
    # the same size (the database's background work, the other load on a 2-core machine).
    for blob in blobs:
        batch = _events(blob)
        n += len(batch)
        now = max(e.at for _, e in batch)
        s0 = await probe()
        t0 = time.perf_counter()
        c0 = cpu_seconds()
        async with sessions() as s:
            report = await ingest(s, batch, now=now)
        ours += time.perf_counter() - t0
        ours_cpu += cpu_seconds() - c0
        ours_server += await probe() - s0
        accepted += report.accepted
        assert not report.errors, report.errors[:3]
        del batch

        rows = _bare_rows(blob, pg)
        s0 = await probe()
        t0 = time.perf_counter()
        c0 = cpu_seconds()
        async with engine.begin() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            if pg:
                # BEGIN (SQLAlchemy's asyncpg adapter opens its transaction on a first statement).
                await conn.exec_driver_sql("SELECT 1")
            await driver.executemany(bare_sql, rows)
        bare += time.perf_counter() - t0
        bare_cpu += cpu_seconds() - c0
        bare_server += await probe() - s0
    assert accepted == n, (accepted, n)

    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM bare_events"))
    params = ", ".join(f":{c.strip()}" for c in cols.split(","))
    sql = text(f"INSERT INTO bare_events ({cols}) VALUES ({params})")
    bare_sa = 0.0
    for blob in blobs:
        dict_rows = [dict(zip(cols.split(", "), r, strict=True)) for r in _bare_rows(blob, pg)]
        t0 = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(sql, dict_rows)
        bare_sa += time.perf_counter() - t0
    await engine.dispose()
    return {
        "events": n,
        "ours_s": ours,
        "ours_cpu_us_per_event": ours_cpu / n * 1e6,
        "ours_server_us_per_event": ours_server / n * 1e6,
        "bare_cpu_us_per_event": bare_cpu / n * 1e6,
        "bare_server_us_per_event": bare_server / n * 1e6,
        "bare_s": bare,
        "ours_eps": n / ours,
        "bare_eps": n / bare,
        "bare_sqlalchemy_eps": n / bare_sa,
    }


def _figures(r: dict[str, float], backend: str) -> dict[str, Any]:
    """One backend's metrics (named ``*_<backend>``) from :func:`_run`'s figures."""
    out = {
        "events_per_s": round(r["ours_eps"]),
        "baseline_events_per_s": round(r["bare_eps"]),
        "ratio": round(r["ours_eps"] / r["bare_eps"], 3),
        # Our process's CPU per event: what load on a shared machine does not change much.
        "cpu_us_per_event": round(r["ours_cpu_us_per_event"], 1),
        "baseline_cpu_us_per_event": round(r["bare_cpu_us_per_event"], 1),
        "baseline_sqlalchemy_events_per_s": round(r["bare_sqlalchemy_eps"]),
    }
    if r["ours_server_us_per_event"]:
        # PostgreSQL's backends' CPU per event, ours and the bare insert's: with our process's,
        # the whole cost of a batch, which the ratio (wall time) shows only under load's noise.
        out["server_cpu_us_per_event"] = round(r["ours_server_us_per_event"], 1)
        out["baseline_server_cpu_us_per_event"] = round(r["bare_server_us_per_event"], 1)
    return {f"{k}_{backend}": v for k, v in out.items()}


async def _no_server() -> float:
    return 0.0


def _pg_cpu_probe(
    admin: asyncpg.Connection, database: str
) -> Callable[[], Awaitable[float]] | None:
    """The CPU seconds so far of the PostgreSQL backends serving ``database``, asked through
    ``admin`` (a connection to another database) between the timed stretches and read from
    /proc/<pid>/schedstat: only with the server on this machine (None otherwise)."""
    if not os.path.exists("/proc/self/schedstat"):
        return None

    async def probe() -> float:
        pids = await admin.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = $1 AND backend_type = 'client backend'",
            database,
        )
        return _schedstat_seconds([p for (p,) in pids])

    return probe


def _schedstat_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # another machine's process, or the backend just left
            continue
    return total / 1e9


def _db_time(at: dt.datetime, pg: bool) -> Any:
    """As UtcDateTime binds it: aware UTC for asyncpg, naive UTC text for SQLite."""
    utc = at.astimezone(dt.UTC)
    return utc if pg else utc.replace(tzinfo=None).isoformat(" ", "microseconds")


async def _scenario(people: list[SimResident], days: float, batch: int) -> dict[str, Any]:
    """Both backends over the same request bodies; metrics without a suffix."""
    end = START + dt.timedelta(days=days)
    raw = sorted(
        (e for p in people for e in simulate(p, start=START, end=end, seed=1)),
        key=lambda e: e["at"],
    )
    # As request bodies: JSON bytes, one per batch.
    blobs = [json.dumps(raw[k : k + batch]).encode() for k in range(0, len(raw), batch)]
    # Residents per batch: call records name them, device events name a "plug-"/"app-" device.
    touched = [
        len({e.get("resident_id") or e["device_id"].split("-", 1)[1] for e in json.loads(b)})
        for b in blobs
    ]
    out: dict[str, Any] = {
        "events": len(raw),
        "batch": batch,
        "residents": len(people),
        "residents_per_batch": round(sum(touched) / len(touched)),
    }
    del raw
    # PostgreSQL
    name = f"anbu_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        url = f"{base}/{name}"
        await _setup(url, people)
        probing = await asyncpg.connect(PG_ADMIN)
        try:
            r = await _run(url, blobs, _pg_cpu_probe(probing, name))
        finally:
            await probing.close()
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    out |= _figures(r, "postgresql")
    print("postgresql", r, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await _setup(url, people)
        r = await _run(url, blobs)
    out |= _figures(r, "sqlite")
    print("sqlite", r, flush=True)
    return out


def _previous() -> dict[str, Any]:
    """The figures of the last full run, for a run of one scenario."""
    path = RESULTS / "ingest.json"
    if not path.exists():
        return {}
    old: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in old.items() if k not in ("benchmark", "measured_at", "machine")}


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--residents", type=int, default=200)
    ap.add_argument("--days", type=float, default=4)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument(
        "--spread-residents",
        type=int,
        default=20_000,
        help="second scenario: call records of this many residents, ~1 event each per batch",
    )
    ap.add_argument(
        "--only", choices=("main", "spread"), help="run one scenario (the file keeps the other's)"
    )
    args = ap.parse_args(argv)
    results: dict[str, Any] = {
        "note": (
            "ours = ingest(): storing (COPY / executemany, ON CONFLICT fallback) + baselines +"
            " grading; baseline = bare driver executemany of the same rows into an identical"
            " table. Main scenario: IoT residents, each batch touches all of them (~25 events"
            " each). *_spread: call records of many residents, ~1 event per resident per batch"
            " (a carrier's daily feed), where the per-resident work (baseline read and write,"
            " grading) is not shared by several events."
        ),
    }
    iot = [
        SimResident(f"b{i:06d}", Story.NORMAL, Tier.IOT, 5, f"plug-b{i:06d}", f"app-b{i:06d}")
        for i in range(args.residents)
    ]
    if args.only != "spread":
        results |= await _scenario(iot, args.days, args.batch)
    if args.spread_residents and args.only != "main":
        calls = [
            SimResident(f"c{i:06d}", Story.NORMAL, Tier.CALLS, 5, None, None)
            for i in range(args.spread_residents)
        ]
        spread = await _scenario(calls, 1, args.batch)
        results |= {f"{k}_spread": v for k, v in spread.items()}
    if args.only:
        results = _previous() | results
    write_results("ingest", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
