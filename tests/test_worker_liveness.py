"""Which dispatch workers are alive is read from PostgreSQL's advisory locks, and pg_locks is
cluster-wide: a worker of *another* database on the same server (a second district's anbu,
staging beside production, the suite's parallel databases) holding the same small id must not
make this database's dead worker look alive, or its calls are never reconciled."""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from anbu.db.session import make_engine, make_sessionmaker
from scheduler.workers import LOCK_NAMESPACE, WorkerLife
from tests.db_fixtures import PG_ADMIN_DSN, create_pg_database, drop_pg_database, pg_url


async def test_given_same_worker_id_locked_in_another_database_then_not_live_here() -> None:
    ours, theirs = await create_pg_database(), await create_pg_database()
    engine: AsyncEngine = make_engine(pg_url(ours))
    other = await asyncpg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{theirs}")
    try:
        # Worker 1 of the other database is alive: it holds its life lock there.
        await other.execute("SELECT pg_advisory_lock($1::int, $2::int)", LOCK_NAMESPACE, 1)
        life = WorkerLife(engine, make_sessionmaker(engine))
        async with make_sessionmaker(engine)() as session:
            assert 1 not in await life.live_workers(session)
        # The same lock taken in our database does count.
        mine = await asyncpg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{ours}")
        try:
            await mine.execute("SELECT pg_advisory_lock($1::int, $2::int)", LOCK_NAMESPACE, 1)
            async with make_sessionmaker(engine)() as session:
                assert 1 in await life.live_workers(session)
        finally:
            await mine.close()
    finally:
        await other.close()
        await engine.dispose()
        await drop_pg_database(ours)
        await drop_pg_database(theirs)
