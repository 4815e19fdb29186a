"""Seeding the console's tests through the real services: a closed check-in nobody answered
-> ``EscalationService.on_checkin_closed`` -> the outbox sends the first step's SMS (a
scripted sender) so the acknowledgement clock runs."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.console import accounts
from anbu.db.models import District
from anbu.db.models_audit import AuditEntry
from anbu.db.models_escalation import Official
from anbu.db.models_signals import Device, MonitoringHold
from anbu.domain.audit import AuditAction, AuditResource
from anbu.domain.calls import CallResult
from anbu.domain.console import ConsoleRole
from anbu.domain.risk import DeviceKind, HoldReason
from escalation.service import EscalationService
from tests.api_support import Api
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


async def recent_incident(api: Api, **resident: str) -> Seeded:
    """An incident raised three minutes before ``api``'s clock: its first SMS has gone out and
    the acknowledgement clock runs, as an official finds it on a desk mid-shift."""
    now = api.clock.now() - dt.timedelta(minutes=3)
    return await seed_incident(api.container.sessions, now, **resident)


async def new_official(sessions: async_sessionmaker[AsyncSession], code: str = "11620") -> str:
    """An official (김복지, 신림동) of the district ``code``, which must exist. Returns the id."""
    async with sessions() as s:
        district = (await s.execute(select(District).where(District.code == code))).scalar_one()
        official = Official(district_id=district.id, dong="신림동", name="김복지", phone="0299")
        s.add(official)
        await s.commit()
        return official.id


def stale_plug_and_hospital_stay(
    district_id: int, resident_id: str, now: dt.datetime
) -> list[Device | MonitoringHold]:
    """What the API and the risk engine store for a resident whose plug (plug-7) went silent
    past its clock (stale), and who is in 보라매병원 from yesterday for three more days."""
    return [
        Device(
            device_id="plug-7",
            district_id=district_id,
            resident_id=resident_id,
            kind=DeviceKind.PLUG,
            last_seen_at=now - dt.timedelta(hours=30),
            stale_due_at=now - dt.timedelta(hours=6),
        ),
        MonitoringHold(
            resident_id=resident_id,
            starts_at=now - dt.timedelta(days=1),
            ends_at=now + dt.timedelta(days=3),
            reason=HoldReason.HOSPITAL,
            note="보라매병원",
        ),
    ]


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


async def sign_in(
    api: Api,
    login: str,
    *,
    role: ConsoleRole = ConsoleRole.OFFICIAL,
    district: str | None = "11620",
    name: str = "김주무관",
    official_id: str | None = None,
) -> httpx.Response:
    """A console account made at ``api``'s clock, and ``api.client`` signed in with it."""
    await make_account(
        api.container.sessions,
        api.clock.now(),
        login,
        role=role,
        district=district,
        name=name,
        official_id=official_id,
    )
    return await log_in(api.client, login)


async def audit_trail(
    session: AsyncSession, resource: AuditResource, action: AuditAction
) -> list[tuple[str, str]]:
    """The access log's (resource id, outcome) for one kind of change, oldest first."""
    rows = await session.execute(
        select(AuditEntry.resource_id, AuditEntry.outcome)
        .where(AuditEntry.resource_type == resource, AuditEntry.action == action)
        .order_by(AuditEntry.id)
    )
    return [(resource_id, outcome) for resource_id, outcome in rows]


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


# A district's spreadsheet: 500 rows, 3 of them bad (row numbers count the header as row 1).
BAD_ROWS = {
    42: ["", "010-2000-0040", "신림동", "G-0041"],  # no name
    217: ["박이백", "010-12", "신림동", "G-0216"],  # not a phone number
    388: ["최삼백", "010-3000-0386", "신림동", "G-0001"],  # the reference of row 2 again
}
BAD_REASONS = {
    42: "이름이 비어 있습니다",
    217: "전화번호 '010-12'가 올바른 국내 번호가 아닙니다",
    388: "관리번호 G-0001가 2행과 겹칩니다",
}
SHEET_HEADER = ["이름", "전화번호", "행정동", "관리번호"]


def district_rows(n: int = 500) -> list[list[str]]:
    rows = []
    for i in range(1, n + 1):
        number = i + 1
        rows.append(
            BAD_ROWS.get(number, [f"주민{i:03d}", f"010-2{i:03d}-{i:04d}", "신림동", f"G-{i:04d}"])
        )
    return rows


def district_xlsx(rows: list[list[str]] | None = None) -> bytes:
    import io

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(SHEET_HEADER)
    for row in rows if rows is not None else district_rows():
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def district_csv(rows: list[list[str]] | None = None, encoding: str = "utf-8-sig") -> bytes:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(SHEET_HEADER)
    writer.writerows(rows if rows is not None else district_rows())
    return out.getvalue().encode(encoding)
