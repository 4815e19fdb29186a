"""Enrolling one resident from the console over real HTTP on SQLite and PostgreSQL: the bulk
enrolment's row checks in Korean (422, nothing written), a 관리번호 already enrolled in the
district refused (never a silent update), CSRF, a dong-limited official only in their dong,
the analyst refused, the new resident audited and in the official's district only."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import func, select

from anbu.db.models import Resident
from anbu.db.models_audit import AuditEntry
from anbu.db.models_console import ConsoleAccount
from anbu.db.models_scheduling import RoutineSchedule
from anbu.db.models_signals import MonitoringHold
from anbu.domain.audit import AuditAction, AuditResource
from anbu.domain.console import ConsoleRole
from anbu.domain.escalation import SEOUL
from anbu.domain.risk import HoldReason
from tests.api_support import Api
from tests.console_support import csrf_of, log_in, make_account, stale_plug_and_hospital_stay
from tests.test_console_browser import console_in_browser, save_shot


async def enrol(client: httpx.AsyncClient, **data: str) -> httpx.Response:
    page = await client.get("/console/residents/new")
    assert page.status_code == 200
    return await client.post("/console/residents/new", data={"csrf": csrf_of(page.text), **data})


async def test_given_official_when_enrolling_one_then_checked_stored_and_audited(
    api: Api,
) -> None:
    sessions = api.container.sessions
    now = api.clock.now()
    await make_account(sessions, now, "kim")
    await make_account(sessions, now, "sillim")
    await make_account(sessions, now, "gangnam", district="11680")
    await make_account(sessions, now, "analyst", role=ConsoleRole.ANALYST)
    async with sessions() as s:
        account = await s.scalar(select(ConsoleAccount).where(ConsoleAccount.login == "sillim"))
        assert account is not None
        account.dong = "신림동"
        await s.commit()
    await log_in(api.client, "kim")

    good = {"name": "정하나", "phone": "010-2345-6789", "dong": "신림동", "external_ref": "G-7"}
    for bad, message in [
        ({"name": ""}, "이름이 비어 있습니다."),
        ({"phone": "010-12"}, "전화번호 '010-12'가 올바른 국내 번호가 아닙니다."),
        ({"external_ref": " "}, "관리번호가 비어 있습니다."),
        ({"name": "", "phone": ""}, "이름이 비어 있습니다; 전화번호가 비어 있습니다."),
        ({"dong": "동" * 51}, "행정동이 50자를 넘습니다."),
    ]:
        r = await enrol(api.client, **good | bad)
        assert r.status_code == 422, bad
        text = html.unescape(r.text)
        assert message in text, bad
        # What was typed comes back.
        assert f'value="{(good | bad)["external_ref"]}"' in text
    r = await api.client.post("/console/residents/new", data={"csrf": "nope", **good})
    assert r.status_code == 403
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Resident)) == 0

    r = await enrol(api.client, **good)
    assert r.status_code == 303
    location = r.headers["location"]
    resident_id = location.split("/")[-1].split("?")[0]
    page = html.unescape((await api.client.get(location)).text)
    assert "대상자를 등록했습니다." in page
    assert "정하나" in page
    async with sessions() as s:
        stored = await s.get(Resident, resident_id)
        assert stored is not None
        assert (stored.name, stored.phone, stored.dong, stored.external_ref) == (
            "정하나",
            "01023456789",
            "신림동",
            "G-7",
        )
        assert stored.district.code == "11620"
        created = await s.scalar(
            select(AuditEntry).where(
                AuditEntry.resource_id == resident_id,
                AuditEntry.action == AuditAction.CREATE,
            )
        )
        assert created is not None
        assert created.resource_type is AuditResource.RESIDENT

    r = await enrol(api.client, **good | {"name": "정둘"})
    assert r.status_code == 422
    assert "관리번호 G-7는 이미 등록된 대상자입니다." in html.unescape(r.text)

    @asynccontextmanager
    async def as_(login: str) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(
            transport=api.client._transport, base_url="http://anbu"
        ) as client:
            await log_in(client, login)
            yield client

    # A dong-limited official: only their dong; an empty dong means theirs.
    async with as_("sillim") as sillim:
        r = await enrol(sillim, **good | {"dong": "서원동", "external_ref": "G-8"})
        assert r.status_code == 422
        assert "담당 동(신림동)이 아닌 서원동의 대상자입니다." in html.unescape(r.text)
        r = await enrol(sillim, **good | {"dong": "", "external_ref": "G-8"})
        assert r.status_code == 303
    # Another district: its own namespace of 관리번호, and 정하나 is not theirs.
    async with as_("gangnam") as gangnam:
        r = await enrol(gangnam, **good | {"name": "강하나"})
        assert r.status_code == 303
        assert (await gangnam.get(location)).status_code == 404
    async with as_("analyst") as analyst:
        assert (await analyst.get("/console/residents/new")).status_code == 403
        today = await analyst.get("/console")
        r = await analyst.post("/console/residents/new", data={"csrf": csrf_of(today.text), **good})
        assert r.status_code == 403
        assert "등록 권한이 없습니다." in r.text

    async with sessions() as s:
        rows = (await s.execute(select(Resident.external_ref, Resident.dong))).all()
        assert sorted(rows) == [("G-7", "신림동"), ("G-7", "신림동"), ("G-8", "신림동")]


async def test_given_official_in_browser_when_enrolling_one_then_resident_page_shows_details(
    api: Api,
    db_url: str,
) -> None:
    sessions = api.container.sessions
    now = api.clock.now()
    await make_account(sessions, now, "kim")
    async with console_in_browser(api.container, "kim") as (_base, _browser, page):
        await page.get_by_role("link", name="대상자").click()
        await page.wait_for_load_state()
        await page.get_by_role("link", name="한 명 등록").click()
        await page.wait_for_load_state()
        await page.get_by_label("이름").fill("정하나")
        await page.get_by_label("전화번호").fill("010-12")
        await page.get_by_label("행정동").fill("신림동")
        await page.get_by_label("관리번호 (구의 대상자 번호)").fill("G-7")
        await page.get_by_role("button", name="등록").click()
        await page.wait_for_load_state()
        assert "올바른 국내 번호가 아닙니다" in await page.get_by_role("alert").inner_text()
        await save_shot(page, db_url, "enrol-one")
        await page.get_by_label("전화번호").fill("010-2345-6789")
        await page.get_by_role("button", name="등록").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("status").inner_text() == "대상자를 등록했습니다."

        # A device that went quiet and a hospital stay, as the API and the risk engine
        # would have stored them: the page shows both.
        resident_id = page.url.split("/")[-1].split("?")[0]
        async with sessions() as s:
            resident = await s.get(Resident, resident_id)
            assert resident is not None
            s.add_all(
                [
                    *stale_plug_and_hospital_stay(resident.district_id, resident_id, now),
                    RoutineSchedule(resident_id=resident_id, weekday=0, time_min=10 * 60),
                ]
            )
            await s.commit()
        await page.reload()
        assert await page.locator("tr.device-stale td").nth(3).inner_text() == "보고 없음"
        assert "보라매병원" in await page.locator("#holds + ul").inner_text()
        assert await page.locator("#routines").inner_text() == "월 10:00"

        # The official adds a travel hold from the page's own form (a plain post).
        await page.locator("#hold-kind").select_option("travel")
        await page.locator("#hold-ends").fill(
            (now.astimezone(SEOUL).date() + dt.timedelta(days=4)).isoformat()
        )
        await page.locator("#hold-note").fill("제주 여행")
        await page.get_by_role("button", name="보류 추가").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("status").inner_text() == "보류를 추가했습니다."
        holds = await page.locator("#holds + ul").inner_text()
        assert "여행·외출" in holds
        assert "제주 여행" in holds
        async with sessions() as s:
            stored = (
                await s.scalars(
                    select(MonitoringHold.reason).where(MonitoringHold.resident_id == resident_id)
                )
            ).all()
        assert sorted(stored) == [HoldReason.HOSPITAL, HoldReason.TRAVEL]
        await save_shot(page, db_url, "resident-details")
