"""Bulk statements for ingestion and grading, one implementation per backend.

At thousands of events (or residents) per batch, SQLAlchemy's statement compilation and
per-value type processing cost more than the database work itself, so these paths talk to the
driver directly, on the session's own connection and inside its transaction:

- Reads by a list of residents (profiles, devices, baselines, holds, open tasks, for ingestion
  and the sweep alike): one statement each, the list as one array (PostgreSQL) or one JSON
  parameter (SQLite), never an IN list of bound parameters.

- Events: the usual batch is all new, so it goes in the cheapest way the backend has, with no
  per-row conflict check: binary ``COPY`` on PostgreSQL, a plain ``executemany`` on SQLite. If
  an event was stored before, that fails as a whole (:class:`DuplicateEvents`); the caller rolls
  back and stores the batch again with ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (one
  statement per batch: a JSON document unpacked by the server on PostgreSQL, multi-row
  ``VALUES`` on SQLite), which tells exactly which events were new.
- Baselines and devices: one statement per batch (``unnest`` of arrays on PostgreSQL,
  ``executemany`` on SQLite).

Stored values are exactly what the ORM stores for the same data (the contract is the models in
:mod:`anbu.db.models_signals`): timestamps as ``timestamptz`` on PostgreSQL and naive UTC text
with microseconds on SQLite (:class:`anbu.db.base.UtcDateTime`), JSON as ``json.dumps`` text
with Python ``None`` stored as JSON ``null`` (SQLAlchemy's ``JSON`` default), enums by value.
"""

from __future__ import annotations

import array
import datetime as dt
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.domain.risk import (
    Baseline,
    Channel,
    DeviceKind,
    Hold,
    HoldReason,
    Level,
    RiskCategory,
    SignalKind,
    Tier,
)
from anbu.domain.risk import MonitoringProfile as ProfileRules
from anbu.risk.store import chunks, rules_from


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


class DueChange(NamedTuple):
    resident_id: str
    channel: Channel
    old: dt.datetime | None
    new: dt.datetime | None


class DuplicateEvents(Exception):
    """The fast insert met an event stored already: roll back and store the batch the slow way."""


class DeviceRow(NamedTuple):
    """A registered device, as the ingestion path needs it."""

    pk: str
    device_id: str
    resident_id: str
    kind: DeviceKind
    active: bool
    online: bool
    last_seen_at: dt.datetime | None
    expected_interval_s: int
    created_at: dt.datetime


class ResidentRow(NamedTuple):
    """A resident with their monitoring profile (None: no profile, so no consent recorded)."""

    resident_id: str
    district_id: int
    active: bool
    profile: ProfileRules | None
    level: Level


class DeviceUpdate(NamedTuple):
    pk: str
    last_seen_at: dt.datetime
    online: bool
    stale_due_at: dt.datetime


