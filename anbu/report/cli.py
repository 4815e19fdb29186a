"""``anbu report``: arguments checked into one-line messages, the report written to a file."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

from anbu.report.figures import Period, ReportArgumentError
from anbu.report.render import FORMATS, PdfUnavailableError, render
from anbu.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser("report", help="the effectiveness report of a district and period")
    rp.add_argument("--district", required=True, help="district code, e.g. 11620")
    rp.add_argument("--dong", help="one dong only, e.g. 신림동")
    rp.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD (KST)")
    rp.add_argument("--to", dest="last", required=True, help="last day, YYYY-MM-DD (included)")
    rp.add_argument("--format", choices=FORMATS, help="default: from --out's suffix, else json")
    rp.add_argument("--out", help="file to write (standard output for json, csv, html)")
    rp.add_argument(
        "--ack-target", type=float, default=600.0, help="acknowledgement target in seconds"
    )
    rp.set_defaults(fn=run)


def _date(flag: str, raw: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ReportArgumentError(f"{flag} {raw!r} is not a date (YYYY-MM-DD)") from None


def check(a: argparse.Namespace) -> tuple[Period, str]:
    """The period and the format, or a :class:`ReportArgumentError` saying what is wrong."""
    period = Period(_date("--from", a.first), _date("--to", a.last))
    fmt = a.format
    if fmt is None:
        suffix = Path(a.out).suffix.lstrip(".").lower() if a.out else ""
        fmt = suffix if suffix in FORMATS else "json"
    if fmt in ("xlsx", "pdf") and not a.out:
        raise ReportArgumentError(f"--format {fmt} needs --out FILE")
    if a.ack_target <= 0:
        raise ReportArgumentError("--ack-target must be > 0 seconds")
    return period, fmt


async def run(settings: Settings, a: argparse.Namespace) -> int:
    from anbu.app.parts import build_container
    from anbu.report import build_report

    try:
        period, fmt = check(a)
        c = build_container(settings)
        try:
            fig = await build_report(c.sessions, a.district, period, a.dong, a.ack_target)
        finally:
            await c.aclose()
        data = await render(fig, fmt)
    except (ReportArgumentError, PdfUnavailableError) as exc:
        print(f"anbu report: {exc}", file=sys.stderr)
        return 2
    if a.out:
        try:
            await asyncio.to_thread(Path(a.out).write_bytes, data)
        except OSError as exc:
            print(f"anbu report: cannot write {a.out}: {exc.strerror}", file=sys.stderr)
            return 2
        print(f"report written to {a.out} ({fmt}, {len(data):,} bytes)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0
