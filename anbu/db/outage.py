"""The database going away, seen from one process: which errors mean "unreachable", one log
line when an outage starts and one when it ends, and waiting for the database at start.

During an outage every request and every job fails the same way; a traceback each would bury
the one line that matters (the issue measured 40.8 MB of them in 30 s). The API answers 503
with ``Retry-After`` (:mod:`anbu.api.app`), jobs and loops skip their turn and run again on
their next tick; nothing needs a restart, because the pool reconnects on its next checkout.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
import weakref
from collections.abc import Iterator
from typing import Any

import asyncpg
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.errors import AnbuError

log = logging.getLogger(__name__)

# Seconds a client is asked to wait before it tries again (the 503's Retry-After).
RETRY_AFTER_S = 5

# Connection-level failures of the PostgreSQL driver: class 08 (connection exception), the
# server shutting down (57P01..57P03) and the driver's own "connection is closed".
_PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.ConnectionDoesNotExistError,
)
# SQLite: the file cannot be opened, or another writer held it past busy_timeout.
_SQLITE_UNAVAILABLE = ("unable to open database file", "disk i/o error", "database is locked")


class DatabaseUnavailableError(AnbuError):
    """The database cannot be reached right now; the operation may be retried later."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps (its cause, or the error it was raised while handling)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` (or what it wraps) says the database is unreachable, as opposed to
    a statement that failed on a healthy database (a constraint, a bug) or a pool with no
    connection free (:func:`is_pool_exhausted`)."""
    return any(_unavailable_here(e) for e in _chain(error))


def is_pool_exhausted(error: BaseException) -> bool:
    """True when the pool found no free connection within its timeout: the database answers,
    this process has more work than connections (a load to refuse, not an outage to log)."""
    return any(isinstance(e, exc.TimeoutError) for e in _chain(error))


def _unavailable_here(error: BaseException) -> bool:
    if isinstance(error, DatabaseUnavailableError):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, _PG_UNAVAILABLE):
        return True
    if isinstance(error, asyncpg.InterfaceError):  # not "another operation is in progress"
        return "connection is closed" in str(error) or "connection was closed" in str(error)
    if isinstance(error, sqlite3.OperationalError):
        return str(error).lower().startswith(_SQLITE_UNAVAILABLE)
    # Connecting: refused, reset, unreachable or unknown host, the connect timeout; a plain
    # OSError is the driver's "Multiple exceptions" when every address of a host refused.
    return isinstance(error, ConnectionError | TimeoutError | socket.gaierror) or (
        type(error) is OSError
    )


class DatabaseMonitor:
    """One engine's reachability as this process saw it last. Thread-safe enough: it is only
    touched from the event loop and SQLAlchemy's connect hook (same loop for async drivers)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._down_since: float | None = None
        self._failures = 0
        # A connection made during an outage is a candidate end, not the end: a server going
        # down (PostgreSQL's immediate shutdown) still accepts a connection it then drops, and
        # taking that for the recovery logged "reachable again after 0.0 s" and a second
        # outage. The end is the first statement that runs on the new connection.
        self._maybe_back = False

    def connected(self) -> None:
        """A new connection was made (SQLAlchemy's connect hook)."""
        if self._down_since is not None:
            self._maybe_back = True

    def executed(self) -> None:
        """A statement ran (SQLAlchemy's after_cursor_execute hook)."""
        if self._maybe_back:
            self.succeeded()

    @property
    def available(self) -> bool:
        return self._down_since is None

    def failed(self, error: BaseException, what: str = "") -> None:
        """Count a failure; only the first of an outage is logged."""
        self._failures += 1
        self._maybe_back = False
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error(
                "database %s unreachable%s: %s; retrying until it is back",
                self.name,
                f" ({what})" if what else "",
                _one_line(error),
            )

    def succeeded(self) -> None:
        if self._down_since is not None:
            took = time.monotonic() - self._down_since
            log.warning(
                "database %s reachable again after %.1f s (%d operations failed meanwhile)",
                self.name,
                took,
                self._failures,
            )
            self._down_since = None
            self._failures = 0
        self._maybe_back = False


def _one_line(error: BaseException) -> str:
    while isinstance(error, exc.StatementError) and error.orig is not None:
        error = error.orig
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


_MONITORS: weakref.WeakKeyDictionary[Engine, DatabaseMonitor] = weakref.WeakKeyDictionary()


def monitor_of(bind: AsyncEngine | async_sessionmaker[AsyncSession]) -> DatabaseMonitor:
    """The monitor of an engine (or of the engine a sessionmaker is bound to)."""
    engine = bind if isinstance(bind, AsyncEngine) else bind.kw.get("bind")
    if not isinstance(engine, AsyncEngine):
        raise TypeError("the sessionmaker is not bound to an AsyncEngine")
    sync = engine.sync_engine
    monitor = _MONITORS.get(sync)
    if monitor is None:
        monitor = DatabaseMonitor(engine.url.render_as_string(hide_password=True))
        _MONITORS[sync] = monitor

        def _connected(*_args: Any) -> None:
            monitor.connected()

        def _executed(*_args: Any) -> None:
            monitor.executed()

        # A new connection after an outage, once a statement has run on it, is its end: the
        # pool reconnects on checkout.
        event.listen(sync, "connect", _connected)
        event.listen(sync, "after_cursor_execute", _executed)
    return monitor


def report_failure(
    logger: logging.Logger,
    bind: AsyncEngine | async_sessionmaker[AsyncSession],
    what: str,
    error: BaseException,
) -> None:
    """Log a failed job or loop pass: one line per outage when the database is unreachable,
    one line when the pool had no connection free, the full traceback for anything else."""
    if is_pool_exhausted(error):
        logger.warning("%s failed: no database connection was free in time", what)
    elif is_unavailable(error):
        try:
            monitor = monitor_of(bind)
        except TypeError:  # a sessionmaker bound per session: no engine to watch
            logger.warning("%s failed: database unreachable: %s", what, _one_line(error))
            return
        monitor.failed(error, what)
    else:
        logger.error("%s failed", what, exc_info=error)


async def ping(engine: AsyncEngine, timeout_s: float = 2.0) -> bool:
    """One ``SELECT 1`` within ``timeout_s``; feeds the monitor either way."""
    monitor = monitor_of(engine)
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:
        if not is_unavailable(error):
            raise
        monitor.failed(error, "health check")
        return False
    monitor.succeeded()
    return True


async def wait_for_database(
    engine: AsyncEngine, *, first_delay_s: float = 0.25, max_delay_s: float = 10.0
) -> None:
    """Return once the database answers, retrying with exponential backoff (a process started
    beside its database, or before it, waits instead of exiting). Logs once while waiting."""
    delay = first_delay_s
    waited = False
    while not await ping(engine):
        if not waited:
            log.warning("waiting for the database %s", monitor_of(engine).name)
            waited = True
        await asyncio.sleep(delay)
        delay = min(max_delay_s, delay * 2)