class BulkStore(Protocol):
    async def load_senders(
        self, device_ids: Sequence[str], resident_ids: Sequence[str], *, lock: bool = False
    ) -> tuple[list[DeviceRow], list[ResidentRow]]:
        """Every device of the residents who own ``device_ids`` or are in ``resident_ids``
        (active or not: a deregistered device must be recognised to be refused), and those
        residents with their profiles. One round trip each, whatever the batch size.

        ``lock``: also lock those residents as :meth:`lock_residents` does (on PostgreSQL in
        the statement that reads their profiles), so their baselines can be read next."""
        ...

    async def insert_events(
        self, rows: Sequence[SignalRow], received_at: dt.datetime, *, fast: bool = False
    ) -> list[SignalRow]:
        """Insert, skipping (source, event_id) pairs already stored; return the rows that went in
        (in the given order).

        ``fast``: the bulk load path (COPY / plain executemany) with no per-row conflict check,
        for the usual batch where every event is new. If any was stored already it raises
        :class:`DuplicateEvents` and the transaction must be rolled back and the batch stored
        again without ``fast``.
        """
        ...

    async def load_context(
        self, resident_ids: Sequence[str], now: dt.datetime
    ) -> tuple[dict[str, list[Hold]], set[str]]:
        """What grading reads besides profiles, baselines and devices: the holds that matter at
        ``now`` (current, upcoming, or ended within 30 days: the quiet floor) by resident, and
        the devices that have an open task."""
        ...

    async def lock_residents(self, resident_ids: Sequence[str]) -> None:
        """Serialise read-modify-write of these residents' baselines until the commit."""
        ...

    async def load_states(self, resident_ids: Sequence[str]) -> StoredStates:
        """The stored baselines of these residents (call after :meth:`lock_residents`)."""
        ...

    async def save_states(
        self, states: Sequence[StateRow], texts: Sequence[tuple[bytes, bytes]], now: dt.datetime
    ) -> None:
        """Upsert the baselines; ``texts`` are their hourly profiles and rings as stored
        (:meth:`StoredStates.packed`)."""
        ...

    async def update_devices(self, updates: Sequence[DeviceUpdate]) -> None: ...

    async def set_levels(
        self, changes: Sequence[tuple[str, Level, Level]], now: dt.datetime
    ) -> set[str]:
        """Compare-and-set residents' levels: ``(resident, expected current level, new level)``.
        Returns the residents whose level was still the expected one (and is now the new)."""
        ...

    async def refresh_due(self, changes: Sequence[DueChange]) -> int:
        """Store recomputed due times, each only if the stored one is still ``old`` (an
        ingestion that saved the baseline meanwhile wrote a due time of its own). Returns how
        many were written."""
        ...


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


def _only_inserted(rows: Sequence[SignalRow], inserted: Sequence[Any]) -> list[SignalRow]:
    if len(inserted) == len(rows):  # the usual case: nothing was there yet
        return list(rows)
    keys = {(r[0], r[1]) for r in inserted}
    return [r for r in rows if (r.source, r.event_id) in keys]


_CHANNEL = {c.value: c for c in Channel}
# The stored doubles are big-endian (anbu.db.models_signals.pack_floats).
_SWAP = sys.byteorder == "little"


def _floats(data: bytes) -> array.array[float]:
    """A stored hourly profile or ring as an ``array('d')``: one copy of the bytes, no float
    objects. Measured on a carrier's feed (4,300 baselines a batch): 1.0 us a baseline against
    3.9 us for :func:`~anbu.db.models_signals.unpack_floats`'s list, and arrays are not walked
    by the garbage collector, which lists of floats are."""
    a = array.array("d", data)
    if _SWAP:
        a.byteswap()
    return a


def _packed(values: Sequence[float]) -> bytes:
    """The inverse of :func:`_floats`; the same bytes as
    :func:`~anbu.db.models_signals.pack_floats` (0.5 us against its 2 us)."""
    a = array.array("d", values)
    if _SWAP:
        a.byteswap()
    return a.tobytes()


class StoredStates:
    """Baselines as stored (rows of ``channel, days, hourly, ring, ring_end, first_hour,
    last_activity_at, last_event_at, last_value, resident_id, status_due_at``, the hourly
    profile and the ring as :func:`~anbu.db.models_signals.pack_floats` bytes)."""

    def __init__(
        self, rows: Sequence[Sequence[Any]], parse_ts: Callable[[Any], dt.datetime | None]
    ) -> None:
        self._rows = rows
        self._parse_ts = parse_ts

    def baselines(self) -> dict[str, dict[Channel, Baseline]]:
        """New Baseline objects on every call (folding events changes them in place)."""
        out: dict[str, dict[Channel, Baseline]] = {}
        ts = self._parse_ts
        for row in self._rows:
            out.setdefault(row[9], {})[_CHANNEL[row[0]]] = Baseline(
                _CHANNEL[row[0]],
                _floats(row[2]),
                row[1],
                _floats(row[3]),
                row[4],
                row[5],
                ts(row[6]),
                ts(row[7]),
                row[8],
            )
        return out

    def due_times(self) -> dict[tuple[str, Channel], dt.datetime | None]:
        """Each baseline's stored ``status_due_at``."""
        return {(row[9], _CHANNEL[row[0]]): self._parse_ts(row[10]) for row in self._rows}

    @staticmethod
    def packed(s: StateRow) -> tuple[bytes, bytes]:
        """The hourly profile and the ring of ``s`` as stored."""
        return _packed(s.baseline.hourly), _packed(s.baseline.ring)


