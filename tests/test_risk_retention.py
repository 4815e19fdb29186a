"""Retention of raw signal events (anbu.risk.retention), on SQLite and PostgreSQL, and its CLI."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.cli import build_parser
from anbu.db.models_signals import SignalEvent, SignalState
from anbu.domain.risk import Tier
from anbu.risk.ingest import ingest
from anbu.risk.retention import oldest_event, prune_events
from anbu.risk.schemas import SignalEventIn
from anbu.settings import Settings
from devstack.sim import Story, simulate
from tests.risk_support import START, feed, person, register

DAY = dt.timedelta(days=1)


async def _ingest_days(
    sessions: async_sessionmaker[AsyncSession], days: int
) -> list[dict[str, object]]:
    """A calls-only resident's days, each ingested at the end of that day."""
    events = simulate(person("r1", Story.NORMAL, Tier.CALLS), start=START, end=START + days * DAY)
    await feed(sessions, events, step=DAY, until=START + days * DAY)
    return events


async def _states(s: AsyncSession) -> list[tuple[object, ...]]:
    rows = await s.execute(
        select(
            SignalState.channel,
            SignalState.days,
            SignalState.hourly,
            SignalState.ring,
            SignalState.last_activity_at,
        )
    )
    return [tuple(r) for r in rows]


async def test_given_old_and_recent_events_when_pruned_then_only_old_ones_go_and_baselines_stay(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register(sessions, [person("r1", Story.NORMAL, Tier.CALLS)])
    events = await _ingest_days(sessions, 10)
    now = START + 10 * DAY
    async with sessions() as s:
        total = (await s.execute(select(func.count()).select_from(SignalEvent))).scalar()
        kept_expected = (
            await s.execute(
                select(func.count())
                .select_from(SignalEvent)
                .where(SignalEvent.received_at >= now - 4 * DAY)
            )
        ).scalar()
        before = await _states(s)
    assert total == len(events)
    assert kept_expected is not None
    assert 0 < kept_expected < len(events)

    deleted = await prune_events(sessions, now, 4 * DAY, chunk=7)  # many small chunks
    assert deleted == len(events) - kept_expected
    oldest = await oldest_event(sessions)
    assert oldest is not None
    assert oldest >= now - 4 * DAY
    async with sessions() as s:
        assert await _states(s) == before  # the summary is untouched

    # A deleted event sent again is accepted again, and moves nothing: it lies before the
    # baselines' 56-hour window and before the last activity.
    first = SignalEventIn.model_validate(events[0])
    async with sessions() as s:
        report = await ingest(s, [(0, first)], now=now)
    assert report.accepted == 1
    async with sessions() as s:
        assert await _states(s) == before
    # It was received now: it is kept for its own retention period.
    assert await prune_events(sessions, now, 4 * DAY) == 0


async def test_given_a_retention_under_three_days_when_pruning_then_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(ValueError, match="at least 3 days"):
        await prune_events(sessions, START, 2 * DAY)


async def test_given_the_cli_when_pruning_then_the_configured_or_given_retention_applies(
    sessions: async_sessionmaker[AsyncSession], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await register(sessions, [person("r1", Story.NORMAL, Tier.CALLS)])
    await _ingest_days(sessions, 2)
    settings = Settings(database_url=db_url)
    # The CLI runs on the machine's clock: the events (received early in November 2026) are
    # weeks old, younger than the default 90 days and older than 3.
    args = build_parser().parse_args(["signals", "prune"])
    assert await args.fn(settings, args) == 0
    assert "deleted 0 raw signal event(s) older than 90 days" in capsys.readouterr().out
    args = build_parser().parse_args(["signals", "prune", "--days", "3"])
    assert await args.fn(settings, args) == 0
    assert "older than 3 days; none kept" in capsys.readouterr().out
    assert await oldest_event(sessions) is None


def test_given_too_short_a_retention_when_the_cli_prunes_then_a_clear_message(
    tmp_path: Path,
) -> None:
    env = os.environ | {"ANBU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/a.db"}
    done = subprocess.run(
        [sys.executable, "-m", "anbu.cli", "signals", "prune", "--days", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "anbu: raw events must be kept at least 3 days" in done.stderr
    assert "Traceback" not in done.stderr
