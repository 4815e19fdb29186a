"""설정 and the rest of 오늘 over real HTTP on SQLite and PostgreSQL, and in a real browser:
an official changes their password (other sessions end) and their SMS number; a district
admin changes a programme's calling hours and retries (their district's version of it); bad
input is a Korean message (422), never a 500; 오늘 shows the open device tasks of the
official's district only and the last daily self-test."""

from __future__ import annotations

import datetime as dt
import html

import httpx
from sqlalchemy import select

from anbu.db.models import District, Resident
from anbu.db.models_escalation import Official
from anbu.db.models_scheduling import Program, SelfTestRun
from anbu.db.models_signals import Device, DeviceTask
from anbu.domain.console import ConsoleRole
from anbu.domain.risk import DeviceIssueKind, DeviceKind
from tests.api_support import Api
from tests.console_support import (
    PASSWORD,
    csrf_of,
    log_in,
    make_account,
    recent_incident,
    sign_in,
)
from tests.test_console_browser import console_in_browser, save_shot

NEW_PASSWORD = "새-비밀번호-2026-12"


async def post(client: httpx.AsyncClient, path: str, **data: str) -> tuple[int, str]:
    page = await client.get("/console/settings")
    assert page.status_code == 200
    r = await client.post(path, data={"csrf": csrf_of(page.text), **data})
    return r.status_code, html.unescape(r.text)


async def test_given_official_when_changing_password_and_phone_then_stored_or_korean_error(
    api: Api,
) -> None:
    sessions = api.container.sessions
    seeded = await recent_incident(api)
    primary = seeded.world.officials["primary"]
    await sign_in(api, "kim", official_id=primary.id)
    other = httpx.AsyncClient(transport=api.client._transport, base_url="http://anbu")
    async with other:
        await log_in(other, "kim")
        assert (await other.get("/console")).status_code == 200

        for data, message in [
            (
                {"current": "wrong", "new": NEW_PASSWORD, "new2": NEW_PASSWORD},
                "지금 비밀번호가 틀립니다.",
            ),
            (
                {"current": PASSWORD, "new": NEW_PASSWORD, "new2": "다른것-12345"},
                "새 비밀번호 두 개가 다릅니다.",
            ),
            ({"current": PASSWORD, "new": "짧다", "new2": "짧다"}, "10자 이상"),
        ]:
            status, text = await post(api.client, "/console/settings/password", **data)
            assert status == 422, data
            assert message in text, data
        status, text = await post(
            api.client,
            "/console/settings/password",
            current=PASSWORD,
            new=NEW_PASSWORD,
            new2=NEW_PASSWORD,
        )
        assert status == 200
        assert "비밀번호를 바꿨습니다." in text
        # The other session ended; this one goes on; the new password logs in.
        assert (await other.get("/console")).headers.get("location") == "/console/login"
        assert (await api.client.get("/console")).status_code == 200
        assert (await log_in(other, "kim", NEW_PASSWORD)).status_code == 303

    status, text = await post(api.client, "/console/settings/phone", phone="02-123-4567")
    assert status == 422
    assert "문자를 받을 수 있는 휴대전화 번호를 쓰세요." in text
    status, text = await post(api.client, "/console/settings/phone", phone="010-7777-8888")
    assert status == 200
    assert "알림 번호를 바꿨습니다." in text
    async with sessions() as s:
        official = await s.get(Official, primary.id)
        assert official is not None
        assert official.phone == "01077778888"

    # Programmes are the district admin's.
    status, text = await post(api.client, "/console/settings/programs/1", start="08:00")
    assert status == 403
    assert "구 관리자만" in text
    status, text = await post(api.client, "/console/settings/nothing")
    assert status == 404


