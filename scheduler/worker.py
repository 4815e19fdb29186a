"""A dispatch-only worker process: ``python -m scheduler.worker``.

It claims and dials due attempts (and reconciles what a crashed worker left behind), nothing
else: the periodic jobs run in ``anbu serve`` (see :mod:`scheduler.service`). On PostgreSQL
several workers may run side by side; on SQLite run exactly one (enforced with a lock file).

With ``--agi-port`` the worker also serves the FastAGI check-in flow and names that server in
every Originate (channel variable ``ANBU_AGI=host:port``), so the engine runs this worker's
answered calls on it and their IVR results come back here. Without it the engine's globals
(``anbu serve``'s AGI server) get the calls, and their results do not reach this process.

Configuration comes from the usual ``ANBU_*`` settings; flags override the few that tests and
benchmarks change. The process itself is built by the composition root
(:func:`anbu.app.processes.dispatch_worker`), like ``anbu serve``'s dispatcher.
SIGTERM/SIGINT stop it gracefully (calls in flight are cancelled and hung
up; their attempts are reconciled by the next worker); SIGKILL is what the crash tests use.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from pydantic import SecretStr

from anbu.logs import configure_logging
from anbu.settings import Settings, SettingsError, load_settings

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


def settings_for(args: argparse.Namespace, settings: Settings | None = None) -> Settings:
    """The ``ANBU_*`` settings with this command line's overrides applied, so that every part
    the root builds from them (dialer, dispatcher, AMI client) sees the same values."""
    base = settings or load_settings()
    if base.nodes and (args.ami_port or args.ami_secret):
        # They set the single engine, which ANBU_NODES replaces: taken silently, the worker
        # would dial with the nodes' settings while its operator believes otherwise.
        raise SettingsError(
            [
                "--ami-port/--ami-secret set the single engine; ANBU_NODES is set, so each"
                " node's own ami_port and ami_secret apply: change them there"
            ]
        )
    engine: dict[str, object] = {}
    if args.ami_port:
        engine["ami_port"] = args.ami_port
    if args.ami_secret:
        engine["ami_secret"] = SecretStr(args.ami_secret)
    scheduling: dict[str, object] = {}
    if args.cps is not None:
        scheduling["calls_per_second"] = args.cps or None  # 0: unlimited
    if args.reconcile_interval:
        scheduling["reconcile_interval_s"] = args.reconcile_interval
    update: dict[str, object] = {
        "engine": base.engine.model_copy(update=engine),
        "scheduling": base.scheduling.model_copy(update=scheduling),
    }
    if args.ring_timeout:
        update["trunk"] = base.trunk.model_copy(update={"ring_timeout_s": args.ring_timeout})
    if args.database_url:
        update["database_url"] = args.database_url
    if args.max_concurrent:
        update["max_concurrent_calls"] = args.max_concurrent
    if args.agi_port:
        update["agi_port"] = args.agi_port
    return base.model_copy(update=update)


async def run_worker(args: argparse.Namespace) -> int:
    from anbu.app.processes import dispatch_worker

    settings = settings_for(args)
    agi_address = (
        agi_address_for(args.agi_advertise or settings.agi_host, args.agi_port)
        if args.agi_port
        else None
    )
    return await dispatch_worker(settings, agi_address=agi_address, poll_s=args.poll)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return asyncio.run(run_worker(args))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"scheduler.worker: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
