"""The console in a real browser: Playwright for Python driving Debian's chromium (headless)
against anbu served by uvicorn on a loopback port, over SQLite and PostgreSQL.

An official logs in, sees the incident the real escalation service raised for a resident who
never answered, acknowledges it with a finding (the chain stops: nothing for the backup); an
official of another district sees none of it; five wrong passwords lock the account. The
SQLite run saves a screenshot of each page under docs/console/.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.app.parts import build_api
from anbu.container import Container
from anbu.db.models_escalation import Incident, OutboxMessage
from anbu.domain.escalation import Finding
from anbu.domain.incidents import AckChannel, IncidentStatus
from tests.api_support import Api
from tests.console_support import PASSWORD, make_account, recent_incident
from tests.fixtures_asterisk import free_port

CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/bootstrap.sh); never `playwright install`
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "console"


@asynccontextmanager
async def serving(app: object) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def chromium_path() -> str:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    return CHROMIUM


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    executable = chromium_path()
    # The sandbox needs user namespaces, which a root container does not have.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield browser
        finally:
            await browser.close()


async def log_in(page: Page, base: str, login: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base}/console/login")
    await page.get_by_label("아이디").fill(login)
    await page.get_by_label("비밀번호").fill(password)
    await page.get_by_role("button", name="로그인").click()
    await page.wait_for_load_state()


async def desk_page(browser: Browser) -> Page:
    """A page the size of an official's desk screen, so the screenshots show the whole layout."""
    return await (await browser.new_context(viewport={"width": 1100, "height": 800})).new_page()


@asynccontextmanager
async def console_in_browser(
    container: Container, login: str | None = None
) -> AsyncIterator[tuple[str, Browser, Page]]:
    """``container``'s API served on a loopback port, chromium and a desk-sized page (signed in
    as ``login`` when given): the base URL, the browser (for a colleague's page) and the page."""
    async with serving(build_api(container)) as base, chromium() as browser:
        page = await desk_page(browser)
        if login is not None:
            await log_in(page, base, login)
        yield base, browser, page


async def acknowledge_visit(page: Page) -> None:
    """On an incident's page: the official records a visit (방문, 건강함) and acknowledges;
    the page shows the finding and the acknowledged status."""
    await page.get_by_label("방문 확인").check()
    await page.get_by_label("메모").fill("방문, 건강함")
    await page.get_by_role("button", name="확인하고 기록").click()
    await page.wait_for_load_state()
    assert await page.locator("#finding").inner_text() == "방문 확인 · 방문, 건강함"
    assert await page.locator("#status").inner_text() == "확인됨"


async def assert_visit_stored(sessions: async_sessionmaker[AsyncSession], incident_id: str) -> None:
    """The incident is stored acknowledged in the console, with the visit as its finding."""
    async with sessions() as s:
        incident = await s.get(Incident, incident_id)
        assert incident is not None
        assert incident.status is IncidentStatus.ACKNOWLEDGED
        assert incident.ack_channel is AckChannel.CONSOLE
        assert incident.finding is Finding.VISITED


async def assert_nothing_for(sessions: async_sessionmaker[AsyncSession], official_id: str) -> None:
    """No message was ever queued for ``official_id`` (the chain stopped before them)."""
    async with sessions() as s:
        rows = await s.execute(
            select(OutboxMessage).where(OutboxMessage.official_id == official_id)
        )
        assert rows.all() == []


async def save_shot(page: Page, db_url: str, name: str, *, full_page: bool = True) -> None:
    """The SQLite run keeps a screenshot for docs/console/; the PostgreSQL run would only
    overwrite the same picture."""
    if db_url.startswith("sqlite"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


async def test_given_unanswered_resident_when_official_acts_in_browser_then_chain_stops(
    api: Api,
    db_url: str,
) -> None:
    sessions = api.container.sessions
    seeded = await recent_incident(api)
    primary = seeded.world.officials["primary"]
    now = api.clock.now()
    await make_account(sessions, now, "kim", name="김주무관", official_id=primary.id)
    await make_account(sessions, now, "gangnam", district="11680", name="강남 주무관")
    await make_account(sessions, now, "lee", name="이주무관")

    async with console_in_browser(api.container) as (base, browser, page):
        await page.goto(f"{base}/console/login")
        await save_shot(page, db_url, "login")
        await log_in(page, base, "kim")
        assert page.url == f"{base}/console"
        row = page.locator(f'a[href="/console/incidents/{seeded.incident_id}"]')
        assert await row.inner_text() == "김안부"
        assert await page.get_by_text("남음").count() >= 1
        await save_shot(page, db_url, "today")

        await row.click()
        await page.wait_for_load_state()
        assert page.url.endswith(f"/console/incidents/{seeded.incident_id}")
        assert await page.get_by_text("받지 않음").count() == 3
        await save_shot(page, db_url, "incident")
        await acknowledge_visit(page)
        await save_shot(page, db_url, "incident-acknowledged")

        await page.get_by_role("link", name="김안부").click()
        await page.wait_for_load_state()
        assert "01012345678" not in await page.content()
        await page.get_by_role("button", name="번호 보기 (기록됨)").click()
        await page.wait_for_load_state()
        assert await page.locator("#phone").inner_text() == "01012345678"
        await save_shot(page, db_url, "resident")
        await page.get_by_role("link", name="대상자").click()
        await page.wait_for_load_state()
        await save_shot(page, db_url, "residents")

        other = await (await browser.new_context()).new_page()
        await log_in(other, base, "gangnam")
        assert other.url == f"{base}/console"
        assert "김안부" not in await other.content()
        await other.goto(f"{base}/console/incidents/{seeded.incident_id}")
        assert "김안부" not in await other.content()
        await other.goto(f"{base}/console/residents?q=김")
        assert "김안부" not in await other.content()
        await save_shot(other, db_url, "other-district")

        locked = await (await browser.new_context()).new_page()
        for _ in range(5):
            await log_in(locked, base, "lee", "wrong-password-x")
        assert await locked.get_by_role("alert").inner_text() == (
            "비밀번호를 5번 틀려 계정이 잠겼습니다. 구 관리자에게 잠금 해제를 요청하세요."
        )
        await log_in(locked, base, "lee")
        assert locked.url.endswith("/console/login")
        await save_shot(locked, db_url, "locked")

    await assert_visit_stored(sessions, seeded.incident_id)
    assert await seeded.service.escalate_due(api.clock.now() + dt.timedelta(hours=2)) == 0
    await assert_nothing_for(sessions, seeded.world.officials["backup"].id)
