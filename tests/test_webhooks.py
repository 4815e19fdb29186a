"""Outcome webhooks against a real local HTTP receiver: down for over an hour, then up; every
event (check-in closed, each escalation step, the acknowledgement and finding) arrives once,
signed; another district's key hears nothing. On both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from anbu.db.models_webhooks import DeliveryState, WebhookDelivery
from anbu.domain.calls import CallResult
from anbu.domain.escalation import Finding
from anbu.services.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
    WebhookWorker,
    sign,
    verify,
)
from escalation.service import EscalationService
from tests.api_support import Api, api_over, h
from tests.fixtures_asterisk import free_ports
from tests.test_escalation_service import (
    T0,
    close_case,
    config,
    incident_of,
    link_token,
    make_world,
)

CONFIG = WebhookConfig(retry_initial_s=1, retry_max_s=300, give_up_h=72, timeout_s=5)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server on 127.0.0.1:port that records each POST and answers 204."""

    port: int
    got: list[Received] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/anbu-events"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.got.append(Received(headers, body))
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with api_over(db_url) as a:
        yield a


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    a, b = (Receiver(p) for p in free_ports(2))
    yield a, b
    await a.down()
    await b.down()


async def _register(api: Api, key: str, url: str) -> str:
    r = await api.client.put("/v1/webhook", headers=h(api.keys[key]), json={"url": url})
    assert r.status_code == 200, r.text
    assert r.json()["url"] == url
    secret: str = r.json()["secret"]
    return secret


async def _story(api: Api) -> None:
    """A case in 11620 that nobody answers, its incident, and an official's acknowledgement
    with a finding: through the real services."""
    sessions = api.container.sessions
    world = await make_world(sessions)
    closed = await close_case(sessions, world.resident_id, [CallResult.NO_ANSWER] * 2, T0)
    service = EscalationService(sessions, config(), clock=api.clock)
    api.clock.at = closed.at
    await service.on_checkin_closed(closed)
    incident = await incident_of(sessions, closed.checkin_id)
    token = await link_token(sessions, incident.id)
    await service.acknowledge_link(token, Finding.SAFE, "잘 계심", now=closed.at)


async def _rows(api: Api) -> list[WebhookDelivery]:
    async with api.container.sessions() as s:
        return list((await s.execute(select(WebhookDelivery))).scalars())


async def test_given_a_receiver_down_for_an_hour_when_it_comes_up_then_every_event_once_signed(
    api: Api, receivers: tuple[Receiver, Receiver]
) -> None:
    gwanak_rx, gangnam_rx = receivers
    secret = await _register(api, "gwanak", gwanak_rx.url)
    await _register(api, "gangnam", gangnam_rx.url)
    await _story(api)

    worker = WebhookWorker(api.container.sessions, config=CONFIG, clock=api.clock)
    try:
        # Down (nothing listens on the port) for 65 minutes of retries.
        start = api.clock.now()
        while api.clock.now() - start < dt.timedelta(minutes=65):
            await worker.run_once()
            api.clock.advance(dt.timedelta(seconds=30))
        rows = await _rows(api)
        assert rows, "no event was stored"
        assert {r.status for r in rows} == {DeliveryState.PENDING}
        assert min(r.attempts for r in rows) >= 10
        assert all("ConnectError" in (r.last_error or "") for r in rows)

        await gwanak_rx.up()
        api.clock.advance(dt.timedelta(seconds=CONFIG.retry_max_s))
        for _ in range(5):
            await worker.run_once()
        api.clock.advance(dt.timedelta(hours=1))
        assert await worker.run_once() == 0  # nothing left, nothing sent twice
    finally:
        await worker.aclose()

    bodies = [json.loads(r.body) for r in gwanak_rx.got]
    types = [b["type"] for b in bodies]
    assert sorted(types) == sorted(
        [
            "checkin.closed",
            "incident.opened",
            "incident.step",
            "incident.acknowledged",
            "incident.finding",
        ]
    )
    ids = [b["id"] for b in bodies]
    assert len(set(ids)) == len(ids)  # each event once
    for got, body in zip(gwanak_rx.got, bodies, strict=True):
        assert got.headers[EVENT_ID_HEADER.lower()] == body["id"]
        assert verify(
            secret,
            {
                SIGNATURE_HEADER: got.headers[SIGNATURE_HEADER.lower()],
                TIMESTAMP_HEADER: got.headers[TIMESTAMP_HEADER.lower()],
            },
            got.body,
        )
        assert not verify("whsec_wrong", _canon(got.headers), got.body)
        assert body["district_code"] == "11620"
        assert "김안부" not in got.body.decode()  # ids, never names or numbers
        assert "01012345678" not in got.body.decode()
    closed = next(b for b in bodies if b["type"] == "checkin.closed")
    assert closed["data"]["outcome"] == "unreachable"
    finding = next(b for b in bodies if b["type"] == "incident.finding")
    assert finding["data"]["finding"] == "safe"
    assert finding["data"]["status"] == "acknowledged"
    step = next(b for b in bodies if b["type"] == "incident.step")
    assert step["data"]["step_position"] == 1
    assert gangnam_rx.got == []  # another district's key hears nothing
    rows = await _rows(api)
    assert {r.status for r in rows} == {DeliveryState.DELIVERED}
    assert len(rows) == 5


