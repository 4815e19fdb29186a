"""The resident page's details and the resident list's filters over real HTTP on SQLite and
PostgreSQL: devices (online or stale by their report clock), holds (hospital, travel, a call
hold), do-not-call, calling hours (own over programme), routine calls; the list filtered by
dong, open case and device status, in the official's district only."""

from __future__ import annotations

import datetime as dt
import html
import re

from sqlalchemy import select

from anbu.db.models import District, Resident
from anbu.db.models_scheduling import (
    CallHold,
    DoNotCall,
    Program,
    ResidentSchedule,
    RoutineSchedule,
)
from anbu.db.models_signals import Device, MonitoringHold
from anbu.domain.replies import Reply
from anbu.domain.risk import DeviceKind, HoldReason
from tests.api_support import Api
from tests.console_support import (
    log_in,
    make_account,
    recent_incident,
    stale_plug_and_hospital_stay,
)
from tests.test_escalation_service import close_case


def names(page: str) -> set[str]:
    """The residents a list page shows (their links' text)."""
    return set(re.findall(r'<a href="/console/residents/[0-9a-f]+">([^<]+)</a>', page))


async def test_given_resident_details_when_viewing_and_filtering_then_shown_in_scope(
    api: Api,
) -> None:
    sessions = api.container.sessions
    now = api.clock.now()
    # 김안부 (신림동) has an open incident; the others none.
    seeded = await recent_incident(api)
    async with sessions() as s:
        gwanak = await s.scalar(select(District).where(District.code == "11620"))
        gangnam = await s.scalar(select(District).where(District.code == "11680"))
        assert gwanak is not None
        assert gangnam is not None
        people = {}
        for name, dong, district in [
            ("이플러그", "서원동", gwanak),
            ("박무기기", "서원동", gwanak),
            ("최정상", "신림동", gwanak),
            ("남강남", "서원동", gangnam),
        ]:
            r = Resident(district_id=district.id, name=name, phone="01033334444", dong=dong)
            s.add(r)
            await s.flush()
            people[name] = r.id
        lee = people["이플러그"]
        s.add_all(
            [
                *stale_plug_and_hospital_stay(gwanak.id, lee, now),
                Device(
                    device_id="door-1",
                    district_id=gwanak.id,
                    resident_id=people["최정상"],
                    kind=DeviceKind.DOOR_SENSOR,
                    last_seen_at=now - dt.timedelta(minutes=5),
                    stale_due_at=now + dt.timedelta(hours=1),
                ),
                Device(
                    device_id="plug-9",
                    district_id=gangnam.id,
                    resident_id=people["남강남"],
                    kind=DeviceKind.PLUG,
                    stale_due_at=now - dt.timedelta(hours=1),
                ),
                # Over already: not shown.
                MonitoringHold(
                    resident_id=lee,
                    starts_at=now - dt.timedelta(days=20),
                    ends_at=now - dt.timedelta(days=10),
                    reason=HoldReason.TRAVEL,
                ),
                CallHold(resident_id=lee, starts_at=now + dt.timedelta(days=5), reason="가족 방문"),
                DoNotCall(phone="01033334444", reason="본인 요청"),
                Program(name="오전 안부", start_min=9 * 60, end_min=12 * 60),
                RoutineSchedule(resident_id=lee, weekday=0, time_min=10 * 60),
                RoutineSchedule(resident_id=lee, weekday=3, time_min=15 * 60 + 30),
                RoutineSchedule(resident_id=lee, weekday=4, time_min=9 * 60, active=False),
            ]
        )
        await s.flush()
        program = await s.scalar(select(Program).where(Program.name == "오전 안부"))
        assert program is not None
        s.add(ResidentSchedule(resident_id=lee, program_id=program.id, end_min=11 * 60))
        await s.commit()
    await make_account(api.container.sessions, now, "kim")
    await log_in(api.client, "kim")

    page = html.unescape((await api.client.get(f"/console/residents/{lee}")).text)
    assert '<tr class="device-stale"><td>plug-7</td><td>스마트 플러그</td>' in page
    assert '<td class="device-status">보고 없음</td>' in page
    assert "입원 · " in page
    assert "(지금 보류 중)</b> · 보라매병원" in page
    assert "여행·외출 · " not in page  # the ended hold (the add form still offers the kind)
    assert "통화 보류 · " in page
    assert "해제할 때까지 · 가족 방문" in page
    assert "<b>수신 거부 번호</b> · 본인 요청" in page
    # Own end (11:00) over the programme's 09:00-12:00 and its weekdays.
    assert "월화수목금 09:00-11:00 · 공휴일 제외 (오전 안부)" in page
    assert '<dd id="routines">월 10:00, 목 15:30</dd>' in page
    choi = html.unescape((await api.client.get(f"/console/residents/{people['최정상']}")).text)
    assert '<tr class="device-online"><td>door-1</td><td>문 열림 감지기</td>' in choi
    # The number is the same as 이플러그's: the do-not-call list is by number.
    assert "수신 거부 번호" in choi
    kim = html.unescape(
        (await api.client.get(f"/console/residents/{seeded.world.resident_id}")).text
    )
    assert '<dd id="do-not-call">아니오</dd>' in kim
    assert '<dd id="routines">없음</dd>' in kim
    gone = await api.client.get(f"/console/residents/{people['남강남']}")
    assert gone.status_code == 404

    async def listed(**params: str) -> set[str]:
        r = await api.client.get("/console/residents", params=params)
        assert r.status_code == 200
        return names(html.unescape(r.text))

    everyone = {"김안부", "이플러그", "박무기기", "최정상"}
    assert await listed() == everyone
    assert await listed(dong="서원동") == {"이플러그", "박무기기"}
    assert await listed(case="open") == {"김안부"}
    assert await listed(case="none") == everyone - {"김안부"}
    assert await listed(device="stale") == {"이플러그"}
    assert await listed(device="online") == {"최정상"}
    assert await listed(device="none") == {"김안부", "박무기기"}
    assert await listed(dong="신림동", device="online", case="none") == {"최정상"}
    assert await listed(dong="신림동", level="none", case="open") == {"김안부"}
    # Last contact: the last call a person answered (김안부's three rang out).
    assert await listed(contact="never") == everyone
    await close_case(sessions, people["최정상"], [Reply.OK], now - dt.timedelta(days=2))
    await close_case(sessions, people["박무기기"], [Reply.OK], now - dt.timedelta(days=40))
    assert await listed(contact="never") == {"김안부", "이플러그"}
    assert await listed(contact="30") == {"김안부", "이플러그", "박무기기"}
    assert await listed(contact="7") == {"김안부", "이플러그", "박무기기"}
    assert await listed(contact="7", dong="신림동") == {"김안부"}
    # Unknown filter values filter nothing; never a 500.
    assert await listed(case="maybe", device="broken", contact="soon", page="x") == everyone
    page = html.unescape(
        (await api.client.get("/console/residents", params={"dong": "서원동"})).text
    )
    assert 'id="dong" name="dong" value="서원동"' in page
