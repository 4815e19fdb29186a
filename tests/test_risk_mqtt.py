"""MQTT ingestion against the real Mosquitto broker at 127.0.0.1:1883 (fails if it is down)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aiomqtt
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import District, Resident
from anbu.db.models_signals import Device, SignalEvent, SignalState
from anbu.domain.risk import Channel, DeviceKind, RiskCategory, Tier
from anbu.risk import registry
from anbu.risk.mqtt import (
    MqttPayloadError,
    MqttSignalSubscriber,
    Rejection,
    parse_topic,
    to_events,
)

T0 = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)


class FixedClock:
    def now(self) -> dt.datetime:
        return T0 + dt.timedelta(hours=1)


async def _resident_with_plug(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s:
        d = District(code="11620", name="관악구")
        r = Resident(id="r1", district=d, name="김안부", phone="01099990001")
        s.add(r)
        await s.flush()
        await registry.set_profile(
            s, r, registry.ProfileSpec(Tier.IOT, RiskCategory.MEDIUM, None, True, True, True), T0
        )
        await registry.register_device(
            s, r, device_id="plug-7", kind=DeviceKind.PLUG, expected_interval_s=600, now=T0
        )
        await s.commit()


S = TypeVar("S", bound=MqttSignalSubscriber)


@contextlib.asynccontextmanager
async def _running(
    cls: type[S], sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[S, str]]:
    """A subscriber on a topic prefix of its own, subscribed, and stopped afterwards."""
    prefix = f"anbutest{uuid.uuid4().hex[:8]}"
    sub = cls(
        sessions, FixedClock(), prefix=prefix, client_id=f"t-{uuid.uuid4().hex[:8]}",
        batch_wait_s=0.05,
    )  # fmt: skip
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        yield sub, prefix
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count(SignalEvent.id)))).scalar_one())


async def test_given_plug_publishing_when_subscribed_then_readings_are_stored_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _resident_with_plug(sessions)
    async with _running(MqttSignalSubscriber, sessions) as (sub, prefix):
        topic = f"{prefix}/11620/plug/plug-7/reading"
        reading = {"id": "r-1", "at": T0.isoformat(), "power_w": 81.5, "light_lux": 240}
        async with aiomqtt.Client(
            "127.0.0.1", 1883, identifier=f"pub-{uuid.uuid4().hex[:8]}"
        ) as pub:
            await pub.publish(topic, json.dumps(reading), qos=1)
            await pub.publish(topic, json.dumps(reading), qos=1)  # redelivery: stored once
            await pub.publish(topic, b"not json", qos=1)
            wrong_district = f"{prefix}/11110/plug/plug-7/reading"
            await pub.publish(wrong_district, json.dumps(reading | {"id": "x"}), qos=1)
            await pub.publish(
                f"{prefix}/11620/plug/plug-7/heartbeat", json.dumps({"online": False}), qos=1
            )
        for _ in range(200):
            async with sessions() as s:
                device = (await s.execute(select(Device))).scalar_one()
            if not device.online and sub.dropped >= 2:
                break
            await asyncio.sleep(0.05)
        assert await _count(sessions) == 3  # power + light, once; the offline heartbeat
        assert sub.dropped == 2  # the bad JSON, and the wrong district
        async with sessions() as s:
            device = (await s.execute(select(Device))).scalar_one()
            assert device.online is False  # the last-will style heartbeat
            states = {x.channel for x in (await s.execute(select(SignalState))).scalars()}
            assert states == {Channel.POWER, Channel.LIGHT}
            kinds = sorted(e.event_id for e in (await s.execute(select(SignalEvent))).scalars())
            did = device.district_id  # event ids are stored qualified by the district
            assert kinds == [
                f"{did}/plug-7:hb-2026-11-25T01:00:00+00:00",  # keyed by arrival: a will has no id
                f"{did}/plug-7:r-1:light",
                f"{did}/plug-7:r-1:power",
            ]


async def test_given_refused_messages_when_subscribed_then_each_is_answered_with_its_reason(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _resident_with_plug(sessions)
    answers: dict[str, dict[str, dict[str, Any]]] = {}
    async with _running(MqttSignalSubscriber, sessions) as (sub, prefix):
        async with aiomqtt.Client(
            "127.0.0.1", 1883, identifier=f"vendor-{uuid.uuid4().hex[:8]}"
        ) as vendor:
            await vendor.subscribe(f"{prefix}/rejected/#", qos=1)
            good = {"id": "ok-1", "at": T0.isoformat(), "power_w": 80.0, "light_lux": 200}
            await vendor.publish(f"{prefix}/11620/plug/plug-7/reading", json.dumps(good), qos=1)
            await vendor.publish(f"{prefix}/11620/plug/plug-7/reading", b"not json", qos=1)
            unknown = good | {"id": "u-1"}
            await vendor.publish(f"{prefix}/11620/plug/nope/reading", json.dumps(unknown), qos=1)
            future = good | {"id": "f-1", "at": (T0 + dt.timedelta(days=2)).isoformat()}
            await vendor.publish(f"{prefix}/11620/plug/plug-7/reading", json.dumps(future), qos=1)

            async def collect() -> None:
                async for m in vendor.messages:
                    assert isinstance(m.payload, bytes)
                    body = json.loads(m.payload)
                    answers[str(m.topic)] = answers.get(str(m.topic), {}) | {str(body["id"]): body}
                    if sum(len(v) for v in answers.values()) >= 3:
                        return

            await asyncio.wait_for(collect(), 10)
        plug = answers[f"{prefix}/rejected/11620/plug/plug-7/reading"]
        assert "JSON" in str(plug["None"]["reason"])
        assert "in the future" in str(plug["f-1"]["reason"])
        nope = answers[f"{prefix}/rejected/11620/plug/nope/reading"]
        assert nope["u-1"]["reason"] == "unknown device 'nope'"
        assert nope["u-1"]["topic"] == f"{prefix}/11620/plug/nope/reading"
        assert await _count(sessions) == 2  # the good reading (power + light) is stored
        assert sub.dropped >= 3


class FailingOnce(MqttSignalSubscriber):
    """The database is down for the first batch (a restart, a lost connection)."""

    failures = 0

    async def _ingest(self, batch: list[tuple[str, bytes]]) -> list[Rejection]:
        if self.failures == 0:
            self.failures += 1
            raise ConnectionError("database unavailable")
        return await super()._ingest(batch)


async def test_given_store_fails_when_reading_arrives_then_broker_redelivers_and_none_is_lost(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _resident_with_plug(sessions)
    async with _running(FailingOnce, sessions) as (sub, prefix):
        reading = {"id": "r-9", "at": T0.isoformat(), "power_w": 12.0, "light_lux": 30}
        async with aiomqtt.Client(
            "127.0.0.1", 1883, identifier=f"pub-{uuid.uuid4().hex[:8]}"
        ) as pub:
            await pub.publish(f"{prefix}/11620/plug/plug-7/reading", json.dumps(reading), qos=1)
        for _ in range(200):
            if await _count(sessions) == 2:
                break
            await asyncio.sleep(0.05)
        # Not acknowledged when the store failed, so the broker delivered it again.
        assert sub.failures == 1
        assert await _count(sessions) == 2  # power + light, once


@pytest.mark.parametrize(
    ("topic", "payload", "error"),
    [
        ("anbu/11620/plug/p1", b"{}", "is not anbu/"),
        ("anbu/11620/toaster/p1/reading", b"{}", "unknown device kind"),
        ("anbu/11620/plug/p1/reading", b"[1]", "JSON object"),
        ("anbu/11620/plug/p1/reading", b'{"at": "2026-11-25T00:00:00Z", "power_w": 3}', "'id'"),
        ("anbu/11620/plug/p1/reading", b'{"id": "a", "at": "2026-11-25T00:00:00Z"}', "value"),
        ("anbu/11620/app/a1/event", b'{"id": "a", "at": "2026-11-25T00:00:00Z"}', "do not send"),
    ],
)
def test_given_bad_message_when_translated_then_clear_error(
    topic: str, payload: bytes, error: str
) -> None:
    with pytest.raises(MqttPayloadError, match=error):
        to_events(parse_topic(topic, "anbu"), payload, T0)


def test_given_steps_reading_when_translated_then_one_steps_event_keyed_by_device() -> None:
    (ev,) = to_events(
        parse_topic("anbu/11620/app/app-1/reading", "anbu"),
        b'{"id": "s9", "at": "2026-11-25T09:00:00+09:00", "steps": 312}',
        T0,
    )
    assert (ev.source, ev.event_id, ev.kind.value, ev.value) == ("mqtt", "app-1:s9", "steps", 312)