_STATE_SELECT = (
    "channel, days, hourly, ring, ring_end, first_hour, last_activity_at, last_event_at,"
    " last_value, resident_id, status_due_at FROM signal_states"
)
# The devices of every resident concerned, and those residents with their profiles. ``{owners}``
# and ``{res}`` are the backend's way of saying "in this list" (an array or a JSON list).
_SENDERS_DEVICES = (
    "SELECT id, device_id, resident_id, kind, active, online, last_seen_at, expected_interval_s,"
    " created_at FROM devices WHERE resident_id {owners}"
)
_PROFILE_COLUMNS = (
    "resident_id, tier, category, window_h_override, consent_call_records, consent_app,"
    " consent_iot, enabled, level, widen_h"
)
_SENDERS_RESIDENTS = (
    "SELECT r.id, r.district_id, r.active, "
    + ", ".join(f"p.{c}" for c in _PROFILE_COLUMNS.split(", "))
    + " FROM residents r LEFT JOIN monitoring_profiles p ON p.resident_id = r.id WHERE r.id {res}"
)


def _resident_row(r: Sequence[Any]) -> ResidentRow:
    profile = None
    if r[3] is not None:
        profile = rules_from(
            _TIER[r[4]], _CATEGORY[r[5]], r[6], bool(r[7]), bool(r[8]), bool(r[9]), bool(r[10]),
            r[12],
        )  # fmt: skip
    return ResidentRow(r[0], r[1], bool(r[2]), profile, _LEVEL[r[11]] if r[11] else Level.NONE)


_CONTEXT_HOLDS = (
    "SELECT resident_id, starts_at, ends_at, reason FROM monitoring_holds"
    " WHERE resident_id {res} AND ends_at >= {since}"
)
_CONTEXT_TASKS = "SELECT device_pk FROM device_tasks WHERE resident_id {res} AND status = 'open'"
# How far back an ended hold still matters: it caps how long a channel has been quiet.
HOLD_MEMORY = dt.timedelta(days=30)

_TIER = {t.value: t for t in Tier}
_HOLD_REASON = {r.value: r for r in HoldReason}
_CATEGORY = {c.value: c for c in RiskCategory}
_LEVEL = {v.value: v for v in Level}
_DEVICE_KIND = {k.value: k for k in DeviceKind}

_EVENT_COLUMNS = "source, event_id, resident_id, device_id, kind, at, value, attrs, received_at"
_STATE_COLUMNS = (
    "resident_id, channel, days, hourly, ring, ring_end, first_hour, last_activity_at,"
    " last_event_at, last_value, status_due_at, updated_at"
)
_STATE_UPSERT = " ON CONFLICT (resident_id, channel) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in _STATE_COLUMNS.split(", ")[2:]
)


# -- PostgreSQL ---------------------------------------------------------------------------------


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def _same(v: Any) -> Any:
    return v


def _micros(at: dt.datetime | None) -> int | None:
    """Exact integer microseconds since the epoch (None stays None)."""
    return None if at is None else (at - _EPOCH) // _US


def _at_micros(column: str) -> str:
    """SQL: the timestamptz of a column of :func:`_micros` values (NULL stays NULL)."""
    return f"timestamptz 'epoch' + {column} * interval '1 microsecond'"


def _pg_list(n: int) -> str:
    """Parameter ``$n``, a list of ids sent as one JSON text (:func:`_ids`), as a text array.

    Why not a ``text[]`` parameter: asyncpg's array encoder checks every element against
    collections.abc (~10 isinstance calls each); for the 4,000 residents of a carrier's batch,
    sent five times a batch, that was ~10 ms of the client's CPU a batch. json.dumps is one C
    call, and the server unpacks the list once, into the array the planner looks up by index.
    """
    return f"ARRAY(SELECT json_array_elements_text(${n}::json))"


def _ids(ids: Sequence[str]) -> str:
    return json.dumps(ids if isinstance(ids, list) else list(ids))


