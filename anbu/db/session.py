"""Engines and sessions. SQLite (aiosqlite) by default, PostgreSQL (asyncpg) in production."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

try:
    from sqlalchemy.util.concurrency import await_
except ImportError:  # SQLAlchemy 2.0 names it await_only
    from sqlalchemy.util.concurrency import await_only as await_


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
    # An unreachable host fails a request in seconds (a 503), not after asyncpg's 60 s default.
    kw.setdefault("connect_args", {"timeout": 5})
    ping_idle_s = kw.pop("ping_idle_s", PING_IDLE_S)
    engine = create_async_engine(url, **kw)
    if not kw.get("pool_pre_ping"):
        _ping_when_idle(engine, ping_idle_s)
    return engine


# A pooled connection is pinged before use only if it sat idle this long (0: every checkout,
# as SQLAlchemy's pool_pre_ping). Pinging costs a round trip and ~0.7 ms of this process's CPU
# per checkout, a tenth of an API request, so a 1 s window was tried (bench api). It is off by
# default: a connection the server terminated within the window does not always fail as a
# disconnect. asyncpg may answer "cannot switch to state 15; another operation is in
# progress", which anbu.db.outage cannot tell from a real bug, so the request could get a 500
# instead of a 503 (tests/test_db_ping.py saw it under load). Never a 500 comes first.
PING_IDLE_S = 0.0


def _ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["anbu_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("anbu_idle_since")
        if since is not None and time.monotonic() - since < idle_s:
            return
        try:
            _ping(dialect, dbapi_conn)
        except Exception as error:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(str(error)) from error


def _ping(dialect: Any, dbapi_conn: Any) -> None:
    """One round trip. SQLAlchemy's asyncpg ping is three (BEGIN, ``;``, ROLLBACK: a
    transaction so that it works behind pgbouncer in transaction mode, which anbu does not
    use), ~0.3 ms of this process's CPU and as much of PostgreSQL's per checkout, at every
    checkout. A pooled connection is never in a transaction at checkout (the pool rolled it
    back when it came back); ``execute`` without arguments is the simple query protocol, one
    message each way (``SELECT 1``: asyncpg fails on the empty answer to a bare ``;``)."""
    raw = getattr(dbapi_conn, "_connection", None)
    if isinstance(raw, asyncpg.Connection) and not raw.is_in_transaction():
        await_(raw.execute("SELECT 1"))
    else:
        dialect.do_ping(dbapi_conn)


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
