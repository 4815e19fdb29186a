"""Engine nodes benchmark: the 200-call campaign on one node and on two, and a kill run.

Two engine Asterisk instances and the carrier stand-in on loopback; anbu's dispatcher, dialers
(one per node, built by the composition root's ``Telephony``), FastAGI check-in flow with the
real prompt catalogue, SQLite. Numbers alternate between the carrier's 0040 (presses 1) and 0041
(presses 2), which report every call's id as it arrives (``X-Anbu-Call``).

- **one node**: 200 check-ins, node cap ``--cap`` (50), global cap the same;
- **two nodes**: the same 200 over both nodes, each capped at ``--cap`` (twice the total);
  ``scale_ratio`` = two-node calls/s over one-node calls/s (aim >= 1.8);
- **kill run**: two nodes, 200 check-ins (retries allowed: 3 attempts, 1 s apart); node A is
  SIGKILLed while it has calls in flight and started again a few seconds later.
  ``failover_lost``: cases that did not end with their right outcome (aim 0);
  ``failover_doubled``: call ids the carrier saw more than once (aim 0); also how many calls
  the dead node took with it (``failover_calls_lost_with_node``, retried) and how long the run
  took.

The machine is shared: the load average before and after each phase is in the results.
Run: ``make bench NAME=nodes`` or ``python -m bench.nodes [--calls 200 --cap 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from anbu.app.parts import Telephony
from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, Checkin
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.checkin import CheckinStatus
from anbu.domain.replies import Prompt
from anbu.ports import SystemClock
from anbu.settings import ROOT, Settings
from bench.common import stop_on_sigterm, write_results
from devstack.asterisk import install_asterisk
from ivr.prompts import PromptLibrary
from scheduler.dispatcher import Dispatcher
from tests.call_rig import Closings, dispatching, seed_campaign


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def campaign(
    settings: Settings,
    work: Path,
    tag: str,
    calls: int,
    *,
    carrier_ami: tuple[int, str, str],
    kill: Any = None,
    max_attempts: int = 1,
) -> dict[str, Any]:
    """Run one campaign of ``calls`` check-ins to the end; with ``kill`` (the node's
    AsteriskInstance) SIGKILL it mid-campaign and start it again."""
    from tests.fixtures_asterisk import AmiProbe

    url = f"sqlite+aiosqlite:///{work / f'{tag}.db'}"
    db = make_engine(url)
    await upgrade(db)
    sessions = make_sessionmaker(db)
    clock = SystemClock()
    expected = await seed_campaign(
        sessions, calls, tag=tag, max_attempts=max_attempts, now=clock.now()
    )
    port, user, secret = carrier_ami
    carrier = await AmiProbe.connect("127.0.0.1", port, user, secret)
    closings = Closings()

    tel = Telephony.build(settings, clock)
    await tel.start()
    dispatcher = Dispatcher.from_settings(
        settings, db, sessions, tel.dialer, clock, nodes=tel.engine_nodes()
    )
    dispatcher.add_listener(closings.on_closed)
    load_before = load()
    t0 = time.perf_counter()
    downtime = 0.0
    async with dispatching(dispatcher, then=[tel.stop, carrier.close]):
        if kill is not None:
            await closings.until(calls // 4, 300)
            on_killed = tel.links[0].dialer
            async with asyncio.timeout(120):
                while on_killed.active_calls < tel.links[0].settings.max_calls // 2:  # noqa: ASYNC110 (another component's counter)
                    await asyncio.sleep(0.02)
            k0 = time.perf_counter()
            await asyncio.to_thread(kill.kill)
            await asyncio.sleep(5.0)  # down for a while: the other node carries on alone
            await asyncio.to_thread(kill.start)
            downtime = time.perf_counter() - k0
        await closings.until(calls, 900)
        wall = time.perf_counter() - t0
    async with sessions() as s:
        cases = (await s.execute(select(Checkin))).scalars().all()
        attempts = (await s.execute(select(CallAttempt))).scalars().all()
    await db.dispose()
    dials = carrier.carrier_dials()
    right = sum(
        1
        for c in cases
        if c.status is CheckinStatus.COMPLETED and c.outcome is expected[c.resident_id]
    )
    return {
        "calls": calls,
        "wall_s": round(wall, 2),
        "calls_per_s": round(calls / wall, 3),
        "right": right,
        "closed_more_than_once": sum(1 for n in closings.count.values() if n > 1),
        "attempts_per_node": dict(Counter(a.node or "" for a in attempts)),
        "attempts_by_node_and_result": {
            f"{node}/{status}/{result}": n
            for (node, status, result), n in sorted(
                Counter(
                    (a.node, a.status.value, a.result.value if a.result else None) for a in attempts
                ).items(),
                key=str,
            )
        },
        "carrier_dials": sum(dials.values()),
        "doubled": sum(1 for n in dials.values() if n > 1),
        "lost_with_node": dict(dispatcher.lost_calls),
        "downtime_s": round(downtime, 2),
        "load_before": load_before,
        "load_after": load(),
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    from tests.fixtures_asterisk import build_nodes, free_ports

    work = Path(tempfile.mkdtemp(prefix="anbu-bench-nodes-"))
    # Warnings and errors of the run (node down, lost calls) for a look afterwards.
    logging.basicConfig(
        filename=work / "bench.log",
        level=logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )
    print(f"work dir (log, databases): {work}", flush=True)
    install = await asyncio.to_thread(install_asterisk)
    question = Path(PromptLibrary(ROOT / "audio").path(Prompt.QUESTION)).with_suffix(".wav")
    (agi_port,) = free_ports(1)
    pair = await asyncio.to_thread(
        build_nodes,
        install,
        work / "var",
        agi_port=agi_port,
        bench_prompt=question,
        max_calls=args.cap,
    )
    base = pair.settings.model_copy(
        update={
            "audio_dir": ROOT / "audio",
            # Fast rejoin after the kill; lost calls reconciled when the node is back.
            "ivr": pair.settings.ivr.model_copy(
                update={"ami_reconnect_initial_s": 0.2, "ami_reconnect_max_s": 0.5}
            ),
            # Originates are not rate-limited here: both runs measure the nodes, not the CPS.
            "scheduling": pair.settings.scheduling.model_copy(update={"calls_per_second": None}),
        }
    )
    carrier = (pair.carrier.ami_port, pair.carrier.ami_user, pair.carrier.ami_secret)
    try:
        one_settings = base.model_copy(
            update={"nodes": base.nodes[:1], "max_concurrent_calls": args.cap}
        )
        one = await campaign(one_settings, work, "one", args.calls, carrier_ami=carrier)
        two = await campaign(base, work, "two", args.calls, carrier_ami=carrier)
        killed = await campaign(
            base, work, "kill", args.calls, carrier_ami=carrier, kill=pair.engine, max_attempts=3
        )
    finally:
        await asyncio.to_thread(pair.stop)
    return {
        "calls": args.calls,
        "cap_per_node": args.cap,
        "one_node_calls_per_s": one["calls_per_s"],
        "two_node_calls_per_s": two["calls_per_s"],
        "scale_ratio": round(two["calls_per_s"] / one["calls_per_s"], 3),
        "failover_lost": args.calls - killed["right"] + killed["closed_more_than_once"],
        "failover_doubled": killed["doubled"],
        "failover_calls_lost_with_node": sum(killed["lost_with_node"].values()),
        "all_outcomes_right": one["right"] == two["right"] == args.calls,
        "no_dial_doubled": one["doubled"] == two["doubled"] == 0,
        "one_node": one,
        "two_nodes": two,
        "kill_run": killed,
    }


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    p = argparse.ArgumentParser(prog="python -m bench.nodes")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--cap", type=int, default=50)
    args = p.parse_args(argv if argv is not None else [])
    figures = asyncio.run(run(args))
    write_results("nodes", figures)
    ok = (
        figures["all_outcomes_right"]
        and figures["failover_lost"] == 0
        and figures["failover_doubled"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
