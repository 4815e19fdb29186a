"""Who visits a resident: the first official of the escalation chain for their dong (else the
district's default chain), the person a help incident goes to first. The IVR plays that
official's own recorded greeting ("안녕하세요, 신림동 주민센터 김복지입니다"), so the resident
hears the voice of the person who will come (``anbu.ports.VisitingOfficials``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from escalation.service import _chain_for, _steps


class ChainVisitors:
    """The :class:`anbu.ports.VisitingOfficials` on the escalation chains."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def visitor(self, district_id: int, dong: str) -> str | None:
        async with self._sessions() as session:
            chain = await _chain_for(session, district_id, dong)
            # The chain's order, inactive officials skipped (as a page would); not the duty
            # hours: the official who visits is the same at night, only the pager changes.
            steps = _steps(chain) if chain is not None else []
        return steps[0].official_id if steps else None


__all__ = ["ChainVisitors"]
