"""``anbu sim signals --post``: the simulator feeding a running API over real HTTP, on SQLite and
PostgreSQL, and a clear message (no traceback) when the API refuses it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator

import pytest
import uvicorn
from sqlalchemy import func, select

from anbu.app.parts import build_api, build_container
from anbu.container import Container
from anbu.db.models import ApiKey, District, Resident
from anbu.db.models_signals import Device, SignalEvent, SignalState
from anbu.services.admin import hash_key
from anbu.settings import Settings
from devstack.sim import population, sim_main, stream
from tests.fixtures_asterisk import free_ports
from tests.risk_support import START

KEY = "k-sim"


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[tuple[str, Container]]:
    (port,) = free_ports(1)
    container = build_container(Settings(database_url=db_url))
    async with container.sessions() as s:
        gwanak = District(code="11620", name="관악구")
        s.add(gwanak)
        s.add(ApiKey(name="sim", key_hash=hash_key(KEY), districts=[gwanak]))
        await s.commit()
    server = uvicorn.Server(
        uvicorn.Config(build_api(container), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "the API did not start"
    yield f"http://127.0.0.1:{port}", container
    server.should_exit = True
    await task
    await container.aclose()


async def test_given_a_running_api_when_the_simulator_posts_then_people_and_events_arrive(
    api: tuple[str, Container], capsys: pytest.CaptureFixture[str]
) -> None:
    url, container = api
    argv = ["--residents", "3", "--days", "2", "--seed", "4", "--start", START.isoformat(),
            "--post", url, "--api-key", KEY, "--district", "11620", "--batch", "400"]  # fmt: skip
    assert await asyncio.to_thread(sim_main, argv) == 0
    totals = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    people = population(3, prefix="sim", seed=4)
    expected = len(list(stream(people, start=START, end=START + dt.timedelta(days=2), seed=4)))
    assert totals == {"accepted": expected, "duplicates": 0, "rejected": 0}
    async with container.sessions() as s:
        refs = set((await s.execute(select(Resident.external_ref))).scalars())
        devices = (await s.execute(select(func.count()).select_from(Device))).scalar()
        events = (await s.execute(select(func.count()).select_from(SignalEvent))).scalar()
        states = (await s.execute(select(func.count()).select_from(SignalState))).scalar()
    assert refs == {p.resident_id for p in people}
    assert devices == sum(bool(p.plug_id) + bool(p.app_id) for p in people)
    assert events == expected
    assert states  # baselines were built from what arrived


async def test_given_a_wrong_key_when_the_simulator_posts_then_a_clear_message(
    api: tuple[str, Container], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = api
    argv = ["--residents", "1", "--days", "1", "--post", url, "--api-key", "wrong",
            "--district", "11620"]  # fmt: skip
    assert await asyncio.to_thread(sim_main, argv) == 2
    err = capsys.readouterr().err
    assert "POST /v1/residents was refused (401)" in err
    assert "Traceback" not in err


async def test_given_no_api_when_the_simulator_posts_then_it_says_it_cannot_reach_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (port,) = free_ports(1)
    argv = ["--residents", "1", "--days", "1", "--post", f"http://127.0.0.1:{port}"]
    assert await asyncio.to_thread(sim_main, argv) == 2
    assert f"cannot reach http://127.0.0.1:{port}" in capsys.readouterr().err
