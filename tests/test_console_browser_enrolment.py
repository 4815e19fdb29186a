"""Bulk enrolment in a real browser (Playwright driving Debian's chromium): an official
uploads the district's 500-row XLSX with 3 bad rows, the dry run lists the 3 (row number and
Korean reason) and stores nothing, the real run stores 497 and reports the 3."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import Resident
from tests.api_support import api_over
from tests.console_support import BAD_REASONS, district_xlsx, make_account
from tests.test_console_browser import console_in_browser, save_shot


async def count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count(Resident.id))) or 0)


async def test_given_xlsx_with_3_bad_rows_when_official_uploads_in_browser_then_497_enrolled(
    db_url: str, tmp_path: Path
) -> None:
    sheet = tmp_path / "관악구-명단.xlsx"
    sheet.write_bytes(district_xlsx())
    async with api_over(db_url) as api:
        sessions = api.container.sessions
        await make_account(sessions, api.clock.now(), "kim")
        async with console_in_browser(api.container, "kim") as (_base, _browser, page):
            await page.get_by_role("link", name="대상자").click()
            await page.get_by_role("link", name="명단 파일로 일괄 등록").click()
            await page.wait_for_load_state()

            await page.get_by_label("명단 파일 (CSV, XLSX, 4MB까지)").set_input_files(str(sheet))
            await page.get_by_role("button", name="미리 확인").click()
            await page.wait_for_load_state()
            summary = await page.locator("#summary").inner_text()
            assert "새로 등록할 대상자 497명, 고칠 대상자 0명, 문제 있는 줄 3개" in summary
            rows = await page.locator("#problems tbody tr").all_inner_texts()
            assert [r.split("\t", 1) for r in rows] == [
                [str(n), reason] for n, reason in BAD_REASONS.items()
            ]
            assert await count(sessions) == 0
            await save_shot(page, db_url, "import-dry-run")

            await page.get_by_label("명단 파일 (CSV, XLSX, 4MB까지)").set_input_files(str(sheet))
            await page.get_by_role("button", name="등록", exact=True).click()
            await page.wait_for_load_state()
            summary = await page.locator("#summary").inner_text()
            assert "새로 등록 497명, 고침 0명, 등록하지 않은 줄 3개" in summary
            assert await page.locator("#problems tbody tr").count() == 3
            assert await count(sessions) == 497

            # A sheet without the columns is a Korean message on the page, not a 500.
            bad = tmp_path / "주소록.csv"
            bad.write_text("주소,메모\n서울,x\n", encoding="utf-8")
            await page.get_by_label("명단 파일 (CSV, XLSX, 4MB까지)").set_input_files(str(bad))
            await page.get_by_role("button", name="미리 확인").click()
            await page.wait_for_load_state()
            alert = await page.get_by_role("alert").inner_text()
            assert alert.startswith("첫 줄에 이름, 전화번호, 관리번호 열이 없습니다")
