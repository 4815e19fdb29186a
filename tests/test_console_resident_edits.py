"""A resident's holds and devices changed from their console page, over real HTTP on SQLite and
PostgreSQL: add and end a hospital hold and a call hold, register and retire a device; every
form needs the CSRF token and an account that may act; bad input is a Korean 422 with nothing
stored; another district's resident is "not found"; every change is in the access log; the
dispatcher's rules see the hold (a browser adds one: tests/test_console_enrol_one.py)."""

from __future__ import annotations

import datetime as dt
import html

import httpx
from sqlalchemy import select

from anbu.db.models_scheduling import CallHold
from anbu.db.models_signals import Device, MonitoringHold
from anbu.domain.audit import AuditAction, AuditResource
from anbu.domain.calling_hours import CallingWindow
from anbu.domain.console import ConsoleRole
from anbu.domain.escalation import SEOUL
from anbu.domain.retry import RetryPolicy
from anbu.services.rules import load_rules
from tests.api_support import Api, api_over, new_resident
from tests.console_support import audit_trail, csrf_of, log_in, make_account


async def _post(
    client: httpx.AsyncClient, resident_id: str, path: str, **data: str
) -> httpx.Response:
    page = await client.get(f"/console/residents/{resident_id}")
    assert page.status_code == 200, page.text
    return await client.post(
        f"/console/residents/{resident_id}{path}", data={"csrf": csrf_of(page.text), **data}
    )


async def _on_hold(api: Api, resident_id: str) -> bool:
    async with api.container.sessions() as s:
        rules = await load_rules(
            s,
            [(resident_id, "01011112222")],
            api.clock.now(),
            default_policy=RetryPolicy(),
            default_window=CallingWindow(),
        )
    return any(h.covers(api.clock.now()) for h in rules[resident_id].window.holds)


