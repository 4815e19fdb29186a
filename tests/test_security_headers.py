"""Security headers: the ack page cannot be framed and loads nothing, personal data is never
cached, no Referer carries the link; ``/docs`` is off in production unless switched on."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from anbu.app.parts import build_api, build_container
from anbu.settings import EscalationSettings, MqttSettings, Settings
from tests.test_escalation_api import Api, _incident, api  # noqa: F401

PRODUCTION = {
    "environment": "production",
    "engine": {
        "sip_port": 1,
        "ami_port": 2,
        "rtp_start": 3,
        "rtp_end": 4,
        "ami_secret": "a-real-ami-secret",
    },
    "sms": {
        "kannel_password": "a-real-kannel-password",
        "kannel_admin_password": "a-real-kannel-admin",
    },
    "public_url": "https://anbu.example.go.kr",
    "trunk": {"caller_id": "0212345678"},
    "bootstrap_api_key": None,
    "escalation": EscalationSettings(callback_token=SecretStr("a-callback-token-0123456789")),
    "mqtt": MqttSettings(username="anbu-signals", password=SecretStr("a-real-mqtt-password")),
}


async def test_given_ack_page_and_api_answers_then_security_headers_are_set(
    api: Api,  # noqa: F811
) -> None:
    resident_id, token = await _incident(api)
    page = await api.client.get(f"/ack/{token}")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert "form-action 'self'" in csp
    assert "script-src" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    person = await api.client.get(f"/v1/residents/{resident_id}", headers=api.h("gwanak"))
    assert person.status_code == 200
    assert person.headers["Cache-Control"] == "no-store"
    assert person.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in person.headers["Content-Security-Policy"]
    refused = await api.client.get("/v1/residents")
    assert refused.headers["Cache-Control"] == "no-store"  # errors too


@pytest.mark.parametrize(
    ("settings", "docs"),
    [({}, 200), (PRODUCTION, 404), ({**PRODUCTION, "api_docs": True}, 200)],
)
async def test_given_environment_when_asking_for_docs_then_on_except_in_production(
    db_url: str, settings: dict[str, object], docs: int
) -> None:
    container = build_container(Settings(database_url=db_url, **settings))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=build_api(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://anbu") as client:
            assert (await client.get("/docs")).status_code == docs
            assert (await client.get("/openapi.json")).status_code == docs
    finally:
        await container.aclose()
