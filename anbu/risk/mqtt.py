"""MQTT adapter: smart plugs and sensors publish to Mosquitto; we subscribe and ingest in batches.

Topic scheme (see docs/signals.md): ``<prefix>/<district_code>/<device_kind>/<device_id>/<message>``
with ``message`` one of ``reading``, ``heartbeat``, ``event``. The payload is JSON:

- ``plug/.../reading``: ``{"id": "r-123", "at": "2026-11-25T09:00:00+09:00", "power_w": 81.5,
  "light_lux": 240, "interval_s": 600}`` (``light_lux``/``interval_s`` optional)
- ``app/.../reading``: ``{"id": ..., "at": ..., "steps": 312}``
- ``motion_sensor|door_sensor/.../event``: ``{"id": ..., "at": ...}``
- ``*/heartbeat``: ``{"id": ..., "at": ..., "online": true}``; a device's MQTT last will should
  be ``{"online": false}`` on its heartbeat topic (``id``/``at`` may be left out there).

Every message becomes events with source ``mqtt`` and event id ``<device_id>:<id>[:power|:light]``,
so a redelivered message (QoS 1 is at-least-once) is stored once. The district in the topic must
be the device's district. Subscriptions are QoS 1 on a persistent session, so the broker keeps
messages while we are away.

A message we refuse (bad topic or payload, unknown or foreign device, no consent, a timestamp in
the future) is answered on ``<prefix>/rejected/<district>/<kind>/<device>/<message>`` with
``{"topic": ..., "id": ..., "reason": ..., "at": ...}`` (QoS 0, not retained), so a device
vendor's cloud can subscribe and see why, as an API caller sees per-item errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import District
from anbu.db.outage import report_failure
from anbu.domain.risk import DEFAULT_RULES, DeviceKind, Rules
from anbu.ports import Clock
from anbu.risk.ingest import IngestReport, ingest
from anbu.risk.schemas import SignalEventIn
from anbu.settings import MqttSettings

log = logging.getLogger(__name__)

SOURCE = "mqtt"


class MqttPayloadError(ValueError):
    """A message we cannot turn into events (bad topic or payload)."""


@dataclass(frozen=True, slots=True)
class Topic:
    district_code: str
    device_kind: DeviceKind
    device_id: str
    message: str


def parse_topic(topic: str, prefix: str) -> Topic:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != prefix:
        raise MqttPayloadError(f"topic {topic!r} is not {prefix}/<district>/<kind>/<device>/<msg>")
    _, district, kind, device_id, message = parts
    try:
        device_kind = DeviceKind(kind)
    except ValueError as exc:
        raise MqttPayloadError(f"unknown device kind {kind!r} in topic {topic!r}") from exc
    if message not in ("reading", "heartbeat", "event"):
        raise MqttPayloadError(f"unknown message type {message!r} in topic {topic!r}")
    return Topic(district, device_kind, device_id, message)


def to_events(topic: Topic, payload: bytes, received_at: dt.datetime) -> list[SignalEventIn]:
    """Translate one MQTT message into signal events (raises MqttPayloadError)."""
    try:
        body = json.loads(payload) if payload else {}
    except ValueError as exc:
        raise MqttPayloadError(f"payload is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise MqttPayloadError("payload must be a JSON object")
    at = body.get("at")
    msg_id = body.get("id")
    base: dict[str, Any] = {"source": SOURCE, "device_id": topic.device_id}
    raw: list[dict[str, Any]] = []
    if topic.message == "heartbeat":
        online = body.get("online", True)
        if msg_id is None:  # a last will carries no id: key it by the time we got it
            msg_id = f"hb-{received_at.isoformat()}"
        raw.append({"event_id": f"{msg_id}", "kind": "heartbeat", "online": online})
        at = at or received_at.isoformat()
    elif topic.device_kind is DeviceKind.PLUG and topic.message == "reading":
        raw.append(
            {
                "event_id": f"{msg_id}:power",
                "kind": "power",
                "value": body.get("power_w"),
                "interval_s": body.get("interval_s"),
            }
        )
        if body.get("light_lux") is not None:
            raw.append({"event_id": f"{msg_id}:light", "kind": "light", "value": body["light_lux"]})
    elif topic.device_kind is DeviceKind.APP and topic.message == "reading":
        raw.append({"event_id": f"{msg_id}", "kind": "steps", "value": body.get("steps")})
    elif topic.device_kind in (DeviceKind.MOTION_SENSOR, DeviceKind.DOOR_SENSOR):
        kind = "motion" if topic.device_kind is DeviceKind.MOTION_SENSOR else "door"
        raw.append({"event_id": f"{msg_id}", "kind": kind})
    else:
        raise MqttPayloadError(f"{topic.device_kind.value} devices do not send {topic.message}")
    if msg_id is None or at is None:
        raise MqttPayloadError("payload needs 'id' and 'at'")
    out = []
    for r in raw:
        r["event_id"] = f"{topic.device_id}:{r['event_id']}"
        try:
            out.append(SignalEventIn.model_validate({**base, **r, "at": at}))
        except PydanticValidationError as exc:
            raise MqttPayloadError(str(exc.errors()[0]["msg"])) from exc
    return out


def _only(district_id: int) -> Callable[[int], bool]:
    return lambda d: d == district_id


IngestHook = Callable[[IngestReport], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    paho: Any  # the connection it came in on: the acknowledgement goes back on it


@dataclass(frozen=True, slots=True)
class Rejection:
    topic: str  # where the message came in
    message_id: str | None  # the payload's "id", when it had one
    reason: str


def rejected_topic(topic: str, prefix: str) -> str:
    """Where the refusal of a message on ``topic`` is published: one level deeper than what
    the subscriber listens to, so it never hears its own answers."""
    rest = topic[len(prefix) + 1 :] if topic.startswith(prefix + "/") else topic
    return f"{prefix}/rejected/{rest}"


def _message_id(payload: bytes) -> str | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    mid = data.get("id") if isinstance(data, dict) else None
    return str(mid) if mid is not None else None


def _ack(batch: list[_Received]) -> None:
    """PUBACK in arrival order (MQTT 3.1.1 4.6.0-2), after the batch is committed. A message
    from a connection that has since dropped needs none: the broker redelivers it."""
    for m in batch:
        if m.qos > 0:
            m.paho.ack(m.mid, m.qos)


def subscriber_options(settings: MqttSettings) -> dict[str, Any]:
    """The connection keywords of :class:`MqttSignalSubscriber` from ``settings.mqtt``."""
    tls = None
    if settings.tls:
        tls = aiomqtt.TLSParameters(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
        )
    return {
        "host": settings.host,
        "port": settings.port,
        "prefix": settings.prefix,
        "client_id": settings.client_id,
        "username": settings.username,
        "password": settings.password.get_secret_value() if settings.password else None,
        "tls": tls,
    }


class MqttSignalSubscriber:
    """Subscribes to ``<prefix>/+/+/+/+`` and ingests messages in small batches.

    ``run()`` reconnects with backoff until cancelled; ``ready`` is set while subscribed.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "anbu",
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: aiomqtt.TLSParameters | None = None,
        batch_max: int = 500,
        batch_wait_s: float = 0.2,
        on_ingested: IngestHook | None = None,
        rules: Rules = DEFAULT_RULES,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._host = host
        self._port = port
        self._prefix = prefix
        # One id per process unless configured: a fixed id shared by every process would let
        # one take the other's session (and its queued messages) at each connect.
        self._client_id = client_id or f"anbu-signals-{secrets.token_hex(4)}"
        self._username = username
        self._password = password
        self._tls = tls
        self._batch_max = batch_max
        self._batch_wait_s = batch_wait_s
        self._on_ingested = on_ingested
        self._rules = rules
        self._queue: asyncio.Queue[_Received] = asyncio.Queue(maxsize=10_000)
        self._districts: dict[str, int] = {}
        self.ready = asyncio.Event()
        self.dropped = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._receive())
            tg.create_task(self._ingest_loop())

    async def _receive(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with aiomqtt.Client(
                    self._host,
                    self._port,
                    identifier=self._client_id,
                    clean_session=False,
                    username=self._username,
                    password=self._password,
                    tls_params=self._tls,
                ) as client:
                    # Acknowledge a QoS 1 message only once it is committed (see _ack): a crash
                    # in between makes the broker redeliver it to this persistent session, and
                    # the (source, event id) key drops what was stored already. aiomqtt 2 has
                    # no manual-ack API, so this reaches the paho client it wraps.
                    paho = client._client
                    paho.manual_ack_set(True)
                    await client.subscribe(f"{self._prefix}/+/+/+/+", qos=1)
                    self.ready.set()
                    backoff = 0.5
                    log.info(
                        "mqtt: subscribed to %s/+/+/+/+ on %s:%d",
                        self._prefix,
                        self._host,
                        self._port,
                    )
                    async for message in client.messages:
                        payload = message.payload
                        data = (
                            payload
                            if isinstance(payload, bytes | bytearray)
                            else str(payload or "").encode()
                        )
                        await self._queue.put(
                            _Received(
                                str(message.topic), bytes(data), message.mid, message.qos, paho
                            )
                        )
            except aiomqtt.MqttError as exc:
                self.ready.clear()
                log.warning("mqtt: connection lost (%s); reconnecting in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _ingest_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self._batch_wait_s
            while len(batch) < self._batch_max:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            try:
                rejections = await self._ingest([(m.topic, m.payload) for m in batch])
            except Exception as error:
                # Not acknowledged. Drop the connection so the broker redelivers the batch to
                # the persistent session when _receive reconnects (with backoff).
                report_failure(
                    log, self._sessions, f"mqtt: ingesting {len(batch)} message(s)", error
                )
                batch[0].paho.disconnect()
                continue
            _ack(batch)
            self._answer(batch[-1].paho, rejections)

    def _answer(self, paho: Any, rejections: list[Rejection]) -> None:
        at = self._clock.now().isoformat()
        for r in dict.fromkeys(rejections):  # a plug reading is two events: answer once
            body = {"topic": r.topic, "id": r.message_id, "reason": r.reason, "at": at}
            # QoS 0 through the client's own queue: a lost answer loses nothing stored.
            paho.publish(
                rejected_topic(r.topic, self._prefix),
                json.dumps(body, ensure_ascii=False),
                qos=0,
            )

    async def _ingest(self, batch: list[tuple[str, bytes]]) -> list[Rejection]:
        """Store a batch of messages; returns the refusals to answer (after the commit)."""
        now = self._clock.now()
        items: list[tuple[int, SignalEventIn]] = []
        wanted: dict[int, int] = {}  # item index -> district id the topic named
        origin: dict[int, tuple[str, bytes]] = {}  # item index -> the message it came from
        rejections: list[Rejection] = []
        async with self._sessions() as session:
            for topic_s, payload in batch:
                try:
                    topic = parse_topic(topic_s, self._prefix)
                    district_id = await self._district(session, topic.district_code)
                    for ev in to_events(topic, payload, now):
                        wanted[len(items)] = district_id
                        origin[len(items)] = (topic_s, payload)
                        items.append((len(items), ev))
                except MqttPayloadError as exc:
                    self.dropped += 1
                    log.warning("mqtt: dropped a message on %s: %s", topic_s, exc)
                    rejections.append(Rejection(topic_s, _message_id(payload), str(exc)))
            if not items:
                return rejections
            # Per item, the device must belong to the topic's district; ingest checks it
            # through can_see, so group by district (one ingest call per district).
            by_district: dict[int, list[tuple[int, SignalEventIn]]] = {}
            for i, ev in items:
                by_district.setdefault(wanted[i], []).append((i, ev))
            for district_id, part in by_district.items():
                report = await ingest(
                    session, part, now=now, can_see=_only(district_id), rules=self._rules
                )
                by_index = dict(part)
                for err in report.errors:
                    self.dropped += 1
                    log.warning(
                        "mqtt: refused event %s: %s", by_index[err.index].event_id, err.reason
                    )
                    topic_s, payload = origin[err.index]
                    rejections.append(Rejection(topic_s, _message_id(payload), err.reason))
                if self._on_ingested is not None:
                    await self._on_ingested(report)
        return rejections

    async def _district(self, session: AsyncSession, code: str) -> int:
        if code not in self._districts:
            found = (
                await session.execute(select(District.id).where(District.code == code))
            ).scalar_one_or_none()
            if found is None:
                raise MqttPayloadError(f"unknown district {code!r}")
            self._districts[code] = found
        return self._districts[code]
