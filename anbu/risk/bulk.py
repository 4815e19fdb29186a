"""Bulk statements for the ingestion hot path, one implementation per backend.

At thousands of events per batch, SQLAlchemy's statement compilation and per-value type
processing cost more than the database work itself, so the hot path talks to the driver
directly, on the session's own connection and inside its transaction:

- PostgreSQL (asyncpg): one statement per batch, the rows passed as arrays and expanded with
  ``unnest`` (one round trip, no per-row protocol messages).
- SQLite (aiosqlite): multi-row ``VALUES`` (with ``RETURNING``) and ``executemany`` of plain
  tuples.

Stored values are exactly what the ORM stores for the same data (the contract is the models in
:mod:`anbu.db.models_signals`): timestamps as ``timestamptz`` on PostgreSQL and naive UTC text
with microseconds on SQLite (:class:`anbu.db.base.UtcDateTime`), JSON as ``json.dumps`` text
with Python ``None`` stored as JSON ``null`` (SQLAlchemy's ``JSON`` default), enums by value.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from anbu.domain.risk import Baseline, Channel, SignalKind
from anbu.risk.store import IN_CHUNK, chunks


class SignalRow(NamedTuple):
    """One accepted event, as stored in ``signal_events`` (``attrs_json`` is ``attrs`` dumped)."""

    source: str
    event_id: str
    resident_id: str
    device_id: str | None
    kind: SignalKind
    at: dt.datetime
    value: float | None
    attrs: dict[str, Any] | None
    attrs_json: str


class StateRow(NamedTuple):
    """One resident's baseline for one channel, as stored in ``signal_states``."""

    resident_id: str
    baseline: Baseline
    status_due_at: dt.datetime | None


class DeviceUpdate(NamedTuple):
    pk: str
    last_seen_at: dt.datetime
    online: bool
    stale_due_at: dt.datetime


class BulkStore(Protocol):
    async def insert_events(
        self, rows: Sequence[SignalRow], received_at: dt.datetime
    ) -> list[SignalRow]:
        """Insert, skipping (source, event_id) pairs already stored; return the rows that went in
        (in the given order)."""
        ...

    async def lock_residents(self, resident_ids: Sequence[str]) -> None:
        """Serialise read-modify-write of these residents' baselines until the commit."""
        ...

    async def load_states(self, resident_ids: Sequence[str]) -> StoredStates:
        """The stored baselines of these residents (call after :meth:`lock_residents`)."""
        ...

    async def save_states(
        self, states: Sequence[StateRow], stored: StoredStates, now: dt.datetime
    ) -> None:
        """Upsert the baselines (rounded to 4 decimals: the baseline is a mean of noisy counts)."""
        ...

    async def update_devices(self, updates: Sequence[DeviceUpdate]) -> None: ...


async def bulk_store(session: AsyncSession) -> BulkStore:
    """The bulk statements for the session's backend, bound to its current connection."""
    conn = await session.connection()
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None  # a checked-out connection is never detached
    name = conn.dialect.name
    if name == "postgresql":
        if not driver.is_in_transaction():
            # SQLAlchemy's asyncpg adapter opens its transaction lazily on its first statement;
            # a statement sent straight to the driver before that would run in autocommit.
            await conn.exec_driver_sql("SELECT 1")
        return _PostgresBulk(driver)
    if name == "sqlite":
        # sqlite3 opens its (legacy, implicit) transaction itself before the first write,
        # exactly as it does for SQLAlchemy's statements; the session's commit ends it.
        return _SqliteBulk(driver)
    raise NotImplementedError(f"no bulk ingestion for {name}")


class _Stored(NamedTuple):
    """A baseline list as loaded: a copy of its values and the JSON text they came from."""

    values: list[float]
    text: str


def _rounded_json(values: list[float], stored: _Stored | None) -> str:
    """``values`` rounded to 4 decimals, as JSON text.

    Rounding and printing floats is most of the cost of saving baselines, and a batch changes
    few of them (a day's profile folds once a day, the ring gains an hour or two). Stored values
    are already rounded (every writer rounds) and rounding is idempotent, so an unchanged list
    keeps its stored text and only changed values are rounded again.
    """
    if stored is not None and len(values) == len(stored.values):
        if values == stored.values:
            return stored.text
        return json.dumps(
            [v if v == o else round(v, 4) for v, o in zip(values, stored.values, strict=True)]
        )
    return json.dumps([round(v, 4) for v in values])


def _only_inserted(rows: Sequence[SignalRow], inserted: Sequence[Any]) -> list[SignalRow]:
    if len(inserted) == len(rows):  # the usual case: nothing was there yet
        return list(rows)
    keys = {(r[0], r[1]) for r in inserted}
    return [r for r in rows if (r.source, r.event_id) in keys]


_CHANNEL = {c.value: c for c in Channel}


