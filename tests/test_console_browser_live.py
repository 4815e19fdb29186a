"""The live 오늘 page and hand-over in a real browser (Playwright driving Debian's chromium,
anbu under uvicorn): with the page open, an incident that the escalation service opens
appears without a reload (SSE, then the page fetches its queue), one a colleague
acknowledges in another browser disappears without a reload, and an official hands an
incident over to a colleague (the timeline and the queue say who holds it)."""

from __future__ import annotations

from tests.api_support import Api
from tests.console_support import make_account, recent_incident, seed_incident
from tests.test_console_browser import console_in_browser, log_in, save_shot


async def test_given_today_open_when_incidents_open_and_are_acknowledged_then_live_no_reload(
    api: Api,
    db_url: str,
) -> None:
    sessions = api.container.sessions
    first = await recent_incident(api)
    now = api.clock.now()
    primary = first.world.officials["primary"]
    await make_account(sessions, now, "kim", name="김주무관", official_id=primary.id)
    await make_account(sessions, now, "lee", name="이주무관")
    async with console_in_browser(api.container, "kim") as (base, browser, page):
        assert page.url == f"{base}/console"
        await page.wait_for_selector(f'a[href="/console/incidents/{first.incident_id}"]')
        # A mark that a reload would wipe out.
        await page.evaluate("window.__notReloaded = true")

        second = await seed_incident(
            sessions, api.clock.now(), name="박새벽", dong="봉천동", phone="01055556666"
        )
        row = page.locator(f'a[href="/console/incidents/{second.incident_id}"]')
        await row.wait_for()
        assert await row.inner_text() == "박새벽"
        assert await page.evaluate("window.__notReloaded") is True
        assert int(await page.evaluate("document.body.dataset.updates")) >= 1

        colleague = await (await browser.new_context()).new_page()
        await log_in(colleague, base, "lee")
        await colleague.goto(f"{base}/console/incidents/{first.incident_id}")
        await colleague.get_by_label("안전 확인").check()
        await colleague.get_by_role("button", name="확인하고 기록").click()
        await colleague.wait_for_load_state()
        assert await colleague.locator("#status").inner_text() == "확인됨"

        await page.locator(f'a[href="/console/incidents/{first.incident_id}"]').wait_for(
            state="detached"
        )
        assert await page.evaluate("window.__notReloaded") is True
        await save_shot(page, db_url, "today-live")

        # Hand-over: kim passes the second incident to lee.
        await row.click()
        await page.wait_for_load_state()
        await page.get_by_label("넘겨받을 동료").select_option(label="이주무관")
        await page.get_by_label("넘기는 이유").fill("오후 방문 인계")
        await page.get_by_role("button", name="넘기기").click()
        await page.wait_for_load_state()
        assert await page.locator("#holder").inner_text() == "이주무관"
        timeline = await page.locator("ol.timeline").inner_text()
        assert "담당 넘김 김주무관 → 이주무관 · 오후 방문 인계" in timeline
        await save_shot(page, db_url, "incident-handover")
        await page.get_by_role("link", name="오늘").click()
        await page.wait_for_load_state()
        assert "담당: 이주무관" in await page.locator("#live").inner_text()
