"""Request limits: the body size is enforced while the body streams in (issue 12: three 100 MB
POSTs took the process from 108 MB to 717 MB), and token buckets limit each API key and each
client address on the routes anyone can reach."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx

from anbu.api.limits import TokenBuckets
from anbu.app.parts import build_api, build_container
from anbu.services.admin import create_api_key, ensure_district
from anbu.settings import LimitSettings, Settings
from tests.api_support import ADMIN
from tests.test_api import api  # noqa: F401

API = tuple[httpx.AsyncClient, dict[str, str]]
MB = 1024 * 1024


async def test_given_a_100_mb_body_when_streamed_then_413_before_most_of_it_is_read(
    api: API,  # noqa: F811
) -> None:
    client, _ = api
    pulled = 0

    async def hundred_mb() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(100):
            pulled += 1
            yield b" " * MB

    r = await client.post(
        "/v1/residents",
        content=hundred_mb(),
        headers={"X-API-Key": ADMIN, "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"] == "too_large"
    assert pulled <= 6  # the default limit is 5 MB: the rest is never read

    # A declared Content-Length over the limit is refused before any byte is read.
    r = await client.post(
        "/ack/x",
        content=b"finding=safe" + b"&" * (6 * MB),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413


def _batch(n: int) -> bytes:
    """A worst-realistic signal batch: UUID event ids and resident ids, plug readings."""
    rid = uuid.uuid4().hex
    return json.dumps(
        {
            "events": [
                {
                    "source": "plug-gateway-01",
                    "event_id": str(uuid.uuid4()),
                    "kind": "power",
                    "resident_id": rid,
                    "device_id": f"plug-{rid[:12]}",
                    "at": "2026-11-25T10:00:00.000000+09:00",
                    "value": 123.456,
                }
                for _ in range(n)
            ]
        }
    ).encode()


async def test_given_the_largest_signal_batch_when_posted_then_within_the_body_limit(
    api: API,  # noqa: F811
) -> None:
    client, _ = api
    body = _batch(10_000)
    assert len(body) < LimitSettings().max_body_bytes
    r = await client.post(
        "/v1/signals",
        content=body,
        headers={"X-API-Key": ADMIN, "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text[:300]  # every event refused (unknown resident), not 413
    r = await client.post(
        "/v1/signals",
        content=_batch(10_001),
        headers={"X-API-Key": ADMIN, "Content-Type": "application/json"},
    )
    assert r.status_code == 422  # the batch limit itself stays


def test_given_a_bucket_when_emptied_then_refused_until_refilled() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.allow("a")[0] for _ in range(4)] == [True, True, True, False]
    assert buckets.allow("b")[0]  # another key has its own bucket
    ok, wait = buckets.allow("a")
    assert not ok
    assert wait == 0.5
    now[0] = 0.5
    assert buckets.allow("a")[0]
    assert not buckets.allow("a")[0]


async def test_given_small_limits_when_exceeded_then_429_per_key_and_per_route(
    db_url: str,
) -> None:
    limits = LimitSettings(
        per_key_rate=0.001,
        per_key_burst=3,
        ack_rate=0.001,
        ack_burst=2,
        callback_rate=0.001,
        callback_burst=2,
    )
    container = build_container(Settings(database_url=db_url, limits=limits))
    async with container.sessions() as s:
        await ensure_district(s, "11620", "관악구")
        await create_api_key(s, "a", admin=True, key="key-a")
        await create_api_key(s, "b", admin=True, key="key-b")
        await s.commit()
    transport = httpx.ASGITransport(app=build_api(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://anbu") as client:
            codes = [
                (await client.get("/v1/districts", headers={"X-API-Key": "key-a"})).status_code
                for _ in range(4)
            ]
            assert codes == [200, 200, 200, 429]
            r = await client.get("/v1/districts", headers={"X-API-Key": "key-a"})
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"] == "rate_limited"
            assert (
                await client.get("/v1/districts", headers={"X-API-Key": "key-b"})
            ).status_code == 200
            codes = [(await client.get("/ack/nope")).status_code for _ in range(3)]
            assert codes == [404, 404, 429]
            inbound = "/v1/sms/kannel/inbound?from=01055550001&text=1&id="
            codes = [(await client.get(inbound + str(n))).status_code for n in range(3)]
            assert codes == [200, 200, 429]
    finally:
        await container.aclose()
