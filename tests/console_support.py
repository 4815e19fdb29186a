"""Seeding the console's tests through the real services: a closed check-in nobody answered
-> ``EscalationService.on_checkin_closed`` -> the outbox sends the first step's SMS (a
scripted sender) so the acknowledgement clock runs."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.console import accounts
from anbu.domain.calls import CallResult
from anbu.domain.console import ConsoleRole
from escalation.service import EscalationService
from tests.test_escalation_service import (
    FakeClock,
    ScriptedSender,
    World,
    close_case,
    config,
    incident_of,
    make_world,
    worker_for,
)

PASSWORD = "안부-test-password-1"


@dataclass
class Seeded:
    world: World
    incident_id: str
    service: EscalationService


async def seed_incident(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    *,
    code: str = "11620",
    name: str = "김안부",
    dong: str = "신림동",
    phone: str = "01012345678",
) -> Seeded:
    world = await make_world(sessions, code=code, name=name, dong=dong, resident_phone=phone)
    event = await close_case(sessions, world.resident_id, [CallResult.NO_ANSWER] * 3, now)
    clock = FakeClock(event.at)
    service = EscalationService(sessions, config(), clock=clock)
    await service.on_checkin_closed(event)
    sender = ScriptedSender("kannel", clock)
    assert await worker_for(sessions, clock, sender).run_once() == 1
    incident = await incident_of(sessions, event.checkin_id)
    return Seeded(world, incident.id, service)


async def make_account(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    login: str,
    *,
    role: ConsoleRole = ConsoleRole.OFFICIAL,
    district: str | None = "11620",
    name: str = "김주무관",
    official_id: str | None = None,
) -> None:
    async with sessions() as s:
        account = await accounts.create_account(
            s,
            login=login,
            name=name,
            role=role,
            password=PASSWORD,
            district_code=None if role is ConsoleRole.ANALYST else district,
            now=now,
        )
        account.official_id = official_id
        await s.commit()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, html
    return match.group(1)


async def log_in(client: httpx.AsyncClient, login: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/console/login")
    assert page.status_code == 200
    return await client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "login": login, "password": password},
    )
