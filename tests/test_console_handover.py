"""Hand-over and the live queue's version over real HTTP on SQLite and PostgreSQL: an
official passes an open incident to a colleague (in the timeline, on 오늘, audited, the chain
unchanged); bad hand-overs are Korean messages (422), never a 500; the queue's version moves
when an incident opens, is handed over or acknowledged, and not otherwise."""

from __future__ import annotations

import html

from sqlalchemy import select

from anbu.console import pages
from anbu.db.models_console import ConsoleAccount
from anbu.db.models_escalation import IncidentEvent
from anbu.domain.console import ConsoleRole, handover_detail, handover_taker
from anbu.domain.incidents import IncidentEventKind
from tests.api_support import Api
from tests.console_support import (
    csrf_of,
    log_in,
    make_account,
    recent_incident,
    seed_incident,
    sign_in,
)


def test_given_handover_detail_when_read_back_then_taker_named() -> None:
    assert handover_taker(handover_detail("김주무관", "이주무관", "야간 → 주간 · 인계")) == (
        "이주무관"
    )
    assert handover_taker(handover_detail("김", "박")) == "박"


async def test_given_open_incident_when_handed_over_then_timeline_today_and_audit(
    api: Api,
) -> None:
    sessions = api.container.sessions
    seeded = await recent_incident(api)
    now = api.clock.now()
    await make_account(sessions, now, "kim", name="김주무관")
    await make_account(sessions, now, "lee", name="이주무관")
    await make_account(sessions, now, "gangnam", district="11680", name="강남 주무관")
    await make_account(sessions, now, "ana", role=ConsoleRole.ANALYST, name="분석가")
    async with sessions() as s:
        ids = {a.login: a.id for a in (await s.execute(select(ConsoleAccount))).scalars()}
        kim = await s.scalar(select(ConsoleAccount).where(ConsoleAccount.login == "kim"))
        assert kim is not None
        before = await pages.queue_version(s, pages.Scope.of(kim))
    await log_in(api.client, "kim")
    url = f"/console/incidents/{seeded.incident_id}"
    page = await api.client.get(url)
    assert '<option value="' + ids["lee"] + '">이주무관</option>' in page.text
    assert ids["gangnam"] not in page.text  # another district's: not a colleague
    assert ids["ana"] not in page.text  # analysts are read-only
    token = csrf_of(page.text)

    for to, message in [
        ("", "넘겨받을 동료를 고르세요."),
        (ids["gangnam"], "넘겨받을 동료를 고르세요."),
        (ids["kim"], "넘겨받을 동료를 고르세요."),
        ("no-such-account", "넘겨받을 동료를 고르세요."),
    ]:
        r = await api.client.post(f"{url}/handover", data={"csrf": token, "to": to, "note": "x"})
        assert r.status_code == 422, to
        assert message in html.unescape(r.text)
    r = await api.client.post(
        f"{url}/handover", data={"csrf": token, "to": ids["lee"], "note": "x" * 501}
    )
    assert r.status_code == 422
    assert "메모는 500자까지" in r.text
    r = await api.client.post(
        f"{url}/handover", data={"csrf": "forged", "to": ids["lee"], "note": ""}
    )
    assert r.status_code == 403
    assert "보안 토큰이 맞지 않습니다" in r.text

    r = await api.client.post(
        f"{url}/handover", data={"csrf": token, "to": ids["lee"], "note": "오후 방문 인계"}
    )
    assert r.status_code == 303
    after = html.unescape((await api.client.get(url)).text)
    assert "담당 넘김</span> 김주무관 → 이주무관 · 오후 방문 인계" in after
    assert '담당: <b id="holder">이주무관</b>' in after
    today = html.unescape((await api.client.get("/console")).text)
    assert "담당: 이주무관" in today
    async with sessions() as s:
        [event] = (
            await s.execute(
                select(IncidentEvent).where(IncidentEvent.kind == IncidentEventKind.HANDED_OVER)
            )
        ).scalars()
        assert event.incident_id == seeded.incident_id
        handed = await pages.queue_version(s, pages.Scope.of(kim))
        assert handed != before
        assert await pages.queue_version(s, pages.Scope.of(kim)) == handed  # stable

    # Acknowledged: the queue moves again, and it can no longer be handed over.
    ack = await api.client.post(f"{url}/ack", data={"csrf": token, "finding": "safe", "note": ""})
    assert ack.status_code == 303
    async with sessions() as s:
        acked = await pages.queue_version(s, pages.Scope.of(kim))
        assert acked != handed
    r = await api.client.post(f"{url}/handover", data={"csrf": token, "to": ids["lee"]})
    assert r.status_code == 422
    assert "이미 확인된 사건은 넘길 수 없습니다." in r.text

    # Another incident opens in the district: the version moves; a Gangnam scope's not.
    async with sessions() as s:
        gangnam = await s.scalar(select(ConsoleAccount).where(ConsoleAccount.login == "gangnam"))
        assert gangnam is not None
        other_before = await pages.queue_version(s, pages.Scope.of(gangnam))
    await seed_incident(
        sessions, api.clock.now(), name="박새벽", dong="봉천동", phone="01055556666"
    )
    async with sessions() as s:
        assert await pages.queue_version(s, pages.Scope.of(kim)) != acked
        assert await pages.queue_version(s, pages.Scope.of(gangnam)) == other_before


async def test_given_no_session_when_events_then_401(api: Api) -> None:
    r = await api.client.get("/console/events")
    assert r.status_code == 401
    assert "로그인이 필요합니다" in r.text


async def test_given_odd_inputs_when_pages_asked_then_korean_pages_never_500(api: Api) -> None:
    await recent_incident(api)
    await sign_in(api, "boss", role=ConsoleRole.DISTRICT_ADMIN)
    for path in [
        "/console/residents?page=abc",
        "/console/residents?page=-5&level=nonsense&q=" + "가" * 300,
        "/console/residents?page=99999999999999999999",
        "/console/incidents/" + "x" * 300,
        "/console/residents/%EA%B0%80",
        "/console/report?from=어제&to=",
        "/console/report/export?format=pdf&from=2026-01-01&to=2025-01-01",
    ]:
        r = await api.client.get(path)
        assert r.status_code < 500, path
        assert r.headers["content-type"].startswith("text/html"), (path, r.text[:200])
        assert 'lang="ko"' in r.text, path
