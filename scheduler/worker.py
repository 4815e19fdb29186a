"""A dispatch-only worker process: ``python -m scheduler.worker``.

It claims and dials due attempts (and reconciles what a crashed worker left behind), nothing
else: the periodic jobs run in ``anbu serve`` (see :mod:`scheduler.service`). On PostgreSQL
several workers may run side by side; on SQLite run exactly one (enforced with a lock file).

With ``--agi-port`` the worker also serves the FastAGI check-in flow and names that server in
every Originate (channel variable ``ANBU_AGI=host:port``), so the engine runs this worker's
answered calls on it and their IVR results come back here. Without it the engine's globals
(``anbu serve``'s AGI server) get the calls, and their results do not reach this process.

Configuration comes from the usual ``ANBU_*`` settings; flags override the few that tests and
benchmarks change. SIGTERM/SIGINT stop it gracefully (calls in flight are cancelled and hung
up; their attempts are reconciled by the next worker); SIGKILL is what the crash tests use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from anbu.db.session import make_engine, make_sessionmaker
from anbu.ports import SystemClock
from anbu.settings import SettingsError, load_settings
from ivr.ami import AmiClient
from ivr.dialer import AmiDialer, CallRegistry
from scheduler.dispatcher import AmiChannelProbe, Dispatcher

log = logging.getLogger("scheduler.worker")


def agi_address_for(host: str, port: int) -> str:
    """``host:port`` for the engine's ``agi://`` URL. A wildcard bind address names no host the
    engine could reach, so it must be replaced (``--agi-advertise``)."""
    if host in ("", "0.0.0.0", "::"):
        raise SystemExit(
            f"ANBU_AGI_HOST={host!r} is a bind-all address; pass --agi-advertise with the host"
            " the engine reaches this worker at"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scheduler.worker", description=__doc__)
    p.add_argument("--database-url")
    p.add_argument("--ami-port", type=int, help="engine AMI port (default: settings)")
    p.add_argument("--ami-secret")
    p.add_argument("--max-concurrent", type=int)
    p.add_argument("--cps", type=float, help="calls per second (0: unlimited)")
    p.add_argument("--ring-timeout", type=float)
    p.add_argument("--poll", type=float, default=None, help="poll interval, seconds")
    p.add_argument("--reconcile-interval", type=float, default=None)
    p.add_argument(
        "--agi-port",
        type=int,
        help="serve the FastAGI check-in flow on this port and have the engine use it for this"
        " worker's calls",
    )
    p.add_argument(
        "--agi-advertise",
        metavar="HOST",
        help="host the engine reaches this worker's AGI server at (default: ANBU_AGI_HOST)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


async def run_worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    sc = settings.scheduling
    url = args.database_url or settings.database_url
    engine_cfg = settings.engine
    cps = sc.calls_per_second if args.cps is None else (args.cps or None)
    cap = args.max_concurrent or settings.max_concurrent_calls
    ring = args.ring_timeout or settings.trunk.ring_timeout_s
    secret = args.ami_secret or engine_cfg.ami_secret.get_secret_value()
    agi_address = (
        agi_address_for(args.agi_advertise or settings.agi_host, args.agi_port)
        if args.agi_port
        else None
    )

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    ami = AmiClient(
        engine_cfg.ami_host,
        args.ami_port or engine_cfg.ami_port,
        engine_cfg.ami_user,
        secret,
        connect_timeout_s=settings.ivr.ami_connect_timeout_s,
        action_timeout_s=settings.ivr.ami_action_timeout_s,
    )
    registry = CallRegistry()
    dialer = AmiDialer.from_settings(settings, ami, registry, agi_address=agi_address)
    agi = None
    dispatcher: Dispatcher | None = None
    try:
        await ami.connect()
        dialer.start()
        if args.agi_port:
            from ivr.agi import AgiServer
            from ivr.flow import CheckinFlow

            flow = CheckinFlow.from_settings(settings, registry)
            agi = AgiServer.from_settings(
                settings.model_copy(update={"agi_port": args.agi_port}), {"checkin": flow}
            )
            await agi.start()
            log.info("FastAGI for this worker's calls on %s", agi_address)
        dispatcher = Dispatcher(
            sessions,
            dialer,
            SystemClock(),
            max_concurrent=cap,
            trunk_caps=sc.trunk_caps,
            calls_per_second=cps,
            ring_timeout_s=ring,
            severe_priority=sc.severe_priority,
            channel_probe=AmiChannelProbe(ami),
            stale_call_s=sc.stale_call_s,
            reconcile_interval_s=args.reconcile_interval or sc.reconcile_interval_s,
            engine=engine,
        )
        await dispatcher.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Tests wait for this line: the worker has registered and reconciled.
        print(f"worker {dispatcher.life.id} ready", flush=True)
        runner = asyncio.create_task(dispatcher.run(args.poll or sc.poll_interval_s))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (runner, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if runner in done and runner.exception() is not None:
            raise runner.exception()  # type: ignore[misc]
        return 0
    finally:
        if dispatcher is not None:
            await dispatcher.close()
        if agi is not None:
            await agi.stop()
        await dialer.close()
        await ami.close()
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(run_worker(args))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"scheduler.worker: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