# The senders' residents with their profiles, the profiles locked (lock_residents) by the
# statement that reads them. The profile rows are the residents' lock: locked in id order, so
# two batches for overlapping residents cannot deadlock.
# Why (issue 15, measured 2026-12-05 on a carrier's batch of 4,421 residents, load ~10, min of
# 7): reading the residents, locking their profiles and reading their baselines took three
# statements, the profiles looked up twice: 48-56 ms of the server's CPU and 21 of ours. Locked
# where they are read, then the baselines: 37-38 and 14. The baselines in the same statement
# too (a LATERAL join: a plain join made the planner scan the whole table) cost more: 44-47
# and 16. (FOR UPDATE cannot lock the nullable side of the outer join, hence the CTE.)
_SENDERS_LOCKED = (
    f"WITH p AS MATERIALIZED (SELECT {_PROFILE_COLUMNS} FROM monitoring_profiles"
    " WHERE resident_id {res} ORDER BY resident_id FOR UPDATE) "
    + _SENDERS_RESIDENTS.replace("monitoring_profiles p", "p")
)


class _PostgresBulk:
    def __init__(self, driver: Any) -> None:
        self._db = driver  # asyncpg.Connection, in SQLAlchemy's transaction

    async def load_senders(
        self, device_ids: Sequence[str], resident_ids: Sequence[str], *, lock: bool = False
    ) -> tuple[list[DeviceRow], list[ResidentRow]]:
        # One array of owners, so the planner looks each up in the resident index (an OR of
        # two conditions would scan the table).
        devs = await self._db.fetch(
            _SENDERS_DEVICES.format(
                owners=f"= ANY(array_cat({_pg_list(2)}, ARRAY(SELECT resident_id FROM devices"
                f" WHERE device_id = ANY({_pg_list(1)}))))"
            ),
            _ids(device_ids),
            _ids(resident_ids),
        )
        devices = [
            DeviceRow(r[0], r[1], r[2], _DEVICE_KIND[r[3]], r[4], r[5], r[6], r[7], r[8])
            for r in devs
        ]
        owners = sorted({*resident_ids, *(d.resident_id for d in devices)})
        rows = await self._db.fetch(
            (_SENDERS_LOCKED if lock else _SENDERS_RESIDENTS).format(res=f"= ANY({_pg_list(1)})"),
            _ids(owners),
        )
        return devices, [_resident_row(r) for r in rows]

    async def load_context(
        self, resident_ids: Sequence[str], now: dt.datetime
    ) -> tuple[dict[str, list[Hold]], set[str]]:
        ids = _ids(resident_ids)
        holds: dict[str, list[Hold]] = {}
        for r in await self._db.fetch(
            _CONTEXT_HOLDS.format(res=f"= ANY({_pg_list(1)})", since="$2"),
            ids,
            now - HOLD_MEMORY,
        ):
            holds.setdefault(r[0], []).append(Hold(r[1], r[2], _HOLD_REASON[r[3]]))
        tasks = await self._db.fetch(_CONTEXT_TASKS.format(res=f"= ANY({_pg_list(1)})"), ids)
        return holds, {r[0] for r in tasks}

    async def insert_events(
        self, rows: Sequence[SignalRow], received_at: dt.datetime, *, fast: bool = False
    ) -> list[SignalRow]:
        if not rows:
            return []
        if fast:
            # Binary COPY: the cheapest way into the table, for server and client alike, but it
            # has no ON CONFLICT; an event stored already aborts it (and the transaction).
            try:
                await self._db.copy_records_to_table(
                    "signal_events",
                    columns=_EVENT_COLUMNS.split(", "),
                    # A SignalRow starts with the columns as stored: (source, event_id,
                    # resident_id, device_id, kind, at, value), the kind a str enum.
                    records=((*r[:7], r.attrs_json, received_at) for r in rows),
                )
            except asyncpg.UniqueViolationError as e:
                raise DuplicateEvents(str(e)) from e
            return list(rows)
        # The batch goes as ONE JSON document unpacked by the server: asyncpg's array encoder
        # checks every element against collections.abc (~13 isinstance calls per event), which
        # cost more than the whole insert; json.dumps is one C call, and the parsing happens in
        # the server process, in parallel with the baselines computed here meanwhile.
        # Timestamps travel as exact integer microseconds since the epoch.
        doc = json.dumps([(*r[:5], _micros(r.at), r.value, r.attrs) for r in rows])
        inserted = await self._db.fetch(
            f"INSERT INTO signal_events ({_EVENT_COLUMNS})"
            " SELECT j->>0, j->>1, j->>2, j->>3, j->>4,"
            f" {_at_micros('(j->>5)::bigint')},"
            " (j->>6)::float8, j->7, $2::timestamptz"
            " FROM json_array_elements($1::json) AS j"
            " ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id",
            doc,
            received_at,
        )
        return _only_inserted(rows, inserted)

    async def lock_residents(self, resident_ids: Sequence[str]) -> None:
        # The profile rows in id order, as _SENDERS_LOCKED takes them (so no deadlock).
        await self._db.execute(
            f"SELECT 1 FROM monitoring_profiles WHERE resident_id = ANY({_pg_list(1)})"
            " ORDER BY resident_id FOR UPDATE",
            _ids(resident_ids),
        )

    async def load_states(self, resident_ids: Sequence[str]) -> StoredStates:
        rows = await self._db.fetch(
            "SELECT " + _STATE_SELECT + f" WHERE resident_id = ANY({_pg_list(1)})",
            _ids(resident_ids),
        )
        # asyncpg returns timestamptz as aware UTC datetimes, as UtcDateTime does.
        return StoredStates(rows, _same)

    async def save_states(
        self, states: Sequence[StateRow], texts: Sequence[tuple[bytes, bytes]], now: dt.datetime
    ) -> None:
        if not states:
            return
        # Binary COPY into a per-connection scratch table, then one upsert from it. Measured
        # on a carrier's feed (4,000 baselines a batch): sending them as unnest() arrays cost
        # ~5x more client CPU, as asyncpg's array encoder checks every element of every array
        # against collections.abc. Measured again 2026-12-05 (4,238 of 20,000 baselines, client
        # / server CPU per batch): this 12 / 53 ms; one UPDATE ... FROM the scratch table
        # 12 / 71; unnest() arrays 25 / 102; executemany of the upsert 18 / 117; the rows as
        # one JSON document unpacked by the server (bytea as base64) 37 / 261. The server's
        # part is the rows' new versions and index entries, which no statement shape avoids.
        #
        # The timestamps travel as integer microseconds since the epoch, turned back into
        # timestamptz by the upsert (exactly, as the slow event insert does), and updated_at
        # once as a parameter: asyncpg's timestamptz encoder does several datetime operations
        # in Python objects per value, and the four timestamps were ~3/4 of this COPY's client
        # CPU (4,421 baselines, load ~7, min of 9: 21 ms with them, 6 without; as integers
        # from Python 16, and 2 per row of the 3 left when the last event was an activity).
        await self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS signal_states_us (resident_id text, channel text,"
            " days integer, hourly bytea, ring bytea, ring_end integer, first_hour integer,"
            " last_activity_us bigint, last_event_us bigint, last_value float8,"
            " status_due_us bigint) ON COMMIT DELETE ROWS"
        )
        await self._db.copy_records_to_table(
            "signal_states_us",
            records=[
                (s.resident_id, b.channel.value, b.days, h, g, b.ring_end, b.first_hour,
                 event if b.last_activity_at is b.last_event_at else _micros(b.last_activity_at),
                 event, b.last_value, _micros(s.status_due_at))
                for s, (h, g) in zip(states, texts, strict=True)
                for b in (s.baseline,)
                for event in (_micros(b.last_event_at),)
            ],
        )  # fmt: skip
        await self._db.execute(
            f"INSERT INTO signal_states ({_STATE_COLUMNS}) SELECT resident_id, channel, days,"
            f" hourly, ring, ring_end, first_hour, {_at_micros('last_activity_us')},"
            f" {_at_micros('last_event_us')}, last_value, {_at_micros('status_due_us')}, $1"
            " FROM signal_states_us" + _STATE_UPSERT,
            now,
        )
        await self._db.execute("TRUNCATE signal_states_us")

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

    async def set_levels(
        self, changes: Sequence[tuple[str, Level, Level]], now: dt.datetime
    ) -> set[str]:
        if not changes:
            return set()
        rid, old, new = zip(*changes, strict=True)
        rows = await self._db.fetch(
            "UPDATE monitoring_profiles p SET level = u.new, level_since = $4, updated_at = $4"
            " FROM unnest($1::text[], $2::text[], $3::text[]) AS u(r, old, new)"
            " WHERE p.resident_id = u.r AND p.level = u.old RETURNING p.resident_id",
            rid,
            [v.value for v in old],
            [v.value for v in new],
            now,
        )
        return {r[0] for r in rows}

    async def refresh_due(self, changes: Sequence[DueChange]) -> int:
        if not changes:
            return 0
        rid, channel, old, new = zip(*changes, strict=True)
        status = await self._db.execute(
            "UPDATE signal_states s SET status_due_at = u.new FROM unnest($1::text[],"
            " $2::text[], $3::timestamptz[], $4::timestamptz[]) AS u(r, c, old, new)"
            " WHERE s.resident_id = u.r AND s.channel = u.c"
            " AND s.status_due_at IS NOT DISTINCT FROM u.old",
            rid,
            [c.value for c in channel],
            old,
            new,
        )
        return int(status.split()[-1])  # "UPDATE n"


