"""The effectiveness report as a console page (issue 14), over HTTP on SQLite and
PostgreSQL and in a real browser: the foundation's analyst and a district admin see it (with
CSV and XLSX exports), an official does not; a bad period is a Korean message (422)."""

from __future__ import annotations

import html
import io

from openpyxl import load_workbook

from anbu.domain.console import ConsoleRole
from tests.api_support import Api
from tests.console_support import log_in, make_account, recent_incident
from tests.test_console_browser import console_in_browser, save_shot


async def test_given_roles_when_opening_report_then_analyst_and_admin_only(api: Api) -> None:
    sessions = api.container.sessions
    await recent_incident(api)
    now = api.clock.now()
    await make_account(sessions, now, "ana", role=ConsoleRole.ANALYST, name="재단")
    await make_account(sessions, now, "boss", role=ConsoleRole.DISTRICT_ADMIN, name="관리")
    await make_account(sessions, now, "kim")
    day = api.clock.now().date().isoformat()
    params = {"district": "11620", "from": day, "to": day}

    await log_in(api.client, "kim")
    r = await api.client.get("/console/report", params=params)
    assert r.status_code == 403
    assert "구 관리자와 재단 분석가만" in r.text

    await log_in(api.client, "boss")
    r = await api.client.get("/console/report", params=params)
    assert r.status_code == 200
    text = html.unescape(r.text)
    assert "안부 효과 보고서" in text
    assert "관악구" in text
    r = await api.client.get("/console/report", params={**params, "district": "11680"})
    assert r.status_code == 422  # an admin reports on their own district only
    assert "볼 수 없는 구입니다." in r.text

    await log_in(api.client, "ana")
    r = await api.client.get("/console/report", params={**params, "district": "11680"})
    assert r.status_code == 200  # the foundation sees every district
    for bad, message in [
        ({"from": "2026-13-01"}, "날짜는 YYYY-MM-DD 형식으로 쓰세요."),
        ({"from": day, "to": "2020-01-01"}, "종료일이 시작일보다 앞섭니다."),
        ({"from": "2020-01-01", "to": "2026-12-01"}, "보고서는 3년까지 볼 수 있습니다."),
        ({"district": "99999"}, "볼 수 없는 구입니다."),
        ({"dong": "없는동"}, "없는동에 등록된 대상자가 없습니다."),
    ]:
        r = await api.client.get("/console/report", params={**params, **bad})
        assert r.status_code == 422, bad
        assert message in html.unescape(r.text), bad
    assert "김안부" not in html.unescape(r.text)  # figures, never names

    r = await api.client.get("/console/report/export", params={**params, "format": "xlsx"})
    assert r.status_code == 200
    assert r.headers["content-disposition"].endswith('.xlsx"')
    book = load_workbook(io.BytesIO(r.content), read_only=True)
    cells = [str(v) for row in book.worksheets[0].iter_rows(values_only=True) for v in row]
    book.close()
    assert cells
    r = await api.client.get("/console/report/export", params={**params, "format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert len(r.text.splitlines()) > 5


async def test_given_analyst_in_browser_when_opening_report_then_korean_report(
    api: Api,
    db_url: str,
) -> None:
    sessions = api.container.sessions
    await recent_incident(api)
    await make_account(sessions, api.clock.now(), "ana", role=ConsoleRole.ANALYST)
    async with console_in_browser(api.container, "ana") as (_base, _browser, page):
        await page.get_by_role("link", name="보고서").click()
        await page.wait_for_load_state()
        await page.get_by_label("구", exact=True).select_option(value="11620")
        await page.get_by_role("button", name="보고서 보기").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("heading", name="안부 효과 보고서").count() == 1
        assert "관악구" in await page.locator(".report .sub").inner_text()
        assert await page.locator(".report svg").count() >= 1
        await save_shot(page, db_url, "report")
        await page.get_by_label("시작일").fill("2026-12-31")
        await page.get_by_label("종료일 (포함)").fill("2026-01-01")
        await page.get_by_role("button", name="보고서 보기").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("alert").inner_text() == "종료일이 시작일보다 앞섭니다."
