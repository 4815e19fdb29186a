"""Scheduling benchmark: 300 check-ins through real Asterisk with at most 50 calls at once.

Setup: a private engine + carrier pair on free ports, a fresh database, one dispatcher with the
real AMI dialer. One run measures both backends, PostgreSQL then SQLite (``by_backend``, and
``ratio_to_floor_postgresql`` / ``ratio_to_floor_sqlite`` at the top); ``ratio_to_floor`` and
the other top-level figures are PostgreSQL's, the production backend
(``headline_backend``). ``--database-url`` runs once on that database. Every resident's number
is the carrier's "rings, never answers" line and the policy allows one attempt, so each check-in is
exactly one call whose length is the ring timeout: the floor is then exact,
``floor_s = ceil(N / cap) * mean call length`` (call length measured per call, Originate to
hangup).

Figures (bench/results/schedule.json):
- ``wall_s``: the burst of N check-ins committed -> the last one closed (``burst_insert_s``
  is the time the bench took to write them, one transaction);
- ``floor_s``, ``ratio_to_floor``;
- ``signal_to_originate_p50_ms`` / ``_p99_ms``: check-in opened -> Originate sent, when a
  channel is free and the hour allows (check-ins opened one by one after the burst, the way
  the API opens them: commit, then wake the dispatcher);
- ``queued_signal_to_originate_p50_ms`` / ``_p99_ms``: the same inside the burst (includes the
  wait for a free channel, by design);
- ``max_simultaneous_calls``: the most calls up at once, seen on the engine's AMI.

Where the wall time goes (``wall_s`` ~ ``first_originate_ms`` + ``dial_span_s`` +
``last_hangup_to_stored_ms``):
- ``first_originate_ms``: burst committed -> first Originate (wake-up, first claim pass);
- ``dial_span_s``: first Originate -> last hang-up; above the floor by the channels' idle time:
- ``channel_idle_p50_ms`` / ``_p99_ms`` / ``_mean_ms``: a hang-up -> the Originate that took its
  channel again (the i-th hang-up of the run paired with the (cap + i)-th Originate): the claim
  pass, and before the refill at hang-up, the write of the wave's results;
- ``last_hangup_to_stored_ms``: the last hang-up -> the last case stored (result write-back).
Each backend's run records the 1-minute load average at its start and end
(``load_average_1m_start`` / ``_end``): on a shared machine the figures move with it.

Run: ``python -m bench.schedule [--calls 300 --cap 50 --ring 3 --cps 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.db.models_scheduling import Program
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.checkin import CheckinSource
from anbu.ports import SystemClock
from anbu.services.checkins import CheckinClosed, open_checkin
from bench.common import percentile, stop_on_sigterm, write_results
from devstack.asterisk import install_asterisk, render_korean_wav
from ivr.ami import AmiClient, AmiMessage
from ivr.dialer import AmiDialer, CallRegistry
from scheduler.dispatcher import AmiChannelProbe, Dispatcher

NEVER_ANSWERS = "01099990004"


def _stamp(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        raise RuntimeError("a burst call has no originate or hang-up time")
    return at


def _latency_ms(opened: dt.datetime, originated: dt.datetime | None) -> float:
    if originated is None:
        raise RuntimeError("an attempt was never dialed")
    return (originated - opened).total_seconds() * 1000


async def run(args: argparse.Namespace) -> dict[str, object]:
    from tests.fixtures_asterisk import build_pair, free_ports

    load_start = round(os.getloadavg()[0], 2)
    work = Path(tempfile.mkdtemp(prefix="anbu-bench-schedule-"))
    install = await asyncio.to_thread(install_asterisk)
    prompt = await asyncio.to_thread(render_korean_wav, "확인", work / "prompt.wav")
    pair = await asyncio.to_thread(
        build_pair, install, work / "var", agi_port=free_ports(1)[0], bench_prompt=prompt
    )
    url = args.database_url or f"sqlite+aiosqlite:///{work / 'bench.db'}"
    engine = make_engine(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    clock = SystemClock()
    ami = AmiClient("127.0.0.1", pair.ami_port, pair.ami_user, pair.ami_secret)
    # A second connection only watches: how many channels are up at once.
    watch = AmiClient("127.0.0.1", pair.ami_port, pair.ami_user, pair.ami_secret)
    up: set[str] = set()
    peak = 0

    def on_channel(msg: AmiMessage) -> None:
        nonlocal peak
        uid = msg.get("Uniqueid") or ""
        if msg.event == "Newchannel":
            up.add(uid)
            peak = max(peak, len(up))
        else:
            up.discard(uid)

    closed: list[CheckinClosed] = []
    done = asyncio.Event()
    target = 0

    async def listener(event: CheckinClosed) -> None:
        closed.append(event)
        if len(closed) >= target:
            done.set()

    try:
        await ami.connect()
        await watch.connect()
        watch.subscribe(on_channel, "Newchannel", "Hangup")
        dialer = AmiDialer(ami, CallRegistry(), max_concurrent_calls=args.cap)
        dispatcher = Dispatcher(
            sessions,
            dialer,
            clock,
            max_concurrent=args.cap,
            calls_per_second=args.cps or None,
            cps_burst=args.cap if args.cps else None,
            ring_timeout_s=args.ring,
            channel_probe=AmiChannelProbe(ami),
            listeners=[listener],
            engine=engine,
        )
        async with sessions() as s:
            s.add(Program.any_hour("bench", max_attempts=1, max_callbacks=0))
            district = District(code="11620", name="관악구")
            residents = [
                Resident(district=district, name=f"주민{i}", phone=NEVER_ANSWERS, dong="신림동")
                for i in range(args.calls + args.free_calls)
            ]
            s.add_all(residents)
            await s.commit()
        await dispatcher.start()
        runner = asyncio.create_task(dispatcher.run(poll_interval_s=1.0))

        # Phase 1: the burst.
        target = args.calls
        t_insert = time.perf_counter()
        async with sessions() as s:
            burst_ids = []
            for person in residents[: args.calls]:
                checkin, _ = await open_checkin(
                    s, person, source=CheckinSource.SIGNAL, reason="bench", now=clock.now()
                )
                burst_ids.append(checkin.id)
            await s.commit()
        # The wall clock starts when the burst is visible to the dispatcher (committed): the
        # bench's own cost of writing 300 cases in one transaction is reported apart.
        t0 = time.perf_counter()
        committed_at = clock.now()
        insert_s = t0 - t_insert
        dispatcher.wake()
        await asyncio.wait_for(done.wait(), args.calls * args.ring + 120)
        wall_s = time.perf_counter() - t0
        stored_at = clock.now()
        peak_burst = peak

        # Phase 2: one at a time, a channel free and the hour allowed.
        free_ids = []
        for person in residents[args.calls :]:
            done.clear()
            target = len(closed) + 1
            async with sessions() as s:
                checkin, _ = await open_checkin(
                    s, person, source=CheckinSource.SIGNAL, reason="bench", now=clock.now()
                )
                await s.commit()
                free_ids.append(checkin.id)
            dispatcher.wake()
            await asyncio.sleep(args.free_gap)
        done.clear()
        target = args.calls + args.free_calls
        if len(closed) < target:
            await asyncio.wait_for(done.wait(), args.ring + 60)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await dispatcher.close()
        await dialer.close()

        async with sessions() as s:
            rows = (
                await s.execute(
                    select(
                        Checkin.id,
                        Checkin.created_at,
                        CallAttempt.originated_at,
                        CallAttempt.ended_at,
                        CallAttempt.result,
                    ).join(CallAttempt, CallAttempt.checkin_id == Checkin.id)
                )
            ).all()
        by_id = {r[0]: r for r in rows}
        lengths = [(r[3] - r[2]).total_seconds() for r in rows if r[2] and r[3]]
        mean_call_s = statistics.fmean(lengths)
        floor_s = math.ceil(args.calls / args.cap) * mean_call_s
        queued = [_latency_ms(by_id[i][1], by_id[i][2]) for i in burst_ids]
        free = [_latency_ms(by_id[i][1], by_id[i][2]) for i in free_ids]
        results = {str(r[4]) for r in rows}
        originates = sorted(_stamp(by_id[i][2]) for i in burst_ids)
        hangups = sorted(_stamp(by_id[i][3]) for i in burst_ids)
        idle_ms = [
            (originates[args.cap + k] - hangups[k]).total_seconds() * 1000
            for k in range(len(originates) - args.cap)
        ]
        return {
            "calls": args.calls,
            "cap": args.cap,
            "calls_per_second": args.cps or None,
            "ring_timeout_s": args.ring,
            "database": engine.dialect.name,
            "call_results": sorted(results),
            "mean_call_s": round(mean_call_s, 3),
            "wall_s": round(wall_s, 3),
            "burst_insert_s": round(insert_s, 3),
            "floor_s": round(floor_s, 3),
            "ratio_to_floor": round(wall_s / floor_s, 3),
            "max_simultaneous_calls": peak_burst,
            "signal_to_originate_p50_ms": round(percentile(free, 50), 1),
            "signal_to_originate_p99_ms": round(percentile(free, 99), 1),
            "free_channel_samples": len(free),
            "queued_signal_to_originate_p50_ms": round(percentile(queued, 50), 1),
            "queued_signal_to_originate_p99_ms": round(percentile(queued, 99), 1),
            "first_originate_ms": round((originates[0] - committed_at).total_seconds() * 1000, 1),
            "dial_span_s": round((hangups[-1] - originates[0]).total_seconds(), 3),
            "channel_idle_p50_ms": round(percentile(idle_ms, 50), 1),
            "channel_idle_p99_ms": round(percentile(idle_ms, 99), 1),
            "channel_idle_mean_ms": round(statistics.fmean(idle_ms), 1) if idle_ms else None,
            "last_hangup_to_stored_ms": round((stored_at - hangups[-1]).total_seconds() * 1000, 1),
            "load_average_1m_start": load_start,
            "load_average_1m_end": round(os.getloadavg()[0], 2),
        }
    finally:
        await watch.close()
        await ami.close()
        await engine.dispose()
        await asyncio.to_thread(pair.stop)


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    p = argparse.ArgumentParser(prog="python -m bench.schedule")
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--cap", type=int, default=50)
    p.add_argument("--ring", type=float, default=3.0, help="ring timeout = call length, s")
    p.add_argument("--cps", type=float, default=0.0, help="calls per second (0: unlimited)")
    p.add_argument("--free-calls", type=int, default=50)
    p.add_argument("--free-gap", type=float, default=0.2)
    p.add_argument("--database-url", help="one run on this database instead of both backends")
    args = p.parse_args(argv if argv is not None else sys.argv[1:])
    figures = asyncio.run(run(args) if args.database_url else _both_backends(args))
    write_results("schedule", figures)
    return 0


async def _both_backends(args: argparse.Namespace) -> dict[str, object]:
    """PostgreSQL (the production backend, headline figures) and SQLite (development)."""
    from tests.db_fixtures import create_pg_database, drop_pg_database, pg_url

    name = await create_pg_database()
    try:
        pg = await run(argparse.Namespace(**{**vars(args), "database_url": pg_url(name)}))
    finally:
        await drop_pg_database(name)
    lite = await run(argparse.Namespace(**{**vars(args), "database_url": None}))
    return {
        **pg,
        "headline_backend": "postgresql",
        "ratio_to_floor_postgresql": pg["ratio_to_floor"],
        "ratio_to_floor_sqlite": lite["ratio_to_floor"],
        "by_backend": {"postgresql": pg, "sqlite": lite},
    }


if __name__ == "__main__":
    sys.exit(main())
