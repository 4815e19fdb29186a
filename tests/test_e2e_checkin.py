"""End to end through the production wiring: HTTP API -> database -> dispatcher -> AMI ->
real Asterisk engine -> carrier stand-in -> FastAGI IVR -> outcome stored -> API.

``anbu.app.processes.running_services`` is the same composition ``anbu serve`` runs (telephony,
scheduler, escalation, MQTT), on each database backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from anbu.app.parts import build_api
from anbu.app.processes import running_services
from anbu.db.models_scheduling import Program
from anbu.settings import ROOT
from tests.fixtures_asterisk import AsteriskPair

DEV_KEY = {"X-API-Key": "dev-key"}


@pytest.fixture
async def api(asterisk_pair: AsteriskPair, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = asterisk_pair.settings.model_copy(
        update={
            "database_url": db_url,
            "audio_dir": ROOT / "audio",  # the shipped Korean prompts
        }
    )
    async with running_services(settings) as svc:
        container, telephony = svc.container, svc.telephony
        assert telephony is not None
        assert telephony.ami.booted
        async with container.sessions() as s:
            # Calls around the clock for the test (the default window is weekdays 09-18 KST).
            s.add(Program.any_hour("test-all-day", max_attempts=1))
            await s.commit()
        app = build_api(container, svc.escalation.service)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://anbu"
        ) as client:
            yield client


async def _final(client: httpx.AsyncClient, checkin_id: str, timeout_s: float = 90) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        body = (await client.get(f"/v1/checkins/{checkin_id}", headers=DEV_KEY)).json()
        if body["status"] in ("completed", "exhausted", "cancelled"):
            return body
        assert asyncio.get_running_loop().time() < deadline, f"check-in never closed: {body}"
        await asyncio.sleep(0.25)


@pytest.mark.parametrize(
    ("number", "outcome", "reply", "keys"),
    [("010-9999-0001", "ok", "ok", "1"), ("010-9999-0002", "help", "help", "2")],
)
async def test_given_resident_when_checkin_posted_then_real_call_outcome_is_readable(
    api: httpx.AsyncClient, number: str, outcome: str, reply: str, keys: str
) -> None:
    r = await api.post("/v1/districts", headers=DEV_KEY, json={"code": "11620", "name": "관악구"})
    assert r.status_code == 201, r.text
    r = await api.post(
        "/v1/residents",
        headers=DEV_KEY,
        json={"district_code": "11620", "name": "김안부", "phone": number, "dong": "신림동"},
    )
    assert r.status_code == 201, r.text
    resident_id = r.json()["id"]

    r = await api.post(
        "/v1/checkins", headers=DEV_KEY, json={"resident_id": resident_id, "reason": "통화 없음"}
    )
    assert r.status_code == 202, r.text
    body = await _final(api, r.json()["id"])

    assert (body["status"], body["outcome"]) == ("completed", outcome)
    (attempt,) = body["attempts"]
    assert attempt["result"] == "answered"
    assert attempt["reply"] == reply
    assert attempt["keys"] == keys
    assert attempt["hangup_cause"] == 16
    assert attempt["originated_at"] <= attempt["answered_at"] <= attempt["ended_at"]
    # Timestamps keep milliseconds on both backends.
    assert "." in attempt["answered_at"]
