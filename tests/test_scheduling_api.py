"""The scheduling API on both backends: programmes, a resident's schedule, call holds,
do-not-call and routine check-ins. Time comes from a fixed clock: Monday 2026-11-23 10:00 KST."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from anbu.app.parts import build_container
from anbu.db.models import Checkin
from anbu.domain.checkin import CheckinSource
from anbu.settings import Settings
from scheduler.routine import open_due_routine_checkins
from tests.api_support import api_client

KST = dt.timezone(dt.timedelta(hours=9))
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=KST)  # a Monday, not a holiday


class FixedClock:
    def __init__(self, now: dt.datetime) -> None:
        self.at = now.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        return self.at


@dataclass
class Api:
    client: httpx.AsyncClient
    keys: dict[str, str]
    container: Any
    clock: FixedClock

    async def req(
        self, method: str, url: str, key: str = "gwanak", json: object = None
    ) -> httpx.Response:
        return await self.client.request(
            method, url, headers={"X-API-Key": self.keys[key]}, json=json
        )

    async def resident(self, phone: str = "010-1234-5678", district: str = "11620") -> str:
        key = "gwanak" if district == "11620" else "gangnam"
        r = await self.req(
            "POST",
            "/v1/residents",
            key,
            {"district_code": district, "name": "김안부", "phone": phone, "dong": "신림동"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def program(self, **body: Any) -> dict[str, Any]:
        r = await self.req("POST", "/v1/programs", "admin", {"name": "기본", **body})
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    clock = FixedClock(NOW)
    container = build_container(Settings(database_url=db_url), clock=clock)
    async with api_client(container) as (client, keys):
        yield Api(client, keys, container, clock)


def _reason(r: httpx.Response) -> str:
    body = r.json()
    assert body["detail"], body
    return str(body["detail"])


# -- programmes ---------------------------------------------------------------------------------


async def test_given_admin_when_creating_program_then_stored_and_readable_by_every_key(
    api: Api,
) -> None:
    body = {
        "name": "관악 안부",
        "is_default": True,
        "retry": {"max_attempts": 4, "interval_s": 300, "busy_interval_s": 60},
        "calling_hours": {
            "start": "08:30",
            "end": "20:00",
            "weekdays": ["mon", "wed", "금", 6, "saturday"],
            "call_on_holidays": True,
            "severe_end": "24:00",
        },
    }
    r = await api.req("POST", "/v1/programs", "admin", body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["is_default"] is True
    assert created["retry"] == {
        "max_attempts": 4,
        "interval_s": 300,
        "busy_interval_s": 60,
        "failure_interval_s": 120,
        "max_callbacks": 1,
        "callback_delay_s": 3600,
    }
    assert created["calling_hours"] == {
        "start": "08:30",
        "end": "20:00",
        "weekdays": [0, 2, 4, 5, 6],
        "call_on_holidays": True,
        "severe_start": "07:00",
        "severe_end": "24:00",
        "tz": "Asia/Seoul",
    }
    for key in ("gwanak", "gangnam"):
        listed = await api.req("GET", "/v1/programs", key)
        assert [p["name"] for p in listed.json()] == ["관악 안부"]
        got = await api.req("GET", f"/v1/programs/{created['id']}", key)
        assert got.json() == created
    assert (await api.req("GET", "/v1/programs/999")).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/v1/programs/99999999999999999999",
        "/v1/programs/9223372036854775808",
        "/v1/residents/x/call-holds/99999999999999999999",
        "/v1/residents/x/routines/99999999999999999999",
    ],
)
async def test_given_id_beyond_integer_range_when_requested_then_422_not_500(
    api: Api, path: str
) -> None:
    method = "GET" if path.startswith("/v1/programs") else "DELETE"
    r = await api.req(method, path, "admin")
    assert r.status_code == 422, r.text
    assert _reason(r)


async def test_given_district_key_when_changing_programs_then_403(api: Api) -> None:
    r = await api.req("POST", "/v1/programs", "gwanak", {"name": "x"})
    assert r.status_code == 403
    program = await api.program()
    r = await api.req("PATCH", f"/v1/programs/{program['id']}", "gwanak", {"name": "y"})
    assert r.status_code == 403
    assert (await api.req("GET", "/v1/programs/1", "gwanak")).json()["name"] == "기본"


BAD_PROGRAMS: list[tuple[dict[str, Any], str]] = [
    ({"calling_hours": {"start": "18:00", "end": "09:00"}}, "calling_hours.start (18:00)"),
    ({"calling_hours": {"start": "10:00", "end": "10:00"}}, "overnight"),
    ({"calling_hours": {"severe_start": "22:00", "severe_end": "07:00"}}, "severe_start"),
    ({"calling_hours": {"start": "25:00"}}, "HH:MM"),
    ({"calling_hours": {"end": "9:00"}}, "HH:MM"),
    ({"calling_hours": {"weekdays": [7]}}, "0 (Monday) .. 6 (Sunday)"),
    ({"calling_hours": {"weekdays": ["funday"]}}, "unknown weekday"),
    ({"calling_hours": {"weekdays": []}}, "calling_hours.weekdays"),
    ({"calling_hours": {"tz": "Mars/Olympus"}}, "unknown time zone"),
    ({"calling_hours": {"tz": "../../etc/passwd"}}, "unknown time zone"),
    ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
    ({"retry": {"interval_s": 0}}, "retry.interval_s"),
    ({"retry": {"max_callbacks": 9}}, "retry.max_callbacks"),
    ({"retry": {"interval": 600}}, "retry.interval"),
    ({"name": ""}, "name"),
]


async def test_given_bad_program_when_posted_then_422_with_reason(api: Api) -> None:
    for body, needle in BAD_PROGRAMS:
        r = await api.req("POST", "/v1/programs", "admin", {"name": "p", **body})
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"] == "invalid_request"
        assert needle in _reason(r), (body, r.text)
    assert (await api.req("GET", "/v1/programs")).json() == []


async def test_given_default_program_when_another_is_made_default_then_only_one_is(
    api: Api,
) -> None:
    first = await api.program(name="첫째", is_default=True)
    second = await api.program(name="둘째", is_default=True)
    listed = {p["name"]: p["is_default"] for p in (await api.req("GET", "/v1/programs")).json()}
    assert listed == {"첫째": False, "둘째": True}
    r = await api.req("PATCH", f"/v1/programs/{first['id']}", "admin", {"is_default": True})
    assert r.status_code == 200, r.text
    listed = {p["name"]: p["is_default"] for p in (await api.req("GET", "/v1/programs")).json()}
    assert listed == {"첫째": True, "둘째": False}
    dup = await api.req("PATCH", f"/v1/programs/{second['id']}", "admin", {"name": "첫째"})
    assert dup.status_code == 409
    assert "첫째" in _reason(dup)
    dup = await api.req("POST", "/v1/programs", "admin", {"name": "둘째"})
    assert dup.status_code == 409


async def test_given_program_when_patched_partly_then_other_fields_stay(api: Api) -> None:
    program = await api.program(calling_hours={"start": "09:00", "end": "17:00"})
    url = f"/v1/programs/{program['id']}"
    r = await api.req(
        "PATCH", url, "admin", {"retry": {"interval_s": 900}, "calling_hours": {"end": "19:30"}}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["retry"] == {**program["retry"], "interval_s": 900}
    assert body["calling_hours"] == {**program["calling_hours"], "end": "19:30"}
    assert body["name"] == program["name"]
    bad = await api.req("PATCH", url, "admin", {"calling_hours": {"end": "08:00"}})
    assert bad.status_code == 422
    assert "calling_hours.end (08:00)" in _reason(bad)
    null = await api.req("PATCH", url, "admin", {"retry": {"max_attempts": None}})
    assert null.status_code == 422
    assert "retry.max_attempts cannot be null" in _reason(null)
    assert (await api.req("GET", url)).json()["calling_hours"]["end"] == "19:30"
    assert (await api.req("PATCH", "/v1/programs/999", "admin", {"name": "z"})).status_code == 404


# -- a resident's schedule ----------------------------------------------------------------------


async def test_given_no_program_when_reading_schedule_then_built_in_defaults_apply(
    api: Api,
) -> None:
    rid = await api.resident()
    r = await api.req("GET", f"/v1/residents/{rid}/schedule")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["program_id"] is None
    assert body["start"] is None
    assert body["updated_at"] is None
    eff = body["effective"]
    assert eff["program_id"] is None
    assert eff["retry"]["max_attempts"] == 3
    assert eff["calling_hours"]["start"] == "09:00"
    assert eff["calling_hours"]["weekdays"] == [0, 1, 2, 3, 4]
    assert eff["blocked"] is None
    # Monday 10:00 KST is inside 09:00-18:00: a call may ring now.
    assert dt.datetime.fromisoformat(eff["next_allowed_at"]) == NOW


async def test_given_own_hours_and_program_when_put_then_effective_schedule_merges_them(
    api: Api,
) -> None:
    default = await api.program(name="기본", is_default=True)
    evening = await api.program(
        name="저녁", calling_hours={"start": "12:00", "end": "21:00", "weekdays": [0, 1, 2]}
    )
    rid = await api.resident()
    url = f"/v1/residents/{rid}/schedule"
    r = await api.req("PUT", url, json={"start": "11:00"})
    assert r.status_code == 200, r.text
    eff = r.json()["effective"]
    assert eff["program_id"] == default["id"]
    assert (eff["calling_hours"]["start"], eff["calling_hours"]["end"]) == ("11:00", "18:00")
    # 10:00 is before the resident's 11:00: the next call may ring at 11:00 today.
    assert dt.datetime.fromisoformat(eff["next_allowed_at"]) == NOW + dt.timedelta(hours=1)

    r = await api.req(
        "PUT", url, json={"program_id": evening["id"], "weekdays": ["tue"], "start": "13:00"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["program_id"], body["start"], body["end"], body["weekdays"]) == (
        evening["id"],
        "13:00",
        None,
        [1],
    )
    eff = body["effective"]
    assert eff["program_name"] == "저녁"
    assert eff["retry"] == evening["retry"]
    assert eff["calling_hours"]["weekdays"] == [1]
    assert (eff["calling_hours"]["start"], eff["calling_hours"]["end"]) == ("13:00", "21:00")
    assert dt.datetime.fromisoformat(eff["next_allowed_at"]) == dt.datetime(
        2026, 11, 24, 13, 0, tzinfo=KST
    )
    assert (await api.req("GET", url)).json() == body


BAD_SCHEDULES: list[tuple[dict[str, Any], str]] = [
    ({"start": "19:00"}, "programme hours 09:00-18:00"),
    ({"start": "12:00", "end": "11:00"}, "start must be before its end"),
    ({"program_id": 999}, "unknown programme 999"),
    ({"tz": "Seoul"}, "unknown time zone"),
    ({"weekdays": [0, 9]}, "weekdays"),
    ({"end": "18:61"}, "HH:MM"),
    ({"bedtime": "21:00"}, "bedtime"),
]


async def test_given_bad_schedule_when_put_then_422_with_reason_and_nothing_stored(
    api: Api,
) -> None:
    await api.program(is_default=True)
    rid = await api.resident()
    for body, needle in BAD_SCHEDULES:
        r = await api.req("PUT", f"/v1/residents/{rid}/schedule", json=body)
        assert r.status_code == 422, (body, r.text)
        assert needle in _reason(r), (body, r.text)
    assert (await api.req("GET", f"/v1/residents/{rid}/schedule")).json()["updated_at"] is None


async def test_given_other_districts_resident_when_using_scheduling_routes_then_404(
    api: Api,
) -> None:
    rid = await api.resident()
    hold = await api.req("POST", f"/v1/residents/{rid}/call-holds", json={"reason": "입원"})
    routine = await api.req(
        "POST", f"/v1/residents/{rid}/routines", json={"weekday": 1, "time": "10:00"}
    )
    assert (hold.status_code, routine.status_code) == (201, 201)
    base = f"/v1/residents/{rid}"
    calls: list[tuple[str, str, object]] = [
        ("GET", f"{base}/schedule", None),
        ("PUT", f"{base}/schedule", {}),
        ("GET", f"{base}/call-holds", None),
        ("POST", f"{base}/call-holds", {"reason": "x"}),
        ("DELETE", f"{base}/call-holds/{hold.json()['id']}", None),
        ("GET", f"{base}/routines", None),
        ("POST", f"{base}/routines", {"weekday": 2, "time": "10:00"}),
        ("DELETE", f"{base}/routines/{routine.json()['id']}", None),
        ("GET", "/v1/residents/nobody/schedule", None),
    ]
    for method, url, body in calls:
        r = await api.req(method, url, "gangnam", body)
        assert r.status_code == 404, (method, url, r.text)
        assert r.json()["error"] == "not_found"
    # Nothing changed for the owner.
    assert len((await api.req("GET", f"{base}/call-holds")).json()) == 1
    assert len((await api.req("GET", f"{base}/routines")).json()) == 1


async def test_given_no_key_when_using_scheduling_routes_then_401(api: Api) -> None:
    for url in ("/v1/programs", "/v1/do-not-call", "/v1/residents/x/schedule"):
        assert (await api.client.get(url)).status_code == 401


# -- call holds ---------------------------------------------------------------------------------


async def test_given_hospital_stay_when_held_then_no_call_until_it_ends_and_lift_ends_it(
    api: Api,
) -> None:
    rid = await api.resident()
    url = f"/v1/residents/{rid}/call-holds"
    ends = NOW + dt.timedelta(days=2, hours=5)  # Wednesday 15:00
    r = await api.req("POST", url, json={"ends_at": ends.isoformat(), "reason": "입원 (관악병원)"})
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["active"] is True
    assert dt.datetime.fromisoformat(hold["starts_at"]) == NOW
    assert dt.datetime.fromisoformat(hold["ends_at"]) == ends
    sched = (await api.req("GET", f"/v1/residents/{rid}/schedule")).json()["effective"]
    assert sched["on_hold"] is True
    assert sched["blocked"] is None
    assert dt.datetime.fromisoformat(sched["next_allowed_at"]) == ends
    # The risk engine's monitoring holds are another list.
    assert (await api.req("GET", f"/v1/residents/{rid}/holds")).json() == []

    later = NOW + dt.timedelta(days=10)
    future = await api.req(
        "POST",
        url,
        json={
            "starts_at": later.isoformat(),
            "ends_at": (later + dt.timedelta(days=3)).isoformat(),
            "reason": "여행",
        },
    )
    assert future.status_code == 201
    assert future.json()["active"] is False
    assert [h["reason"] for h in (await api.req("GET", url)).json()] == ["입원 (관악병원)", "여행"]

    api.clock.at += dt.timedelta(hours=1)
    assert (await api.req("DELETE", f"{url}/{hold['id']}")).status_code == 204
    assert (await api.req("DELETE", f"{url}/{future.json()['id']}")).status_code == 204
    assert (await api.req("GET", url)).json() == []
    history = (await api.req("GET", f"{url}?include_ended=true")).json()
    assert [h["reason"] for h in history] == ["입원 (관악병원)"]  # the future one is gone
    assert dt.datetime.fromisoformat(history[0]["ends_at"]) == api.clock.at
    sched = (await api.req("GET", f"/v1/residents/{rid}/schedule")).json()["effective"]
    assert sched["on_hold"] is False
    assert dt.datetime.fromisoformat(sched["next_allowed_at"]) == api.clock.at
    assert (await api.req("DELETE", f"{url}/{future.json()['id']}")).status_code == 404


async def test_given_open_ended_hold_when_read_then_resident_is_blocked_for_an_official(
    api: Api,
) -> None:
    rid = await api.resident()
    r = await api.req("POST", f"/v1/residents/{rid}/call-holds", json={"reason": "장기 입원"})
    assert r.status_code == 201
    assert r.json()["ends_at"] is None
    eff = (await api.req("GET", f"/v1/residents/{rid}/schedule")).json()["effective"]
    assert (eff["blocked"], eff["next_allowed_at"]) == ("open_hold", None)


BAD_HOLDS: list[tuple[dict[str, Any], str]] = [
    ({"reason": "x", "ends_at": "2026-11-22T10:00:00+09:00"}, "in the past"),
    (
        {
            "reason": "x",
            "starts_at": "2026-12-01T00:00:00+09:00",
            "ends_at": "2026-11-30T00:00:00+09:00",
        },
        "after starts_at",
    ),
    ({"reason": "x", "ends_at": "2026-12-01T10:00:00"}, "ends_at"),  # no time zone
    ({"reason": ""}, "reason"),
    ({"ends_at": "2026-12-01T10:00:00+09:00"}, "reason"),
    ({"reason": "x", "until": "tomorrow"}, "until"),
]


async def test_given_bad_call_hold_when_posted_then_422_with_reason(api: Api) -> None:
    rid = await api.resident()
    for body, needle in BAD_HOLDS:
        r = await api.req("POST", f"/v1/residents/{rid}/call-holds", json=body)
        assert r.status_code == 422, (body, r.text)
        assert needle in _reason(r), (body, r.text)
    assert (await api.req("GET", f"/v1/residents/{rid}/call-holds")).json() == []


async def test_given_hold_of_another_resident_when_lifted_through_this_one_then_404(
    api: Api,
) -> None:
    first = await api.resident()
    second = await api.resident(phone="010-2222-3333")
    hold = await api.req("POST", f"/v1/residents/{first}/call-holds", json={"reason": "입원"})
    r = await api.req("DELETE", f"/v1/residents/{second}/call-holds/{hold.json()['id']}")
    assert r.status_code == 404
    assert len((await api.req("GET", f"/v1/residents/{first}/call-holds")).json()) == 1


# -- do-not-call --------------------------------------------------------------------------------


async def test_given_number_when_put_on_do_not_call_then_listed_blocking_and_removable(
    api: Api,
) -> None:
    rid = await api.resident(phone="010-1234-5678")
    await api.resident(phone="010-5555-6666", district="11680")
    r = await api.req("PUT", "/v1/do-not-call/+82 10-1234-5678", json={"reason": "본인 거부"})
    assert r.status_code == 201, r.text
    assert r.json()["phone"] == "01012345678"
    assert r.json()["phone_masked"] == "*******5678"
    again = await api.req("PUT", "/v1/do-not-call/01012345678", json={"reason": "재확인: 거부"})
    assert again.status_code == 200
    assert again.json()["reason"] == "재확인: 거부"
    assert again.json()["created_at"] == r.json()["created_at"]
    eff = (await api.req("GET", f"/v1/residents/{rid}/schedule")).json()["effective"]
    assert (eff["do_not_call"], eff["blocked"], eff["next_allowed_at"]) == (
        True,
        "do_not_call",
        None,
    )
    # Administrators may block any valid number.
    admin_put = await api.req("PUT", "/v1/do-not-call/01055556666", "admin", {"reason": "거부"})
    assert admin_put.status_code == 201
    other = await api.req("PUT", "/v1/do-not-call/0223456789", "admin", {"reason": "잘못 건 번호"})
    assert other.status_code == 201

    def phones(r: httpx.Response) -> list[str]:
        return [e["phone"] for e in r.json()["items"]]

    assert phones(await api.req("GET", "/v1/do-not-call", "admin")) == [
        "01012345678",
        "01055556666",
        "0223456789",
    ]
    page = await api.req("GET", "/v1/do-not-call?limit=2", "admin")
    assert page.json()["next_cursor"] == "01055556666"
    rest = await api.req("GET", "/v1/do-not-call?limit=2&cursor=01055556666", "admin")
    assert phones(rest) == ["0223456789"]
    assert rest.json()["next_cursor"] is None
    # A district key sees its own residents' numbers only.
    assert phones(await api.req("GET", "/v1/do-not-call", "gwanak")) == ["01012345678"]
    assert phones(await api.req("GET", "/v1/do-not-call", "gangnam")) == ["01055556666"]
    assert (await api.req("GET", "/v1/do-not-call/010-1234-5678")).json()[
        "reason"
    ] == "재확인: 거부"

    assert (await api.req("DELETE", "/v1/do-not-call/010-1234-5678")).status_code == 204
    assert (await api.req("DELETE", "/v1/do-not-call/010-1234-5678")).status_code == 404
    assert (await api.req("GET", "/v1/do-not-call/010-1234-5678")).status_code == 404
    eff = (await api.req("GET", f"/v1/residents/{rid}/schedule")).json()["effective"]
    assert (eff["do_not_call"], eff["blocked"]) == (False, None)


async def test_given_district_key_when_touching_other_numbers_on_do_not_call_then_404(
    api: Api,
) -> None:
    await api.resident(phone="010-5555-6666", district="11680")
    r = await api.req("PUT", "/v1/do-not-call/01055556666", json={"reason": "x"})
    assert r.status_code == 404
    r = await api.req("PUT", "/v1/do-not-call/01077778888", json={"reason": "x"})
    assert r.status_code == 404  # no resident of this key has that number
    assert (
        await api.req("PUT", "/v1/do-not-call/01055556666", "gangnam", {"reason": "거부"})
    ).status_code == 201
    assert (await api.req("GET", "/v1/do-not-call/01055556666")).status_code == 404
    assert (await api.req("DELETE", "/v1/do-not-call/01055556666")).status_code == 404
    assert (await api.req("GET", "/v1/do-not-call/01055556666", "gangnam")).status_code == 200


async def test_given_non_korean_number_when_put_on_do_not_call_then_422(api: Api) -> None:
    for phone in ("555-1234", "0101234", "010-1234-5678%2C1", "abcdefghij", "0212345678"):
        r = await api.req("PUT", f"/v1/do-not-call/{phone}", "admin", {"reason": "x"})
        assert r.status_code == 422, (phone, r.text)
        assert "Korean" in _reason(r) or "digits" in _reason(r), (phone, r.text)
    missing = await api.req("PUT", "/v1/do-not-call/01012345678", "admin", {})
    assert missing.status_code == 422
    assert "reason" in _reason(missing)
    assert (await api.req("GET", "/v1/do-not-call", "admin")).json()["items"] == []


# -- routine check-ins --------------------------------------------------------------------------


async def test_given_chosen_weekly_time_when_routine_added_then_the_job_opens_it_on_time(
    api: Api,
) -> None:
    rid = await api.resident()
    url = f"/v1/residents/{rid}/routines"
    r = await api.req("POST", url, json={"weekday": "wed", "time": "10:30"})
    assert r.status_code == 201, r.text
    routine = r.json()
    assert (routine["weekday"], routine["weekday_name"], routine["time"], routine["tz"]) == (
        2,
        "wed",
        "10:30",
        "Asia/Seoul",
    )
    slot = dt.datetime(2026, 11, 25, 10, 30, tzinfo=KST)
    assert dt.datetime.fromisoformat(routine["next_slot_at"]) == slot
    assert routine["last_slot_at"] is None
    second = await api.req("POST", url, json={"weekday": 4, "time": "09:00"})
    assert second.status_code == 201
    assert [(x["weekday"], x["time"]) for x in (await api.req("GET", url)).json()] == [
        (2, "10:30"),
        (4, "09:00"),
    ]
    # What the API stored is what the routine job reads: nothing before the slot, one case at it.
    async with api.container.sessions() as s:
        assert await open_due_routine_checkins(s, slot - dt.timedelta(minutes=1)) == []
    async with api.container.sessions() as s:
        opened = await open_due_routine_checkins(s, slot + dt.timedelta(minutes=1))
    assert len(opened) == 1
    async with api.container.sessions() as s:
        case = await s.get(Checkin, opened[0])
        assert case is not None
        assert (case.resident_id, case.source) == (rid, CheckinSource.ROUTINE)
    listed = (await api.req("GET", url)).json()
    assert dt.datetime.fromisoformat(listed[0]["last_slot_at"]) == slot

    assert (await api.req("DELETE", f"{url}/{second.json()['id']}")).status_code == 204
    assert [x["time"] for x in (await api.req("GET", url)).json()] == ["10:30"]
    assert (await api.req("DELETE", f"{url}/{second.json()['id']}")).status_code == 404


BAD_ROUTINES: list[tuple[dict[str, Any], int, str]] = [
    ({"weekday": "sat", "time": "10:00"}, 422, "not a calling day"),
    ({"weekday": 1, "time": "20:00"}, 422, "outside the calling hours 09:00-18:00"),
    ({"weekday": 1, "time": "24:00"}, 422, "00:00 to 23:59"),
    ({"weekday": 7, "time": "10:00"}, 422, "weekday"),
    ({"weekday": "someday", "time": "10:00"}, 422, "unknown weekday"),
    ({"weekday": 1}, 422, "time"),
    ({"weekday": 1, "time": "10:00"}, 409, "already has a routine call on tue 10:00"),
]


async def test_given_bad_routine_when_posted_then_4xx_with_reason(api: Api) -> None:
    rid = await api.resident()
    url = f"/v1/residents/{rid}/routines"
    assert (await api.req("POST", url, json={"weekday": "화", "time": "10:00"})).status_code == 201
    for body, status, needle in BAD_ROUTINES:
        r = await api.req("POST", url, json=body)
        assert r.status_code == status, (body, r.text)
        assert needle in _reason(r), (body, r.text)
    assert len((await api.req("GET", url)).json()) == 1


async def test_given_weekend_routine_when_own_hours_allow_it_then_accepted(api: Api) -> None:
    rid = await api.resident()
    r = await api.req(
        "PUT", f"/v1/residents/{rid}/schedule", json={"weekdays": [5, 6], "end": "20:00"}
    )
    assert r.status_code == 200, r.text
    r = await api.req(
        "POST", f"/v1/residents/{rid}/routines", json={"weekday": "일요일", "time": "19:30"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["weekday"] == 6


async def test_given_routine_when_hours_narrowed_then_409_names_it_and_nothing_changes(
    api: Api,
) -> None:
    program = await api.program(is_default=True)
    rid = await api.resident()
    r = await api.req("POST", f"/v1/residents/{rid}/routines", json={"weekday": 0, "time": "17:00"})
    assert r.status_code == 201, r.text
    narrow = await api.req("PUT", f"/v1/residents/{rid}/schedule", json={"end": "12:00"})
    assert narrow.status_code == 409, narrow.text
    assert "routine mon 17:00: outside the calling hours 09:00-12:00" in _reason(narrow)
    url = f"/v1/programs/{program['id']}"
    r = await api.req("PATCH", url, "admin", {"calling_hours": {"weekdays": [1, 2, 3, 4]}})
    assert r.status_code == 409, r.text
    assert f"resident {rid}: routine mon 17:00: not a calling day" in _reason(r)
    # Another default takes over residents without a programme: checked the same way.
    r = await api.req(
        "POST",
        "/v1/programs",
        "admin",
        {"name": "오전", "is_default": True, "calling_hours": {"end": "12:00"}},
    )
    assert r.status_code == 409, r.text
    listed = (await api.req("GET", "/v1/programs")).json()
    assert [(p["name"], p["is_default"], p["calling_hours"]["weekdays"]) for p in listed] == [
        ("기본", True, [0, 1, 2, 3, 4])
    ]
    assert (await api.req("GET", f"/v1/residents/{rid}/schedule")).json()["updated_at"] is None
