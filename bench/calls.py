"""Spine benchmark: 200 check-ins, at most 50 calls at once, through anbu against a bare loop.

- **anbu**: check-ins stored in SQLite, claimed by the dispatcher, dialed by the AMI dialer,
  answered by the FastAGI check-in flow (greeting + question, key during the prompt, closing
  prompts), outcomes written back. Every part is the production code path.
- **bare**: the same 200 calls originated straight over AMI (Async Originate, our channel id)
  into ``bench-bare-flow``, a plain dialplan that plays the same prompts and reads the same key;
  the loop waits for the Hangup. No database, no AGI.

With detection on (the default, as in production: ``speech.barge_in``), anbu's flow listens
through the StreamListener: every question is played over AudioSocket while the far end is
heard (barge-in, voicemail and answering-machine detection, the Vosk model loaded).
``--no-detection`` measures the keypad-only flow of earlier rounds.

Both run against the same engine + carrier stand-in pair; numbers alternate between the
carrier's "presses 1" and "presses 2" lines. Figures (bench/results/calls.json):
``anbu_calls_per_s``, ``bare_calls_per_s``, ``ratio`` (aim >= 0.9), ``anbu_cpu_ms_per_call``
(this process), ``engine_cpu_ms_per_call_anbu`` / ``_bare`` (the Asterisk engine),
``anbu_peak_rss_mb``, ``all_outcomes_right``.

Run: ``make bench NAME=calls`` or ``python -m bench.calls [--calls 200 --cap 50] [--no-detection]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import psutil
from sqlalchemy import select

from anbu.app.parts import speech_listener
from anbu.db.migrate import upgrade
from anbu.db.models import Checkin, District, Resident
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.calling_hours import ALL_DAYS, END_OF_DAY, CallingWindow
from anbu.domain.checkin import CheckinSource, CheckinStatus, Outcome
from anbu.domain.replies import Prompt
from anbu.domain.retry import RetryPolicy
from anbu.ports import SystemClock
from anbu.services.checkins import open_checkin
from anbu.settings import ROOT
from bench.common import cpu_seconds, stop_on_sigterm, write_results
from devstack.asterisk import install_asterisk
from ivr.agi import AgiServer
from ivr.ami import AmiClient, AmiMessage
from ivr.dialer import AmiDialer, CallRegistry
from ivr.flow import CheckinFlow
from ivr.prompts import PromptLibrary
from scheduler.dispatcher import Dispatcher

NUMBERS = {"01099990001": ("1", Outcome.OK), "01099990002": ("2", Outcome.HELP)}


class RssSampler:
    """Peak RSS of this process while a phase runs (ru_maxrss cannot be reset between phases)."""

    def __init__(self) -> None:
        self.peak = 0
        self._proc = psutil.Process()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self._proc.memory_info().rss)
            await asyncio.sleep(0.1)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def proc_cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


async def bare(ami: AmiClient, n: int, cap: int, numbers: list[str]) -> tuple[float, int]:
    """Originate n calls into bench-bare-flow, at most cap at once. Returns (wall, right)."""
    done: dict[str, asyncio.Future[str]] = {}
    digits: dict[str, str] = {}

    def on_event(msg: AmiMessage) -> None:
        uid = msg.get("Uniqueid") or ""
        if msg.event == "UserEvent" and msg.get("UserEvent") == "BareResult":
            digits[uid] = msg.get("Digit") or ""
        elif msg.event == "Hangup" and uid in done and not done[uid].done():
            done[uid].set_result(digits.get(uid, ""))

    sub = ami.subscribe(on_event, "UserEvent", "Hangup")
    slots = asyncio.Semaphore(cap)
    right = 0

    async def one(number: str) -> None:
        nonlocal right
        async with slots:
            uid = uuid.uuid4().hex
            done[uid] = asyncio.get_running_loop().create_future()
            await ami.action(
                "Originate",
                {
                    "Channel": f"PJSIP/{number}@trunk",
                    "Context": "bench-bare-flow",
                    "Exten": "s",
                    "Priority": "1",
                    "ChannelId": uid,
                    "Timeout": "20000",
                    "Async": "true",
                },
            )
            digit = await asyncio.wait_for(done[uid], 120)
            right += digit == NUMBERS[number][0]

    t0 = time.perf_counter()
    await asyncio.gather(*(one(numbers[i % len(numbers)]) for i in range(n)))
    wall = time.perf_counter() - t0
    sub.cancel()
    return wall, right


async def run(args: argparse.Namespace) -> dict[str, object]:
    from tests.fixtures_asterisk import build_pair, free_ports

    work = Path(tempfile.mkdtemp(prefix="anbu-bench-calls-"))
    install = await asyncio.to_thread(install_asterisk)
    prompts = PromptLibrary(ROOT / "audio")
    question = Path(prompts.path(Prompt.QUESTION)).with_suffix(".wav")
    (agi_port,) = free_ports(1)
    pair = await asyncio.to_thread(
        build_pair, install, work / "var", agi_port=agi_port, bench_prompt=question
    )
    settings = pair.settings.model_copy(update={"audio_dir": ROOT / "audio"})
    speech = settings.speech.model_copy(
        update={"enabled": args.detection, "barge_in": args.detection}
    )
    settings = settings.model_copy(update={"speech": speech})
    # The composition root's own choice of listener: the StreamListener when barge-in is on.
    listener = await speech_listener(settings)
    if args.detection and listener is None:
        raise SystemExit("detection asked for but the Vosk model is not installed")
    numbers = list(NUMBERS)
    try:
        engine_pid = pair.engine.pid
        assert engine_pid is not None
        ami = AmiClient(
            "127.0.0.1",
            pair.ami_port,
            pair.ami_user,
            pair.ami_secret,
            events="system,call,user",
        )
        await ami.connect()

        # ---- bare loop ----
        e0 = proc_cpu(engine_pid)
        bare_wall, bare_right = await bare(ami, args.calls, args.cap, numbers)
        bare_engine_cpu = proc_cpu(engine_pid) - e0

        # ---- anbu ----
        url = f"sqlite+aiosqlite:///{work / 'anbu.db'}"
        db = make_engine(url)
        await upgrade(db)
        sessions = make_sessionmaker(db)
        clock = SystemClock()
        async with sessions() as s:
            district = District(code="11620", name="관악구")
            s.add(district)
            residents = [
                Resident(district=district, name=f"주민{i}", phone=numbers[i % 2], dong="신림동")
                for i in range(args.calls)
            ]
            s.add_all(residents)
            await s.flush()
            for r in residents:
                await open_checkin(s, r, source=CheckinSource.API, reason="bench", now=clock.now())
            await s.commit()
        registry = CallRegistry()
        dialer = AmiDialer.from_settings(settings, ami, registry, clock)
        dialer.start()
        flow = CheckinFlow.from_settings(settings, registry, listener=listener, clock=clock)
        agi = AgiServer({"checkin": flow}, host="127.0.0.1", port=agi_port)
        await agi.start()
        listener_start = getattr(listener, "start", None)  # the AudioSocket server
        if listener_start is not None:
            await listener_start()
        dispatcher = Dispatcher(
            sessions,
            dialer,
            clock,
            policy=RetryPolicy(max_attempts=1),
            # The benchmark runs at any hour: calls allowed around the clock.
            window=CallingWindow(
                start=dt.time(0), end=END_OF_DAY, weekdays=ALL_DAYS, call_on_holidays=True
            ),
            max_concurrent=args.cap,
            ring_timeout_s=20,
            engine=db,
        )
        await dispatcher.start()
        closed = asyncio.Event()
        finished = 0

        async def on_closed(_event: object) -> None:
            nonlocal finished
            finished += 1
            if finished == args.calls:
                closed.set()

        dispatcher.add_listener(on_closed)
        c0, e0 = cpu_seconds(), proc_cpu(engine_pid)
        with RssSampler() as rss:
            t0 = time.perf_counter()
            loop_task = asyncio.create_task(dispatcher.run(0.5))
            await asyncio.wait_for(closed.wait(), 900)
            anbu_wall = time.perf_counter() - t0
            loop_task.cancel()
        anbu_cpu = cpu_seconds() - c0
        anbu_engine_cpu = proc_cpu(engine_pid) - e0
        await dispatcher.close()
        async with sessions() as s:
            rows = (await s.execute(select(Checkin))).scalars().all()
            expected = {r.id: NUMBERS[r.phone][1] for r in residents}
            outcomes = Counter(
                (c.status.value, c.outcome.value if c.outcome else None) for c in rows
            )
            anbu_right = sum(
                1
                for c in rows
                if c.status is CheckinStatus.COMPLETED and c.outcome is expected[c.resident_id]
            )
        await agi.stop()
        listener_stop = getattr(listener, "stop", None)
        if listener_stop is not None:
            await listener_stop()
        await dialer.close()
        await ami.close()
        await db.dispose()
    finally:
        await asyncio.to_thread(pair.stop)

    anbu_cps = args.calls / anbu_wall
    bare_cps = args.calls / bare_wall
    return {
        "detection": args.detection,
        "calls": args.calls,
        "max_concurrent": args.cap,
        "anbu_wall_s": round(anbu_wall, 2),
        "bare_wall_s": round(bare_wall, 2),
        "anbu_calls_per_s": round(anbu_cps, 3),
        "bare_calls_per_s": round(bare_cps, 3),
        "ratio": round(anbu_cps / bare_cps, 3),
        "anbu_cpu_ms_per_call": round(anbu_cpu / args.calls * 1000, 2),
        "engine_cpu_ms_per_call_anbu": round(anbu_engine_cpu / args.calls * 1000, 2),
        "engine_cpu_ms_per_call_bare": round(bare_engine_cpu / args.calls * 1000, 2),
        "anbu_peak_rss_mb": round(rss.peak / 2**20, 1),
        "anbu_outcomes": {f"{k[0]}/{k[1]}": v for k, v in sorted(outcomes.items(), key=str)},
        "anbu_right": anbu_right,
        "bare_right": bare_right,
        "all_outcomes_right": anbu_right == args.calls and bare_right == args.calls,
    }


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    p = argparse.ArgumentParser(prog="python -m bench.calls")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--cap", type=int, default=50)
    p.add_argument(
        "--detection",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="listen through the StreamListener (barge-in, machine detection), as production",
    )
    args = p.parse_args(argv if argv is not None else [])
    figures = asyncio.run(run(args))
    write_results("calls", figures)
    return 0 if figures["all_outcomes_right"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
