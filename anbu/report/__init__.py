"""The effectiveness report: figures per district, dong and period (``anbu report``).

:mod:`anbu.report.figures` computes (pure), :mod:`anbu.report.query` reads the database,
:mod:`anbu.report.render` writes JSON, CSV, XLSX, HTML (charts as inline SVG) and PDF.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.report.figures import Period, ReportArgumentError, compute
from anbu.report.query import read_input

__all__ = ["Period", "ReportArgumentError", "build_report"]


async def build_report(
    sessions: async_sessionmaker[AsyncSession],
    district_code: str,
    period: Period,
    dong: str | None = None,
    ack_target_s: float = 600.0,
) -> dict[str, Any]:
    """Every figure of the report for one district (optionally one dong) and period."""
    inp = await read_input(sessions, district_code, period, dong, ack_target_s)
    return compute(inp)
