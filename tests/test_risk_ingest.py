"""The ingestion fast path (anbu.risk.bulk) against the ORM's contract, on SQLite and PostgreSQL.

ingest() writes events, baselines and device liveness straight through the driver; these tests
hold it to what the ORM would have stored and to exact idempotency when a batch is partly resent.
"""

from __future__ import annotations

import datetime as dt
import gc

from sqlalchemy import LargeBinary, String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import District, Resident
from anbu.db.models_signals import Device, SignalEvent, SignalState
from anbu.domain.risk import Channel, DeviceKind, RiskCategory, SignalKind, Tier
from anbu.risk import registry
from anbu.risk.bulk import SQLITE_INSERT_ROWS, StateRow, StoredStates, bulk_store
from anbu.risk.ingest import ingest, stored_event_id
from anbu.risk.schemas import SignalEventIn

T0 = dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.UTC)
KST_OFFSET = dt.timezone(dt.timedelta(hours=9))


async def _residents(sessions: async_sessionmaker[AsyncSession], *ids: str) -> int:
    """Residents of one new district (returned), each with a plug ``plug-<id>``."""
    async with sessions() as s:
        district = District(code="11620", name="관악구")
        s.add(district)
        await s.flush()
        for i, rid in enumerate(ids):
            r = Resident(id=rid, district_id=district.id, name=f"주민{i}", phone="01099990001")
            s.add(r)
            await s.flush()
            spec = registry.ProfileSpec(Tier.IOT, RiskCategory.MEDIUM, None, True, True, True)
            await registry.set_profile(s, r, spec, T0)
            await registry.register_device(
                s, r, device_id=f"plug-{rid}", kind=DeviceKind.PLUG, expected_interval_s=600,
                now=T0,
            )  # fmt: skip
        await s.commit()
        return district.id


def _ev(**kw: object) -> SignalEventIn:
    return SignalEventIn.model_validate(kw)


def _calls(rid: str, prefix: str, hours: range) -> list[SignalEventIn]:
    return [
        _ev(source="skt-cdr", event_id=f"{prefix}{h}", kind="call", resident_id=rid,
            at=(T0 + dt.timedelta(hours=h, minutes=7)).isoformat(),
            direction="out" if h % 3 else "in", duration_s=float(h % 4) * 30)
        for h in hours
    ]  # fmt: skip


