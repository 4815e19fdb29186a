"""Scheduling API: calling programmes, a resident's schedule, call holds, do-not-call and
routine (standing weekly) check-ins.

Programmes are shared (changed by administrators only) or a district's own (changed by a key
of that district; another district's answers 404); a key sees the shared ones and its
districts' own. A district programme may stand in for a shared one in its district
(``replaces_id``): one district's change never moves another district's calls. Everything
about a resident is scoped to the key's districts (another district's resident answers 404). A
do-not-call entry is by number: a district key sees and changes only its residents' numbers.

What is stored is checked as a whole before it is committed, because the dispatcher applies it
on every claim pass: a resident's own hours must still form a window inside their programme
(no overnight windows), and each routine call must fall on a calling day inside the calling
hours (else it would ring a day late). A programme change that would break a resident's stored
hours or routines is refused with 409 and names them.

Call holds here stop *calls* (``call_holds``, read by the dispatcher): a hospital stay, travel,
or "not this week", open-ended if need be. They are not the risk engine's monitoring holds
(``/v1/residents/{id}/holds``), which pause risk evaluation and must end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Collection, Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.api.deps import (
    MAX_ROW_ID,
    ContainerDep,
    Principal,
    PrincipalDep,
    SessionDep,
    district_by_code,
    resident_in_scope,
)
from anbu.api.schemas_scheduling import (
    WEEKDAY_NAMES,
    CallHoldIn,
    CallHoldOut,
    CallingHoursOut,
    DoNotCallIn,
    DoNotCallOut,
    DoNotCallPage,
    EffectiveScheduleOut,
    ProgramIn,
    ProgramOut,
    ProgramPatch,
    RetryOut,
    RoutineIn,
    RoutineOut,
    ScheduleIn,
    ScheduleOut,
    hhmm_to_minutes,
    minutes_to_hhmm,
)
from anbu.db.models import Resident
from anbu.db.models_scheduling import (
    CallHold,
    DoNotCall,
    Program,
    ResidentSchedule,
    RoutineSchedule,
)
from anbu.domain.calling_hours import (
    CallingWindow,
    blocked_reason,
    next_allowed,
    resolve_window,
    zone,
)
from anbu.domain.phone import mask_phone, normalize_phone
from anbu.domain.retry import RetryPolicy
from anbu.errors import ConflictError, NotFoundError, ValidationError
from anbu.services.rules import (
    followed_programs,
    format_weekdays,
    parse_weekdays,
    program_policy,
    program_window,
    resident_hours,
    resident_rules,
    time_to_minutes,
)
from scheduler.routine import latest_slot

router = APIRouter(prefix="/v1", tags=["scheduling"])

# A resident's standing calls are for reassurance, not a call centre: two a day at most.
MAX_ROUTINES = 14
# How many broken residents a 409 names before "and N more".
_NAMED = 5

ProgramId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
PhonePath = Annotated[str, Path(min_length=7, max_length=24, description="Korean number")]


# -- shared lookups -----------------------------------------------------------------------------


async def _check_tz(name: str, where: str) -> None:
    # The first look-up of a zone reads tz data from disk: keep it off the event loop.
    try:
        await asyncio.to_thread(zone, name)
    except (KeyError, ValueError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValidationError(f"{where}: unknown time zone {name!r}") from exc


def _retry_out(policy: RetryPolicy) -> RetryOut:
    return RetryOut(
        max_attempts=policy.max_attempts,
        interval_s=int(policy.interval.total_seconds()),
        busy_interval_s=int(policy.busy_interval.total_seconds()),
        failure_interval_s=int(policy.failure_interval.total_seconds()),
        max_callbacks=policy.max_callbacks,
        callback_delay_s=int(policy.callback_delay.total_seconds()),
    )


def _hours_out(window: CallingWindow) -> CallingHoursOut:
    return CallingHoursOut(
        start=minutes_to_hhmm(time_to_minutes(window.start)),
        end=minutes_to_hhmm(time_to_minutes(window.end)),
        weekdays=sorted(window.weekdays),
        call_on_holidays=window.call_on_holidays,
        severe_start=minutes_to_hhmm(time_to_minutes(window.severe_start)),
        severe_end=minutes_to_hhmm(time_to_minutes(window.severe_end)),
        tz=window.tz,
    )


def _day_list(days: Collection[int]) -> str:
    return ",".join(WEEKDAY_NAMES[d] for d in sorted(days))


# -- consistency of what the dispatcher will apply ----------------------------------------------


def _routine_problem(window: CallingWindow, routine: RoutineSchedule) -> str | None:
    when = f"routine {WEEKDAY_NAMES[routine.weekday]} {minutes_to_hhmm(routine.time_min)}"
    if routine.tz != window.tz:
        return f"{when} is in {routine.tz} but the calling hours are in {window.tz}"
    if routine.weekday not in window.weekdays:
        return f"{when}: not a calling day (calling days: {_day_list(window.weekdays)})"
    start, end = time_to_minutes(window.start), time_to_minutes(window.end)
    if not start <= routine.time_min < end:
        return f"{when}: outside the calling hours {minutes_to_hhmm(start)}-{minutes_to_hhmm(end)}"
    return None


async def _resident_problems(
    session: AsyncSession, resident_ids: Collection[str]
) -> dict[str, tuple[str | None, list[str]]]:
    """For each resident whose stored rules no longer hold: (why their own hours fail, which
    routines fall outside their hours). Reads the session's pending (flushed) state."""
    if not resident_ids:
        return {}
    ids = list(resident_ids)
    followed = await followed_programs(session, ids)
    routines: dict[str, list[RoutineSchedule]] = {}
    for r in (
        await session.execute(
            select(RoutineSchedule)
            .where(RoutineSchedule.resident_id.in_(ids), RoutineSchedule.active)
            .order_by(RoutineSchedule.weekday, RoutineSchedule.time_min)
        )
    ).scalars():
        routines.setdefault(r.resident_id, []).append(r)
    out: dict[str, tuple[str | None, list[str]]] = {}
    for rid, found in followed.items():
        sched, program = found.schedule, found.program
        base = program_window(program) if program else CallingWindow()
        try:
            window = resolve_window(base, resident_hours(sched) if sched else None)
        except ValueError as exc:
            out[rid] = (f"own hours within programme hours {_hours_text(base)}: {exc}", [])
            continue
        bad = [p for r in routines.get(rid, []) if (p := _routine_problem(window, r))]
        if bad:
            out[rid] = (None, bad)
    return out


