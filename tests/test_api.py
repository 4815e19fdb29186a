"""The API without telephony: auth, district scoping, validation, the check-in lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from anbu.app.parts import build_container
from anbu.settings import Settings
from tests.api_support import ADMIN, api_client


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with api_client(build_container(Settings(database_url=db_url))) as (client, keys):
        yield client, keys


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def _resident(client: httpx.AsyncClient, key: str, phone: str = "010-1234-5678") -> str:
    r = await client.post(
        "/v1/residents",
        headers=h(key),
        json={"district_code": "11620", "name": "김안부", "phone": phone, "dong": "신림동"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["phone"] == "01012345678"
    assert body["phone_masked"] == "*******5678"
    return str(body["id"])


async def test_given_no_key_when_reading_then_401_but_health_is_open(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, _ = api
    r = await client.get("/v1/residents")
    assert r.status_code == 401
    assert r.json()["error"] == "unauthenticated"
    r = await client.get("/v1/residents", headers=h("nope"))
    assert r.status_code == 401
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["checks"]["database"] is True


async def test_given_bad_phone_when_creating_resident_then_422_names_the_field(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, keys = api
    r = await client.post(
        "/v1/residents",
        headers=h(keys["gwanak"]),
        json={"district_code": "11620", "name": "김", "phone": "555-1234"},
    )
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_request"
    assert body["fields"][0]["field"] == "phone"
    assert "Korean" in body["detail"]


async def test_given_other_districts_key_when_reading_resident_then_404(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, keys = api
    rid = await _resident(client, keys["gwanak"])
    assert (await client.get(f"/v1/residents/{rid}", headers=h(keys["gwanak"]))).status_code == 200
    assert (await client.get(f"/v1/residents/{rid}", headers=h(keys["gangnam"]))).status_code == 404
    r = await client.post(
        "/v1/residents",
        headers=h(keys["gangnam"]),
        json={"district_code": "11620", "name": "x", "phone": "01011112222"},
    )
    assert r.status_code == 422
    listed = await client.get("/v1/residents", headers=h(keys["gangnam"]))
    assert listed.json()["items"] == []
    listed = await client.get("/v1/residents", headers=h(keys["gwanak"]))
    assert [r["id"] for r in listed.json()["items"]] == [rid]


async def test_given_resident_when_checkin_posted_then_202_and_readable_with_pending_attempt(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, keys = api
    rid = await _resident(client, keys["gwanak"])
    r = await client.post(
        "/v1/checkins",
        headers=h(keys["gwanak"]),
        json={"resident_id": rid, "reason": "통화 없음 3일"},
    )
    assert r.status_code == 202, r.text
    cid = r.json()["id"]
    assert r.json()["joined_existing"] is False
    again = await client.post(
        "/v1/checkins",
        headers=h(keys["gwanak"]),
        json={"resident_id": rid, "reason": "전력 변화 없음"},
    )
    assert again.json() == {"id": cid, "status": "pending", "joined_existing": True}
    got = await client.get(f"/v1/checkins/{cid}", headers=h(keys["gwanak"]))
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "pending"
    assert body["outcome"] is None
    assert body["reason"] == "통화 없음 3일\n전력 변화 없음"
    assert [a["status"] for a in body["attempts"]] == ["scheduled"]
    assert (await client.get(f"/v1/checkins/{cid}", headers=h(keys["gangnam"]))).status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"resident_id": "nope", "reason": "x"}, 404),
        ({"resident_id": "x"}, 422),
        ({"resident_id": "x", "reason": ""}, 422),
        ({"resident_id": "x", "reason": "r", "priority": 1000}, 422),
        ({"resident_id": "x", "reason": "r", "extra": 1}, 422),
    ],
)
async def test_given_bad_checkin_request_when_posted_then_4xx_with_reason(
    api: tuple[httpx.AsyncClient, dict[str, str]], body: dict[str, object], status: int
) -> None:
    client, keys = api
    r = await client.post("/v1/checkins", headers=h(keys["gwanak"]), json=body)
    assert r.status_code == status
    assert r.json()["detail"]


async def test_given_malformed_json_when_posted_then_422_not_500(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, keys = api
    r = await client.post(
        "/v1/checkins",
        headers={**h(keys["gwanak"]), "content-type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 422


async def test_given_district_key_when_creating_district_then_403_admin_only(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, keys = api
    r = await client.post(
        "/v1/districts", headers=h(keys["gwanak"]), json={"code": "1", "name": "x"}
    )
    assert r.status_code == 403
    r = await client.post(
        "/v1/districts", headers=h(ADMIN), json={"code": "11110", "name": "종로구"}
    )
    assert r.status_code == 201
    r = await client.post(
        "/v1/districts", headers=h(ADMIN), json={"code": "11110", "name": "종로구"}
    )
    assert r.status_code == 409


async def test_openapi_is_served(api: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, _ = api
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    assert "/v1/checkins" in r.json()["paths"]
    assert (await client.get("/docs")).status_code == 200
