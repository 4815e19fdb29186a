"""Districts, residents and check-ins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from anbu.api.audit import AuditDep
from anbu.api.deps import (
    ContainerDep,
    PrincipalDep,
    SessionDep,
    district_by_code,
    resident_in_scope,
)
from anbu.api.schemas import (
    CheckinAccepted,
    CheckinIn,
    CheckinOut,
    DistrictIn,
    DistrictOut,
    ResidentIn,
    ResidentOut,
    ResidentPage,
    ResidentPatch,
)
from anbu.db.models import District, Resident
from anbu.domain.audit import AuditAction, AuditResource
from anbu.domain.checkin import CheckinSource
from anbu.errors import ConflictError, NotFoundError, ValidationError
from anbu.services import checkins as checkin_service

router = APIRouter(prefix="/v1")


@router.post("/districts", status_code=status.HTTP_201_CREATED, response_model=DistrictOut)
async def create_district(
    body: DistrictIn, principal: PrincipalDep, session: SessionDep
) -> District:
    principal.require_admin()
    district = District(code=body.code, name=body.name)
    session.add(district)
    try:
        await session.commit()
    except IntegrityError as exc:
        raise ConflictError(f"district {body.code!r} already exists") from exc
    return district


@router.get("/districts", response_model=list[DistrictOut])
async def list_districts(principal: PrincipalDep, session: SessionDep) -> list[District]:
    rows = (await session.execute(select(District).order_by(District.code))).scalars().all()
    return [d for d in rows if principal.can_see(d.id)]


@router.post("/residents", status_code=status.HTTP_201_CREATED, response_model=ResidentOut)
async def create_resident(
    body: ResidentIn, principal: PrincipalDep, session: SessionDep, audit: AuditDep
) -> ResidentOut:
    district = await district_by_code(session, principal, body.district_code)
    resident = Resident(
        district_id=district.id,
        district=district,
        name=body.name,
        phone=body.phone,
        dong=body.dong,
        external_ref=body.external_ref,
    )
    session.add(resident)
    code = district.code  # the failed commit expires it
    try:
        await session.commit()
    except IntegrityError as exc:
        raise ConflictError(
            f"a resident with external_ref {body.external_ref!r} already exists in {code}"
        ) from exc
    audit.note(AuditResource.RESIDENT, resident.id, AuditAction.CREATE, district.id)
    return ResidentOut.of(resident)


@router.get("/residents", response_model=ResidentPage)
async def list_residents(
    principal: PrincipalDep,
    session: SessionDep,
    audit: AuditDep,
    district_code: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> ResidentPage:
    query = select(Resident).order_by(Resident.id).limit(limit + 1)
    if district_code is not None:
        district = await district_by_code(session, principal, district_code)
        query = query.where(Resident.district_id == district.id)
    elif not principal.is_admin:
        query = query.where(Resident.district_id.in_(principal.district_ids))
    if cursor:
        query = query.where(Resident.id > cursor)
    rows = list((await session.execute(query)).scalars().all())
    more = len(rows) > limit
    rows = rows[:limit]
    audit.note_many(AuditResource.RESIDENT, ((r.id, r.district_id) for r in rows))
    return ResidentPage(
        items=[ResidentOut.of(r) for r in rows], next_cursor=rows[-1].id if more else None
    )


@router.get("/residents/{resident_id}", response_model=ResidentOut)
async def get_resident(
    resident_id: str, principal: PrincipalDep, session: SessionDep
) -> ResidentOut:
    return ResidentOut.of(await resident_in_scope(session, principal, resident_id))


@router.patch("/residents/{resident_id}", response_model=ResidentOut)
async def update_resident(
    resident_id: str, body: ResidentPatch, principal: PrincipalDep, session: SessionDep
) -> ResidentOut:
    resident = await resident_in_scope(session, principal, resident_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is None:
            raise ValidationError(f"{name} cannot be null")
        setattr(resident, name, value)
    await session.commit()
    return ResidentOut.of(resident)


# Three columns, not the resident and its district as ORM objects (~1 ms of CPU less); built
# once, executed with the id (see services.checkins). The row is locked by this read, which
# request_checkin would otherwise do in a round trip of its own (``resident_locked``).
_RESIDENT_TO_CALL = (
    select(Resident.district_id, Resident.active, Resident.phone)
    .where(Resident.id == bindparam("resident_id"))
    .with_for_update()
)


@router.post(
    "/checkins",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CheckinAccepted,
    summary="Ask for a check-in call to a resident",
)
async def create_checkin(
    body: CheckinIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditDep,
) -> CheckinAccepted:
    resident = (
        await session.execute(_RESIDENT_TO_CALL, {"resident_id": body.resident_id})
    ).one_or_none()
    if resident is None:
        raise NotFoundError("resident", body.resident_id)
    principal.require_district(resident.district_id, "resident", body.resident_id)
    if not resident.active:
        raise ValidationError(f"resident {body.resident_id} is inactive")
    checkin = await checkin_service.request_checkin(
        session,
        body.resident_id,
        resident.phone,
        source=CheckinSource.API,
        reason=body.reason,
        priority=body.priority,
        now=container.clock.now(),
        resident_locked=True,
    )
    if checkin.created:
        audit.note(AuditResource.CHECKIN, checkin.id, AuditAction.CREATE, resident.district_id)
    await audit.commit()  # the case and its log row: one transaction
    container.wake_dispatcher()
    return CheckinAccepted(
        id=checkin.id, status=checkin.status, joined_existing=not checkin.created
    )


@router.get("/checkins/{checkin_id}", response_model=CheckinOut)
async def get_checkin(
    checkin_id: str, principal: PrincipalDep, session: SessionDep, audit: AuditDep
) -> CheckinOut:
    checkin = await checkin_service.get_checkin(session, checkin_id)
    district_id = checkin.resident.district_id
    principal.require_district(district_id, "check-in", checkin_id)
    audit.note_many(
        AuditResource.TRANSCRIPT, ((a.id, district_id) for a in checkin.attempts if a.transcript)
    )
    return CheckinOut.model_validate(checkin)