async def test_given_events_of_every_shape_when_ingested_then_stored_exactly_as_the_orm_stores(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    did = await _residents(sessions, "r1")
    at_kst = dt.datetime(2026, 11, 2, 9, 30, 0, 123456, tzinfo=KST_OFFSET)  # an offset, micros
    events = [
        _ev(source="skt-cdr", event_id="c1", kind="call", resident_id="r1",
            at=at_kst.isoformat(), direction="out", duration_s=35),
        _ev(source="plug", event_id="p1", kind="power", device_id="plug-r1",
            at=T0.isoformat(), value=80.5, interval_s=600),
        _ev(source="plug", event_id="l1", kind="light", device_id="plug-r1",
            at=T0.isoformat(), value=0.0),  # no attrs: JSON null, as SQLAlchemy stores None
        _ev(source="plug", event_id="h1", kind="heartbeat", device_id="plug-r1",
            at=T0.isoformat(), online=False),
        _ev(source="skt-cdr", event_id="n1", kind="call_count", resident_id="r1",
            at=T0.isoformat(), value=3, period_h=24),
    ]  # fmt: skip
    now = T0 + dt.timedelta(hours=1)
    async with sessions() as s:
        report = await ingest(s, list(enumerate(events)), now=now, evaluate=False)
    assert (report.accepted, report.duplicates, report.errors) == (5, 0, [])

    # The same events written through the ORM, under another source, as the reference.
    async with sessions() as s:
        for e in events:
            s.add(
                SignalEvent(
                    source=f"orm-{e.source}", event_id=stored_event_id(did, e.event_id),
                    resident_id="r1",
                    device_id=e.device_id, kind=e.kind, at=e.at, value=e.value,
                    attrs=e.attrs(), received_at=now,
                )
            )  # fmt: skip
        await s.commit()

    t = SignalEvent
    raw_columns = (
        t.resident_id,
        t.device_id,
        cast(t.kind, String),
        cast(t.at, String),
        t.value,
        cast(t.attrs, String),
        cast(t.received_at, String),
    )
    async with sessions() as s:
        ours = {
            r[0]: r[1:]
            for r in await s.execute(
                select(t.event_id, *raw_columns).where(~t.source.startswith("orm-"))
            )
        }
        orm = {
            r[0]: r[1:]
            for r in await s.execute(
                select(t.event_id, *raw_columns).where(t.source.startswith("orm-"))
            )
        }
        assert ours == orm
        assert ours[f"{did}/l1"][5] == "null"  # stored qualified by the district
        stored = await s.execute(
            select(t).where(t.event_id == stored_event_id(did, "c1"), t.source == "skt-cdr")
        )
        call = stored.scalar_one()
        assert call.at == at_kst
        assert call.at.tzinfo is dt.UTC
        assert call.kind is SignalKind.CALL
        assert call.attrs == {"direction": "out", "duration_s": 35.0}
        plug = (await s.execute(select(Device).where(Device.device_id == "plug-r1"))).scalar_one()
        assert plug.online is False  # the heartbeat said it went offline
        assert plug.last_seen_at == T0
        assert plug.stale_due_at == now  # offline: stale at once


async def _states(s: AsyncSession, rid: str) -> list[tuple[object, ...]]:
    rows = await s.execute(
        select(SignalState).where(SignalState.resident_id == rid).order_by(SignalState.channel)
    )
    return [
        (x.channel, x.days, x.hourly, x.ring, x.ring_end, x.first_hour, x.last_activity_at,
         x.last_event_at, x.last_value, x.status_due_at)
        for x in rows.scalars()
    ]  # fmt: skip


async def test_given_a_partly_resent_batch_when_ingested_then_only_new_events_move_baselines(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _residents(sessions, "x", "y")
    first_x, first_y = _calls("x", "x", range(80)), _calls("y", "y", range(80))
    new_x, new_y = _calls("x", "x", range(80, 130)), _calls("y", "y", range(80, 130))
    now = T0 + dt.timedelta(hours=131)
    async with sessions() as s:
        await ingest(s, list(enumerate(first_x + first_y)), now=now, evaluate=False)
    # x gets the new events mixed with half of its first batch again; y gets the new ones only.
    resent = first_x[::2]
    mixed = [e for pair in zip(resent, new_x, strict=False) for e in pair] + new_x[len(resent) :]
    async with sessions() as s:
        report_x = await ingest(s, list(enumerate(mixed)), now=now, evaluate=False)
    async with sessions() as s:
        report_y = await ingest(s, list(enumerate(new_y)), now=now, evaluate=False)
    assert (report_x.accepted, report_x.duplicates) == (len(new_x), len(resent))
    assert (report_y.accepted, report_y.duplicates) == (len(new_y), 0)
    async with sessions() as s:
        x, y = await _states(s, "x"), await _states(s, "y")
        assert x
        assert x == y
        count = len((await s.execute(select(SignalEvent.id))).all())
    assert count == 260


async def test_given_a_batch_beyond_one_statement_when_ingested_then_every_event_is_stored_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    did = await _residents(sessions, "r1")
    n = SQLITE_INSERT_ROWS + 500  # more rows than one SQLite INSERT carries
    events = [
        _ev(source="plug", event_id=f"p{i}", kind="power", device_id="plug-r1",
            at=(T0 + dt.timedelta(seconds=10 * i)).isoformat(), value=float(i % 50),
            interval_s=10)
        for i in range(n)
    ]  # fmt: skip
    now = T0 + dt.timedelta(seconds=10 * n)
    async with sessions() as s:
        first = await ingest(s, list(enumerate(events)), now=now, evaluate=False)
    async with sessions() as s:
        again = await ingest(s, list(enumerate(events)), now=now, evaluate=False)
    assert (first.accepted, first.duplicates) == (n, 0)
    assert (again.accepted, again.duplicates) == (0, n)
    async with sessions() as s:
        ids = (await s.execute(select(SignalEvent.event_id))).scalars().all()
    assert sorted(ids) == sorted(stored_event_id(did, e.event_id) for e in events)


async def test_given_stored_baselines_when_read_by_the_bulk_store_then_as_the_orm_reads_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # The bulk store reads hourly profiles and rings into array('d') straight from their bytes
    # (the ORM into lists): the same doubles, and written back as the same bytes.
    await _residents(sessions, "r1")
    async with sessions() as s:
        await ingest(s, list(enumerate(_calls("r1", "c", range(0, 130, 3)))),
                     now=T0 + dt.timedelta(hours=131), evaluate=False)  # fmt: skip
    async with sessions() as s:
        (state,) = (await s.execute(select(SignalState))).scalars()
        orm = (state.hourly, state.ring, state.days)
        raw = (await s.execute(select(cast(SignalState.hourly, LargeBinary),
                                      cast(SignalState.ring, LargeBinary)))).one()  # fmt: skip
        stored = await (await bulk_store(s)).load_states(["r1"])
        b = stored.baselines()["r1"][Channel.CALLS]
        await s.rollback()
    hourly, ring, days = orm
    assert days >= 3  # days were folded into the profile: not all zeros
    assert (list(b.hourly), list(b.ring), b.days) == (hourly, ring, days)
    assert any(hourly)
    assert any(ring)
    assert StoredStates.packed(StateRow("r1", b, None)) == (bytes(raw[0]), bytes(raw[1]))


async def test_given_resident_ids_with_quotes_commas_and_hangul_when_ingested_then_each_found(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Id lists go to the database as one JSON text (not a bound array or IN list): whatever
    # characters an id holds, it must be looked up, locked and stored as itself.
    ids = ['a"b', "c,d", "e'f", "g\\h", "주민{1}", " sp ", "NULL"]
    await _residents(sessions, *ids)
    events = [e for i, rid in enumerate(ids) for e in _calls(rid, f"{i}-", range(3))]
    async with sessions() as s:
        report = await ingest(s, list(enumerate(events)), now=T0 + dt.timedelta(hours=4))
    assert report.errors == []
    assert report.accepted == len(events)
    assert sorted(e.resident_id for e in report.evaluations) == sorted(ids)
    async with sessions() as s:
        stored = (await s.execute(select(SignalState.resident_id))).scalars().all()
    assert sorted(stored) == sorted(ids)


async def test_given_a_batch_when_ingested_then_the_garbage_collector_is_as_it_was(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # The batch's computation pauses the collector; it must run again afterwards, and stay
    # paused for a caller that had paused it.
    await _residents(sessions, "r1")
    calls = _calls("r1", "c", range(6))
    async with sessions() as s:
        await ingest(s, list(enumerate(calls[:3])), now=T0 + dt.timedelta(hours=7))
    assert gc.isenabled()
    gc.disable()
    try:
        async with sessions() as s:
            await ingest(s, list(enumerate(calls[3:])), now=T0 + dt.timedelta(hours=7))
        assert not gc.isenabled()
    finally:
        gc.enable()
