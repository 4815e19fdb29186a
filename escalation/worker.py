"""``python -m escalation.worker``: the SMS outbox worker alone, configured from ``ANBU_*``.

``anbu serve`` runs the same worker inside its process; both are built by the composition root
(:mod:`anbu.app`). This entry point runs it by itself: beside an API-only process, or in the
crash tests that SIGKILL it. Several may run against one PostgreSQL database (rows are claimed
by compare-and-set). Prints ``outbox worker ready`` once it polls; SIGINT/SIGTERM stop it after
the sends in flight finish.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from anbu.logs import configure_logging
from anbu.settings import SettingsError, load_settings

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m escalation.worker")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per SMS is enough
    from anbu.app.processes import outbox_worker

    try:
        return asyncio.run(outbox_worker(load_settings()))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"escalation.worker: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
