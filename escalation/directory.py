"""Officials and escalation chains: create, change, read (the API's use cases)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import asdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.console.directory_page import OfficialForm, StepForm
from anbu.db.models import District, Resident
from anbu.db.models_escalation import (
    EscalationChain,
    EscalationStep,
    Incident,
    IncidentEvent,
    Official,
    OutboxMessage,
    ResidentFinding,
)
from anbu.domain.incidents import IncidentStatus
from anbu.domain.phone import mask_phone
from anbu.errors import ChainInUseError, NotFoundError, ValidationError
from escalation.schemas import (
    ChainIn,
    ChainOut,
    DutyIn,
    FindingOut,
    IncidentDetail,
    IncidentEventOut,
    IncidentOut,
    MessageOut,
    OfficialIn,
    OfficialPatch,
    ResidentFindings,
    StepIn,
    StepOut,
    hhmm_to_min,
    min_to_hhmm,
)


async def create_official(
    session: AsyncSession, district: District, body: OfficialIn, now: dt.datetime
) -> Official:
    official = Official(
        district_id=district.id,
        district=district,
        dong=body.dong.strip(),
        name=body.name.strip(),
        phone=body.phone,
        role=body.role,
        active=True,
        created_at=now,
    )
    session.add(official)
    await session.flush()
    return official


def update_official(official: Official, body: OfficialPatch) -> None:
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is None:
            raise ValidationError(f"{name} cannot be null")
        setattr(official, name, value.strip() if isinstance(value, str) else value)


async def list_officials(
    session: AsyncSession, district_ids: Collection[int] | None
) -> list[Official]:
    query = select(Official).order_by(Official.district_id, Official.dong, Official.name)
    if district_ids is not None:
        query = query.where(Official.district_id.in_(district_ids))
    return list((await session.execute(query)).scalars().all())


async def put_chain(
    session: AsyncSession,
    district: District,
    body: ChainIn,
    default_timeout_s: int,
    now: dt.datetime,
) -> EscalationChain:
    """Create or replace the chain of (district, dong). Every official must belong to the
    district and be active."""
    dong = body.dong.strip()
    officials: dict[str, Official] = {}
    for step in body.steps:
        official = await session.get(Official, step.official_id)
        if official is None or official.district_id != district.id:
            raise ValidationError(
                f"official {step.official_id} is not an official of district {district.code}"
            )
        if not official.active:
            raise ValidationError(f"official {step.official_id} is inactive")
        officials[official.id] = official
    chain = (
        await session.execute(
            select(EscalationChain).where(
                EscalationChain.district_id == district.id, EscalationChain.dong == dong
            )
        )
    ).scalar_one_or_none()
    if chain is None:
        chain = EscalationChain(district_id=district.id, dong=dong, created_at=now, steps=[])
        session.add(chain)
    else:
        chain.steps.clear()
        await session.flush()  # old positions gone before the new ones arrive (unique)
    chain.updated_at = now
    for position, step in enumerate(body.steps, start=1):
        chain.steps.append(
            EscalationStep(
                position=position,
                official_id=step.official_id,
                official=officials[step.official_id],
                ack_timeout_s=step.ack_timeout_s or default_timeout_s,
                duty_days="".join(str(d) for d in step.duty.days),
                duty_start_min=hhmm_to_min(step.duty.start),
                duty_end_min=hhmm_to_min(step.duty.end),
                duty_on_holidays=step.duty.on_holidays,
            )
        )
    await session.flush()
    return chain


async def chain_users(session: AsyncSession, chain: EscalationChain) -> tuple[int, int]:
    """How many active residents are alerted along ``chain``, and how many incidents not yet
    acknowledged escalate along it: a dong's chain serves that dong's residents, the district
    default (dong "") those of every dong without a chain of its own (as the service picks)."""
    served = select(Resident.id).where(Resident.district_id == chain.district_id)
    if chain.dong:
        served = served.where(Resident.dong == chain.dong)
    else:
        own = select(EscalationChain.dong).where(
            EscalationChain.district_id == chain.district_id, EscalationChain.dong != ""
        )
        served = served.where(Resident.dong.not_in(own))
    residents = await session.scalar(
        select(func.count()).select_from(served.where(Resident.active.is_(True)).subquery())
    )
    incidents = await session.scalar(
        select(func.count())
        .select_from(Incident)
        .where(
            Incident.district_id == chain.district_id,
            Incident.status != IncidentStatus.ACKNOWLEDGED,
            Incident.resident_id.in_(served),
        )
    )
    return residents or 0, incidents or 0


async def delete_chain(session: AsyncSession, chain: EscalationChain) -> None:
    """Delete a chain nobody is alerted along any more (else :class:`ChainInUseError`)."""
    residents, incidents = await chain_users(session, chain)
    if residents or incidents:
        raise ChainInUseError(chain.id, residents, incidents)
    await session.delete(chain)
    await session.flush()


def chain_out(chain: EscalationChain, district_code: str) -> ChainOut:
    return ChainOut(
        id=chain.id,
        district_code=district_code,
        dong=chain.dong,
        steps=[
            StepOut(
                position=s.position,
                official_id=s.official_id,
                official_name=s.official.name,
                role=s.official.role,
                ack_timeout_s=s.ack_timeout_s,
                duty=DutyIn(
                    days=[int(d) for d in s.duty_days],
                    start=min_to_hhmm(s.duty_start_min),
                    end=min_to_hhmm(s.duty_end_min) if s.duty_end_min else "24:00",
                    on_holidays=s.duty_on_holidays,
                ),
            )
            for s in chain.steps
        ],
    )


async def list_chains(
    session: AsyncSession, district_ids: Collection[int] | None
) -> list[tuple[EscalationChain, str]]:
    query = (
        select(EscalationChain, District.code)
        .join(District, District.id == EscalationChain.district_id)
        .order_by(District.code, EscalationChain.dong)
    )
    if district_ids is not None:
        query = query.where(EscalationChain.district_id.in_(district_ids))
    return [(c, code) for c, code in (await session.execute(query)).all()]


async def list_incidents(
    session: AsyncSession,
    district_ids: Collection[int] | None,
    status: IncidentStatus | None,
    limit: int,
) -> list[Incident]:
    query = select(Incident).order_by(Incident.opened_at.desc()).limit(limit)
    if district_ids is not None:
        query = query.where(Incident.district_id.in_(district_ids))
    if status is not None:
        query = query.where(Incident.status == status)
    return list((await session.execute(query)).scalars().all())


async def incident_detail(session: AsyncSession, incident: Incident) -> IncidentDetail:
    events = (
        await session.execute(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.at, IncidentEvent.id)
        )
    ).scalars()
    messages = (
        await session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.incident_id == incident.id)
            .order_by(OutboxMessage.created_at)
        )
    ).scalars()
    base = IncidentOut.model_validate(incident)
    return IncidentDetail(
        **base.model_dump(),
        events=[IncidentEventOut.model_validate(e) for e in events],
        messages=[
            MessageOut(
                id=m.id,
                reference=m.reference,
                official_id=m.official_id,
                to_masked=mask_phone(m.to),
                status=m.status,
                attempts=m.attempts,
                provider=m.provider,
                created_at=m.created_at,
                sent_at=m.sent_at,
                delivery=m.delivery,
                delivery_at=m.delivery_at,
                last_error=m.last_error,
            )
            for m in messages
        ],
    )


async def resident_findings(session: AsyncSession, resident_id: str) -> ResidentFindings:
    rows = list(
        (
            await session.execute(
                select(ResidentFinding)
                .where(ResidentFinding.resident_id == resident_id)
                .order_by(ResidentFinding.at.desc(), ResidentFinding.id)
            )
        ).scalars()
    )
    items = [FindingOut.model_validate(r) for r in rows]
    return ResidentFindings(
        resident_id=resident_id, last_finding=items[0] if items else None, items=items
    )


async def get_official(session: AsyncSession, official_id: str) -> Official:
    official = await session.get(Official, official_id)
    if official is None:
        raise NotFoundError("official", official_id)
    return official


class ConsoleDirectory:
    """The console's :class:`anbu.console.directory_page.Directory` port: the console's
    checked forms go through the API's own bodies (their validators) and the functions
    above, so a chain is stored one way whichever door it came in by."""

    def __init__(self, default_timeout_s: int) -> None:
        self.default_timeout_s = default_timeout_s

    async def add_official(
        self, session: AsyncSession, district: District, checked: OfficialForm, now: dt.datetime
    ) -> Official:
        fields = asdict(checked)
        del fields["active"]  # a new official is active
        body = OfficialIn(district_code=district.code, **fields)
        return await create_official(session, district, body, now)

    async def edit_official(self, official: Official, checked: OfficialForm) -> None:
        update_official(official, OfficialPatch(**asdict(checked)))

    async def put_chain(
        self,
        session: AsyncSession,
        district: District,
        dong: str,
        steps: list[StepForm],
        now: dt.datetime,
    ) -> EscalationChain:
        body = ChainIn(
            district_code=district.code,
            dong=dong,
            steps=[
                StepIn(
                    official_id=s.official_id,
                    ack_timeout_s=s.ack_timeout_s,
                    duty=DutyIn(days=s.days, start=s.start, end=s.end, on_holidays=s.on_holidays),
                )
                for s in steps
            ],
        )
        return await put_chain(session, district, body, self.default_timeout_s, now)

    async def delete_chain(self, session: AsyncSession, chain: EscalationChain) -> None:
        await delete_chain(session, chain)
