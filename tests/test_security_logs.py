"""Logs hold no full phone number, no ack token, no secret and no message text: anbu's own
lines, uvicorn's access log over real HTTP, and Kannel's logs with a real Kannel.

Issue 12 found ``/v1/do-not-call/010...``, ``?from=010...`` and ``/ack/<token>`` in the access
log, and officials' numbers and the text in Kannel's access log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from anbu.app.parts import build_api, build_container
from anbu.domain.sms_text import OutgoingSms
from anbu.logs import configure_logging, mask_text
from anbu.services.admin import create_api_key, ensure_district
from anbu.settings import EscalationSettings, Settings
from devstack.kannel import KannelInstance
from escalation.dlr import parse_delivery_report, parse_inbound_sms
from tests.fixtures_asterisk import free_ports
from tests.fixtures_kannel import (
    DLR_PATH,
    MO_PATH,
    OUR_NUMBER,
    RecordingServer,
    kannel_sender_for,
)

NUMBER = "01098765432"
TOKEN = "S3cr3t-Ack_Token-abcdefghijkl"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(logging.INFO, stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


async def test_given_real_http_requests_when_logged_then_access_log_masks_numbers_and_tokens(
    db_url: str, captured: io.StringIO
) -> None:
    settings = Settings(
        database_url=db_url,
        escalation=EscalationSettings(callback_token=SecretStr("cb-secret-1234567890")),
    )
    container = build_container(settings)
    async with container.sessions() as s:
        await ensure_district(s, "11620", "관악구")
        await create_api_key(s, "a", admin=True, key="the-admin-key")
        await s.commit()
    [port] = free_ports(1)
    config = uvicorn.Config(
        build_api(container), host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            h = {"X-API-Key": "the-admin-key"}
            await client.get(f"/v1/do-not-call/{NUMBER}", headers=h)
            await client.get("/v1/do-not-call/010-9876-5432?district_code=11620", headers=h)
            await client.get(
                f"/v1/sms/kannel/inbound?key=cb-secret-1234567890&from={NUMBER}"
                "&text=%EC%95%88%EB%85%95+SECRETWORD&id=x1"
            )
            await client.get(f"/ack/{TOKEN}")
            await client.post(f"/ack/{TOKEN}", json={"finding": "safe"})
    finally:
        server.should_exit = True
        await task
        await container.aclose()
    out = captured.getvalue()
    assert "GET /v1/do-not-call/*******5432" in out  # the access log is ours, and masked
    assert "/ack/***" in out
    for secret in (NUMBER, "9876-5432", TOKEN, "cb-secret-1234567890", "SECRETWORD"):
        assert secret not in out


def test_given_json_format_when_logging_then_one_masked_object_per_line() -> None:
    stream = io.StringIO()
    handler = configure_logging(logging.INFO, "json", stream=stream)
    try:
        logging.getLogger("anbu.test").warning("reply from %s: %s", NUMBER, "ok")
        try:
            raise ValueError(f"bad number {NUMBER}")
        except ValueError:
            logging.getLogger("anbu.test").exception("failed for /ack/%s", TOKEN)
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines() if line[:1] == "{")
    assert first["msg"] == "reply from *******5432: ok"
    assert first["level"] == "WARNING"
    assert first["logger"] == "anbu.test"
    assert second["msg"] == "failed for /ack/***"
    assert NUMBER not in second["exc"]
    assert "*******5432" in second["exc"]


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("to 010-1234-5678.", "to *******5678."),
        ("+82 10 1234 5678", "********5678"),
        ("from=%2B821012345678&x=1", "from=*********5678&x=1"),
        ("02-123-4567 and 0212345678", "*****4567 and ******5678"),
        ("ts=1795610054 id=0a1b2c3d4e", "ts=1795610054 id=0a1b2c3d4e"),
        ("?password=hunter2&user=anbu", "?password=***&user=anbu"),
        ('{"name": "김안부"}', '{"name": "***"}'),
    ],
)
def test_given_lines_when_masked_then_numbers_secrets_and_names_hidden(
    line: str, masked: str
) -> None:
    assert mask_text(line) == masked


async def test_given_kannel_when_it_sends_and_receives_then_its_logs_hold_no_number_or_text(
    kannel_factory: Callable[[], KannelInstance], callback_server: RecordingServer
) -> None:
    instance = kannel_factory()
    sender = kannel_sender_for(instance, callback_server)
    official = "01076540123"
    try:
        await sender.send(OutgoingSms("logs-1", official, OUR_NUMBER, "안부 알림 SECRETTEXT 확인"))
        await callback_server.wait_for(
            DLR_PATH,
            lambda hit: parse_delivery_report(hit.query).reference == "logs-1",
            count=2,
        )
        await instance.inject_reply(official, "123456 REPLYTEXT")
        await callback_server.wait_for(
            MO_PATH, lambda hit: parse_inbound_sms(hit.query).sender == official
        )
    finally:
        await sender.aclose()
    logs = {
        path.name: path.read_text("utf-8", errors="replace")
        for path in instance.dir.glob("*.log")
        if path != instance.fakesmsc_log  # the phone network's stand-in, not Kannel
    }
    assert {"bearerbox.log", "smsbox.log", "access.log"} <= set(logs)
    assert "Sent SMS" in logs["access.log"]  # the access log still says what happened
    for name, text in logs.items():
        for secret in (official, official[3:], "SECRETTEXT", "REPLYTEXT", "123456"):
            assert secret not in text, f"{secret} in {name}"
