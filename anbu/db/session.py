"""Engines and sessions. SQLite (aiosqlite) by default, PostgreSQL (asyncpg) in production."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def make_engine(url: str, **kw: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kw)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while the dispatcher writes; busy_timeout waits instead of
            # failing when two writers meet; foreign keys are off by default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    kw.setdefault("pool_pre_ping", True)
    # An unreachable host fails a request in seconds (a 503), not after asyncpg's 60 s default.
    kw.setdefault("connect_args", {"timeout": 5})
    return create_async_engine(url, **kw)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def transaction_cache(session: AsyncSession, name: str) -> dict[Any, Any]:
    """A dict that lives as long as the session's current transaction: look-ups that many rows
    of one transaction repeat (a batch of incident openings asks for the same chain and the
    same webhook subscribers) are asked once, and a later transaction sees fresh data."""
    key = f"transaction_cache.{name}"
    cache: dict[Any, Any] | None = session.info.get(key)
    if cache is None:
        cache = session.info[key] = {}

        def forget(_session: Any) -> None:
            session.info.pop(key, None)

        sync = session.sync_session
        event.listen(sync, "after_commit", forget, once=True)
        event.listen(sync, "after_rollback", forget, once=True)
    return cache
