"""A resident's voice profile: stored, read by the API and by the IVR at call time."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin, District, Resident
from anbu.db.models_voice import ResidentVoice
from anbu.domain.voice import DEFAULT_VOICE, VoiceProfile
from anbu.ports import CallVoice, VisitingOfficials

log = logging.getLogger(__name__)


def _profile(row: ResidentVoice | None) -> VoiceProfile:
    if row is None:
        return DEFAULT_VOICE
    return VoiceProfile(row.gain_db, row.tempo, row.extra_repeats)


async def get_voice(session: AsyncSession, resident_id: str) -> VoiceProfile:
    return _profile(await session.get(ResidentVoice, resident_id))


async def put_voice(
    session: AsyncSession, resident_id: str, profile: VoiceProfile, now: dt.datetime
) -> VoiceProfile:
    row = await session.get(ResidentVoice, resident_id)
    if row is None:
        row = ResidentVoice(resident_id=resident_id)
        session.add(row)
    row.gain_db, row.tempo, row.extra_repeats = (
        profile.gain_db,
        profile.tempo,
        profile.extra_repeats,
    )
    row.updated_at = now
    return profile


class DbVoiceProfiles:
    """The :class:`anbu.ports.VoiceProfiles` on the database: by the call's channel id.
    With ``visitors`` the call also names the official who visits the resident, whose own
    recorded greeting then plays."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        visitors: VisitingOfficials | None = None,
    ) -> None:
        self._sessions = sessions
        self._visitors = visitors

    async def for_call(self, channel_id: str) -> CallVoice:
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(District.code, Resident.district_id, Resident.dong, ResidentVoice)
                    .select_from(CallAttempt)
                    .join(Checkin, CallAttempt.checkin_id == Checkin.id)
                    .join(Resident, Resident.id == Checkin.resident_id)
                    .join(District, District.id == Resident.district_id)
                    .outerjoin(ResidentVoice, ResidentVoice.resident_id == Resident.id)
                    .where(CallAttempt.channel_id == channel_id)
                )
            ).first()
        if found is None:
            return CallVoice()
        code, district_id, dong, row = found
        official_id = None
        if self._visitors is not None:
            try:
                official_id = await self._visitors.visitor(district_id, dong or "")
            except Exception:  # the district's voice is still a fine greeting
                log.exception("voice %s: the visiting official is unreadable", channel_id)
        return CallVoice(_profile(row), code, official_id)


__all__ = ["DbVoiceProfiles", "get_voice", "put_voice"]
