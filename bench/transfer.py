"""A person on the line: from the resident's "help" to an official who accepted.

Every part is the production code path, built by the composition root (``Telephony.build``
with ``handoff_desk``): the AMI dialer calls the carrier stand-in's resident who presses 2,
the FastAGI flow hands the call to ``ivr.handoff.AgiTransfer``, which dials the official
(010-9999-0050: answers at once, hears the whisper, presses 1) while the resident hears the
holding message (the engine's music-on-hold class, ``ANBU_HANDOFF__HOLD_CLASS``).

Measured per transfer, on anbu's own clock: from the moment the help was heard (the help
incident's ``opened_at``, a few ms after the key) to the acceptance (``acknowledged_at``). It
includes the dial, the official's answer and the whole whisper (its length is most of the
figure); the holding message plays during them, no longer before.

Figures (bench/results/transfer.json): ``help_to_official_p50_s`` / ``help_to_official_p99_s``
(one transfer at a time; aim p99 < 15), ``concurrent_transfers`` at once with their
``concurrent_help_to_official_p50_s`` / ``_p99_s``, ``cap`` (max_concurrent_calls: the
residents' calls and the transfers' second channels share it) and ``peak_engine_channels``
(the engine's own count, polled), ``all_accepted``, ``load_average``.

Run: ``make bench NAME=transfer`` or ``python -m bench.transfer [--sequential 10 --at-once 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
from pathlib import Path

from sqlalchemy import select

from anbu.app.parts import Telephony, build_container, handoff_desk
from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, District, Resident
from anbu.db.models_escalation import Incident
from anbu.domain.incidents import AckChannel
from anbu.domain.replies import Prompt
from anbu.ports import CallRequest
from anbu.settings import ROOT, HandoffSettings
from bench.common import percentile, stop_on_sigterm, write_results
from devstack.asterisk import install_asterisk
from escalation.service import EscalationConfig, EscalationService
from ivr.prompts import PromptLibrary

RESIDENT = "01099990060"  # presses 2 while the greeting plays, stays on the line
OFFICIAL = "01099990050"  # answers at once, hears the whisper, presses 1, talks 3 s
_COUNT = re.compile(r"(\d+) active channel")


async def run(args: argparse.Namespace) -> dict[str, object]:
    from tests.call_rig import add_chain, new_attempt
    from tests.fixtures_asterisk import build_pair, free_ports

    work = Path(tempfile.mkdtemp(prefix="anbu-bench-transfer-"))
    install = await asyncio.to_thread(install_asterisk)
    question = Path(PromptLibrary(ROOT / "audio").path(Prompt.QUESTION)).with_suffix(".wav")
    (agi_port,) = free_ports(1)
    pair = await asyncio.to_thread(
        build_pair, install, work / "var", agi_port=agi_port, bench_prompt=question
    )
    settings = pair.settings.model_copy(
        update={
            "audio_dir": ROOT / "audio",
            "database_url": f"sqlite+aiosqlite:///{work / 'anbu.db'}",
            "max_concurrent_calls": args.cap,
            "handoff": HandoffSettings(ring_timeout_s=20, accept_timeout_s=10, channel_wait_s=30),
        }
    )
    container = build_container(settings)
    peak = 0
    stop = asyncio.Event()

    async def poll_channels() -> None:
        nonlocal peak
        while not stop.is_set():
            out = await asyncio.to_thread(pair.engine.rx, "core show channels count")
            if m := _COUNT.search(out):
                peak = max(peak, int(m.group(1)))
            await asyncio.sleep(0.2)

    try:
        await upgrade(container.engine)
        sessions = container.sessions
        async with sessions() as s:
            district = District(code="11620", name="관악구")
            s.add(district)
            await s.flush()
            await add_chain(s, district, [OFFICIAL])
            residents = [
                Resident(district=district, name=f"주민{i}", phone=RESIDENT, dong="신림동")
                for i in range(args.sequential + args.at_once)
            ]
            s.add_all(residents)
            await s.commit()
        # Each resident's check-in being dialed, as the dispatcher leaves it before the call.
        attempts = [await new_attempt(sessions, r.id, RESIDENT, reason="bench") for r in residents]
        escalation = EscalationService(
            sessions, EscalationConfig(public_url="http://anbu.bench", sender="0212345678")
        )
        tel = Telephony.build(
            settings, container.clock, help_desk=handoff_desk(container, escalation)
        )
        await tel.start()
        poller = asyncio.create_task(poll_channels())

        async def one(attempt: CallAttempt) -> None:
            await tel.dialer.call(
                CallRequest(channel_id=attempt.channel_id, number=RESIDENT, ring_timeout_s=10)
            )

        async def latencies(batch: list[CallAttempt]) -> tuple[list[float], int]:
            ids = [a.checkin_id for a in batch]
            async with sessions() as s:
                rows = (
                    (await s.execute(select(Incident).where(Incident.checkin_id.in_(ids))))
                    .scalars()
                    .all()
                )
            accepted = [r for r in rows if r.ack_channel is AckChannel.CALL and r.acknowledged_at]
            return [
                (r.acknowledged_at - r.opened_at).total_seconds()
                for r in accepted
                if r.acknowledged_at is not None
            ], len(accepted)

        try:
            sequential = attempts[: args.sequential]
            for attempt in sequential:
                await one(attempt)
            seq, seq_ok = await latencies(sequential)
            peak_sequential = peak
            batch = attempts[args.sequential :]
            await asyncio.gather(*(one(a) for a in batch))
            conc, conc_ok = await latencies(batch)
        finally:
            stop.set()
            await poller
            await tel.stop()
    finally:
        await container.aclose()
        await asyncio.to_thread(pair.stop)
    return {
        "help_to_official_p50_s": round(percentile(seq, 50), 3),
        "help_to_official_p99_s": round(percentile(seq, 99), 3),
        "sequential_transfers": args.sequential,
        "sequential_accepted": seq_ok,
        "concurrent_transfers": args.at_once,
        "concurrent_accepted": conc_ok,
        "concurrent_help_to_official_p50_s": round(percentile(conc, 50), 3),
        "concurrent_help_to_official_p99_s": round(percentile(conc, 99), 3),
        "cap": args.cap,
        "peak_engine_channels": peak,
        "peak_engine_channels_sequential": peak_sequential,
        "within_cap": peak <= args.cap,
        "all_accepted": seq_ok == args.sequential and conc_ok == args.at_once,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    p = argparse.ArgumentParser(prog="python -m bench.transfer")
    p.add_argument("--sequential", type=int, default=10)
    p.add_argument("--at-once", type=int, default=20)
    p.add_argument("--cap", type=int, default=40)
    args = p.parse_args(argv if argv is not None else [])
    figures = asyncio.run(run(args))
    write_results("transfer", figures)
    return 0 if figures["all_accepted"] and figures["within_cap"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
