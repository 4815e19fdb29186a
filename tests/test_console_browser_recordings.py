"""The 녹음 page in a real browser (Playwright driving Debian's chromium), no script on the
page: an official picks their greeting's WAV, the page shows its length and loudness and
that their residents now hear it; a clipped file is a Korean refusal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from anbu.settings import Settings
from tests.api_support import api_over
from tests.console_support import make_account, new_official
from tests.fixtures_speech import GREETING, speak
from tests.test_console_browser import console_in_browser, save_shot

LABEL = "녹음 파일 (WAV, FLAC 등)"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A spoken greeting and the same one clipped (sox clips it at +18 dB)."""
    voice, clipped = tmp_path / "인사.wav", tmp_path / "찌그러진.wav"
    speak(GREETING, voice)
    subprocess.run(["sox", "-q", str(voice), str(clipped), "gain", "18"], check=True)
    return voice, clipped


async def test_given_official_in_browser_when_greeting_uploaded_then_sources_show_it(
    db_url: str, tmp_path: Path, files: tuple[Path, Path]
) -> None:
    voice, clipped = files
    settings = Settings(database_url=db_url, var_dir=tmp_path / "var")
    async with api_over(db_url, settings) as api:
        official = await new_official(api.container.sessions)
        await make_account(
            api.container.sessions, api.clock.now(), "kim", name="김복지", official_id=official
        )
        async with console_in_browser(api.container, "kim") as (_base, _browser, page):
            await page.get_by_role("link", name="녹음").click()
            await page.wait_for_load_state()
            greeting = page.locator('#sources tr[data-prompt="greeting"] td').nth(1)
            assert await greeting.inner_text() == "합성 음성(TTS)"

            await page.get_by_label(LABEL).set_input_files(str(clipped))
            await page.get_by_role("button", name="올리기").click()
            await page.wait_for_load_state()
            alert = await page.get_by_role("alert").inner_text()
            assert "찌그러졌습니다" in alert
            assert "(이유: clipped)" in alert
            assert await greeting.inner_text() == "합성 음성(TTS)"

            await page.get_by_label(LABEL).set_input_files(str(voice))
            await page.get_by_role("button", name="올리기").click()
            await page.wait_for_load_state()
            assert "길이" in await page.locator("#measured").inner_text()
            assert await greeting.inner_text() == "내 녹음"
            await save_shot(page, db_url, "recordings")