# -- SQLite -------------------------------------------------------------------------------------

# Rows per multi-row INSERT: 9 parameters each stays under SQLite's 32,766 bound parameters.
SQLITE_INSERT_ROWS = 3000


def _ts(at: dt.datetime) -> str:
    """A timestamp as UtcDateTime stores it on SQLite: naive UTC, microseconds always shown.

    Called for every event: shifted by its offset and printed once, the offset's "+00:00"
    cut off, rather than converted, stripped and printed.
    """
    offset = at.utcoffset()
    if offset is None:
        raise ValueError("naive datetime given to the database: pass an aware UTC time")
    return (at - offset if offset else at).isoformat(" ", "microseconds")[:26]


def _ts_or_none(at: dt.datetime | None) -> str | None:
    return None if at is None else _ts(at)


def _parse_ts(text: str | None) -> dt.datetime | None:
    """The inverse of :func:`_ts` (the text is naive UTC, as UtcDateTime stores it).

    Parsed with its offset appended rather than parsed and then given one: three of these per
    baseline of a carrier's batch (4,400), and ``replace(tzinfo=...)`` made a second object
    through keyword arguments: measured 0.45 us against 2.5 (on a loaded machine).
    """
    return None if text is None else dt.datetime.fromisoformat(text + "+00:00")


