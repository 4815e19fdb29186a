"""Dispatcher worker lives: who is alive, so reconciliation only touches a dead worker's calls.

PostgreSQL: each worker life inserts a ``dispatcher_workers`` row and holds the session-level
advisory lock ``(LOCK_NAMESPACE, id)`` on a connection of its own for as long as it lives. When
the process dies (even by SIGKILL) the server drops the connection and the lock with it, so
``pg_locks`` tells at once which workers are alive: no heartbeat, no waiting for a timeout.

SQLite: one dispatcher process per database (SQLite has one writer anyway). The worker holds an
exclusive ``flock`` on ``<database>.dispatcher.lock``; a second worker fails loudly at start,
and every other worker life in the table is dead by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import IO

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.models_scheduling import DispatcherWorker
from anbu.errors import ConflictError

log = logging.getLogger(__name__)

# First key of the two-int advisory locks: an arbitrary constant ("anbu" in ASCII, as int4).
LOCK_NAMESPACE = 0x616E6275
CLAIM_LOCK_KEY = 0  # (LOCK_NAMESPACE, 0): serialises claim passes for an exact global cap


class WorkerLife:
    """This process's registration as a dispatcher worker."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._engine = engine
        self._sessions = sessions
        self.id: int | None = None
        self._lock_conn: AsyncConnection | None = None
        self._lock_file: IO[str] | None = None

    @property
    def is_postgres(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    async def register(self, now: dt.datetime) -> int:
        if self.id is not None:
            return self.id
        if not self.is_postgres:
            await asyncio.to_thread(self._lock_sqlite)
        async with self._sessions() as session:
            row = DispatcherWorker(host=socket.gethostname()[:100], pid=os.getpid(), started_at=now)
            session.add(row)
            await session.commit()
            worker_id = row.id
        if self.is_postgres:
            conn = await self._engine.connect()
            await conn.execute(
                text("SELECT pg_advisory_lock(:ns, :id)"), {"ns": LOCK_NAMESPACE, "id": worker_id}
            )
            await conn.commit()  # session-level lock: survives the transaction
            self._lock_conn = conn
        self.id = worker_id
        log.info("dispatcher worker %s registered (pid %s)", worker_id, os.getpid())
        return worker_id

    def _lock_sqlite(self) -> None:
        database = self._engine.url.database
        if not database or database == ":memory:":
            return
        handle = Path(f"{database}.dispatcher.lock").open("w")  # noqa: SIM115 (held for life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ConflictError(
                "another dispatcher already runs on this SQLite database; run one per database"
                " or use PostgreSQL for several workers"
            ) from None
        self._lock_file = handle

    async def live_workers(self, session: AsyncSession) -> set[int]:
        """Ids of worker lives that are alive now (always including this one)."""
        live = {self.id} if self.id is not None else set()
        if self.is_postgres:
            # pg_locks is cluster-wide: another database's workers (a second district's
            # anbu, staging beside production, the tests' parallel databases) hold locks with
            # the same small ids, and must not make this database's dead workers look alive.
            rows = await session.execute(
                text(
                    "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid = :ns AND objsubid = 2 AND database ="
                    " (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"ns": LOCK_NAMESPACE},
            )
            live |= {int(r[0]) for r in rows if int(r[0]) != CLAIM_LOCK_KEY}
        return {w for w in live if w is not None}

    async def close(self, now: dt.datetime) -> None:
        if self.id is not None:
            with contextlib.suppress(Exception):
                async with self._sessions() as session:
                    row = await session.get(DispatcherWorker, self.id)
                    if row is not None:
                        row.stopped_at = now
                        await session.commit()
        if self._lock_conn is not None:
            # Invalidate, not just close: a pooled connection would keep the session-level
            # lock alive on the server, and this worker would look alive forever.
            with contextlib.suppress(Exception):
                await self._lock_conn.invalidate()
            with contextlib.suppress(Exception):
                await self._lock_conn.close()
            self._lock_conn = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


async def serialise_claims(session: AsyncSession) -> None:
    """On PostgreSQL, make concurrent claim passes take turns (released at commit), so the
    global cap counted from the table is exact across workers. SQLite serialises writers."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, :key)"),
            {"ns": LOCK_NAMESPACE, "key": CLAIM_LOCK_KEY},
        )
