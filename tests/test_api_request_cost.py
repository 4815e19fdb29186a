"""What one API request costs the database and the process (issue 15, bench/api.py): the
check-in path's round trips, FastAPI's per-request work, and the bound on requests in flight.
Counted, never timed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, exc, select, text

from anbu.app.parts import build_api
from anbu.container import Container
from anbu.db.models import Checkin
from anbu.db.models_audit import AuditEntry
from anbu.db.outage import monitor_of, report_failure
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.audit import AuditAction, AuditResource
from anbu.domain.checkin import AttemptStatus, CheckinSource, CheckinStatus
from anbu.ports import SystemClock
from anbu.settings import LimitSettings, Settings
from tests.api_support import Api, api_client, api_over, h, new_resident


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with api_over(db_url) as a:
        yield a


@contextmanager
def counting_commits(api: Api) -> Iterator[list[str]]:
    """Every COMMIT the API's engine sends while the block runs."""
    commits: list[str] = []

    def on_commit(_conn: Any) -> None:
        commits.append("commit")

    engine = api.container.engine.sync_engine
    event.listen(engine, "commit", on_commit)
    try:
        yield commits
    finally:
        event.remove(engine, "commit", on_commit)


async def test_given_a_checkin_request_then_the_case_and_its_log_row_commit_in_one_transaction(
    api: Api,
) -> None:
    rid = await new_resident(api)
    with counting_commits(api) as commits:
        r = await api.client.post(
            "/v1/checkins", headers=h(api.keys["gwanak"]), json={"resident_id": rid, "reason": "t"}
        )
    assert r.status_code == 202, r.text
    # Was two: the case's commit, then a second checkout, BEGIN and COMMIT for its log row.
    assert commits == ["commit"]
    cid = r.json()["id"]
    async with api.container.sessions() as s:
        case = await s.get(Checkin, cid)
        assert case is not None
        # Written with plain INSERTs (services.checkins.request_checkin): the same case and
        # first attempt as open_checkin's, due now, to the resident's number.
        assert (case.resident_id, case.status, case.source, case.reason) == (
            rid,
            CheckinStatus.PENDING,
            CheckinSource.API,
            "t",
        )
        assert [(a.attempt_no, a.number, a.status) for a in case.attempts] == [
            (1, "01012345678", AttemptStatus.SCHEDULED)
        ]
        assert case.attempts[0].scheduled_for == case.created_at
        rows = (
            (await s.execute(select(AuditEntry).where(AuditEntry.resource_id == cid)))
            .scalars()
            .all()
        )
    assert [(e.resource_type, e.action) for e in rows] == [
        (AuditResource.CHECKIN, AuditAction.CREATE)
    ]


async def test_given_a_second_checkin_request_when_it_joins_the_open_case_then_one_commit(
    api: Api,
) -> None:
    rid = await new_resident(api)
    body = {"resident_id": rid, "reason": "first"}
    first = await api.client.post("/v1/checkins", headers=h(api.keys["gwanak"]), json=body)
    with counting_commits(api) as commits:
        again = await api.client.post(
            "/v1/checkins",
            headers=h(api.keys["gwanak"]),
            json={"resident_id": rid, "reason": "second"},
        )
    assert again.status_code == 202, again.text
    assert again.json() == {"id": first.json()["id"], "status": "pending", "joined_existing": True}
    assert commits == ["commit"]


async def test_given_the_built_api_then_no_dependency_overrides(api: Api) -> None:
    # While app.dependency_overrides is not empty, FastAPI rebuilds every dependency of every
    # route on every request (signature inspection, string annotations evaluated): ~1.2 ms of
    # CPU per request of the whole API (bench/api.py). Parts are bound on app.state instead.
    app = build_api(api.container)
    assert app.dependency_overrides == {}
    assert app.state.recording_store is not None


async def test_given_the_inflight_bound_reached_when_another_request_then_503_busy_at_once(
    db_url: str,
) -> None:
    settings = Settings(database_url=db_url, limits=LimitSettings(max_inflight=1))
    async with api_over(db_url, settings) as api:
        held, other = await new_resident(api), await new_resident(api, phone="010-2222-3333")
        inside, release = asyncio.Event(), asyncio.Event()
        gwanak = h(api.keys["gwanak"])

        async def slow_body() -> AsyncIterator[bytes]:
            # The request is admitted and in flight while its body is still arriving.
            yield b'{"resident_id": "%s", ' % held.encode()
            inside.set()
            await release.wait()
            yield b'"reason": "held"}'

        first = asyncio.create_task(
            api.client.post(
                "/v1/checkins",
                headers=h(api.keys["gwanak"]) | {"content-type": "application/json"},
                content=slow_body(),
            )
        )
        await inside.wait()
        busy = await api.client.post(
            "/v1/checkins", headers=gwanak, json={"resident_id": other, "reason": "t"}
        )
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"] == "busy"
        assert busy.headers["Retry-After"] == "1"
        # Probes are not bounded: a busy process is alive and ready.
        assert (await api.client.get("/health/live")).status_code == 200
        release.set()
        assert (await first).status_code == 202
        async with api.container.sessions() as s:
            stored = (await s.execute(select(Checkin.resident_id))).scalars().all()
        assert stored == [held]  # the refused request stored nothing
        again = await api.client.post(
            "/v1/checkins", headers=gwanak, json={"resident_id": other, "reason": "t"}
        )
        assert again.status_code == 202, again.text


async def test_given_no_pooled_connection_free_when_a_request_then_503_busy_not_an_outage(
    db_url: str,
) -> None:
    # The database is up; the process has more requests than connections. Was a 503
    # database_unavailable, logged as the start of an outage.
    engine = make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    container = Container(
        Settings(database_url=db_url), engine, make_sessionmaker(engine), SystemClock()
    )
    async with api_client(container) as (client, keys), engine.connect() as held:
        await held.execute(text("SELECT 1"))  # the pool's one connection, taken
        r = await client.get("/v1/districts", headers=h(keys["gwanak"]))
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "busy"
        assert r.headers["Retry-After"] == "1"
        assert monitor_of(engine).available


async def test_given_a_pool_timeout_in_a_job_then_a_warning_line_not_an_outage(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(db_url)
    try:
        with caplog.at_level(logging.WARNING):
            report_failure(logging.getLogger("job"), engine, "a job", exc.TimeoutError("pool"))
        assert [(r.levelno, r.message) for r in caplog.records] == [
            (logging.WARNING, "a job failed: no database connection was free in time")
        ]
        assert monitor_of(engine).available
    finally:
        await engine.dispose()
