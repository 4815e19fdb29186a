"""설정 for a 구 관리자 over real HTTP on SQLite and PostgreSQL, and in a real browser: the
district's officials (add, edit, deactivate) and its escalation chains with duty hours.

What the console stores is what the API reads back (``/v1/escalation-chains``): one
implementation behind both doors. Bad input is a Korean message (422), never a 500; every
form needs the CSRF token; every view and change is in the audit log; an admin of another
district neither sees nor edits any of it; an ordinary official cannot.
"""

from __future__ import annotations

import html

import httpx
from sqlalchemy import select

from anbu.db.models_audit import AuditEntry
from anbu.db.models_escalation import Official
from anbu.domain.audit import AuditAction, AuditResource
from anbu.domain.console import ConsoleRole
from anbu.domain.incidents import OfficialRole
from tests.api_support import Api, h
from tests.console_support import csrf_of, log_in, make_account
from tests.test_console_browser import console_in_browser, save_shot


async def post(client: httpx.AsyncClient, path: str, **data: str) -> tuple[int, str]:
    page = await client.get("/console/settings")
    assert page.status_code == 200
    r = await client.post(path, data={"csrf": csrf_of(page.text), **data})
    return r.status_code, html.unescape(r.text)


async def add_official(api: Api, *, name: str, **fields: str) -> Official:
    """Adds an official through the console's form (signed in as a district admin)."""
    status, text = await post(api.client, "/console/settings/officials", name=name, **fields)
    assert status == 200, text
    async with api.container.sessions() as s:
        official = await s.scalar(select(Official).where(Official.name == name))
    assert official is not None
    return official


def step(n: int, official_id: str, **more: str) -> dict[str, str]:
    """One row of the chain form: on duty Monday-Friday 09:00-18:00 unless told otherwise."""
    row = {
        f"official-{n}": official_id,
        f"start-{n}": "09:00",
        f"end-{n}": "18:00",
        **{f"day-{n}-{d}": "1" for d in range(5)},
    }
    row.update({f"{k}-{n}": v for k, v in more.items()})
    return row


