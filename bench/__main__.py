"""``python -m bench [NAME]``: run one benchmark (bench/NAME.py) or all of them.

Each benchmark module has ``main() -> int`` and writes ``bench/results/NAME.json`` itself
through :func:`bench.common.write_results`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"common", "speechset"}


def available() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(HERE)])
        if m.name not in SKIP and not m.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    names = argv or available()
    failed = []
    for name in names:
        if name not in available():
            have = ", ".join(available())
            print(f"bench: no benchmark named {name!r} (have: {have})", file=sys.stderr)
            return 2
        print(f"== bench {name}", flush=True)
        # Each benchmark runs with its own defaults (the sizes); its own command line
        # (python -m bench.NAME --help) takes options.
        rc = importlib.import_module(f"bench.{name}").main([])
        if inspect.iscoroutine(rc):
            rc = asyncio.run(rc)
        if isinstance(rc, int) and rc != 0:
            failed.append(name)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
