"""Two requests for the same resident at the same moment open one case, not two (two open
cases would ring the person twice). On PostgreSQL under READ COMMITTED both transactions' "no
case is open" checks can pass before either commits; the resident's row is locked first."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.api.routes import _RESIDENT_TO_CALL
from anbu.db.models import Checkin, District, Resident
from anbu.domain.checkin import CheckinSource
from anbu.services.checkins import open_checkin, request_checkin
from tests.db_fixtures import db_engine, db_url, sessions  # noqa: F401

NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)


async def _resident(sessions: async_sessionmaker[AsyncSession]) -> Resident:  # noqa: F811
    async with sessions() as s:
        person = Resident(
            district=District(code="11620", name="관악구"),
            name="주민",
            phone="01099990001",
            dong="신림동",
        )
        s.add(person)
        await s.commit()
        return person


@pytest.mark.parametrize("api_reads_first", [False, True])
async def test_given_two_requests_at_once_when_opening_then_one_case(
    sessions: async_sessionmaker[AsyncSession],  # noqa: F811
    api_reads_first: bool,
) -> None:
    person = await _resident(sessions)
    entered = asyncio.Barrier(2)

    async def by_api() -> None:
        async with sessions() as s:
            await entered.wait()
            if api_reads_first:  # as POST /v1/checkins: its read of the resident locks the row
                await s.execute(_RESIDENT_TO_CALL, {"resident_id": person.id})
            await request_checkin(
                s,
                person.id,
                person.phone,
                source=CheckinSource.API,
                reason="api",
                now=NOW,
                resident_locked=api_reads_first,
            )
            await asyncio.sleep(0.2)  # both inside their transactions before either commits
            await s.commit()

    async def by_rule() -> None:
        async with sessions() as s:
            await entered.wait()
            resident = await s.get(Resident, person.id)
            assert resident is not None
            await open_checkin(s, resident, source=CheckinSource.SIGNAL, reason="rule", now=NOW)
            await asyncio.sleep(0.2)
            await s.commit()

    await asyncio.gather(by_api(), by_rule())
    async with sessions() as s:
        cases = await s.scalar(select(func.count()).select_from(Checkin))
    assert cases == 1