async def test_given_district_admin_when_editing_officials_and_chain_then_stored_in_scope(
    api: Api,
) -> None:
    sessions = api.container.sessions
    now = api.clock.now()
    # Gangnam's official, made through the API: Gwanak's admin must never see them.
    r = await api.client.post(
        "/v1/officials",
        headers=h(api.keys["gangnam"]),
        json={"district_code": "11680", "name": "남강남", "phone": "010-5555-0001"},
    )
    assert r.status_code == 201, r.text
    gangnam_official = r.json()["id"]
    await make_account(sessions, now, "boss", role=ConsoleRole.DISTRICT_ADMIN, name="관리자")
    await make_account(sessions, now, "kim")
    await log_in(api.client, "boss")

    page = html.unescape((await api.client.get("/console/settings")).text)
    assert "<title>설정 · 안부 관제</title>" in page  # the sections are in the page, once
    assert page.count('id="officials"') == 1
    assert "등록된 담당자가 없습니다." in page
    assert "남강남" not in page

    # Add: every bad field is a Korean 422 and nothing is stored.
    good = {"name": "박동주", "phone": "010-4444-1234", "dong": "신림동", "role": "dong"}
    for bad, message in [
        ({"name": " "}, "이름을 쓰세요."),
        ({"phone": "02-123-4567"}, "휴대전화 번호가 올바르지 않습니다"),
        ({"phone": "010-12"}, "휴대전화 번호가 올바르지 않습니다"),
        ({"role": "boss"}, "역할을 고르세요."),
        ({"dong": "동" * 51}, "행정동 이름은 50자 이하여야 합니다."),
    ]:
        status, text = await post(api.client, "/console/settings/officials", **good | bad)
        assert status == 422, bad
        assert message in text, bad
    r = await api.client.post("/console/settings/officials", data={"csrf": "x", **good})
    assert r.status_code == 403
    assert "보안 토큰이 맞지 않습니다" in r.text
    async with sessions() as s:
        assert (await s.scalars(select(Official).where(Official.name == "박동주"))).all() == []

    status, text = await post(api.client, "/console/settings/officials", **good, active="1")
    assert status == 200, text
    assert "박동주님을 추가했습니다." in text
    assert "*******1234" in text
    assert "01044441234" not in text
    centre = await add_official(api, name="최당직", phone="01099990000", role="centre", active="1")
    async with sessions() as s:
        park = await s.scalar(select(Official).where(Official.name == "박동주"))
        assert park is not None
        assert (park.phone, park.dong, park.role, park.active) == (
            "01044441234",
            "신림동",
            OfficialRole.DONG,
            True,
        )
        assert park.district.code == "11620"
        park_id, centre_id = park.id, centre.id

    # Edit: another district's official is "not found", never changed.
    status, text = await post(api.client, f"/console/settings/officials/{gangnam_official}", **good)
    assert status == 422
    assert "담당자를 찾을 수 없습니다." in text
    status, text = await post(
        api.client,
        f"/console/settings/officials/{park_id}",
        name="박동주",
        phone="010 4444 9999",
        dong="서원동",
        role="gu",
        active="1",
    )
    assert status == 200, text
    assert "박동주님의 정보를 저장했습니다." in text

    # A chain for 신림동: 박동주 on weekdays 09-18 (10 minutes), then the centre all week,
    # nights (18:00-09:00, past midnight), holidays too.
    chain = {
        "dong": "신림동",
        **step(1, park_id, timeout="10"),
        **step(2, centre_id, start="18:00", end="09:00", holidays="1"),
        **{f"day-2-{d}": "1" for d in range(7)},
    }
    for bad, message in [
        ({"official-1": "", "official-2": ""}, "단계를 하나 이상 정하세요"),
        ({"official-2": park_id}, "박동주님이 두 단계에 있습니다."),
        ({"official-2": gangnam_official}, "담당자를 찾을 수 없습니다."),
        ({"timeout-1": "열"}, "1단계의 확인 대기 시간(분)은 숫자로 쓰세요."),
        ({"timeout-1": "0"}, "1단계의 확인 대기 시간(분)은 1에서 10080 사이여야 합니다."),
        ({"start-2": "25:00"}, "2단계의 근무 시작 시각은 09:00처럼 시:분으로 쓰세요."),
        ({f"day-1-{d}": "" for d in range(5)}, "1단계의 근무 요일을 하나 이상 고르세요."),
    ]:
        status, text = await post(api.client, "/console/settings/chain", **chain | bad)
        assert status == 422, bad
        assert message in text, bad
    status, text = await post(api.client, "/console/settings/chain", **chain)
    assert status == 200, text
    assert "신림동 알림 순서를 저장했습니다." in text

    # The API reads back exactly what the console stored.
    r = await api.client.get("/v1/escalation-chains", headers=h(api.keys["gwanak"]))
    assert r.status_code == 200
    [stored] = r.json()
    assert stored["dong"] == "신림동"
    assert [(s["official_id"], s["ack_timeout_s"], s["duty"]) for s in stored["steps"]] == [
        (
            park_id,
            600,
            {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "18:00", "on_holidays": False},
        ),
        (
            centre_id,
            api.container.settings.escalation.default_ack_timeout_s,
            {"days": list(range(7)), "start": "18:00", "end": "09:00", "on_holidays": True},
        ),
    ]
    page = html.unescape((await api.client.get("/console/settings")).text)
    assert "박동주 · 확인 대기 10분 · 월화수목금 09:00-18:00 · 공휴일 제외" in page
    editor = html.unescape(
        (await api.client.get("/console/settings/chain", params={"dong": "신림동"})).text
    )
    assert f'<option value="{park_id}" selected>' in editor

    # Deactivated, an official can no longer be put in a chain.
    status, text = await post(
        api.client,
        f"/console/settings/officials/{park_id}",
        name="박동주",
        phone="01044449999",
        dong="서원동",
        role="gu",
    )
    assert status == 200
    assert "비활성" in text
    status, text = await post(api.client, "/console/settings/chain", **chain)
    assert status == 422
    assert "1단계의 박동주님은 비활성 담당자입니다." in text

    async with sessions() as s:
        park = await s.get(Official, park_id)
        assert park is not None
        assert (park.phone, park.dong, park.role, park.active) == (
            "01044449999",
            "서원동",
            OfficialRole.GU,
            False,
        )
        entries = (await s.scalars(select(AuditEntry))).all()
        done = {(e.resource_type, e.resource_id, e.action) for e in entries}
        assert (AuditResource.OFFICIAL, park_id, AuditAction.CREATE) in done
        assert (AuditResource.OFFICIAL, park_id, AuditAction.UPDATE) in done
        assert (AuditResource.OFFICIAL, park_id, AuditAction.READ) in done
        assert (AuditResource.ESCALATION_CHAIN, stored["id"], AuditAction.UPDATE) in done
        assert not any(e.resource_id == gangnam_official for e in entries)

    # An ordinary official: none of it.
    other = httpx.AsyncClient(transport=api.client._transport, base_url="http://anbu")
    async with other:
        await log_in(other, "kim")
        page = html.unescape((await other.get("/console/settings")).text)
        assert "박동주" not in page
        assert "담당자 추가" not in page
        status, text = await post(other, "/console/settings/officials", **good)
        assert status == 403
        assert "구 관리자만" in text
        assert (await other.get("/console/settings/chain")).status_code == 403


