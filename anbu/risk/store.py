"""Reading and writing risk state in bulk, identically on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models_signals import Device, MonitoringHold, MonitoringProfile, SignalState
from anbu.domain.risk import (
    Baseline,
    Channel,
    ConsentScope,
    DeviceView,
    Hold,
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


async def load_baselines(
    session: AsyncSession, resident_ids: Sequence[str]
) -> dict[str, dict[Channel, Baseline]]:
    out: dict[str, dict[Channel, Baseline]] = {}
    for part in chunks(resident_ids):
        rows = await session.execute(
            select(*STATE_COLUMNS).where(SignalState.resident_id.in_(part))
        )
        for row in rows:
            b = baseline_of(row)
            out.setdefault(row.resident_id, {})[b.channel] = b
    return out


async def load_devices(
    session: AsyncSession, resident_ids: Sequence[str]
) -> dict[str, list[tuple[str, DeviceView]]]:
    """Active devices by resident: (device primary key, view)."""
    out: dict[str, list[tuple[str, DeviceView]]] = {}
    for part in chunks(resident_ids):
        rows = await session.execute(
            select(
                Device.id,
                Device.resident_id,
                Device.device_id,
                Device.kind,
                Device.expected_interval_s,
                Device.online,
                Device.last_seen_at,
                Device.created_at,
            ).where(Device.resident_id.in_(part), Device.active.is_(True))
        )
        for r in rows:
            view = DeviceView(
                r.device_id, r.kind, r.expected_interval_s, r.online, r.last_seen_at, r.created_at
            )
            out.setdefault(r.resident_id, []).append((r.id, view))
    return out


async def load_holds(
    session: AsyncSession, resident_ids: Sequence[str], now: dt.datetime
) -> dict[str, list[Hold]]:
    """Holds that are current, upcoming, or ended within the last 30 days (the quiet floor)."""
    out: dict[str, list[Hold]] = {}
    since = now - dt.timedelta(days=30)
    for part in chunks(resident_ids):
        rows = await session.execute(
            select(
                MonitoringHold.resident_id,
                MonitoringHold.starts_at,
                MonitoringHold.ends_at,
                MonitoringHold.reason,
            ).where(MonitoringHold.resident_id.in_(part), MonitoringHold.ends_at >= since)
        )
        for r in rows:
            out.setdefault(r.resident_id, []).append(Hold(r.starts_at, r.ends_at, r.reason))
    return out
