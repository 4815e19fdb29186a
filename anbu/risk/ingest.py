"""Signal ingestion: validate against the registry, store idempotently, update baselines, evaluate.

One call handles one batch (thousands of events). Per-item problems come back as
``ItemError(index, reason)``; every accepted event is committed even when others in the batch
were refused. Storing is ``INSERT ... ON CONFLICT (source, event_id) DO NOTHING RETURNING`` on
both backends, and only the rows that insert move baselines, so a resent batch changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import Resident
from anbu.db.models_signals import Device, DeviceTask, MonitoringProfile, SignalEvent
from anbu.domain.risk import (
    DEFAULT_RULES,
    Baseline,
    Channel,
    DeviceKind,
    DeviceView,
    Rules,
    SignalKind,
    TaskStatus,
    consent_scope,
    observe,
    quiet_due_at,
    stale_due_at,
)
from anbu.risk.evaluate import Evaluation, evaluate_residents
from anbu.risk.schemas import SignalEventIn
from anbu.risk.store import (
    chunks,
    dialect_insert,
    load_baselines,
    profile_rules,
    save_baselines,
    state_row,
)

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
# Rows per INSERT statement: 9 parameters each stays under both backends' parameter limits.
INSERT_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class ItemError:
    index: int
    reason: str


@dataclass(slots=True)
class IngestReport:
    accepted: int = 0  # stored now
    duplicates: int = 0  # already stored (same source and event_id): nothing changed
    errors: list[ItemError] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _DeviceRow:
    pk: str
    device_id: str
    resident_id: str
    kind: DeviceKind
    active: bool
    online: bool
    last_seen_at: dt.datetime | None
    expected_interval_s: int
    created_at: dt.datetime
    district_id: int


async def ingest(
    session: AsyncSession,
    items: Sequence[tuple[int, SignalEventIn]],
    *,
    now: dt.datetime,
    can_see: Callable[[int], bool] = lambda _d: True,
    rules: Rules = DEFAULT_RULES,
    evaluate: bool = True,
) -> IngestReport:
    """Store a batch of validated events (``(index, event)`` pairs) and act on them.

    ``can_see(district_id)`` scopes the batch to the caller's districts: a device or resident of
    another district is reported as unknown. Commits twice: the events with their baselines,
    then the evaluation (so a failing evaluation never loses events; the sweep catches up).
    """
    report = IngestReport()
    devices = await _devices(session, {e.device_id for _, e in items if e.device_id})
    resident_ids = {e.resident_id for _, e in items if e.resident_id} | {
        d.resident_id for d in devices.values()
    }
    residents = await _residents(session, sorted(resident_ids))

    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for index, e in items:
        reason, resident_id = _check(e, devices, residents, can_see, now)
        if reason is not None:
            report.errors.append(ItemError(index, reason))
            continue
        assert resident_id is not None
        key = (e.source, e.event_id)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        rows.append(
            {
                "source": e.source,
                "event_id": e.event_id,
                "resident_id": resident_id,
                "device_id": e.device_id,
                "kind": e.kind,
                "at": e.at,
                "value": e.value,
                "attrs": e.attrs(),
                "received_at": now,
            }
        )

    new_rows = await _insert_new(session, rows)
    report.accepted = len(new_rows)
    report.duplicates += len(rows) - len(new_rows)
    touched = sorted({r["resident_id"] for r in new_rows})
    if new_rows:
        await _lock_residents(session, touched)
        await _update_baselines(session, new_rows, residents, now, rules)
        await _update_devices(session, new_rows, devices, now, rules)
    await session.commit()
    if evaluate and touched:
        report.evaluations = await evaluate_residents(session, touched, now, rules)
        await session.commit()
    return report


async def _devices(session: AsyncSession, device_ids: set[str]) -> dict[str, _DeviceRow]:
    out: dict[str, _DeviceRow] = {}
    for part in chunks(sorted(device_ids)):
        rows = await session.execute(
            select(
                Device.id,
                Device.device_id,
                Device.resident_id,
                Device.kind,
                Device.active,
                Device.online,
                Device.last_seen_at,
                Device.expected_interval_s,
                Device.created_at,
                Resident.district_id,
            )
            .join(Resident, Resident.id == Device.resident_id)
            .where(Device.device_id.in_(part))
        )
        for r in rows:
            out[r.device_id] = _DeviceRow(
                r.id,
                r.device_id,
                r.resident_id,
                r.kind,
                r.active,
                r.online,
                r.last_seen_at,
                r.expected_interval_s,
                r.created_at,
                r.district_id,
            )
    return out


@dataclass(frozen=True, slots=True)
class _ResidentRow:
    district_id: int
    active: bool
    profile: Any  # anbu.domain.risk.MonitoringProfile | None


async def _residents(session: AsyncSession, ids: Sequence[str]) -> dict[str, _ResidentRow]:
    out: dict[str, _ResidentRow] = {}
    for part in chunks(ids):
        rows = await session.execute(
            select(Resident.id, Resident.district_id, Resident.active, MonitoringProfile)
            .outerjoin(MonitoringProfile, MonitoringProfile.resident_id == Resident.id)
            .where(Resident.id.in_(part))
        )
        for rid, district_id, active, profile in rows:
            out[rid] = _ResidentRow(
                district_id, active, profile_rules(profile) if profile is not None else None
            )
    return out


def _check(
    e: SignalEventIn,
    devices: dict[str, _DeviceRow],
    residents: dict[str, _ResidentRow],
    can_see: Callable[[int], bool],
    now: dt.datetime,
) -> tuple[str | None, str | None]:
    """Why this event cannot be accepted (None when it can), and whose it is."""
    if e.at > now + MAX_CLOCK_SKEW:
        return f"timestamp {e.at.isoformat()} is in the future", None
    resident_id = e.resident_id
    if e.device_id is not None:
        d = devices.get(e.device_id)
        if d is None or not can_see(d.district_id):
            return f"unknown device {e.device_id!r}", None
        if not d.active:
            return f"device {e.device_id!r} is deregistered", None
        if e.kind not in d.kind.kinds:
            return f"a {d.kind.value} device cannot report {e.kind.value} events", None
        if resident_id is not None and resident_id != d.resident_id:
            return f"device {e.device_id!r} does not belong to resident {resident_id}", None
        resident_id = d.resident_id
    assert resident_id is not None  # the schema requires one of the two
    r = residents.get(resident_id)
    if r is None or not can_see(r.district_id):
        return f"unknown resident {resident_id!r}", None
    if r.profile is None:
        return f"resident {resident_id} has no monitoring profile (consent not recorded)", None
    channel = e.kind.channel
    if channel is not None and not r.profile.accepts(channel):
        scope = consent_scope(channel).value
        return (
            f"resident {resident_id} is not monitored on {channel.value} "
            f"(tier {r.profile.tier.value}, consent {scope} needed)"
        ), None
    return None, resident_id


async def _insert_new(session: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert, skipping (source, event_id) pairs already stored; return the rows that went in."""
    if not rows:
        return []
    table = SignalEvent.__table__
    assert isinstance(table, Table)
    stmt = (
        dialect_insert(session, table)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(table.c.source, table.c.event_id)
    )
    inserted: set[tuple[str, str]] = set()
    for part in chunks(rows, INSERT_CHUNK):
        # executemany with RETURNING: SQLAlchemy batches it into multi-row INSERTs
        # ("insertmanyvalues") on both drivers.
        res = await session.execute(stmt, list(part))
        inserted.update((s, i) for s, i in res)
    if len(inserted) == len(rows):
        return rows
    return [r for r in rows if (r["source"], r["event_id"]) in inserted]


