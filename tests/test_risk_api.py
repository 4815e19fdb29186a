"""The signals API over HTTP (in-process ASGI), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from anbu.app.parts import build_api
from anbu.container import Container
from anbu.db.models import ApiKey, Checkin, District
from anbu.db.models_signals import SignalState
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.risk import Channel, Rules
from anbu.services.admin import hash_key
from anbu.settings import RiskSettings, Settings

T0 = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> dt.datetime:
        return self.at


@pytest.fixture
async def api(
    db_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[httpx.AsyncClient, Clock, Container]]:
    """The API on a fresh database; ``indirect`` parametrisation passes the risk rules."""
    engine = make_engine(db_url)
    clock = Clock()
    rules = getattr(request, "param", None) or Rules()
    container = Container(
        settings=Settings(database_url=db_url, risk=RiskSettings(rules=rules)),
        engine=engine,
        sessions=make_sessionmaker(engine),
        clock=clock,
    )
    async with container.sessions() as s:
        gwanak = District(code="11620", name="관악구")
        other = District(code="11110", name="종로구")
        s.add_all([gwanak, other])
        s.add(ApiKey(name="gwanak", key_hash=hash_key("k-gwanak"), districts=[gwanak]))
        s.add(ApiKey(name="jongno", key_hash=hash_key("k-jongno"), districts=[other]))
        await s.commit()
    app = build_api(container)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"X-API-Key": "k-gwanak"}
    ) as client:
        yield client, clock, container
    await container.aclose()


async def _resident(client: httpx.AsyncClient, tier: str = "iot") -> str:
    res = await client.post(
        "/v1/residents",
        json={"district_code": "11620", "name": "김안부", "phone": "010-9999-0001"},
    )
    assert res.status_code == 201, res.text
    rid: str = res.json()["id"]
    res = await client.put(
        f"/v1/residents/{rid}/monitoring",
        json={
            "tier": tier,
            "risk_category": "very_high",
            "consent_call_records": True,
            "consent_iot": True,
        },
    )
    assert res.status_code == 200, res.text
    res = await client.post(
        "/v1/devices",
        json={
            "device_id": "plug-1",
            "resident_id": rid,
            "kind": "plug",
            "expected_interval_s": 600,
        },
    )
    assert res.status_code == 201, res.text
    return rid


def _call(rid: str, n: int, at: dt.datetime) -> dict[str, object]:
    return {
        "source": "skt-cdr",
        "event_id": f"c{n}",
        "kind": "call",
        "resident_id": rid,
        "at": at.isoformat(),
        "direction": "out",
        "duration_s": 60,
    }


async def test_given_mixed_batch_when_posted_then_good_ones_stored_and_bad_ones_explained(
    api: tuple[httpx.AsyncClient, Clock, Container],
) -> None:
    client, _, _ = api
    rid = await _resident(client)
    events: list[object] = [
        _call(rid, 1, T0 - dt.timedelta(hours=2)),
        {"source": "x", "event_id": "1", "kind": "power", "device_id": "plug-1"},  # no at/value
        {"source": "plug", "event_id": "p1", "kind": "power", "device_id": "nope",
         "at": T0.isoformat(), "value": 3},
        {"source": "plug", "event_id": "p2", "kind": "steps", "device_id": "plug-1",
         "at": T0.isoformat(), "value": 3},
        {"source": "plug", "event_id": "p3", "kind": "power", "device_id": "plug-1",
         "at": T0.isoformat(), "value": 80.0, "interval_s": 600},
        "not an object",
    ]  # fmt: skip
    res = await client.post("/v1/signals", json={"events": events})
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 4)
    reasons = {e["index"]: e["reason"] for e in body["errors"]}
    assert set(reasons) == {1, 2, 3, 5}
    assert "at" in reasons[1]
    assert "Field required" in reasons[1]
    assert reasons[2] == "unknown device 'nope'"
    assert "cannot report steps" in reasons[3]

    again = (await client.post("/v1/signals", json={"events": events})).json()
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 2, 4)


async def test_given_values_the_database_cannot_hold_when_posted_then_refused_per_item(
    api: tuple[httpx.AsyncClient, Clock, Container],
) -> None:
    client, _, _ = api
    rid = await _resident(client)
    good = _call(rid, 1, T0 - dt.timedelta(hours=1))
    events: list[object] = [
        {"source": "plug", "event_id": "inf", "kind": "power", "device_id": "plug-1",
         "at": T0.isoformat(), "value": "HUGE"},
        {"source": "plug", "event_id": "nul\x00", "kind": "power", "device_id": "plug-1",
         "at": T0.isoformat(), "value": 3},  # PostgreSQL text cannot hold NUL
        {"source": "plug", "event_id": "p1", "kind": "power", "device_id": "plug\x00",
         "at": T0.isoformat(), "value": 3},
        good,
    ]  # fmt: skip
    # 1e999 is valid JSON that parses to infinity.
    content = json.dumps({"events": events}).replace('"HUGE"', "1e999")
    res = await client.post(
        "/v1/signals", content=content, headers={"content-type": "application/json"}
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["accepted"], body["rejected"]) == (1, 3)
    reasons = {e["index"]: e["reason"] for e in body["errors"]}
    assert "finite number" in reasons[0]
    assert "pattern" in reasons[1]
    assert "pattern" in reasons[2]


async def test_given_single_event_when_invalid_then_422_with_reason(
    api: tuple[httpx.AsyncClient, Clock, Container],
) -> None:
    client, _, _ = api
    rid = await _resident(client, tier="calls")
    ok = await client.post("/v1/signals", json=_call(rid, 1, T0))
    assert ok.status_code == 200
    assert ok.json()["accepted"] == 1
    bad = await client.post(
        "/v1/signals",
        json={"source": "p", "event_id": "1", "kind": "power", "device_id": "plug-1",
              "at": T0.isoformat(), "value": 5},
    )  # fmt: skip
    assert bad.status_code == 422
    assert "not monitored on power" in bad.json()["detail"]  # tier calls: no IoT channel


async def test_given_another_districts_key_when_posting_then_resident_is_unknown(
    api: tuple[httpx.AsyncClient, Clock, Container],
) -> None:
    client, _, _ = api
    rid = await _resident(client)
    res = await client.post(
        "/v1/signals", json=_call(rid, 1, T0), headers={"X-API-Key": "k-jongno"}
    )
    assert res.status_code == 422
    assert res.json()["detail"] == f"unknown resident {rid!r}"
    res = await client.get(f"/v1/residents/{rid}/risk", headers={"X-API-Key": "k-jongno"})
    assert res.status_code == 404


async def test_given_quiet_resident_when_swept_then_checkin_risk_and_device_task_readable(
    api: tuple[httpx.AsyncClient, Clock, Container],
) -> None:
    client, clock, container = api
    start = T0 - dt.timedelta(days=7)
    clock.at = start
    rid = await _resident(client)
    calls = [_call(rid, i, start + dt.timedelta(hours=8 * i)) for i in range(15)]  # 5 days
    clock.at = start + dt.timedelta(days=5)
    res = await client.post("/v1/signals", json={"events": calls})
    assert res.json()["accepted"] == 15
    clock.at = T0
    async with container.sessions() as s:
        admin = ApiKey(name="admin", key_hash=hash_key("k-admin"), is_admin=True)
        s.add(admin)
        await s.commit()
    sweep = await client.post("/v1/risk/sweep", headers={"X-API-Key": "k-admin"})
    assert sweep.status_code == 200, sweep.text
    assert sweep.json()["checkins_opened"] == 1
    risk = (await client.get(f"/v1/residents/{rid}/risk")).json()
    assert risk["level"] in ("caution", "serious")
    latest = risk["history"][0]
    assert "통화" in latest["explanation"]
    assert "째 없음" in latest["explanation"]
    checkin = (await client.get(f"/v1/checkins/{latest['checkin_id']}")).json()
    assert checkin["source"] == "signal"
    assert checkin["reason"] == latest["explanation"]
    tasks = (await client.get("/v1/device-tasks")).json()
    assert [t["device_id"] for t in tasks] == ["plug-1"]  # registered, never reported
    done = await client.post(
        f"/v1/device-tasks/{tasks[0]['id']}/resolve", json={"resolution": "replugged"}
    )
    assert done.json()["status"] == "resolved"
    async with container.sessions() as s:
        assert len((await s.execute(select(Checkin))).scalars().all()) == 1


async def test_given_hold_when_added_and_ended_then_listed_with_times(
    api: tuple[httpx.AsyncClient, Clock, Container],
) -> None:
    client, _, _ = api
    rid = await _resident(client)
    res = await client.post(
        f"/v1/residents/{rid}/holds",
        json={"starts_at": T0.isoformat(), "ends_at": (T0 + dt.timedelta(days=3)).isoformat(),
              "reason": "hospital", "note": "입원"},
    )  # fmt: skip
    assert res.status_code == 201, res.text
    hold_id = res.json()["id"]
    bad = await client.post(
        f"/v1/residents/{rid}/holds",
        json={"starts_at": T0.isoformat(), "ends_at": T0.isoformat(), "reason": "travel"},
    )
    assert bad.status_code == 422
    assert (await client.delete(f"/v1/holds/{hold_id}")).status_code == 204
    holds = (await client.get(f"/v1/residents/{rid}/holds")).json()
    assert holds == []  # ended before it began: removed


@pytest.mark.parametrize("api", [Rules(plug_on_w=100.0, min_expected={Channel.CALLS: 3.0})],
                         indirect=True)  # fmt: skip
async def test_given_configured_rules_when_signals_arrive_then_they_apply_and_are_readable(
    api: tuple[httpx.AsyncClient, Clock, Container],
) -> None:
    client, _, container = api
    rules = (await client.get("/v1/risk/rules")).json()
    assert rules["plug_on_w"] == 100.0
    assert rules["min_expected"] == {
        "calls": 3.0, "steps": 300.0, "power": 1.0, "light": 2.0, "motion": 3.0,
    }  # fmt: skip
    assert rules["low_window_h"] == 50  # the defaults stand where nothing was set
    rid = await _resident(client)
    reading = {"source": "plug", "event_id": "p1", "kind": "power", "device_id": "plug-1",
               "at": T0.isoformat(), "value": 80.0, "interval_s": 600}  # fmt: skip
    res = await client.post("/v1/signals", json={"events": [reading]})
    assert res.json()["accepted"] == 1
    async with container.sessions() as s:
        state = (
            await s.execute(select(SignalState).where(SignalState.resident_id == rid))
        ).scalar_one()
    # 80 W is "in use" by default (5 W) but not at the configured 100 W.
    assert state.last_activity_at is None
    assert sum(state.ring) == 0
