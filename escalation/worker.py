"""``python -m escalation.worker``: the SMS outbox worker alone, configured from ``ANBU_*``.

``anbu serve`` runs the same worker inside its process (``escalation.service.build_escalation``);
this entry point runs it by itself: beside an API-only process, or in the crash tests that
SIGKILL it. Several may run against one PostgreSQL database (rows are claimed by
compare-and-set). Prints ``outbox worker ready`` once it polls; SIGINT/SIGTERM stop it after
the sends in flight finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from anbu.container import build_container
from anbu.settings import Settings, SettingsError, load_settings
from escalation.outbox import OutboxConfig, OutboxWorker
from escalation.service import senders_from_settings

log = logging.getLogger(__name__)


async def run(settings: Settings) -> None:
    container = build_container(settings)
    worker = OutboxWorker(
        container.sessions,
        senders_from_settings(settings),
        config=OutboxConfig.from_settings(settings),
        clock=container.clock,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, worker.stop)
    try:
        task = asyncio.create_task(worker.run(), name="sms-outbox")
        print("outbox worker ready", flush=True)
        await task
    finally:
        await worker.aclose()
        await container.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m escalation.worker")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per SMS is enough
    try:
        asyncio.run(run(load_settings()))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"escalation.worker: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
