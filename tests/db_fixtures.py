"""One storage contract over every backend: SQLite (file) and the PostgreSQL at 127.0.0.1:5432.

Each test gets a fresh database migrated to head by Alembic (not create_all), so the migrations
themselves are under test on both backends. PostgreSQL being down fails the tests loudly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.migrate import upgrade
from anbu.db.session import make_engine, make_sessionmaker

PG_ADMIN_DSN = os.environ.get("ANBU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


async def create_pg_database() -> str:
    name = f"anbu_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def pg_url(name: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database URL on each backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'anbu.db'}"
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        yield url
        return
    name = await create_pg_database()
    url = pg_url(name)
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    try:
        yield url
    finally:
        await drop_pg_database(name)


@pytest.fixture
async def db_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(db_engine)
