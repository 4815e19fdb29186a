"""The whole HTTP API over ASGI (built through the composition root, as ``anbu serve`` builds
it), on a database with two districts and a key per role: what the API tests start from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from anbu.app.parts import build_api
from anbu.container import Container
from anbu.services.admin import create_api_key, ensure_district

ADMIN = "admin-test-key"
Keys = dict[str, str]  # role -> API key


@asynccontextmanager
async def api_client(
    container: Container,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A client of ``container``'s API and the keys ``admin`` (every district), ``gwanak``
    (11620) and ``gangnam`` (11680); closes the container afterwards."""
    async with container.sessions() as s:
        await ensure_district(s, "11620", "관악구")
        await ensure_district(s, "11680", "강남구")
        keys = {
            "admin": await create_api_key(s, "admin", admin=True, key=ADMIN),
            "gwanak": await create_api_key(s, "gwanak", ["11620"]),
            "gangnam": await create_api_key(s, "gangnam", ["11680"]),
        }
        await s.commit()
    transport = httpx.ASGITransport(app=build_api(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://anbu") as client:
            yield client, keys
    finally:
        await container.aclose()
