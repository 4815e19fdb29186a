"""Event ids and device ids are namespaced per district (issue 12, item 4), on SQLite and
PostgreSQL: two districts may send the same event id or register the same device id without
meeting, and a key of one district can never reach, or learn of, another district's device.
Each test here failed on the global ids (a "duplicate" dropped, a 409 "already registered",
another district's device answered)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from anbu.container import Container
from anbu.db.migrate import upgrade
from anbu.db.models import ApiKey, District
from anbu.db.models_signals import Device, SignalEvent
from anbu.db.session import make_sessionmaker
from anbu.services.admin import hash_key
from tests.db_fixtures import (
    BACKENDS,
    downgrade,
    unmigrated_engine,
)
from tests.test_risk_api import T0, Clock, _call, _resident, api  # noqa: F401  (the fixture)

Api = tuple[httpx.AsyncClient, Clock, Container]
JONGNO = {"X-API-Key": "k-jongno"}


async def _jongno_resident(client: httpx.AsyncClient, device_id: str | None = "plug-1") -> str:
    res = await client.post(
        "/v1/residents",
        json={"district_code": "11110", "name": "이안부", "phone": "010-9999-0002"},
        headers=JONGNO,
    )
    assert res.status_code == 201, res.text
    rid: str = res.json()["id"]
    res = await client.put(
        f"/v1/residents/{rid}/monitoring",
        json={
            "tier": "iot",
            "risk_category": "very_high",
            "consent_call_records": True,
            "consent_iot": True,
        },
        headers=JONGNO,
    )
    assert res.status_code == 200, res.text
    if device_id is not None:
        res = await client.post(
            "/v1/devices",
            json={"device_id": device_id, "resident_id": rid, "kind": "plug"},
            headers=JONGNO,
        )
        assert res.status_code == 201, res.text  # was 409 "already registered" (gwanak's id)
    return rid


async def test_given_two_districts_when_they_send_the_same_event_id_then_both_are_stored(
    api: Api,  # noqa: F811
) -> None:
    client, _, container = api
    gwanak = await _resident(client)
    jongno = await _jongno_resident(client)

    res = await client.post("/v1/signals", json=[_call(gwanak, 1, T0)])
    assert (res.status_code, res.json()["accepted"], res.json()["duplicates"]) == (200, 1, 0)
    # Same source and event id from the other district: its own event, not a duplicate.
    res = await client.post("/v1/signals", json=[_call(jongno, 1, T0)], headers=JONGNO)
    assert res.status_code == 200, res.text
    assert (res.json()["accepted"], res.json()["duplicates"]) == (1, 0)
    # Within a district a resent event is still a duplicate, in each district.
    for headers, rid in (({}, gwanak), (JONGNO, jongno)):
        res = await client.post("/v1/signals", json=[_call(rid, 1, T0)], headers=headers)
        assert (res.json()["accepted"], res.json()["duplicates"]) == (0, 1)
    async with container.sessions() as s:
        rows = (await s.execute(select(SignalEvent.resident_id, SignalEvent.event_id))).all()
    assert sorted(r for r, _ in rows) == sorted([gwanak, jongno])


async def test_given_the_same_device_id_in_two_districts_then_each_key_reaches_only_its_own(
    api: Api,  # noqa: F811
) -> None:
    client, _, container = api
    gwanak = await _resident(client)  # registers plug-1 in 관악구
    jongno = await _jongno_resident(client)  # plug-1 in 종로구 too

    mine = await client.get("/v1/devices/plug-1")
    theirs = await client.get("/v1/devices/plug-1", headers=JONGNO)
    assert (mine.status_code, theirs.status_code) == (200, 200)
    assert (mine.json()["resident_id"], theirs.json()["resident_id"]) == (gwanak, jongno)

    # A second registration within a district is still refused, with a reason.
    dup = await client.post(
        "/v1/devices",
        json={"device_id": "plug-1", "resident_id": jongno, "kind": "plug"},
        headers=JONGNO,
    )
    assert dup.status_code == 409
    assert dup.json()["detail"] == "device 'plug-1' is already registered in this district"

    # Readings of plug-1 sent with each key go to that district's resident.
    reading = {"source": "plug-cloud", "event_id": "r1", "kind": "power", "value": 80.0}
    for headers in ({}, JONGNO):
        body = {**reading, "device_id": "plug-1", "at": T0.isoformat()}
        res = await client.post("/v1/signals", json=body, headers=headers)
        assert res.status_code == 200, res.text
        assert (res.json()["accepted"], res.json()["duplicates"]) == (1, 0)
    async with container.sessions() as s:
        owners = sorted((await s.execute(select(SignalEvent.resident_id))).scalars())
    assert owners == sorted([gwanak, jongno])

    # 종로구 deregisters its plug-1: 관악구's stays active.
    gone = await client.delete("/v1/devices/plug-1", headers=JONGNO)
    assert gone.status_code == 204
    assert (await client.get("/v1/devices/plug-1")).json()["active"] is True
    assert (await client.get("/v1/devices/plug-1", headers=JONGNO)).json()["active"] is False


async def test_given_a_device_of_another_district_then_not_found_with_a_reason_never_500(
    api: Api,  # noqa: F811
) -> None:
    client, _, _ = api
    await _resident(client)  # plug-1 is 관악구's only
    await _jongno_resident(client, device_id=None)

    for res in (
        await client.get("/v1/devices/plug-1", headers=JONGNO),
        await client.delete("/v1/devices/plug-1", headers=JONGNO),
        await client.get("/v1/devices/plug-1", params={"district": "11620"}, headers=JONGNO),
    ):
        assert res.status_code == 404, res.text
        assert res.json()["detail"] == "device plug-1 not found"
    body = {"source": "plug-cloud", "event_id": "x", "kind": "power", "value": 1.0,
            "device_id": "plug-1", "at": T0.isoformat()}  # fmt: skip
    res = await client.post("/v1/signals", json=body, headers=JONGNO)
    assert res.status_code == 422
    assert res.json()["detail"] == "unknown device 'plug-1'"
    assert (await client.get("/v1/devices/plug-1")).json()["active"] is True


async def test_given_a_key_of_two_districts_when_an_id_is_in_both_then_it_must_say_which(
    api: Api,  # noqa: F811
) -> None:
    client, _, container = api
    gwanak = await _resident(client)
    jongno = await _jongno_resident(client)
    async with container.sessions() as s:
        both = list((await s.execute(select(District).order_by(District.code))).scalars())
        s.add(ApiKey(name="both", key_hash=hash_key("k-both"), districts=both))
        await s.commit()
    h = {"X-API-Key": "k-both"}

    res = await client.get("/v1/devices/plug-1", headers=h)
    assert res.status_code == 422
    assert "more than one of your districts" in res.json()["detail"]
    res = await client.get("/v1/devices/plug-1", params={"district": "11110"}, headers=h)
    assert (res.status_code, res.json()["resident_id"]) == (200, jongno)
    res = await client.get("/v1/devices/plug-1", params={"district": "11620"}, headers=h)
    assert (res.status_code, res.json()["resident_id"]) == (200, gwanak)
    body = {"source": "plug-cloud", "event_id": "y", "kind": "power", "value": 1.0,
            "device_id": "plug-1", "at": T0.isoformat()}  # fmt: skip
    res = await client.post("/v1/signals", json=body, headers=h)
    assert res.status_code == 422
    assert "more than one of your districts" in res.json()["detail"]
    # Naming the resident instead of the device is unambiguous.
    res = await client.post("/v1/signals", json=[_call(gwanak, 9, T0)], headers=h)
    assert res.json()["accepted"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
async def test_given_stored_devices_and_events_when_migrated_then_ids_are_qualified(
    backend: str, tmp_path: Path
) -> None:
    """0012 gives each device its owner's district and qualifies each stored event id by it;
    down again, the ids are as they were."""
    async with unmigrated_engine(backend, tmp_path) as engine:
        await upgrade(engine, "0011_console_accounts")
        t = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
        t0 = t if backend == "postgresql" else t.replace(tzinfo=None)
        async with engine.begin() as conn:
            for sql in (
                "INSERT INTO districts (id, code, name, created_at) VALUES (7, '1', 'g', :t)",
                "INSERT INTO residents (id, district_id, name, phone, dong, active, created_at,"
                " updated_at) VALUES ('r1', 7, 'n', '010', '', true, :t, :t)",
                "INSERT INTO devices (id, device_id, resident_id, kind, expected_interval_s,"
                " active, online, created_at) VALUES ('d1', 'plug-1', 'r1', 'plug', 600, true,"
                " true, :t)",
                "INSERT INTO signal_events (source, event_id, resident_id, kind, at,"
                " received_at) VALUES ('cdr', 'c1', 'r1', 'call', :t, :t)",
            ):
                await conn.execute(text(sql), {"t": t0})
        await upgrade(engine)
        async with make_sessionmaker(engine)() as s:
            device = (await s.execute(select(Device))).scalar_one()
            event = (await s.execute(select(SignalEvent))).scalar_one()
        assert (device.district_id, event.event_id) == (7, "7/c1")

        await downgrade(engine, "0011_console_accounts")
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT event_id FROM signal_events"))).all() == [
                ("c1",)
            ]
