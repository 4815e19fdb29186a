"""Helpers shared by the benchmarks: result files, resource usage, percentiles."""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """Write bench/results/NAME.json with the figures plus when/where they were measured."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    doc = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # The load average when the run ended: figures taken on a busy machine say so.
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        **figures,
    }
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return qs[min(98, max(0, round(p) - 1))]


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so a benchmark that is stopped still runs its
    ``finally`` blocks and stops the Asterisk/Kannel processes it started."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
