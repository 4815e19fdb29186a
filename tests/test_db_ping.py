"""Pooled PostgreSQL connections are pinged before use only after sitting idle
(``anbu.db.session.PING_IDLE_S``), not on every checkout."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from anbu.db.session import make_engine
from tests.db_fixtures import PG_ADMIN_DSN


async def _kill_pooled(url: str) -> None:
    """Terminate the server side of every connection of this database but ours."""
    db = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            db,
        )
    finally:
        await conn.close()


async def _use(engine: AsyncEngine) -> int:
    async with engine.connect() as c:
        return int((await c.execute(text("SELECT 1"))).scalar_one())


async def test_given_an_idle_pooled_connection_killed_then_the_ping_replaces_it(
    pg_database: str,
) -> None:
    engine = make_engine(
        pg_database, ping_idle_s=0.0
    )  # every checkout counts as idle: always pinged
    try:
        assert await _use(engine) == 1
        await _kill_pooled(pg_database)
        assert await _use(engine) == 1  # the dead one was discarded, a new one opened
    finally:
        await engine.dispose()


async def test_given_a_recently_used_connection_then_it_is_not_pinged(pg_database: str) -> None:
    # What the ping-when-idle trades: within the window a dead connection is found by the
    # statement itself, and the pool recovers after that one failure. The failure is not
    # always a recognisable disconnect (asyncpg may say "another operation is in progress"),
    # which is why PING_IDLE_S is 0 (ping on every checkout) by default.
    engine = make_engine(pg_database, ping_idle_s=3600.0)
    try:
        assert await _use(engine) == 1
        await _kill_pooled(pg_database)
        with pytest.raises(DBAPIError):
            await _use(engine)
        assert await _use(engine) == 1  # the pool dropped it after the failure
    finally:
        await engine.dispose()


async def test_given_default_engine_when_pooled_connection_killed_then_next_use_works(
    pg_database: str,
) -> None:
    engine = make_engine(pg_database)  # the default: pinged on every checkout
    try:
        assert await _use(engine) == 1
        await _kill_pooled(pg_database)
        assert await _use(engine) == 1  # no request sees the dead connection
    finally:
        await engine.dispose()


async def test_given_a_pooled_connection_when_checked_out_then_one_statement_pings_it(
    pg_database: str,
) -> None:
    # SQLAlchemy's asyncpg ping is BEGIN, ``;``, ROLLBACK: three round trips per checkout.
    engine = make_engine(pg_database, pool_size=1, max_overflow=0)
    seen: list[str] = []
    try:
        async with engine.connect() as c:
            raw = (await c.get_raw_connection()).driver_connection
            assert isinstance(raw, asyncpg.Connection)
            raw.add_query_logger(lambda q: seen.append(q.query))
        await asyncio.sleep(0)  # asyncpg calls its query loggers soon, not at once
        seen.clear()  # the check-in's reset (a rollback) is not the ping
        async with engine.connect() as c:  # the same pooled connection, pinged at checkout
            await asyncio.sleep(0)
            assert seen == ["SELECT 1"]
            await c.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
