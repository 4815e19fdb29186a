"""A resident's voice profile (accessibility): louder, slower, one more ask."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from anbu.api.deps import ContainerDep, PrincipalDep, SessionDep, resident_in_scope
from anbu.api.strict import StrictFloat, StrictInt
from anbu.domain.voice import MAX_EXTRA_REPEATS, MAX_GAIN_DB, MIN_TEMPO, VoiceProfile
from anbu.services.voice import get_voice, put_voice

router = APIRouter(prefix="/v1", tags=["residents"])


class VoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gain_db: StrictFloat = Field(
        0.0, ge=0, le=MAX_GAIN_DB, description="louder by this much; capped below clipping"
    )
    tempo: StrictFloat = Field(
        1.0, ge=MIN_TEMPO, le=1.0, description="speed of the prompts (0.8 = 20% slower)"
    )
    extra_repeats: StrictInt = Field(
        0, ge=0, le=MAX_EXTRA_REPEATS, description="more asks before no response"
    )


class VoiceOut(VoiceIn):
    resident_id: str


def _out(resident_id: str, p: VoiceProfile) -> VoiceOut:
    return VoiceOut(
        resident_id=resident_id, gain_db=p.gain_db, tempo=p.tempo, extra_repeats=p.extra_repeats
    )


@router.get("/residents/{resident_id}/voice", response_model=VoiceOut)
async def get_resident_voice(
    resident_id: str, principal: PrincipalDep, session: SessionDep
) -> VoiceOut:
    await resident_in_scope(session, principal, resident_id)
    return _out(resident_id, await get_voice(session, resident_id))


@router.put("/residents/{resident_id}/voice", response_model=VoiceOut)
async def put_resident_voice(
    resident_id: str,
    body: VoiceIn,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> VoiceOut:
    """Set how this resident's calls sound; the next call uses it."""
    await resident_in_scope(session, principal, resident_id)
    profile = VoiceProfile(body.gain_db, body.tempo, body.extra_repeats)
    await put_voice(session, resident_id, profile, container.clock.now())
    await session.commit()
    return _out(resident_id, profile)