def _canon(headers: dict[str, str]) -> dict[str, str]:
    return {
        SIGNATURE_HEADER: headers[SIGNATURE_HEADER.lower()],
        TIMESTAMP_HEADER: headers[TIMESTAMP_HEADER.lower()],
    }


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # Known answer (computed independently with hmac.new(b"s", b"1.{}", hashlib.sha256)).
    assert sign("s", 1, b"{}") == (
        "sha256=b253639bcd705ed1cda3073f66104f16988bd40272584dea7d0d345ae93e61cc"
    )
    headers = {TIMESTAMP_HEADER: "1", SIGNATURE_HEADER: sign("s", 1, b"{}")}
    assert verify("s", headers, b"{}")
    assert not verify("s", headers, b"{ }")
    assert not verify("s", {**headers, TIMESTAMP_HEADER: "2"}, b"{}")
    assert not verify("s", {SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}, b"{}")


async def test_given_a_revoked_key_or_removed_webhook_then_its_events_are_cancelled(
    api: Api, receivers: tuple[Receiver, Receiver]
) -> None:
    rx, _ = receivers
    await rx.up()
    await _register(api, "gwanak", rx.url)
    await _register(api, "admin", rx.url)
    await _story(api)
    r = await api.client.get("/v1/webhook", headers=h(api.keys["gwanak"]))
    assert r.json()["pending"] == 5
    assert "secret" not in r.json()
    assert (
        await api.client.delete("/v1/webhook", headers=h(api.keys["gwanak"]))
    ).status_code == 204
    r = await api.client.get("/v1/webhook", headers=h(api.keys["gwanak"]))
    assert r.json() == {"url": None, "events": [], "pending": 0}
    async with api.container.sessions() as s:
        from anbu.db.models import ApiKey

        admin = (await s.execute(select(ApiKey).where(ApiKey.name == "admin"))).scalar_one()
        admin.revoked_at = api.clock.now()
        await s.commit()
    worker = WebhookWorker(api.container.sessions, config=CONFIG, clock=api.clock)
    try:
        assert await worker.run_once() == 5  # the admin's: claimed, then cancelled
    finally:
        await worker.aclose()
    assert rx.got == []
    assert {r.status for r in await _rows(api)} == {DeliveryState.CANCELLED}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"url": "ftp://example.org/x"}, 422),
        ({"url": "not a url"}, 422),
        ({"url": 0}, 422),
        ({"url": "http://127.0.0.1:9/x", "rotate_secret": "yes"}, 422),
        ({"url": "http://127.0.0.1:9/x", "extra": 1}, 422),
    ],
)
async def test_given_a_bad_webhook_then_422(api: Api, body: dict[str, Any], status: int) -> None:
    r = await api.client.put("/v1/webhook", headers=h(api.keys["gwanak"]), json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"] == "invalid_request"


async def test_given_a_read_key_then_it_cannot_register_and_secrets_rotate_on_request(
    api: Api,
) -> None:
    r = await api.client.put(
        "/v1/webhook", headers=h(api.keys["gwanak-read"]), json={"url": "http://127.0.0.1:9/"}
    )
    assert r.status_code == 403
    first = await _register(api, "gwanak", "http://127.0.0.1:9/a")
    assert await _register(api, "gwanak", "http://127.0.0.1:9/b") == first
    r = await api.client.put(
        "/v1/webhook",
        headers=h(api.keys["gwanak"]),
        json={"url": "http://127.0.0.1:9/b", "rotate_secret": True},
    )
    assert r.json()["secret"] != first


def test_the_openapi_document_describes_the_callbacks(api_app_schema: dict[str, Any]) -> None:
    put = api_app_schema["paths"]["/v1/webhook"]["put"]
    (callback,) = put["callbacks"].values()
    (operation,) = callback.values()
    post = operation["post"]
    headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
    assert headers >= {"x-anbu-signature", "x-anbu-timestamp", "x-anbu-event-id"}


@pytest.fixture
def api_app_schema() -> dict[str, Any]:
    from anbu.app.parts import build_api, build_container
    from anbu.settings import Settings

    schema: dict[str, Any] = build_api(
        build_container(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    ).openapi()
    return schema


async def test_httpx_reaches_the_receiver(receivers: tuple[Receiver, Receiver]) -> None:
    rx, _ = receivers
    await rx.up()
    async with httpx.AsyncClient() as client:
        assert (await client.post(rx.url, content=b"x")).status_code == 204
    assert rx.got[0].body == b"x"


async def test_given_a_worker_that_died_mid_send_when_the_lease_runs_out_then_sent_again_once(
    api: Api, receivers: tuple[Receiver, Receiver]
) -> None:
    rx, _ = receivers
    await rx.up()
    await _register(api, "gwanak", rx.url)
    await _story(api)
    crashed = WebhookWorker(api.container.sessions, config=CONFIG, clock=api.clock)
    claimed = await crashed._claim(api.clock.now())  # claimed, never sent: the process died
    await crashed.aclose()
    assert len(claimed) == 5
    assert {r.status for r in await _rows(api)} == {DeliveryState.SENDING}
    worker = WebhookWorker(api.container.sessions, config=CONFIG, clock=api.clock)
    try:
        assert await worker.recover() == 0  # inside the lease: maybe still sending
        api.clock.advance(dt.timedelta(seconds=CONFIG.sending_lease_s + 1))
        assert await worker.recover() == 5
        assert await worker.run_once() == 5
        assert await worker.run_once() == 0
    finally:
        await worker.aclose()
    ids = [json.loads(r.body)["id"] for r in rx.got]
    assert len(ids) == len(set(ids)) == 5
    assert {r.status for r in await _rows(api)} == {DeliveryState.DELIVERED}
