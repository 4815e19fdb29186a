"""Reading and writing risk state in bulk, identically on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models_signals import MonitoringProfile, SignalState
from anbu.domain.feedback import decode as decode_widening
from anbu.domain.risk import (
    Baseline,
    Channel,
    ConsentScope,
    RiskCategory,
    Tier,
)
from anbu.domain.risk import MonitoringProfile as ProfileRules

T = TypeVar("T")

# Under SQLite's 32,766 and asyncpg's 32,767 bound parameters per statement.
IN_CHUNK = 5000


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def dialect_insert(session: AsyncSession, table: Table) -> Any:
    """An INSERT that knows ON CONFLICT on the session's backend (both speak it)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no ON CONFLICT support for {name}")


def profile_rules(p: MonitoringProfile) -> ProfileRules:
    return rules_from(
        p.tier,
        p.category,
        p.window_h_override,
        p.consent_call_records,
        p.consent_app,
        p.consent_iot,
        p.enabled,
        p.widen_h,
    )


@functools.lru_cache(maxsize=1024)
def rules_from(
    tier: Tier,
    category: RiskCategory,
    window_h_override: float | None,
    consent_call_records: bool,
    consent_app: bool,
    consent_iot: bool,
    enabled: bool,
    widen_h: str | None = None,
) -> ProfileRules:
    """A stored profile's columns as the rules see them (a district has few distinct ones, so
    they are built once and shared: the objects are immutable)."""
    consent = frozenset(
        s
        for s, ok in (
            (ConsentScope.CALL_RECORDS, consent_call_records),
            (ConsentScope.APP, consent_app),
            (ConsentScope.IOT, consent_iot),
        )
        if ok
    )
    return ProfileRules(
        tier=tier,
        category=category,
        window_h_override=window_h_override,
        consent=consent,
        enabled=enabled,
        widen_h=decode_widening(widen_h),
    )


STATE_COLUMNS = (
    SignalState.resident_id,
    SignalState.channel,
    SignalState.days,
    SignalState.hourly,
    SignalState.ring,
    SignalState.ring_end,
    SignalState.first_hour,
    SignalState.last_activity_at,
    SignalState.last_event_at,
    SignalState.last_value,
)


def baseline_of(row: Any) -> Baseline:
    return Baseline(
        channel=Channel(row.channel),
        hourly=list(row.hourly),
        days=row.days,
        ring=list(row.ring),
        ring_end=row.ring_end,
        first_hour=row.first_hour,
        last_activity_at=row.last_activity_at,
        last_event_at=row.last_event_at,
        last_value=row.last_value,
    )
