"""Shared set-up for the API contract tests (keys, audit, retention, webhooks): an app over a
fresh database on each backend, a clock the test moves, and keys per scope."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from anbu.app.parts import build_api, build_container
from anbu.container import Container
from anbu.services.admin import create_api_key, ensure_district
from anbu.settings import Settings

START = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)
ADMIN = "admin-test-key"
Keys = dict[str, str]  # role -> API key


class MovableClock:
    def __init__(self, now: dt.datetime = START) -> None:
        self.at = now

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, delta: dt.timedelta) -> None:
        self.at += delta


@dataclass
class Api:
    client: httpx.AsyncClient
    keys: dict[str, str]
    container: Container
    clock: MovableClock


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def seed_keys(container: Container, *, read_only_key: bool = False) -> Keys:
    """관악구 (11620) and 강남구 (11680), and the API keys ``admin`` (every district),
    ``gwanak``, ``gangnam`` and, with ``read_only_key``, ``gwanak-read`` (read scope only)."""
    async with container.sessions() as s:
        await ensure_district(s, "11620", "관악구")
        await ensure_district(s, "11680", "강남구")
        keys = {
            "admin": await create_api_key(s, "admin", admin=True, key=ADMIN),
            "gwanak": await create_api_key(s, "gwanak", ["11620"]),
            "gangnam": await create_api_key(s, "gangnam", ["11680"]),
        }
        if read_only_key:
            keys["gwanak-read"] = await create_api_key(s, "gwanak-read", ["11620"], scopes=["read"])
        await s.commit()
    return keys


@asynccontextmanager
async def api_over(db_url: str, settings: Settings | None = None) -> AsyncIterator[Api]:
    clock = MovableClock()
    container = build_container(settings or Settings(database_url=db_url), clock=clock)
    keys = await seed_keys(container, read_only_key=True)
    app = build_api(container)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://anbu") as client:
        yield Api(client, keys, container, clock)
    await container.aclose()


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    """``api_over`` the test's database (a module with an ``api`` fixture of its own uses that)."""
    async with api_over(db_url) as made:
        yield made


async def new_resident(
    api: Api, key: str = "gwanak", phone: str = "010-1234-5678", district: str = "11620"
) -> str:
    r = await api.client.post(
        "/v1/residents",
        headers=h(api.keys[key]),
        json={"district_code": district, "name": "김안부", "phone": phone, "dong": "신림동"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@asynccontextmanager
async def api_client(
    container: Container,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A client of ``container``'s API and the keys ``admin`` (every district), ``gwanak``
    (11620) and ``gangnam`` (11680); closes the container afterwards."""
    keys = await seed_keys(container)
    transport = httpx.ASGITransport(app=build_api(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://anbu") as client:
            yield client, keys
    finally:
        await container.aclose()