async def _lock_residents(session: AsyncSession, resident_ids: Sequence[str]) -> None:
    # Baselines are read-modify-write: two batches for one resident (API and MQTT at once)
    # must not interleave. Locking the profile rows in id order serialises them without
    # deadlocks. (SQLite has one writer at a time anyway and ignores FOR UPDATE.)
    for part in chunks(resident_ids):
        await session.execute(
            select(MonitoringProfile.resident_id)
            .where(MonitoringProfile.resident_id.in_(part))
            .order_by(MonitoringProfile.resident_id)
            .with_for_update()
        )


async def _update_baselines(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    residents: dict[str, _ResidentRow],
    now: dt.datetime,
    rules: Rules,
) -> None:
    by_key: dict[tuple[str, Channel], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        channel = SignalKind(r["kind"]).channel
        if channel is not None:
            by_key[(r["resident_id"], channel)].append(r)
    if not by_key:
        return
    current = await load_baselines(session, sorted({rid for rid, _ in by_key}))
    out: list[dict[str, Any]] = []
    for (rid, channel), events in by_key.items():
        b = current.get(rid, {}).get(channel) or Baseline(channel)
        events.sort(key=lambda r: r["at"])
        for r in events:
            observe(b, SignalKind(r["kind"]), r["at"], r["value"], r["attrs"], rules)
        profile = residents[rid].profile
        out.append(state_row(rid, b, quiet_due_at(b, profile.window_h), now))
    await save_baselines(session, out)


async def _update_devices(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    devices: dict[str, _DeviceRow],
    now: dt.datetime,
    rules: Rules,
) -> None:
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        did = r["device_id"]
        if did is not None and (did not in latest or r["at"] >= latest[did]["at"]):
            latest[did] = r
    params: list[dict[str, Any]] = []
    recovered: list[str] = []
    for did, r in latest.items():
        d = devices[did]
        seen = max(d.last_seen_at, r["at"]) if d.last_seen_at else r["at"]
        if d.last_seen_at is not None and r["at"] < d.last_seen_at:
            continue  # a late event says nothing new about liveness
        online = not (
            r["kind"] == SignalKind.HEARTBEAT and (r["attrs"] or {}).get("online") is False
        )
        was_down = DeviceView(
            d.device_id, d.kind, d.expected_interval_s, d.online, d.last_seen_at, d.created_at
        ).issue(now, rules)
        if was_down is not None and online:
            recovered.append(d.pk)
        due = stale_due_at(seen, d.expected_interval_s, rules) if online else now
        params.append({"pk": d.pk, "seen": seen, "online": online, "due": due})
    if params:
        table = Device.__table__
        assert isinstance(table, Table)
        await session.execute(
            update(table)
            .where(table.c.id == bindparam("pk"))
            .values(
                last_seen_at=bindparam("seen"),
                online=bindparam("online"),
                stale_due_at=bindparam("due"),
            ),
            params,
        )
    if recovered:
        await session.execute(
            update(DeviceTask)
            .where(DeviceTask.device_pk.in_(recovered), DeviceTask.status == TaskStatus.OPEN)
            .values(status=TaskStatus.RESOLVED, resolved_at=now, resolution="device reported again")
        )
        log.info("%d device(s) reported again; their open tasks were resolved", len(recovered))
