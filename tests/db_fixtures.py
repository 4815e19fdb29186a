"""One storage contract over every backend: SQLite (file) and the PostgreSQL at 127.0.0.1:5432.

Each test gets a fresh database migrated to head by Alembic (not create_all), so the migrations
themselves are under test on both backends. Migrating costs one to two seconds a database, so
it runs once a test session (per backend, per pytest-xdist worker) into a template, and each
test gets its own copy of it: PostgreSQL's ``CREATE DATABASE ... TEMPLATE``, a file copy for
SQLite. PostgreSQL being down fails the tests loudly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.migrate import alembic_config, upgrade
from anbu.db.session import make_engine, make_sessionmaker

PG_ADMIN_DSN = os.environ.get("ANBU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


async def create_pg_database(template: str | None = None) -> str:
    """A new database: empty, or a copy of ``template`` (which nobody may be connected to)."""
    name = f"anbu_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        copy = f' TEMPLATE "{template}"' if template is not None else ""
        await conn.execute(f'CREATE DATABASE "{name}"{copy}')
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


@asynccontextmanager
async def empty_pg_database() -> AsyncIterator[str]:
    """The URL of a new PostgreSQL database with no tables, dropped afterwards."""
    name = await create_pg_database()
    try:
        yield pg_url(name)
    finally:
        await drop_pg_database(name)


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A PostgreSQL database of the test's own (not migrated): for what SQLite cannot show,
    such as several workers' connections or a connection killed on the server."""
    async with empty_pg_database() as url:
        yield url


@asynccontextmanager
async def unmigrated_engine(
    backend: str, tmp_path: Path, file: str = "m.db"
) -> AsyncIterator[AsyncEngine]:
    """An engine over an empty database of ``backend``, for a test that migrates it step by
    step (the fixtures' databases are at head already)."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / file}")
        try:
            yield engine
        finally:
            await engine.dispose()
        return
    async with empty_pg_database() as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Down to ``revision``: what a release's rollback does, for a migration's test."""

    def _down(conn: object) -> None:
        from alembic import command

        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_down)


@dataclass(frozen=True)
class MigratedTemplates:
    """Databases migrated to head once, that the tests copy: a SQLite file, a PG database.
    ``dropper`` drops the tests' copies off the tests' path (a DROP waits on the disk)."""

    sqlite_file: Path
    pg_name: str
    dropper: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))
    drops: list[Future[None]] = field(default_factory=list)

    def drop_later(self, name: str) -> None:
        self.drops.append(self.dropper.submit(asyncio.run, drop_pg_database(name)))

    def close(self) -> None:
        self.dropper.shutdown(wait=True)
        asyncio.run(drop_pg_database(self.pg_name))
        for drop in self.drops:
            drop.result()  # a failed drop fails the session's last test, loudly


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _make_templates(folder: Path) -> MigratedTemplates:
    sqlite_file = folder / "template.db"
    await _migrate(f"sqlite+aiosqlite:///{sqlite_file}")
    pg_name = await create_pg_database()
    try:
        await _migrate(pg_url(pg_name))
    except BaseException:
        await drop_pg_database(pg_name)
        raise
    return MigratedTemplates(sqlite_file, pg_name)


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    # Sync, with its own event loop: the tests' loops are per test, this lives for the session.
    templates = asyncio.run(_make_templates(tmp_path_factory.mktemp("db-template")))
    yield templates
    templates.close()


@pytest.fixture(params=BACKENDS)
async def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: MigratedTemplates
) -> AsyncIterator[str]:
    """A fresh database migrated to head on each backend (a copy of the session's template)."""
    if request.param == "sqlite":
        target = tmp_path / "anbu.db"
        shutil.copyfile(migrated_templates.sqlite_file, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    name = await create_pg_database(template=migrated_templates.pg_name)
    try:
        yield pg_url(name)
    finally:
        migrated_templates.drop_later(name)


@pytest.fixture
async def db_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(db_engine)
