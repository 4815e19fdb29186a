"""The device registry, monitoring profiles, holds and device tasks (use cases; caller commits)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import Resident
from anbu.db.models_signals import (
    Device,
    DeviceTask,
    MonitoringHold,
    MonitoringProfile,
    SignalState,
)
from anbu.domain.risk import (
    DEFAULT_RULES,
    DeviceKind,
    HoldReason,
    RiskCategory,
    Rules,
    TaskStatus,
    Tier,
    stale_due_at,
    status_due_at,
)
from anbu.errors import ConflictError, NotFoundError, ValidationError
from anbu.risk.store import baseline_of, profile_rules


@dataclass(frozen=True, slots=True)
class ProfileSpec:
    tier: Tier
    category: RiskCategory
    window_h_override: float | None
    consent_call_records: bool
    consent_app: bool
    consent_iot: bool
    enabled: bool = True


async def get_profile(session: AsyncSession, resident_id: str) -> MonitoringProfile:
    p = await session.get(MonitoringProfile, resident_id)
    if p is None:
        raise NotFoundError("monitoring profile of resident", resident_id)
    return p


async def set_profile(
    session: AsyncSession,
    resident: Resident,
    spec: ProfileSpec,
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
) -> MonitoringProfile:
    """Create or replace a resident's profile; re-key the sweep when the window changes."""
    if spec.window_h_override is not None and not 24 <= spec.window_h_override <= 120:
        raise ValidationError("window_h_override must be between 24 and 120 hours (1-5 days)")
    p = await session.get(MonitoringProfile, resident.id)
    if p is None:
        p = MonitoringProfile(resident_id=resident.id, created_at=now)
        session.add(p)
    p.tier = spec.tier
    p.category = spec.category
    p.window_h_override = spec.window_h_override
    p.consent_call_records = spec.consent_call_records
    p.consent_app = spec.consent_app
    p.consent_iot = spec.consent_iot
    p.enabled = spec.enabled
    p.updated_at = now
    await session.flush()
    window_h = profile_rules(p).window_h
    states = (
        (await session.execute(select(SignalState).where(SignalState.resident_id == resident.id)))
        .scalars()
        .all()
    )
    for s in states:
        s.status_due_at = status_due_at(baseline_of(s), window_h, rules)
    return p


async def register_device(
    session: AsyncSession,
    resident: Resident,
    *,
    device_id: str,
    kind: DeviceKind,
    expected_interval_s: int,
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
) -> Device:
    # Device ids are unique per district (another district's id is none of our business).
    existing = (
        await session.execute(
            select(Device).where(
                Device.district_id == resident.district_id, Device.device_id == device_id
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        if existing.resident_id != resident.id or existing.active:
            raise ConflictError(f"device {device_id!r} is already registered in this district")
        # Re-registering a deregistered device for the same resident re-activates it.
        existing.active = True
        existing.kind = kind
        existing.expected_interval_s = expected_interval_s
        existing.online = True
        existing.stale_due_at = stale_due_at(now, expected_interval_s, rules)
        return existing
    device = Device(
        device_id=device_id,
        district_id=resident.district_id,
        resident_id=resident.id,
        kind=kind,
        expected_interval_s=expected_interval_s,
        active=True,
        online=True,
        # A device that never reports goes stale counting from its registration.
        stale_due_at=stale_due_at(now, expected_interval_s, rules),
        created_at=now,
    )
    session.add(device)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(f"device {device_id!r} is already registered in this district") from exc
    return device


async def get_device(
    session: AsyncSession, device_id: str, district_ids: Collection[int] | None
) -> Device:
    """The device ``device_id`` of one of ``district_ids`` (None: any district, for an admin).

    Device ids are namespaced per district: another district's device of the same id is not
    found (404, as if it did not exist), and an id two of the caller's districts both use is
    refused naming them (the caller says which district), never a guess."""
    query = select(Device).where(Device.device_id == device_id)
    if district_ids is not None:
        query = query.where(Device.district_id.in_(sorted(district_ids)))
    found = list((await session.execute(query.order_by(Device.district_id).limit(2))).scalars())
    if not found:
        raise NotFoundError("device", device_id)
    if len(found) > 1:
        raise ValidationError(
            f"device id {device_id!r} is registered in more than one of your districts:"
            " say which with ?district=<code>"
        )
    return found[0]


async def deregister_device(session: AsyncSession, device: Device, now: dt.datetime) -> None:
    device.active = False
    device.stale_due_at = None
    for t in (
        await session.execute(
            select(DeviceTask).where(
                DeviceTask.device_pk == device.id, DeviceTask.status == TaskStatus.OPEN
            )
        )
    ).scalars():
        t.status = TaskStatus.RESOLVED
        t.resolved_at = now
        t.resolution = "device deregistered"


async def add_hold(
    session: AsyncSession,
    resident: Resident,
    *,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    reason: HoldReason,
    note: str,
    now: dt.datetime,
) -> MonitoringHold:
    if ends_at <= starts_at:
        raise ValidationError("a hold must end after it starts")
    if ends_at - starts_at > dt.timedelta(days=180):
        raise ValidationError("a hold may last at most 180 days")
    hold = MonitoringHold(
        resident_id=resident.id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        note=note,
        created_at=now,
    )
    session.add(hold)
    await session.flush()
    return hold


async def end_hold(session: AsyncSession, hold: MonitoringHold, now: dt.datetime) -> None:
    """End a hold now (the resident came back early); a future hold is simply shortened."""
    if hold.starts_at >= now:
        await session.delete(hold)
    elif hold.ends_at > now:
        hold.ends_at = now


async def resolve_task(
    session: AsyncSession, task: DeviceTask, resolution: str, now: dt.datetime
) -> None:
    if task.status is TaskStatus.RESOLVED:
        return
    task.status = TaskStatus.RESOLVED
    task.resolved_at = now
    task.resolution = resolution
