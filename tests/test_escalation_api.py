"""The escalation API over a real database: officials and chains with district scoping, the
incident log, the acknowledgement link with findings, and Kannel's callback routes."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from anbu.app.parts import build_container
from anbu.container import Container
from anbu.domain.calls import CallResult
from anbu.settings import EscalationSettings, Settings
from escalation.api import DLR_ROUTE
from escalation.service import EscalationConfig, EscalationService
from tests.api_support import api_client
from tests.test_escalation_service import (
    OUR_NUMBER,
    T0,
    FakeClock,
    close_case,
    incident_of,
    link_token,
    messages,
)


@dataclass
class Api:
    client: httpx.AsyncClient
    container: Container
    keys: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[who]}


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    settings = Settings(
        database_url=db_url,
        public_url="http://anbu.test",
        escalation=EscalationSettings(callback_token=SecretStr("cb-secret")),
    )
    container = build_container(settings, clock=FakeClock(T0))
    async with api_client(container) as (client, keys):
        yield Api(client, container, keys)


async def _official(api: Api, who: str, district: str, name: str, phone: str) -> str:
    r = await api.client.post(
        "/v1/officials",
        headers=api.h(who),
        json={"district_code": district, "dong": "신림동", "name": name, "phone": phone},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["phone_masked"].endswith(phone[-4:])
    assert "phone" not in body
    return str(body["id"])


async def _setup_chain(api: Api) -> tuple[str, list[str]]:
    ids = [
        await _official(api, "gwanak", "11620", "주무관 가", "010-5555-0001"),
        await _official(api, "gwanak", "11620", "주무관 나", "010-5555-0002"),
    ]
    centre = await api.client.post(
        "/v1/officials",
        headers=api.h("admin"),
        json={
            "district_code": "11620",
            "name": "야간 당직",
            "phone": "01055550003",
            "role": "centre",
        },
    )
    ids.append(centre.json()["id"])
    r = await api.client.put(
        "/v1/escalation-chains",
        headers=api.h("gwanak"),
        json={
            "district_code": "11620",
            "dong": "신림동",
            "steps": [
                {
                    "official_id": ids[0],
                    "ack_timeout_s": 600,
                    "duty": {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "18:00"},
                },
                {"official_id": ids[1]},
                {"official_id": ids[2], "duty": {"start": "00:00", "end": "24:00"}},
            ],
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"]), ids


async def test_given_district_keys_when_managing_officials_and_chains_then_scoped(
    api: Api,
) -> None:
    chain_id, ids = await _setup_chain(api)
    r = await api.client.get("/v1/escalation-chains", headers=api.h("gwanak"))
    [chain] = r.json()
    assert chain["id"] == chain_id
    assert [s["position"] for s in chain["steps"]] == [1, 2, 3]
    assert chain["steps"][0]["duty"] == {
        "days": [0, 1, 2, 3, 4],
        "start": "09:00",
        "end": "18:00",
        "on_holidays": True,
    }
    assert chain["steps"][1]["ack_timeout_s"] == 600  # the default
    assert chain["steps"][2]["role"] == "centre"

    # Another district's key sees nothing and cannot use these officials.
    assert (await api.client.get("/v1/escalation-chains", headers=api.h("gangnam"))).json() == []
    assert (await api.client.get("/v1/officials", headers=api.h("gangnam"))).json() == []
    r = await api.client.put(
        "/v1/escalation-chains",
        headers=api.h("gangnam"),
        json={"district_code": "11680", "steps": [{"official_id": ids[0]}]},
    )
    assert r.status_code == 422
    assert "not an official of district 11680" in r.json()["detail"]
    r = await api.client.patch(
        f"/v1/officials/{ids[0]}", headers=api.h("gangnam"), json={"active": False}
    )
    assert r.status_code == 404

    # Replacing the chain keeps one chain per (district, dong).
    r = await api.client.put(
        "/v1/escalation-chains",
        headers=api.h("gwanak"),
        json={"district_code": "11620", "dong": "신림동", "steps": [{"official_id": ids[1]}]},
    )
    assert r.status_code == 200
    assert r.json()["id"] == chain_id
    assert [s["official_id"] for s in r.json()["steps"]] == [ids[1]]
    r = await api.client.delete(f"/v1/escalation-chains/{chain_id}", headers=api.h("gwanak"))
    assert r.status_code == 204
    assert (await api.client.get("/v1/escalation-chains", headers=api.h("admin"))).json() == []


@pytest.mark.parametrize(
    "duty",
    [{"days": [7]}, {"start": "25:00"}, {"end": "24:30"}, {"days": []}],
)
async def test_given_bad_duty_hours_when_putting_chain_then_422(
    api: Api, duty: dict[str, object]
) -> None:
    official = await _official(api, "gwanak", "11620", "주무관", "01055550009")
    r = await api.client.put(
        "/v1/escalation-chains",
        headers=api.h("gwanak"),
        json={"district_code": "11620", "steps": [{"official_id": official, "duty": duty}]},
    )
    assert r.status_code == 422, r.text


async def _incident(api: Api) -> tuple[str, str]:
    await _setup_chain(api)
    r = await api.client.post(
        "/v1/residents",
        headers=api.h("gwanak"),
        json={"district_code": "11620", "name": "김안부", "phone": "01012345678", "dong": "신림동"},
    )
    resident_id = r.json()["id"]
    sessions = api.container.sessions
    event = await close_case(sessions, resident_id, [CallResult.NO_ANSWER], T0)
    service = EscalationService(
        sessions,
        EscalationConfig.from_settings(api.container.settings),
        clock=FakeClock(event.at),
    )
    await service.on_checkin_closed(event)
    assert isinstance(api.container.clock, FakeClock)
    api.container.clock.t = event.at + dt.timedelta(seconds=1)
    incident = await incident_of(sessions, event.checkin_id)
    return resident_id, await link_token(sessions, incident.id)


async def test_given_ack_link_when_opened_and_submitted_then_finding_reaches_resident(
    api: Api,
) -> None:
    resident_id, token = await _incident(api)
    page = await api.client.get(f"/ack/{token}")
    assert page.status_code == 200
    assert "김○○ (신림동)" in page.text
    assert "김안부" not in page.text
    assert "01012345678" not in page.text
    assert 'value="hospitalised"' in page.text

    r = await api.client.post(
        f"/ack/{token}",
        content=f"finding=visited&note={quote('방문함, 건강함')}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    assert "확인되었습니다" in r.text
    clock = api.container.clock
    assert isinstance(clock, FakeClock)
    clock.advance(60)
    r = await api.client.post(f"/ack/{token}", json={"finding": "nope"})
    assert r.status_code == 422
    r = await api.client.post(
        f"/ack/{token}", json={"finding": "false_alarm", "note": "여행 중", "amend": True}
    )
    assert r.status_code == 200
    assert r.json()["status"] == "acknowledged"
    assert r.json()["finding"] == "false_alarm"

    r = await api.client.get(f"/v1/residents/{resident_id}/findings", headers=api.h("gwanak"))
    body = r.json()
    assert body["last_finding"]["finding"] == "false_alarm"
    assert [i["finding"] for i in body["items"]] == ["false_alarm", "visited"]
    assert body["items"][1]["note"] == "방문함, 건강함"
    r = await api.client.get(f"/v1/residents/{resident_id}/findings", headers=api.h("gangnam"))
    assert r.status_code == 404
    assert (await api.client.get("/ack/not-a-token")).status_code == 404

    [incident] = (await api.client.get("/v1/incidents", headers=api.h("gwanak"))).json()
    detail = (
        await api.client.get(f"/v1/incidents/{incident['id']}", headers=api.h("gwanak"))
    ).json()
    assert [e["kind"] for e in detail["events"]] == [
        "opened",
        "queued",
        "acknowledged",
        "finding",
        "finding",
        "amended",
    ]
    # The timeline's lines are Korean (officials read them in the console).
    assert [e["detail"] for e in detail["events"]][2:] == [
        "확인 링크 · 대기 중이던 문자 1건 발송 취소",
        "방문 확인: 방문함, 건강함",
        "오경보: 여행 중",
        "방문 확인 → 오경보",
    ]
    assert detail["events"][0]["detail"].startswith("전화 안받음 (일반) · 안부 확인 종료 ")
    assert detail["events"][1]["detail"].startswith("1단계 (동 주민센터) ")
    assert detail["messages"][0]["to_masked"] == "*******0001"
    assert (await api.client.get("/v1/incidents", headers=api.h("gangnam"))).json() == []


async def test_given_kannel_callbacks_when_key_and_query_valid_then_stored(api: Api) -> None:
    await _incident(api)
    [msg] = await messages(api.container.sessions)
    dlr = (
        f"/v1/sms/kannel/dlr?key=cb-secret&ref={msg.reference}"
        "&status=1&ts=1795610054&smsc=fake&fid=&answer="
    )
    assert (await api.client.get(dlr.replace("cb-secret", "wrong"))).status_code == 404
    r = await api.client.get(dlr)
    assert r.status_code == 200
    [msg] = await messages(api.container.sessions)
    assert msg.delivery == "delivered"
    # Unknown references are answered 2xx too (Kannel would retry forever).
    r = await api.client.get(dlr.replace(msg.reference, "unknown-ref"))
    assert r.status_code == 200
    assert (await api.client.get("/v1/sms/kannel/dlr?key=cb-secret&status=1")).status_code == 422

    code = msg.text.split("회신 ")[1][:6]
    text = "".join(f"%{b:02X}" for b in f"{code} 확인".encode("utf-16-be"))
    inbound = (
        f"/v1/sms/kannel/inbound?key=cb-secret&from=01055550001&to={OUR_NUMBER}&text={text}"
        "&coding=2&charset=UTF-16BE&ts=1795610054&id=abc-1&smsc=inject"
    )
    r = await api.client.get(inbound)
    assert r.status_code == 200
    assert r.headers["X-Anbu-Reply"] == "acknowledged"
    r = await api.client.post(inbound)
    assert r.headers["X-Anbu-Reply"] == "duplicate"


async def test_given_report_route_matched_first_when_misused_then_4xx_through_the_middlewares(
    api: Api,
) -> None:
    """The delivery-report route is matched ahead of every router (the alert burst): the
    app's middlewares and error handlers still answer for it, never with a 500."""
    assert isinstance(api.client._transport, httpx.ASGITransport)
    app = api.client._transport.app
    assert app.router.routes[0] is DLR_ROUTE  # type: ignore[attr-defined]
    dlr = "/v1/sms/kannel/dlr?key=cb-secret"
    bad = await api.client.get(f"{dlr}&ref=inc1.1&status=99")
    assert bad.status_code == 422
    assert bad.headers["X-Content-Type-Options"] == "nosniff"  # SecurityHeaders ran
    assert (await api.client.get(f"{dlr}&ref=has%20space&status=1")).status_code == 422
    assert (await api.client.get(f"{dlr}&ref=inc1.1&status=1&ts=soon")).status_code == 422
    assert (await api.client.put(f"{dlr}&ref=inc1.1&status=1")).status_code == 405
    assert (await api.client.get("/v1/sms/kannel/dlr?ref=inc1.1&status=1")).status_code == 404
    # smsbox's post-url form: the same parameters in the body.
    form = await api.client.post(
        "/v1/sms/kannel/dlr",
        content=b"key=cb-secret&ref=unknown-ref&status=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 200
