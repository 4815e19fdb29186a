"""Baselines are stored as binary doubles (migration 0006): rows written as JSON by the earlier
schema survive the upgrade exactly, and the downgrade gives the JSON back, on both backends."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select, text

from anbu.db.migrate import upgrade
from anbu.db.models_signals import SignalState, pack_floats, unpack_floats
from anbu.db.session import make_sessionmaker
from anbu.domain.risk import Channel
from tests.db_fixtures import (
    BACKENDS,
    downgrade,
    unmigrated_engine,
)

HOURLY = [0.0, 0.1234, 1e-05, 3.0, 1234.5678, *[0.5] * 19]
RING = [float(i % 3) / 7 for i in range(56)]  # values JSON prints with all their digits


def test_given_float_lists_when_packed_then_unpacked_exactly_as_big_endian_doubles() -> None:
    data = pack_floats(HOURLY)
    assert len(data) == 8 * len(HOURLY)
    assert data[8:16] == bytes.fromhex("3fbf972474538ef3")  # 0.1234, network byte order
    assert unpack_floats(data) == HOURLY


@pytest.mark.parametrize("backend", BACKENDS)
async def test_given_json_baselines_when_migrated_up_and_down_then_values_kept(
    backend: str, tmp_path: Path
) -> None:
    async with unmigrated_engine(backend, tmp_path) as engine:
        await upgrade(engine, "0005_status_due")
        t = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
        t0 = t if backend == "postgresql" else t.replace(tzinfo=None)
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO districts (id, code, name, created_at) VALUES (1, '1', 'g', :t)"),
                {"t": t0},
            )
            await conn.execute(
                text(
                    "INSERT INTO residents (id, district_id, name, phone, dong, active,"
                    " created_at, updated_at) VALUES ('r1', 1, 'n', '010', '', true, :t, :t)"
                ),
                {"t": t0},
            )
            await conn.execute(
                text(
                    "INSERT INTO signal_states (resident_id, channel, days, hourly, ring,"
                    " updated_at) VALUES ('r1', 'calls', 4, :h, :g, :t)"
                ),
                {"h": json.dumps(HOURLY), "g": json.dumps(RING), "t": t0},
            )
        await upgrade(engine)
        async with make_sessionmaker(engine)() as s:
            state = (await s.execute(select(SignalState))).scalar_one()
            assert (state.channel, state.hourly, state.ring) == (Channel.CALLS, HOURLY, RING)

        await downgrade(engine, "0005_status_due")
        async with engine.connect() as conn:
            h, g = (await conn.execute(text("SELECT hourly, ring FROM signal_states"))).one()
        parse = (lambda v: v) if isinstance(h, list) else json.loads
        assert (parse(h), parse(g)) == (HOURLY, RING)
