"""Signal ingestion: validate against the registry, store idempotently, update baselines, evaluate.

One call handles one batch (thousands of events). Per-item problems come back as
``ItemError(index, reason)``; every accepted event is committed even when others in the batch
were refused. Storing is ``INSERT ... ON CONFLICT (source, event_id) DO NOTHING RETURNING`` on
both backends, and only the rows that insert move baselines, so a resent batch changes nothing.

The per-event work (storing, baselines, device liveness) goes through :mod:`anbu.risk.bulk`:
a few statements per batch straight to the driver, whatever the batch size.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import Resident
from anbu.db.models_signals import Device, DeviceTask, MonitoringProfile
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
    stale_due_at,
    status_due_at,
)
from anbu.risk.bulk import DeviceUpdate, SignalRow, StateRow, bulk_store
from anbu.risk.evaluate import Evaluation, evaluate_residents
from anbu.risk.schemas import SignalEventIn
from anbu.risk.store import chunks, profile_rules

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW = dt.timedelta(minutes=5)


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

    rows: list[SignalRow] = []
    seen: set[tuple[str, str]] = set()
    latest_allowed = now + MAX_CLOCK_SKEW
    # Apart from the clock, an event's verdict depends only on who sent which kind: a batch of
    # thousands has a few hundred distinct (device, resident, kind), so each is checked once.
    verdicts: dict[tuple[str | None, str | None, SignalKind], tuple[str | None, str | None]] = {}
    for index, e in items:
        if e.at > latest_allowed:
            report.errors.append(ItemError(index, f"timestamp {e.at.isoformat()} is in the future"))
            continue
        who = (e.device_id, e.resident_id, e.kind)
        verdict = verdicts.get(who)
        if verdict is None:
            verdict = verdicts[who] = _check(e, devices, residents, can_see)
        reason, resident_id = verdict
        if reason is not None:
            report.errors.append(ItemError(index, reason))
            continue
        assert resident_id is not None
        key = (e.source, e.event_id)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        attrs = e.attrs()
        rows.append(
            SignalRow(
                e.source,
                e.event_id,
                resident_id,
                e.device_id,
                e.kind,
                e.at,
                e.value,
                attrs,
                # As SQLAlchemy's JSON type stores it: Python None is the JSON text 'null'.
                json.dumps(attrs),
            )
        )

    new_rows = await _store(session, rows, devices, residents, now, rules)
    report.accepted = len(new_rows)
    report.duplicates += len(rows) - len(new_rows)
    touched = sorted({r.resident_id for r in new_rows})
    await session.commit()
    if evaluate and touched:
        report.evaluations = await evaluate_residents(session, touched, now, rules)
        await session.commit()
    return report


async def _store(
    session: AsyncSession,
    rows: list[SignalRow],
    devices: dict[str, _DeviceRow],
    residents: dict[str, _ResidentRow],
    now: dt.datetime,
    rules: Rules,
) -> list[SignalRow]:
    """Store the events that are new, and fold exactly those into baselines and device liveness.

    Returns the rows that went in (the others were stored already: nothing changes for them).
    """
    if not rows:
        return []
    store = await bulk_store(session)
    owners = sorted({r.resident_id for r in rows})
    # Baselines are read-modify-write: two batches for one resident (API and MQTT at once) must
    # not interleave, so the residents are locked before their baselines are read.
    await store.lock_residents(owners)
    stored = await store.load_states(owners)
    # The database inserts while the new baselines are computed here. Usually every event of
    # a batch is new, so they are computed for all of them, and again only if some were not.
    inserting = asyncio.create_task(store.insert_events(rows, now))
    await asyncio.sleep(0)  # let the insert reach the database before the CPU-bound work
    try:
        states = _fold(rows, stored.baselines(), residents, rules)
        updates, recovered = _liveness(rows, devices, now, rules)
    except BaseException:
        await asyncio.wait([inserting])  # the connection must be idle before the rollback
        raise
    new_rows = await inserting
    if len(new_rows) < len(rows):
        states = _fold(new_rows, stored.baselines(), residents, rules)
        updates, recovered = _liveness(new_rows, devices, now, rules)
    if not new_rows:
        return []
    await store.save_states(states, stored, now)
    await store.update_devices(updates)
    if recovered:
        await session.execute(
            update(DeviceTask)
            .where(DeviceTask.device_pk.in_(recovered), DeviceTask.status == TaskStatus.OPEN)
            .values(status=TaskStatus.RESOLVED, resolved_at=now, resolution="device reported again")
        )
        log.info("%d device(s) reported again; their open tasks were resolved", len(recovered))
    return new_rows


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
) -> tuple[str | None, str | None]:
    """Why an event from this sender, of this kind, cannot be accepted (None when it can), and
    whose it is. The clock is checked by the caller."""
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


def _fold(
    rows: list[SignalRow],
    baselines: dict[str, dict[Channel, Baseline]],
    residents: dict[str, _ResidentRow],
    rules: Rules,
) -> list[StateRow]:
    """Fold the events into their residents' baselines (in place), in time order per channel."""
    by_key: dict[tuple[str, Channel], list[SignalRow]] = defaultdict(list)
    for r in rows:
        channel = r.kind.channel
        if channel is not None:
            by_key[(r.resident_id, channel)].append(r)
    out: list[StateRow] = []
    for (rid, channel), events in by_key.items():
        b = baselines.get(rid, {}).get(channel) or Baseline(channel)
        events.sort(key=lambda r: r.at)
        for r in events:
            observe(b, r.kind, r.at, r.value, r.attrs, rules)
        profile = residents[rid].profile
        out.append(StateRow(rid, b, status_due_at(b, profile.window_h, rules)))
    return out


def _liveness(
    rows: list[SignalRow],
    devices: dict[str, _DeviceRow],
    now: dt.datetime,
    rules: Rules,
) -> tuple[list[DeviceUpdate], list[str]]:
    """What the events say about their devices: the updates, and which devices came back."""
    latest: dict[str, SignalRow] = {}
    for r in rows:
        did = r.device_id
        if did is not None and (did not in latest or r.at >= latest[did].at):
            latest[did] = r
    updates: list[DeviceUpdate] = []
    recovered: list[str] = []
    for did, r in latest.items():
        d = devices[did]
        seen = max(d.last_seen_at, r.at) if d.last_seen_at else r.at
        if d.last_seen_at is not None and r.at < d.last_seen_at:
            continue  # a late event says nothing new about liveness
        online = not (r.kind == SignalKind.HEARTBEAT and (r.attrs or {}).get("online") is False)
        was_down = DeviceView(
            d.device_id, d.kind, d.expected_interval_s, d.online, d.last_seen_at, d.created_at
        ).issue(now, rules)
        if was_down is not None and online:
            recovered.append(d.pk)
        due = stale_due_at(seen, d.expected_interval_s, rules) if online else now
        updates.append(DeviceUpdate(d.pk, seen, online, due))
    return updates, recovered
