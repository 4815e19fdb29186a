"""``api_workers``: API-only processes on the listening socket of ``anbu serve``.

The test process binds the socket but does not answer on it: every answer comes from the
spawned worker, over its own container, into the same database.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from anbu.app.processes import start_api_workers, stop_api_workers
from anbu.settings import Settings
from tests.api_support import Api, api_over, h, new_resident


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with api_over(db_url) as a:
        yield a


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


async def test_given_an_api_worker_process_then_it_answers_on_the_shared_socket(
    api: Api, db_url: str
) -> None:
    rid = await new_resident(api)
    sock = _listening()
    port = sock.getsockname()[1]
    workers = start_api_workers(Settings(database_url=db_url), sock, 1)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for _ in range(300):  # the spawned process imports and builds its app first
                try:
                    if (await c.get("/health/live")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            r = await c.post(
                "/v1/checkins",
                headers=h(api.keys["gwanak"]),
                json={"resident_id": rid, "reason": "다른 프로세스"},
            )
            assert r.status_code == 202, r.text
            assert (await c.get("/v1/residents", headers={"X-API-Key": "nope"})).status_code == 401
        # Stored by the worker, read here: one database, one truth.
        got = await api.client.get(f"/v1/checkins/{r.json()['id']}", headers=h(api.keys["gwanak"]))
        assert got.status_code == 200
        assert got.json()["resident_id"] == rid
    finally:
        await stop_api_workers(workers)
        sock.close()
    assert not any(w.is_alive() for w in workers)