async def test_given_admin_when_changing_calling_hours_then_stored_or_korean_error(
    api: Api,
) -> None:
    sessions = api.container.sessions
    async with sessions() as s:
        s.add(Program(name="기본 안부", is_default=True))
        await s.commit()
        program = await s.scalar(select(Program))
        assert program is not None
        pid = program.id
    await sign_in(api, "boss", role=ConsoleRole.DISTRICT_ADMIN)
    page = html.unescape((await api.client.get("/console/settings")).text)
    assert "기본 안부 (기본)" in page
    assert 'value="09:00"' in page
    path = f"/console/settings/programs/{pid}"
    good = {"start": "08:30", "end": "20:00", "max_attempts": "2", "interval_min": "15"}
    for bad, message in [
        ({"start": "8시"}, "시작 시각은 09:00처럼 시:분으로 쓰세요."),
        ({"end": "24:30"}, "끝 시각은 24:00을 넘을 수 없습니다."),
        ({"end": "25:00"}, "끝 시각은 09:00처럼 시:분으로 쓰세요."),
        ({"start": "21:00"}, "끝 시각은 시작 시각보다 늦어야 합니다."),
        ({"max_attempts": "9"}, "시도 횟수는 1에서 5 사이여야 합니다."),
        ({"interval_min": "x"}, "재시도 간격(분)은 숫자로 쓰세요."),
    ]:
        status, text = await post(api.client, path, **{**good, **bad})
        assert status == 422, bad
        assert message in text, bad
    status, text = await post(api.client, "/console/settings/programs/999", **good)
    assert status == 422
    assert "프로그램을 찾을 수 없습니다." in text
    status, text = await post(api.client, path, **good)
    assert status == 200
    # A shared programme: the district's own version of it takes the change
    # (tests/test_console_programs.py: other districts keep theirs).
    assert "기본 안부 (관악구)의 전화 규칙을 저장했습니다 (우리 구에만 적용)." in text
    async with sessions() as s:
        stored = await s.scalar(select(Program).where(Program.replaces_id == pid))
        assert stored is not None
        assert (stored.start_min, stored.end_min) == (510, 1200)
        assert (stored.max_attempts, stored.interval_s) == (2, 900)


async def test_given_device_tasks_and_self_test_when_today_then_shown_in_scope(
    api: Api,
    db_url: str,
) -> None:
    sessions = api.container.sessions
    now = api.clock.now()
    async with sessions() as s:
        for code, name, device in (
            ("11620", "한관악", "plug-1"),
            ("11680", "남강남", "plug-2"),
        ):
            district = await s.scalar(select(District).where(District.code == code))
            assert district is not None
            resident = Resident(
                district_id=district.id, name=name, phone="01012345678", dong="신림동"
            )
            s.add(resident)
            await s.flush()
            dev = Device(
                device_id=device,
                district_id=district.id,
                resident_id=resident.id,
                kind=DeviceKind.PLUG,
            )
            s.add(dev)
            await s.flush()
            s.add(
                DeviceTask(
                    device_pk=dev.id,
                    resident_id=resident.id,
                    kind=DeviceIssueKind.STALE,
                    detail=f"{device} 26시간 보고 없음",
                    opened_at=now - dt.timedelta(hours=2),
                )
            )
        s.add(
            SelfTestRun(
                started_at=now - dt.timedelta(hours=1),
                ended_at=now - dt.timedelta(minutes=59),
                ok=False,
                result="no_answer",
                detail="시험 번호가 받지 않음",
            )
        )
        await s.commit()
    await make_account(sessions, now, "kim")
    await log_in(api.client, "kim")
    today = html.unescape((await api.client.get("/console")).text)
    assert "기기 점검 (1)" in today
    assert "plug-1 26시간 보고 없음" in today
    assert "남강남" not in today
    assert "실패: 받지 않음 (구 관리자에게 알리세요)" in today

    async with console_in_browser(api.container, "kim") as (_base, _browser, page):
        assert "실패" in await page.locator("#self-test").inner_text()
        assert await page.locator("#tasks + table tbody tr").count() == 1
        await save_shot(page, db_url, "today-tasks")
        await page.get_by_role("link", name="설정").click()
        await page.wait_for_load_state()
        await page.get_by_label("지금 비밀번호").fill("wrong-password")
        await page.get_by_label("새 비밀번호 (10자 이상)").fill(NEW_PASSWORD)
        await page.get_by_label("새 비밀번호 다시").fill(NEW_PASSWORD)
        await page.get_by_role("button", name="비밀번호 바꾸기").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("alert").inner_text() == "지금 비밀번호가 틀립니다."
        await page.get_by_label("지금 비밀번호").fill(PASSWORD)
        await page.get_by_label("새 비밀번호 (10자 이상)").fill(NEW_PASSWORD)
        await page.get_by_label("새 비밀번호 다시").fill(NEW_PASSWORD)
        await page.get_by_role("button", name="비밀번호 바꾸기").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("status").inner_text() == "비밀번호를 바꿨습니다."
        await save_shot(page, db_url, "settings")