class StoredStates:
    """Baselines as stored (rows of ``channel, days, hourly, ring, ring_end, first_hour,
    last_activity_at, last_event_at, last_value, resident_id``, JSON as text), parsed on demand.

    Remembers what it parsed, so that saving can skip the work for what did not change.
    """

    def __init__(
        self, rows: Sequence[Sequence[Any]], parse_ts: Callable[[Any], dt.datetime | None]
    ) -> None:
        self._rows = rows
        self._parse_ts = parse_ts
        self._stored: dict[tuple[str, Channel], tuple[_Stored, _Stored]] = {}

    def baselines(self) -> dict[str, dict[Channel, Baseline]]:
        """New Baseline objects on every call (folding events changes them in place)."""
        out: dict[str, dict[Channel, Baseline]] = {}
        ts = self._parse_ts
        for row in self._rows:
            channel = _CHANNEL[row[0]]
            key = (row[9], channel)
            stored = self._stored.get(key)
            if stored is None:
                stored = (_Stored(json.loads(row[2]), row[2]), _Stored(json.loads(row[3]), row[3]))
                self._stored[key] = stored
            hourly, ring = stored
            out.setdefault(row[9], {})[channel] = Baseline(
                channel=channel,
                days=row[1],
                hourly=list(hourly.values),
                ring=list(ring.values),
                ring_end=row[4],
                first_hour=row[5],
                last_activity_at=ts(row[6]),
                last_event_at=ts(row[7]),
                last_value=row[8],
            )
        return out

    def json(self, s: StateRow) -> tuple[str, str]:
        """The hourly profile and the ring of ``s`` as the JSON text to store."""
        hourly, ring = self._stored.get((s.resident_id, s.baseline.channel), (None, None))
        return _rounded_json(s.baseline.hourly, hourly), _rounded_json(s.baseline.ring, ring)


_STATE_SELECT = (
    "channel, days, {hourly}, {ring}, ring_end, first_hour, last_activity_at, last_event_at,"
    " last_value, resident_id FROM signal_states"
)
_EVENT_COLUMNS = "source, event_id, resident_id, device_id, kind, at, value, attrs, received_at"
_STATE_COLUMNS = (
    "resident_id, channel, days, hourly, ring, ring_end, first_hour, last_activity_at,"
    " last_event_at, last_value, status_due_at, updated_at"
)
_STATE_UPSERT = " ON CONFLICT (resident_id, channel) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in _STATE_COLUMNS.split(", ")[2:]
)


# -- PostgreSQL ---------------------------------------------------------------------------------


def _same(v: Any) -> Any:
    return v


class _PostgresBulk:
    def __init__(self, driver: Any) -> None:
        self._db = driver  # asyncpg.Connection, in SQLAlchemy's transaction

    async def insert_events(
        self, rows: Sequence[SignalRow], received_at: dt.datetime
    ) -> list[SignalRow]:
        if not rows:
            return []
        source, event_id, resident_id, device_id, kind, at, value, _, attrs = zip(
            *rows, strict=True
        )
        inserted = await self._db.fetch(
            f"INSERT INTO signal_events ({_EVENT_COLUMNS})"
            " SELECT s, e, r, d, k, a, v, x::json, $9::timestamptz FROM unnest("
            "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
            " $6::timestamptz[], $7::float8[], $8::text[]) AS t(s, e, r, d, k, a, v, x)"
            " ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id",
            source,
            event_id,
            resident_id,
            device_id,
            [k.value for k in kind],
            at,
            value,
            attrs,
            received_at,
        )
        return _only_inserted(rows, inserted)

    async def lock_residents(self, resident_ids: Sequence[str]) -> None:
        # The profile rows, in id order, so two batches for overlapping residents cannot
        # deadlock.
        await self._db.execute(
            "SELECT 1 FROM monitoring_profiles WHERE resident_id = ANY($1::text[])"
            " ORDER BY resident_id FOR UPDATE",
            resident_ids,
        )

    async def load_states(self, resident_ids: Sequence[str]) -> StoredStates:
        rows = await self._db.fetch(
            "SELECT "
            + _STATE_SELECT.format(hourly="hourly::text", ring="ring::text")
            + " WHERE resident_id = ANY($1::text[])",
            resident_ids,
        )
        # asyncpg returns timestamptz as aware UTC datetimes, as UtcDateTime does.
        return StoredStates(rows, _same)

    async def save_states(
        self, states: Sequence[StateRow], stored: StoredStates, now: dt.datetime
    ) -> None:
        if not states:
            return
        bs = [s.baseline for s in states]
        hourly, ring = zip(*(stored.json(s) for s in states), strict=True)
        await self._db.execute(
            f"INSERT INTO signal_states ({_STATE_COLUMNS})"
            " SELECT r, c, d, h::json, g::json, re, fh, la, le, lv, q, $12::timestamptz"
            " FROM unnest("
            "$1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::int[], $7::int[],"
            " $8::timestamptz[], $9::timestamptz[], $10::float8[], $11::timestamptz[])"
            " AS t(r, c, d, h, g, re, fh, la, le, lv, q)" + _STATE_UPSERT,
            [s.resident_id for s in states],
            [b.channel.value for b in bs],
            [b.days for b in bs],
            hourly,
            ring,
            [b.ring_end for b in bs],
            [b.first_hour for b in bs],
            [b.last_activity_at for b in bs],
            [b.last_event_at for b in bs],
            [b.last_value for b in bs],
            [s.status_due_at for s in states],
            now,
        )

    async def update_devices(self, updates: Sequence[DeviceUpdate]) -> None:
        if not updates:
            return
        pk, seen, online, due = zip(*updates, strict=True)
        await self._db.execute(
            "UPDATE devices SET last_seen_at = u.seen, online = u.online, stale_due_at = u.due"
            " FROM unnest($1::text[], $2::timestamptz[], $3::bool[], $4::timestamptz[])"
            " AS u(pk, seen, online, due) WHERE devices.id = u.pk",
            pk,
            seen,
            online,
            due,
        )


