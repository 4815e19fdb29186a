"""Risk signals API: ingestion, monitoring profiles, devices, holds, risk, device tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select

from anbu.api.deps import (
    ContainerDep,
    PrincipalDep,
    SessionDep,
    resident_in_scope,
)
from anbu.api.strict import IsoDatetime, StrictBool, StrictFloat, StrictInt, Timestamp
from anbu.db.models import District, Resident
from anbu.db.models_signals import (
    Device,
    DeviceTask,
    MonitoringHold,
    MonitoringProfile,
    RiskAssessment,
)
from anbu.domain.risk import (
    DeviceIssueKind,
    DeviceKind,
    HoldReason,
    Level,
    RiskCategory,
    TaskStatus,
    Tier,
)
from anbu.errors import NotFoundError, ValidationError
from anbu.risk import registry
from anbu.risk.ingest import ingest
from anbu.risk.schemas import SignalEventIn
from anbu.risk.sweep import sweep

router = APIRouter(prefix="/v1", tags=["signals"])

MAX_BATCH = 10_000
_EVENT = TypeAdapter(SignalEventIn)


class ItemErrorOut(BaseModel):
    index: int
    reason: str


class LevelOut(BaseModel):
    resident_id: str
    level: Level
    label: str
    checkin_id: str | None


class SignalBatchOut(BaseModel):
    accepted: int = Field(description="events stored by this request")
    duplicates: int = Field(description="events already stored (same source and event_id)")
    rejected: int
    errors: list[ItemErrorOut] = Field(description="one per refused event, by position")
    levels: list[LevelOut] = Field(description="residents whose level changed")


def _reason(exc: PydanticValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in exc.errors()
    )


@router.post(
    "/signals",
    response_model=SignalBatchOut,
    summary="Send one signal event, or a batch as {'events': [...]} (up to 10,000)",
)
async def post_signals(
    body: Annotated[dict[str, Any] | list[Any], Body()],
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> SignalBatchOut:
    single = isinstance(body, dict) and "events" not in body
    raw: list[Any] = [body] if single else (body if isinstance(body, list) else body["events"])
    if not isinstance(raw, list):
        raise ValidationError("events must be a list")
    if len(raw) > MAX_BATCH:
        raise ValidationError(f"at most {MAX_BATCH} events per request (got {len(raw)})")
    items: list[tuple[int, SignalEventIn]] = []
    errors: list[ItemErrorOut] = []
    for i, item in enumerate(raw):
        try:
            items.append((i, _EVENT.validate_python(item)))
        except PydanticValidationError as exc:
            errors.append(ItemErrorOut(index=i, reason=_reason(exc)))
    report = await ingest(
        session,
        items,
        now=container.clock.now(),
        can_see=principal.can_see,
        rules=container.settings.risk.rules,
    )
    errors += [ItemErrorOut(index=e.index, reason=e.reason) for e in report.errors]
    errors.sort(key=lambda e: e.index)
    if single and errors:
        raise ValidationError(errors[0].reason)
    if any(e.checkin_id for e in report.evaluations):
        container.wake_dispatcher()
    return SignalBatchOut(
        accepted=report.accepted,
        duplicates=report.duplicates,
        rejected=len(errors),
        errors=errors,
        levels=[
            LevelOut(
                resident_id=e.resident_id,
                level=e.level,
                label=e.level.label,
                checkin_id=e.checkin_id,
            )
            for e in report.evaluations
            if e.changed
        ],
    )


# -- monitoring profiles ------------------------------------------------------------------------


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: Tier = Field(description="calls | app (+ step-count app) | iot (+ plugs and sensors)")
    risk_category: RiskCategory = Field(description="sets the inactivity window, 1 to 5 days")
    window_h_override: StrictFloat | None = Field(default=None, ge=24, le=120)
    consent_call_records: StrictBool
    consent_app: StrictBool = False
    consent_iot: StrictBool = False
    enabled: StrictBool = True


class ProfileOut(BaseModel):
    resident_id: str
    configured: bool = Field(
        default=True,
        description="false: no profile was PUT yet; the resident is not monitored (tier,"
        " risk_category and window_h are null)",
    )
    tier: Tier | None
    risk_category: RiskCategory | None
    window_h: float | None
    window_h_override: float | None
    consent_call_records: bool
    consent_app: bool
    consent_iot: bool
    enabled: bool
    level: Level
    level_label: str
    level_since: Timestamp | None


def _not_configured(resident_id: str) -> ProfileOut:
    # Every resident has a monitoring state: before a profile is set it is "not monitored",
    # not "not found" (a 404 would read as "no such resident").
    return ProfileOut(
        resident_id=resident_id,
        configured=False,
        tier=None,
        risk_category=None,
        window_h=None,
        window_h_override=None,
        consent_call_records=False,
        consent_app=False,
        consent_iot=False,
        enabled=False,
        level=Level.NONE,
        level_label=Level.NONE.label,
        level_since=None,
    )


def _profile_out(p: Any) -> ProfileOut:
    from anbu.risk.store import profile_rules

    return ProfileOut(
        resident_id=p.resident_id,
        tier=p.tier,
        risk_category=p.category,
        window_h=profile_rules(p).window_h,
        window_h_override=p.window_h_override,
        consent_call_records=p.consent_call_records,
        consent_app=p.consent_app,
        consent_iot=p.consent_iot,
        enabled=p.enabled,
        level=p.level,
        level_label=p.level.label,
        level_since=p.level_since,
    )


@router.put("/residents/{resident_id}/monitoring", response_model=ProfileOut)
async def put_profile(
    resident_id: str,
    body: ProfileIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> ProfileOut:
    resident = await resident_in_scope(session, principal, resident_id)
    spec = registry.ProfileSpec(
        tier=body.tier,
        category=body.risk_category,
        window_h_override=body.window_h_override,
        consent_call_records=body.consent_call_records,
        consent_app=body.consent_app,
        consent_iot=body.consent_iot,
        enabled=body.enabled,
    )
    p = await registry.set_profile(
        session, resident, spec, container.clock.now(), container.settings.risk.rules
    )
    await session.commit()
    return _profile_out(p)


@router.get("/residents/{resident_id}/monitoring", response_model=ProfileOut)
async def get_profile(resident_id: str, principal: PrincipalDep, session: SessionDep) -> ProfileOut:
    await resident_in_scope(session, principal, resident_id)
    profile = await session.get(MonitoringProfile, resident_id)
    return _not_configured(resident_id) if profile is None else _profile_out(profile)


# -- devices ------------------------------------------------------------------------------------


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:-]+$")
    resident_id: str = Field(min_length=1, max_length=32)
    kind: DeviceKind
    expected_interval_s: StrictInt = Field(default=600, ge=10, le=86_400)


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    device_id: str
    resident_id: str
    kind: DeviceKind
    expected_interval_s: int
    active: bool
    online: bool
    last_seen_at: Timestamp | None
    created_at: Timestamp


@router.post("/devices", status_code=status.HTTP_201_CREATED, response_model=DeviceOut)
async def register_device(
    body: DeviceIn, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> Device:
    resident = await resident_in_scope(session, principal, body.resident_id)
    device = await registry.register_device(
        session,
        resident,
        device_id=body.device_id,
        kind=body.kind,
        expected_interval_s=body.expected_interval_s,
        now=container.clock.now(),
        rules=container.settings.risk.rules,
    )
    await session.commit()
    return device


DistrictQuery = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{5}$",
        description="district code; needed only when the device id is used in more than one"
        " of the key's districts (device ids are unique per district)",
    ),
]


async def _device(
    session: SessionDep, principal: PrincipalDep, device_id: str, district: str | None = None
) -> Device:
    # Looked up among the caller's districts only: device ids are namespaced per district, so
    # another district's device of the same id is "not found", exactly as if it did not exist.
    visible: Collection[int] | None = None if principal.is_admin else principal.district_ids
    if district is not None:
        found = (
            await session.execute(select(District.id).where(District.code == district))
        ).scalar_one_or_none()
        if found is None or not principal.can_see(found):
            raise NotFoundError("device", device_id)
        visible = [found]
    device = await registry.get_device(session, device_id, visible)
    resident = await session.get(Resident, device.resident_id)
    assert resident is not None
    principal.require_district(resident.district_id, "device", device_id)
    return device


@router.get("/devices/{device_id}", response_model=DeviceOut)
async def get_device(
    device_id: str, principal: PrincipalDep, session: SessionDep, district: DistrictQuery = None
) -> Device:
    return await _device(session, principal, device_id, district)


@router.get("/residents/{resident_id}/devices", response_model=list[DeviceOut])
async def list_devices(
    resident_id: str, principal: PrincipalDep, session: SessionDep
) -> list[Device]:
    await resident_in_scope(session, principal, resident_id)
    rows = await session.execute(
        select(Device).where(Device.resident_id == resident_id).order_by(Device.device_id)
    )
    return list(rows.scalars())


@router.delete("/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def deregister_device(
    device_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
    district: DistrictQuery = None,
) -> Response:
    device = await _device(session, principal, device_id, district)
    await registry.deregister_device(session, device, container.clock.now())
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- holds --------------------------------------------------------------------------------------


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    starts_at: IsoDatetime
    ends_at: IsoDatetime
    reason: HoldReason
    note: str = Field(default="", max_length=200)


class HoldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    resident_id: str
    starts_at: Timestamp
    ends_at: Timestamp
    reason: HoldReason
    note: str


@router.post(
    "/residents/{resident_id}/holds", status_code=status.HTTP_201_CREATED, response_model=HoldOut
)
async def add_hold(
    resident_id: str,
    body: HoldIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> MonitoringHold:
    resident = await resident_in_scope(session, principal, resident_id)
    hold = await registry.add_hold(
        session,
        resident,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
        note=body.note,
        now=container.clock.now(),
    )
    await session.commit()
    return hold


@router.get("/residents/{resident_id}/holds", response_model=list[HoldOut])
async def list_holds(
    resident_id: str, principal: PrincipalDep, session: SessionDep
) -> list[MonitoringHold]:
    await resident_in_scope(session, principal, resident_id)
    rows = await session.execute(
        select(MonitoringHold)
        .where(MonitoringHold.resident_id == resident_id)
        .order_by(MonitoringHold.starts_at)
    )
    return list(rows.scalars())


@router.delete("/holds/{hold_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_hold(
    hold_id: str, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> Response:
    hold = await session.get(MonitoringHold, hold_id)
    if hold is None:
        raise NotFoundError("hold", hold_id)
    await resident_in_scope(session, principal, hold.resident_id)
    await registry.end_hold(session, hold, container.clock.now())
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- risk ---------------------------------------------------------------------------------------


class AssessmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    level: Level
    previous_level: Level
    explanation: str
    evidence: dict[str, Any]
    checkin_id: str | None
    assessed_at: Timestamp


class RiskOut(BaseModel):
    resident_id: str
    level: Level
    level_label: str
    level_since: Timestamp | None
    history: list[AssessmentOut] = Field(description="level changes, newest first")


@router.get("/residents/{resident_id}/risk", response_model=RiskOut)
async def get_risk(
    resident_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> RiskOut:
    await resident_in_scope(session, principal, resident_id)
    p = await session.get(MonitoringProfile, resident_id)
    level = Level.NONE if p is None else p.level  # not monitored yet: nothing graded
    rows = await session.execute(
        select(RiskAssessment)
        .where(RiskAssessment.resident_id == resident_id)
        .order_by(RiskAssessment.assessed_at.desc())
        .limit(limit)
    )
    return RiskOut(
        resident_id=resident_id,
        level=level,
        level_label=level.label,
        level_since=None if p is None else p.level_since,
        history=[AssessmentOut.model_validate(r) for r in rows.scalars()],
    )


@router.get("/risk/rules", summary="The risk rules' thresholds in force")
async def get_rules(_principal: PrincipalDep, container: ContainerDep) -> dict[str, object]:
    """What decides a level, as configured (``ANBU_RISK__RULES__*``): for officials and
    integrators who need to know why a resident was or was not called."""
    rules = container.settings.risk.rules
    out: dict[str, object] = {
        f.name: getattr(rules, f.name)
        for f in dataclasses.fields(rules)
        if f.name != "min_expected"
    }
    out["min_expected"] = {c.value: v for c, v in rules.min_expected.items()}
    return out


@router.post("/risk/sweep", summary="Run the periodic risk sweep now (administrators)")
async def run_sweep(principal: PrincipalDep, container: ContainerDep) -> dict[str, object]:
    principal.require_admin()
    report = await sweep(
        container.sessions, container.clock.now(), rules=container.settings.risk.rules
    )
    if report.checkins_opened or report.checkins_joined:
        container.wake_dispatcher()
    return report.as_dict()


# -- device tasks -------------------------------------------------------------------------------


class DeviceTaskOut(BaseModel):
    id: str
    device_id: str
    resident_id: str
    kind: DeviceIssueKind
    status: TaskStatus
    detail: str
    opened_at: Timestamp
    resolved_at: Timestamp | None
    resolution: str | None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resolution: str = Field(min_length=1, max_length=200, description="what staff found or did")


def _task_out(t: DeviceTask, device_id: str) -> DeviceTaskOut:
    return DeviceTaskOut(
        id=t.id,
        device_id=device_id,
        resident_id=t.resident_id,
        kind=t.kind,
        status=t.status,
        detail=t.detail,
        opened_at=t.opened_at,
        resolved_at=t.resolved_at,
        resolution=t.resolution,
    )


@router.get("/device-tasks", response_model=list[DeviceTaskOut])
async def list_device_tasks(
    principal: PrincipalDep,
    session: SessionDep,
    district_code: str | None = None,
    task_status: Annotated[TaskStatus | None, Query(alias="status")] = TaskStatus.OPEN,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeviceTaskOut]:
    query = (
        select(DeviceTask, Device.device_id)
        .join(Device, Device.id == DeviceTask.device_pk)
        .join(Resident, Resident.id == DeviceTask.resident_id)
        .order_by(DeviceTask.opened_at)
        .limit(limit)
    )
    if task_status is not None:
        query = query.where(DeviceTask.status == task_status)
    if district_code is not None:
        district = (
            await session.execute(select(District).where(District.code == district_code))
        ).scalar_one_or_none()
        if district is None or not principal.can_see(district.id):
            raise ValidationError(f"unknown district {district_code!r} for this API key")
        query = query.where(Resident.district_id == district.id)
    elif not principal.is_admin:
        query = query.where(Resident.district_id.in_(principal.district_ids))
    rows = await session.execute(query)
    return [_task_out(t, did) for t, did in rows]


@router.post("/device-tasks/{task_id}/resolve", response_model=DeviceTaskOut)
async def resolve_device_task(
    task_id: str,
    body: ResolveIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> DeviceTaskOut:
    task = await session.get(DeviceTask, task_id)
    if task is None:
        raise NotFoundError("device task", task_id)
    await resident_in_scope(session, principal, task.resident_id)
    await registry.resolve_task(session, task, body.resolution, container.clock.now())
    await session.commit()
    device = await session.get(Device, task.device_pk)
    assert device is not None
    return _task_out(task, device.device_id)