async def test_given_admins_of_two_districts_when_browsing_settings_then_each_sees_own(
    api: Api,
) -> None:
    sessions = api.container.sessions
    now = api.clock.now()
    await make_account(sessions, now, "boss", role=ConsoleRole.DISTRICT_ADMIN)
    await make_account(
        sessions, now, "gangnam-boss", role=ConsoleRole.DISTRICT_ADMIN, district="11680"
    )
    await log_in(api.client, "boss")
    official_id = (await add_official(api, name="한관악", phone="01011112222", role="dong")).id
    status, text = await post(
        api.client, "/console/settings/chain", dong="", **step(1, official_id)
    )
    assert status == 200, text
    assert "구 기본 알림 순서를 저장했습니다." in text

    other = httpx.AsyncClient(transport=api.client._transport, base_url="http://anbu")
    async with other:
        await log_in(other, "gangnam-boss")
        page = html.unescape((await other.get("/console/settings")).text)
        assert "한관악" not in page
        assert "정한 알림 순서가 없습니다." in page
        editor = html.unescape((await other.get("/console/settings/chain")).text)
        assert "한관악" not in editor
        status, text = await post(
            other, f"/console/settings/officials/{official_id}", name="x", phone="01000000000"
        )
        assert status == 422
        assert "담당자를 찾을 수 없습니다." in text
        status, text = await post(other, "/console/settings/chain", **step(1, official_id))
        assert status == 422
        assert "담당자를 찾을 수 없습니다." in text
    r = await api.client.get("/v1/escalation-chains", headers=h(api.keys["gangnam"]))
    assert r.json() == []


async def test_given_admin_in_browser_when_adding_official_as_step_one_then_page_shows_it(
    api: Api,
    db_url: str,
) -> None:
    sessions = api.container.sessions
    await make_account(sessions, api.clock.now(), "boss", role=ConsoleRole.DISTRICT_ADMIN)
    async with console_in_browser(api.container, "boss") as (_base, _browser, page):
        await page.get_by_role("link", name="설정").click()
        await page.wait_for_load_state()
        await page.get_by_label("이름", exact=True).fill("박동주")
        await page.get_by_label("휴대전화 번호", exact=True).fill("010-4444-1234")
        await page.get_by_label("행정동 (비우면 구 전체)", exact=True).fill("신림동")
        await page.get_by_role("button", name="담당자 추가").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("status").inner_text() == "박동주님을 추가했습니다."
        row = page.locator("tr.official")
        assert await row.count() == 1
        assert "*******1234" in await row.inner_text()

        await page.get_by_label("알림 순서를 정할 행정동 (비우면 구 기본)").fill("신림동")
        await page.get_by_role("button", name="알림 순서 정하기").click()
        await page.wait_for_load_state()
        await page.locator("#official-1").select_option(label="박동주 (신림동)")
        await page.locator("#timeout-1").fill("15")
        await page.get_by_role("button", name="알림 순서 저장").click()
        await page.wait_for_load_state()
        assert await page.get_by_role("status").inner_text() == ("신림동 알림 순서를 저장했습니다.")
        await save_shot(page, db_url, "settings-chain")
        await page.get_by_role("link", name="설정으로 돌아가기").click()
        await page.wait_for_load_state()
        chain = page.locator('section.chain[data-dong="신림동"] li')
        assert await chain.count() == 1
        assert (await chain.first.inner_text()).startswith("박동주 · 확인 대기 15분")
        await save_shot(page, db_url, "settings-officials")