def _hours_text(window: CallingWindow) -> str:
    start = minutes_to_hhmm(time_to_minutes(window.start))
    return f"{start}-{minutes_to_hhmm(time_to_minutes(window.end))}"


def _conflict_text(problems: dict[str, tuple[str | None, list[str]]]) -> str:
    lines = [
        f"resident {rid}: {'; '.join([hours] if hours else routines)}"
        for rid, (hours, routines) in sorted(problems.items())
    ]
    more = f" (and {len(lines) - _NAMED} more)" if len(lines) > _NAMED else ""
    return " | ".join(lines[:_NAMED]) + more


# -- programmes ---------------------------------------------------------------------------------


def _program_out(p: Program) -> ProgramOut:
    return ProgramOut(
        id=p.id,
        name=p.name,
        district_code=p.district.code if p.district is not None else None,
        replaces_id=p.replaces_id,
        is_default=p.is_default,
        retry=_retry_out(program_policy(p)),
        calling_hours=CallingHoursOut(
            start=minutes_to_hhmm(p.start_min),
            end=minutes_to_hhmm(p.end_min),
            weekdays=sorted(parse_weekdays(p.weekdays)),
            call_on_holidays=p.call_on_holidays,
            severe_start=minutes_to_hhmm(p.severe_start_min),
            severe_end=minutes_to_hhmm(p.severe_end_min),
            tz=p.tz,
        ),
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


def _check_program(p: Program) -> None:
    """Refuse a programme the dispatcher could not apply, saying which field is wrong."""
    if not p.start_min < p.end_min:
        raise ValidationError(
            f"calling_hours.start ({minutes_to_hhmm(p.start_min)}) must be before"
            f" calling_hours.end ({minutes_to_hhmm(p.end_min)}); overnight windows are not"
            " supported"
        )
    if not p.severe_start_min < p.severe_end_min:
        raise ValidationError(
            f"calling_hours.severe_start ({minutes_to_hhmm(p.severe_start_min)}) must be"
            f" before calling_hours.severe_end ({minutes_to_hhmm(p.severe_end_min)})"
        )
    try:
        program_window(p)
        program_policy(p)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


async def _store_program(
    session: AsyncSession, program: Program, *, was_default: bool, name: str
) -> None:
    """Flush ``program`` (a new default takes the flag from the others), check the residents it
    governs, commit."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(
            f"a programme named {name!r} already exists, or the district already has its own"
            " version of that shared programme"
        ) from exc
    if program.is_default:
        # One default per scope: the district's, or the shared one.
        await session.execute(
            update(Program)
            .where(
                Program.id != program.id,
                Program.is_default.is_(True),
                Program.district_id.is_(None)
                if program.district_id is None
                else Program.district_id == program.district_id,
            )
            .values(is_default=False)
        )
    chosen = [program.id] + ([program.replaces_id] if program.replaces_id is not None else [])
    followers = set(
        (
            await session.execute(
                select(ResidentSchedule.resident_id).where(ResidentSchedule.program_id.in_(chosen))
            )
        ).scalars()
    )
    if program.district_id is not None:
        # A district's programme governs only its residents: those with hours or routines of
        # their own may conflict with it (_resident_problems reads what each one follows).
        in_district = select(Resident.id).where(Resident.district_id == program.district_id)
        followers |= set(
            (
                await session.execute(
                    select(ResidentSchedule.resident_id).where(
                        ResidentSchedule.resident_id.in_(in_district)
                    )
                )
            ).scalars()
        )
        followers |= set(
            (
                await session.execute(
                    select(RoutineSchedule.resident_id).where(
                        RoutineSchedule.resident_id.in_(in_district)
                    )
                )
            ).scalars()
        )
    elif program.is_default or was_default:
        # Residents on the default programme: no schedule row, or one without a programme.
        # Only those with own hours or routines can conflict with it.
        followers |= set(
            (
                await session.execute(
                    select(ResidentSchedule.resident_id).where(
                        ResidentSchedule.program_id.is_(None)
                    )
                )
            ).scalars()
        )
        followers |= set((await session.execute(select(RoutineSchedule.resident_id))).scalars())
    problems = await _resident_problems(session, followers)
    if problems:
        raise ConflictError(
            f"this change would break the stored hours of {len(problems)} resident(s): "
            + _conflict_text(problems)
        )
    await session.commit()


@router.post("/programs", status_code=status.HTTP_201_CREATED, response_model=ProgramOut)
async def create_program(
    body: ProgramIn, principal: PrincipalDep, session: SessionDep
) -> ProgramOut:
    hours, retry = body.calling_hours, body.retry
    district_id: int | None = None
    if body.district_code is None:
        principal.require_admin()
        if body.replaces_id is not None:
            raise ValidationError("replaces_id: only a district programme stands in for another")
    else:
        district_id = (await district_by_code(session, principal, body.district_code)).id
    if body.replaces_id is not None:
        replaced = await session.get(Program, body.replaces_id)
        if replaced is None or replaced.district_id is not None:
            raise ValidationError(f"replaces_id: no shared programme {body.replaces_id}")
    await _check_tz(hours.tz, "calling_hours.tz")
    program = Program(
        name=body.name,
        district_id=district_id,
        replaces_id=body.replaces_id,
        is_default=body.is_default,
        max_attempts=retry.max_attempts,
        interval_s=retry.interval_s,
        busy_interval_s=retry.busy_interval_s,
        failure_interval_s=retry.failure_interval_s,
        max_callbacks=retry.max_callbacks,
        callback_delay_s=retry.callback_delay_s,
        tz=hours.tz,
        start_min=hhmm_to_minutes(hours.start),
        end_min=hhmm_to_minutes(hours.end),
        weekdays=format_weekdays(hours.weekdays),
        call_on_holidays=hours.call_on_holidays,
        severe_start_min=hhmm_to_minutes(hours.severe_start),
        severe_end_min=hhmm_to_minutes(hours.severe_end),
    )
    _check_program(program)
    session.add(program)
    await _store_program(session, program, was_default=False, name=body.name)
    await session.refresh(program)
    return _program_out(program)


@router.get("/programs", response_model=list[ProgramOut])
async def list_programs(principal: PrincipalDep, session: SessionDep) -> list[ProgramOut]:
    query = select(Program).order_by(Program.id)
    if not principal.is_admin:
        query = query.where(
            or_(Program.district_id.is_(None), Program.district_id.in_(principal.district_ids))
        )
    rows = (await session.execute(query)).scalars().all()
    return [_program_out(p) for p in rows]


async def _program(session: AsyncSession, principal: Principal, program_id: int) -> Program:
    """The programme, if the key may see it (shared, or of one of its districts)."""
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFoundError("programme", program_id)
    if program.district_id is not None:
        principal.require_district(program.district_id, "programme", program_id)
    return program


@router.get("/programs/{program_id}", response_model=ProgramOut)
async def get_program(
    program_id: ProgramId, principal: PrincipalDep, session: SessionDep
) -> ProgramOut:
    return _program_out(await _program(session, principal, program_id))


@router.patch("/programs/{program_id}", response_model=ProgramOut)
async def update_program(
    program_id: ProgramId, body: ProgramPatch, principal: PrincipalDep, session: SessionDep
) -> ProgramOut:
    program = await _program(session, principal, program_id)
    if program.district_id is None:
        # A shared programme moves every district's calls; a district keeps its own version
        # (POST /v1/programs with district_code and replaces_id).
        principal.require_admin()
    was_default = program.is_default
    given = body.model_dump(exclude_unset=True)
    nulls = [k for k, v in given.items() if v is None]
    for group in ("retry", "calling_hours"):
        nulls += [f"{group}.{k}" for k, v in (given.get(group) or {}).items() if v is None]
    if nulls:
        raise ValidationError(f"{', '.join(nulls)} cannot be null (leave a field out to keep it)")
    if body.name is not None:
        program.name = body.name
    if body.is_default is not None:
        program.is_default = body.is_default
    if body.retry is not None:
        for key, value in body.retry.model_dump(exclude_unset=True).items():
            setattr(program, key, value)
    hours = body.calling_hours
    if hours is not None:
        if hours.tz is not None:
            await _check_tz(hours.tz, "calling_hours.tz")
            program.tz = hours.tz
        for field, column in (
            (hours.start, "start_min"),
            (hours.end, "end_min"),
            (hours.severe_start, "severe_start_min"),
            (hours.severe_end, "severe_end_min"),
        ):
            if field is not None:
                setattr(program, column, hhmm_to_minutes(field))
        if hours.weekdays is not None:
            program.weekdays = format_weekdays(hours.weekdays)
        if hours.call_on_holidays is not None:
            program.call_on_holidays = hours.call_on_holidays
    _check_program(program)
    await _store_program(session, program, was_default=was_default, name=program.name)
    await session.refresh(program)
    return _program_out(program)


# -- a resident's schedule ----------------------------------------------------------------------


async def _schedule_out(session: AsyncSession, resident: Resident, now: dt.datetime) -> ScheduleOut:
    found = (await followed_programs(session, [resident.id]))[resident.id]
    sched, program = found.schedule, found.program
    # The dispatcher's own reading, holds and do-not-call included; the built-in defaults are
    # the dispatcher's (RetryPolicy(), CallingWindow()) when no programme exists.
    rules = await resident_rules(session, resident.id, resident.phone, now)
    window = rules.window
    blocked = blocked_reason(now, window)
    return ScheduleOut(
        resident_id=resident.id,
        program_id=sched.program_id if sched else None,
        start=minutes_to_hhmm(sched.start_min) if sched and sched.start_min is not None else None,
        end=minutes_to_hhmm(sched.end_min) if sched and sched.end_min is not None else None,
        weekdays=(
            sorted(parse_weekdays(sched.weekdays)) if sched and sched.weekdays is not None else None
        ),
        call_on_holidays=sched.call_on_holidays if sched else None,
        tz=sched.tz if sched else None,
        updated_at=sched.updated_at if sched else None,
        effective=EffectiveScheduleOut(
            program_id=program.id if program else None,
            program_name=program.name if program else None,
            retry=_retry_out(rules.policy),
            calling_hours=_hours_out(window),
            do_not_call=window.do_not_call,
            on_hold=any(h.covers(now) for h in window.holds),
            blocked=str(blocked) if blocked is not None else None,
            next_allowed_at=next_allowed(now, window),
        ),
    )


@router.get("/residents/{resident_id}/schedule", response_model=ScheduleOut)
async def get_schedule(
    resident_id: str, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> ScheduleOut:
    resident = await resident_in_scope(session, principal, resident_id)
    return await _schedule_out(session, resident, container.clock.now())


@router.put("/residents/{resident_id}/schedule", response_model=ScheduleOut)
async def put_schedule(
    resident_id: str,
    body: ScheduleIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> ScheduleOut:
    resident = await resident_in_scope(session, principal, resident_id)
    if body.program_id is not None:
        chosen = await session.get(Program, body.program_id)
        # Another district's programme is as unknown as a missing one.
        if chosen is None or chosen.district_id not in (None, resident.district_id):
            raise ValidationError(f"program_id: unknown programme {body.program_id}")
    if body.tz is not None:
        await _check_tz(body.tz, "tz")
    now = container.clock.now()
    sched = await session.get(ResidentSchedule, resident.id)
    if sched is None:
        sched = ResidentSchedule(resident_id=resident.id)
        session.add(sched)
    sched.program_id = body.program_id
    sched.start_min = hhmm_to_minutes(body.start) if body.start is not None else None
    sched.end_min = hhmm_to_minutes(body.end) if body.end is not None else None
    sched.weekdays = format_weekdays(body.weekdays) if body.weekdays is not None else None
    sched.call_on_holidays = body.call_on_holidays
    sched.tz = body.tz
    sched.updated_at = now
    await session.flush()
    problem = (await _resident_problems(session, [resident.id])).get(resident.id)
    if problem is not None:
        hours, routines = problem
        if hours is not None:
            raise ValidationError(hours)
        raise ConflictError(
            "the resident's routine calls would fall outside these hours: "
            + "; ".join(routines)
            + " (move or delete them first)"
        )
    await session.commit()
    return await _schedule_out(session, resident, now)


# -- call holds ---------------------------------------------------------------------------------


def _hold_out(h: CallHold, now: dt.datetime) -> CallHoldOut:
    return CallHoldOut(
        id=h.id,
        resident_id=h.resident_id,
        starts_at=h.starts_at,
        ends_at=h.ends_at,
        reason=h.reason,
        active=h.starts_at <= now and (h.ends_at is None or now < h.ends_at),
        created_at=h.created_at,
    )


@router.post(
    "/residents/{resident_id}/call-holds",
    status_code=status.HTTP_201_CREATED,
    response_model=CallHoldOut,
    summary="Stop calls to a resident for a while (hospital stay, travel); open-ended if no end",
)
async def add_call_hold(
    resident_id: str,
    body: CallHoldIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> CallHoldOut:
    resident = await resident_in_scope(session, principal, resident_id)
    now = container.clock.now()
    starts_at = body.starts_at or now
    if body.ends_at is not None:
        if body.ends_at <= now:
            raise ValidationError("ends_at is in the past: the hold would never apply")
        if body.ends_at <= starts_at:
            raise ValidationError("ends_at must be after starts_at")
    hold = CallHold(
        resident_id=resident.id,
        starts_at=starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
        created_at=now,
    )
    session.add(hold)
    await session.commit()
    return _hold_out(hold, now)


@router.get("/residents/{resident_id}/call-holds", response_model=list[CallHoldOut])
async def list_call_holds(
    resident_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
    include_ended: bool = False,
) -> list[CallHoldOut]:
    await resident_in_scope(session, principal, resident_id)
    now = container.clock.now()
    query = (
        select(CallHold)
        .where(CallHold.resident_id == resident_id)
        .order_by(CallHold.starts_at, CallHold.id)
    )
    if not include_ended:
        query = query.where(or_(CallHold.ends_at.is_(None), CallHold.ends_at > now))
    return [_hold_out(h, now) for h in (await session.execute(query)).scalars()]


@router.delete(
    "/residents/{resident_id}/call-holds/{hold_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Lift a call hold now (a future one is removed; a past one stays as history)",
)
async def lift_call_hold(
    resident_id: str,
    hold_id: RowId,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> Response:
    await resident_in_scope(session, principal, resident_id)
    hold = await session.get(CallHold, hold_id)
    if hold is None or hold.resident_id != resident_id:
        raise NotFoundError("call hold", hold_id)
    now = container.clock.now()
    if hold.starts_at >= now:
        await session.delete(hold)
    elif hold.ends_at is None or hold.ends_at > now:
        hold.ends_at = now
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- do-not-call --------------------------------------------------------------------------------


def _dnc_out(row: DoNotCall) -> DoNotCallOut:
    return DoNotCallOut(
        phone=row.phone,
        phone_masked=mask_phone(row.phone),
        reason=row.reason,
        created_at=row.created_at,
    )


async def _visible_phone(session: AsyncSession, principal: Principal, raw: str) -> str:
    """The normalised number, if this key may manage it: administrators any number, a district
    key only its residents' numbers (else 404, as for another district's resident)."""
    phone = normalize_phone(raw)
    if principal.is_admin:
        return phone
    found = (
        await session.execute(
            select(Resident.id)
            .where(Resident.phone == phone, Resident.district_id.in_(principal.district_ids))
            .limit(1)
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFoundError("resident with number", mask_phone(phone))
    return phone


@router.put(
    "/do-not-call/{phone}",
    response_model=DoNotCallOut,
    responses={201: {"model": DoNotCallOut}},
    summary="Never dial this number (201 when added, 200 when the reason was updated)",
)
async def put_do_not_call(
    phone: PhonePath,
    body: DoNotCallIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
    response: Response,
) -> DoNotCallOut:
    number = await _visible_phone(session, principal, phone)
    row = await session.get(DoNotCall, number)
    if row is None:
        row = DoNotCall(phone=number, reason=body.reason, created_at=container.clock.now())
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:
            # Added by a concurrent request in the meantime: this one updates it.
            await session.rollback()
            row = await session.get(DoNotCall, number)
            if row is None:
                raise
        else:
            response.status_code = status.HTTP_201_CREATED
            return _dnc_out(row)
    row.reason = body.reason
    await session.commit()
    return _dnc_out(row)


@router.get("/do-not-call", response_model=DoNotCallPage)
async def list_do_not_call(
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: Annotated[str | None, Query(max_length=16)] = None,
) -> DoNotCallPage:
    query = select(DoNotCall).order_by(DoNotCall.phone).limit(limit + 1)
    if not principal.is_admin:
        query = query.where(
            DoNotCall.phone.in_(
                select(Resident.phone).where(Resident.district_id.in_(principal.district_ids))
            )
        )
    if cursor:
        query = query.where(DoNotCall.phone > cursor)
    rows = list((await session.execute(query)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return DoNotCallPage(
        items=[_dnc_out(r) for r in rows], next_cursor=rows[-1].phone if more else None
    )


async def _dnc_row(session: AsyncSession, principal: Principal, phone: str) -> DoNotCall:
    number = await _visible_phone(session, principal, phone)
    row = await session.get(DoNotCall, number)
    if row is None:
        raise NotFoundError("do-not-call entry", mask_phone(number))
    return row


@router.get("/do-not-call/{phone}", response_model=DoNotCallOut)
async def get_do_not_call(
    phone: PhonePath, principal: PrincipalDep, session: SessionDep
) -> DoNotCallOut:
    return _dnc_out(await _dnc_row(session, principal, phone))


@router.delete("/do-not-call/{phone}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_do_not_call(
    phone: PhonePath, principal: PrincipalDep, session: SessionDep
) -> Response:
    await session.delete(await _dnc_row(session, principal, phone))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- routine check-ins --------------------------------------------------------------------------


def _routine_out(r: RoutineSchedule, now: dt.datetime) -> RoutineOut:
    # The latest slot at or before a week from now is the next one after now.
    next_slot = (
        latest_slot(now + dt.timedelta(days=7), r.weekday, r.time_min, r.tz) if r.active else None
    )
    return RoutineOut(
        id=r.id,
        resident_id=r.resident_id,
        weekday=r.weekday,
        weekday_name=WEEKDAY_NAMES[r.weekday],
        time=minutes_to_hhmm(r.time_min),
        tz=r.tz,
        active=r.active,
        last_slot_at=r.last_slot_at,
        next_slot_at=next_slot,
        created_at=r.created_at,
    )


async def _routines(session: AsyncSession, resident_id: str) -> Sequence[RoutineSchedule]:
    return (
        (
            await session.execute(
                select(RoutineSchedule)
                .where(RoutineSchedule.resident_id == resident_id)
                .order_by(RoutineSchedule.weekday, RoutineSchedule.time_min)
            )
        )
        .scalars()
        .all()
    )


@router.post(
    "/residents/{resident_id}/routines",
    status_code=status.HTTP_201_CREATED,
    response_model=RoutineOut,
    summary="A standing weekly check-in call at the time the resident chose",
)
async def add_routine(
    resident_id: str,
    body: RoutineIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> RoutineOut:
    resident = await resident_in_scope(session, principal, resident_id)
    existing = await _routines(session, resident.id)
    time_min = hhmm_to_minutes(body.time)
    when = f"{WEEKDAY_NAMES[body.weekday]} {body.time}"
    if any(r.weekday == body.weekday and r.time_min == time_min for r in existing):
        raise ConflictError(f"resident {resident.id} already has a routine call on {when}")
    if len(existing) >= MAX_ROUTINES:
        raise ValidationError(f"at most {MAX_ROUTINES} routine calls a week per resident")
    now = container.clock.now()
    # The call rings in the resident's own time zone, the one their calling hours use.
    window = (await resident_rules(session, resident.id, resident.phone, now)).window
    routine = RoutineSchedule(
        resident_id=resident.id,
        weekday=body.weekday,
        time_min=time_min,
        tz=window.tz,
        active=True,
        created_at=now,
    )
    problem = _routine_problem(window, routine)
    if problem is not None:
        raise ValidationError(
            f"{problem}; widen the resident's hours (PUT .../schedule) or pick another time"
        )
    session.add(routine)
    try:
        await session.commit()
    except IntegrityError as exc:
        raise ConflictError(f"resident {resident.id} already has a routine call on {when}") from exc
    return _routine_out(routine, now)


@router.get("/residents/{resident_id}/routines", response_model=list[RoutineOut])
async def list_routines(
    resident_id: str, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> list[RoutineOut]:
    resident = await resident_in_scope(session, principal, resident_id)
    now = container.clock.now()
    return [_routine_out(r, now) for r in await _routines(session, resident.id)]


@router.delete(
    "/residents/{resident_id}/routines/{routine_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def delete_routine(
    resident_id: str, routine_id: RowId, principal: PrincipalDep, session: SessionDep
) -> Response:
    await resident_in_scope(session, principal, resident_id)
    routine = await session.get(RoutineSchedule, routine_id)
    if routine is None or routine.resident_id != resident_id:
        raise NotFoundError("routine", routine_id)
    await session.delete(routine)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
