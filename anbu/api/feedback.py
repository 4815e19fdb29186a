"""Outcome feedback API: the widening officials' findings made to a person's thresholds, shown
and reversible (the console's view), and findings about 관심 records that called nobody."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from anbu.api.deps import ContainerDep, PrincipalDep, SessionDep, resident_in_scope
from anbu.api.strict import Timestamp
from anbu.db.models_feedback import FeedbackStep
from anbu.db.models_signals import RiskAssessment
from anbu.domain.escalation import Finding
from anbu.domain.risk import Channel
from anbu.errors import NotFoundError
from anbu.risk import feedback, registry

router = APIRouter(prefix="/v1", tags=["feedback"])


class StepOut(BaseModel):
    id: str
    channel: Channel
    hours: float
    finding: str
    incident_id: str | None
    assessment_id: str | None
    created_at: Timestamp
    reverted_at: Timestamp | None
    reverted_why: str | None


class FeedbackOut(BaseModel):
    resident_id: str
    window_h: float = Field(description="the person's window before any widening")
    widen_h: dict[str, float] = Field(description="hours added per channel, in force")
    steps: list[StepOut] = Field(description="every widening step, newest first")


class ConcernFindingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assessment_id: str = Field(description="the 관심 (or any) risk assessment the finding is about")
    finding: Finding


def _step(s: FeedbackStep) -> StepOut:
    return StepOut.model_validate(s, from_attributes=True)


async def _view(session: SessionDep, resident_id: str) -> FeedbackOut:
    from anbu.risk.store import profile_rules

    profile = await registry.get_profile(session, resident_id)
    steps = await feedback.list_steps(session, resident_id)
    return FeedbackOut(
        resident_id=resident_id,
        window_h=profile_rules(profile).window_h,
        widen_h=feedback.widening_in_force(profile),
        steps=[_step(s) for s in steps],
    )


@router.get("/residents/{resident_id}/feedback", response_model=FeedbackOut)
async def get_feedback(
    resident_id: str, principal: PrincipalDep, session: SessionDep
) -> FeedbackOut:
    await resident_in_scope(session, principal, resident_id)
    return await _view(session, resident_id)


@router.post("/residents/{resident_id}/feedback", response_model=FeedbackOut)
async def post_concern_finding(
    resident_id: str,
    body: ConcernFindingIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> FeedbackOut:
    """A finding about a risk record that called nobody (관심): an official looked into it."""
    await resident_in_scope(session, principal, resident_id)
    a = await session.get(RiskAssessment, body.assessment_id)
    if a is None or a.resident_id != resident_id:
        raise NotFoundError("risk assessment", body.assessment_id)
    await feedback.on_finding(
        session,
        resident_id=resident_id,
        finding=body.finding.value,
        now=container.clock.now(),
        assessment_id=a.id,
    )
    await session.commit()
    return await _view(session, resident_id)


@router.post("/feedback/{step_id}/revert", response_model=FeedbackOut)
async def revert_step(
    step_id: str, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> FeedbackOut:
    """Undo one widening step: the person's thresholds tighten again at the next grading."""
    step = await feedback.get_step(session, step_id)
    await resident_in_scope(session, principal, step.resident_id)
    await feedback.revert(session, step, container.clock.now(), "reverted by an official")
    await session.commit()
    return await _view(session, step.resident_id)