# -- SQLite -------------------------------------------------------------------------------------

# Rows per multi-row INSERT: 9 parameters each stays under SQLite's 32,766 bound parameters.
SQLITE_INSERT_ROWS = 3000


def _ts(at: dt.datetime) -> str:
    """A timestamp as UtcDateTime stores it on SQLite: naive UTC, microseconds always shown."""
    if at.tzinfo is None:
        raise ValueError("naive datetime given to the database: pass an aware UTC time")
    return at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _ts_or_none(at: dt.datetime | None) -> str | None:
    return None if at is None else _ts(at)


def _parse_ts(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


class _SqliteBulk:
    def __init__(self, driver: Any) -> None:
        self._db = driver  # aiosqlite.Connection, in the session's (implicit) transaction

    async def insert_events(
        self, rows: Sequence[SignalRow], received_at: dt.datetime
    ) -> list[SignalRow]:
        if not rows:
            return []
        received = _ts(received_at)
        inserted: list[Any] = []
        for part in chunks(rows, SQLITE_INSERT_ROWS):
            params: list[Any] = []
            for r in part:
                params += (
                    r.source,
                    r.event_id,
                    r.resident_id,
                    r.device_id,
                    r.kind.value,
                    _ts(r.at),
                    r.value,
                    r.attrs_json,
                    received,
                )
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(part))
            inserted += await self._db.execute_fetchall(
                f"INSERT INTO signal_events ({_EVENT_COLUMNS}) VALUES {values}"
                " ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id",
                params,
            )
        return _only_inserted(rows, inserted)

    async def lock_residents(self, resident_ids: Sequence[str]) -> None:
        # SQLite has one writer at a time. Take the write lock now (an empty write does, like
        # BEGIN IMMEDIATE): baselines read under a mere read snapshot could not be written back
        # if another connection wrote in between (SQLITE_BUSY_SNAPSHOT in WAL mode).
        await self._db.execute("UPDATE monitoring_profiles SET level = level WHERE 0")

    async def load_states(self, resident_ids: Sequence[str]) -> StoredStates:
        rows: list[Any] = []
        for part in chunks(resident_ids, IN_CHUNK):
            marks = ", ".join("?" * len(part))
            rows += await self._db.execute_fetchall(
                "SELECT "
                + _STATE_SELECT.format(hourly="hourly", ring="ring")
                + f" WHERE resident_id IN ({marks})",
                list(part),
            )
        return StoredStates(rows, _parse_ts)

    async def save_states(
        self, states: Sequence[StateRow], stored: StoredStates, now: dt.datetime
    ) -> None:
        if not states:
            return
        updated = _ts(now)
        await self._db.executemany(
            f"INSERT INTO signal_states ({_STATE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" + _STATE_UPSERT,
            [
                (
                    s.resident_id,
                    b.channel.value,
                    b.days,
                    *stored.json(s),
                    b.ring_end,
                    b.first_hour,
                    _ts_or_none(b.last_activity_at),
                    _ts_or_none(b.last_event_at),
                    b.last_value,
                    _ts_or_none(s.status_due_at),
                    updated,
                )
                for s in states
                for b in (s.baseline,)
            ],
        )

    async def update_devices(self, updates: Sequence[DeviceUpdate]) -> None:
        if not updates:
            return
        await self._db.executemany(
            "UPDATE devices SET last_seen_at = ?, online = ?, stale_due_at = ? WHERE id = ?",
            [(_ts(u.last_seen_at), u.online, _ts(u.stale_due_at), u.pk) for u in updates],
        )