async def test_given_official_when_editing_holds_and_devices_then_stored_audited_in_scope(
    db_url: str,
) -> None:
    async with api_over(db_url) as api:
        sessions = api.container.sessions
        now = api.clock.now()
        today = now.astimezone(SEOUL).date()
        mine = await new_resident(api, "gwanak", "010-1111-2222", "11620")
        theirs = await new_resident(api, "gangnam", "010-3333-4444", "11680")
        await make_account(sessions, now, "kim")
        await log_in(api.client, "kim")
        client = api.client

        page = html.unescape((await client.get(f"/console/residents/{mine}")).text)
        assert 'action="/console/residents/' + mine + '/holds"' in page
        assert 'action="/console/residents/' + mine + '/devices"' in page

        # Bad forms: a Korean 422 and nothing stored.
        week = (today + dt.timedelta(days=6)).isoformat()
        for data, message in [
            ({"kind": "spa", "ends": week}, "보류 종류를 고르세요."),
            ({"kind": "hospital"}, "입원·여행 보류는 끝나는 날을 정해야 합니다"),
            ({"kind": "hospital", "ends": "12월 31일"}, "끝나는 날은 2026-12-05처럼 쓰세요."),
            (
                {"kind": "travel", "starts": week, "ends": today.isoformat()},
                "끝나는 날은 시작일과 같거나 늦어야 합니다.",
            ),
            (
                {
                    "kind": "call",
                    "starts": (today - dt.timedelta(days=3)).isoformat(),
                    "ends": (today - dt.timedelta(days=2)).isoformat(),
                },
                "이미 지난 기간입니다.",
            ),
            (
                {"kind": "hospital", "ends": (today + dt.timedelta(days=200)).isoformat()},
                "보류는 180일까지 정할 수 있습니다.",
            ),
        ]:
            r = await _post(client, mine, "/holds", **data)
            assert r.status_code == 422, data
            assert message in html.unescape(r.text), data
        r = await client.post(f"/console/residents/{mine}/holds", data={"kind": "call"})
        assert r.status_code == 403  # no CSRF token
        async with sessions() as s:
            assert (await s.scalars(select(MonitoringHold))).all() == []
            assert (await s.scalars(select(CallHold))).all() == []
        assert not await _on_hold(api, mine)

        # A hospital stay from today to the end of next week: shown, and calls stop.
        r = await _post(client, mine, "/holds", kind="hospital", ends=week, note="보라매병원")
        assert r.status_code == 303
        page = html.unescape((await client.get(r.headers["location"])).text)
        assert "보류를 추가했습니다." in page
        assert "입원 ·" in page
        assert "(지금 보류 중)" in page
        assert "보라매병원" in page
        assert await _on_hold(api, mine)
        # A call hold until lifted.
        r = await _post(client, mine, "/holds", kind="call")
        assert r.status_code == 303
        async with sessions() as s:
            hold = (await s.scalars(select(MonitoringHold))).one()
            call_hold = (await s.scalars(select(CallHold))).one()
        assert (call_hold.ends_at, call_hold.resident_id) == (None, mine)
        assert hold.ends_at.astimezone(SEOUL).date() == today + dt.timedelta(days=7)

        # Ten minutes later, ending both now (one not yet begun would be removed instead).
        api.clock.advance(dt.timedelta(minutes=10))
        now = api.clock.now()
        for path in (f"/holds/monitoring/{hold.id}/end", f"/holds/call/{call_hold.id}/end"):
            r = await _post(client, mine, path)
            assert r.status_code == 303, path
        r = await _post(client, mine, f"/holds/call/{call_hold.id + 99}/end")
        assert r.status_code == 422
        assert "보류를 찾을 수 없습니다." in html.unescape(r.text)
        assert not await _on_hold(api, mine)
        async with sessions() as s:
            ended = await s.get(MonitoringHold, hold.id)
            ended_call = await s.get(CallHold, call_hold.id)
        assert ended is not None
        assert ended_call is not None
        assert ended.ends_at == now
        assert ended_call.ends_at == now

        # A device: registered, refused twice, retired.
        r = await _post(client, mine, "/devices", device_id="plug-9", device_kind="plug")
        assert r.status_code == 303
        for data, message in [
            ({"device_id": "plug-9", "device_kind": "plug"}, "이미 우리 구의"),
            ({"device_id": "플러그", "device_kind": "plug"}, "기기 번호는 영문"),
            ({"device_id": "app-1", "device_kind": "toaster"}, "기기 종류를 고르세요."),
            ({"device_id": "app-1", "device_kind": "app", "interval_min": "0"}, "보고 간격(분)"),
        ]:
            r = await _post(client, mine, "/devices", **data)
            assert r.status_code == 422, data
            assert message in html.unescape(r.text), data
        r = await _post(client, mine, "/devices/plug-9/retire")
        assert r.status_code == 303
        page = html.unescape((await client.get(r.headers["location"])).text)
        assert "기기를 사용 안 함으로 바꿨습니다." in page
        r = await _post(client, mine, "/devices/plug-9/retire")
        assert r.status_code == 422
        assert "이미 사용하지 않습니다." in html.unescape(r.text)
        async with sessions() as s:
            device = (await s.scalars(select(Device))).one()
        assert (device.device_id, device.active) == ("plug-9", False)

        # Another district's resident: not found, nothing stored.
        own_page = await client.get(f"/console/residents/{mine}")
        r = await client.post(
            f"/console/residents/{theirs}/holds",
            data={"csrf": csrf_of(own_page.text), "kind": "call"},
        )
        assert r.status_code == 404
        async with sessions() as s:
            assert len((await s.scalars(select(CallHold))).all()) == 1

        # Every change in the access log, as an update of the resident.
        async with sessions() as s:
            logged = await audit_trail(s, AuditResource.RESIDENT, AuditAction.UPDATE)
        assert logged == [
            (mine, "hold added: hospital"),
            (mine, "call hold added"),
            (mine, "hold ended"),
            (mine, "call hold ended"),
            (mine, "device added: plug-9"),
            (mine, "device retired: plug-9"),
            (theirs, "refused: not found or another district"),
        ]


async def test_given_analyst_when_posting_a_hold_then_refused(db_url: str) -> None:
    async with api_over(db_url) as api:
        sessions = api.container.sessions
        mine = await new_resident(api, "gwanak", "010-1111-2222", "11620")
        await make_account(sessions, api.clock.now(), "analyst", role=ConsoleRole.ANALYST)
        await log_in(api.client, "analyst")
        page = await api.client.get(f"/console/residents/{mine}")
        assert page.status_code == 200
        assert "보류 추가" not in page.text  # a read-only account gets no form
        r = await api.client.post(
            f"/console/residents/{mine}/holds",
            data={"csrf": csrf_of(page.text), "kind": "call"},
        )
        assert r.status_code == 403
        assert "읽기 전용 계정입니다." in html.unescape(r.text)
        async with sessions() as s:
            assert (await s.scalars(select(CallHold))).all() == []