# A list goes in as one JSON parameter (json_each): no bound-parameter limit to chunk by.
_IN_LIST = "IN (SELECT value FROM json_each(?))"


class _SqliteBulk:
    def __init__(self, driver: Any) -> None:
        self._db = driver  # aiosqlite.Connection, in the session's (implicit) transaction

    async def load_senders(
        self, device_ids: Sequence[str], resident_ids: Sequence[str], *, lock: bool = False
    ) -> tuple[list[DeviceRow], list[ResidentRow]]:
        if lock:
            await self.lock_residents(resident_ids)
        in_list = _IN_LIST
        devs = await self._db.execute_fetchall(
            _SENDERS_DEVICES.format(
                owners=f"IN (SELECT value FROM json_each(?) UNION SELECT resident_id FROM devices"
                f" WHERE device_id {in_list})"
            ),
            (json.dumps(list(resident_ids)), json.dumps(list(device_ids))),
        )
        devices = [
            DeviceRow(
                r[0],
                r[1],
                r[2],
                _DEVICE_KIND[r[3]],
                bool(r[4]),
                bool(r[5]),
                _parse_ts(r[6]),
                r[7],
                dt.datetime.fromisoformat(r[8] + "+00:00"),
            )
            for r in devs
        ]
        owners = sorted({*resident_ids, *(d.resident_id for d in devices)})
        rows = await self._db.execute_fetchall(
            _SENDERS_RESIDENTS.format(res=in_list), (json.dumps(owners),)
        )
        return devices, [_resident_row(r) for r in rows]

    async def load_context(
        self, resident_ids: Sequence[str], now: dt.datetime
    ) -> tuple[dict[str, list[Hold]], set[str]]:
        ids = json.dumps(list(resident_ids))
        holds: dict[str, list[Hold]] = {}
        for r in await self._db.execute_fetchall(
            _CONTEXT_HOLDS.format(res=_IN_LIST, since="?"), (ids, _ts(now - HOLD_MEMORY))
        ):
            starts, ends = _parse_ts(r[1]), _parse_ts(r[2])
            assert starts is not None
            assert ends is not None
            holds.setdefault(r[0], []).append(Hold(starts, ends, _HOLD_REASON[r[3]]))
        tasks = await self._db.execute_fetchall(_CONTEXT_TASKS.format(res=_IN_LIST), (ids,))
        return holds, {r[0] for r in tasks}

    async def insert_events(
        self, rows: Sequence[SignalRow], received_at: dt.datetime, *, fast: bool = False
    ) -> list[SignalRow]:
        if not rows:
            return []
        received = _ts(received_at)
        if fast:
            # A plain executemany (what the bare baseline does): no RETURNING to read back; an
            # event stored already fails it.
            try:
                await self._db.executemany(
                    f"INSERT INTO signal_events ({_EVENT_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (*r[:4], r.kind.value, _ts(r.at), r.value, r.attrs_json, received)
                        for r in rows
                    ],
                )
            except sqlite3.IntegrityError as e:
                raise DuplicateEvents(str(e)) from e
            return list(rows)
        inserted: list[Any] = []
        for part in chunks(rows, SQLITE_INSERT_ROWS):
            params: list[Any] = []
            for r in part:
                params += (*r[:4], r.kind.value, _ts(r.at), r.value, r.attrs_json, received)
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
        # The ids as one JSON parameter, as the other reads here: no chunks of bound parameters.
        query = f"SELECT {_STATE_SELECT} WHERE resident_id {_IN_LIST}"
        return StoredStates(
            list(await self._db.execute_fetchall(query, (json.dumps(list(resident_ids)),))),
            _parse_ts,
        )

    async def save_states(
        self, states: Sequence[StateRow], texts: Sequence[tuple[bytes, bytes]], now: dt.datetime
    ) -> None:
        if not states:
            return
        updated = _ts(now)
        # The last event is usually the last activity too (the same object): printed once.
        rows = [
            (s.resident_id, b.channel.value, b.days, *text, b.ring_end, b.first_hour,
             event if b.last_activity_at is b.last_event_at else _ts_or_none(b.last_activity_at),
             event, b.last_value, _ts_or_none(s.status_due_at), updated)
            for s, text in zip(states, texts, strict=True)
            for b in (s.baseline,)
            for event in (_ts_or_none(b.last_event_at),)
        ]  # fmt: skip
        await self._db.executemany(
            f"INSERT INTO signal_states ({_STATE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" + _STATE_UPSERT,
            rows,
        )

    async def update_devices(self, updates: Sequence[DeviceUpdate]) -> None:
        if not updates:
            return
        await self._db.executemany(
            "UPDATE devices SET last_seen_at = ?, online = ?, stale_due_at = ? WHERE id = ?",
            [(_ts(u.last_seen_at), u.online, _ts(u.stale_due_at), u.pk) for u in updates],
        )

    async def set_levels(
        self, changes: Sequence[tuple[str, Level, Level]], now: dt.datetime
    ) -> set[str]:
        moved: set[str] = set()
        at = _ts(now)
        for rid, old, new in changes:  # in process: a statement each costs microseconds
            cursor = await self._db.execute(
                "UPDATE monitoring_profiles SET level = ?, level_since = ?, updated_at = ?"
                " WHERE resident_id = ? AND level = ?",
                (new.value, at, at, rid, old.value),
            )
            if cursor.rowcount:
                moved.add(rid)
        return moved

    async def refresh_due(self, changes: Sequence[DueChange]) -> int:
        written = 0
        for c in changes:
            cursor = await self._db.execute(
                "UPDATE signal_states SET status_due_at = ?"
                " WHERE resident_id = ? AND channel = ? AND status_due_at IS ?",
                (_ts_or_none(c.new), c.resident_id, c.channel.value, _ts_or_none(c.old)),
            )
            written += cursor.rowcount
        return written
