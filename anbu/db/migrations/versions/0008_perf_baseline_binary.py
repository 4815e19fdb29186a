"""perf_baseline_binary: signal_states.hourly and ring become binary doubles instead of JSON

Ingesting a carrier's daily feed (one event per resident) reads, folds and writes one baseline
per event; parsing and printing their 80 floats as JSON was the largest single cost of that path.
They are now stored as big-endian IEEE 754 doubles (anbu.db.models_signals.pack_floats).

Revision ID: 0008_perf_baseline_binary
Revises: 0007_sec_hardening
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

import json
import struct
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008_perf_baseline_binary"
down_revision = "0007_sec_hardening"
branch_labels = None
depends_on = None

# The encoding is spelled out here rather than imported, so that this migration keeps doing what
# it did whatever the models become.


def _pack(values: list[float]) -> bytes:
    return struct.pack(f">{len(values)}d", *values)


def _unpack(data: bytes) -> list[float]:
    return list(struct.unpack(f">{len(data) // 8}d", data))


def _text(value: Any) -> str:
    """A JSON list as the column holds it mid-migration: text (SQLite) or its UTF-8 bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode()
    if isinstance(value, list):  # a driver that parsed the JSON already
        return json.dumps(value)
    return str(value)


def _rewrite(encode: Any, column_type: Any) -> None:
    """Read every row's hourly profile and ring, and write them back through ``encode``."""
    conn = op.get_bind()
    # Named after the target type: the same text prepared on this connection before the column
    # changed type would be refused by asyncpg as a stale cached plan.
    rows = conn.execute(
        sa.text(
            f"SELECT resident_id, channel, hourly, ring FROM signal_states"
            f" /* to {column_type.__class__.__name__} */"
        )
    )
    params = [{"r": r[0], "c": r[1], "h": encode(r[2]), "g": encode(r[3])} for r in rows]
    if not params:
        return
    states = sa.table(
        "signal_states",
        sa.column("resident_id", sa.String()),
        sa.column("channel", sa.String()),
        sa.column("hourly", column_type),
        sa.column("ring", column_type),
    )
    conn.execute(
        states.update()
        .where(states.c.resident_id == sa.bindparam("r"), states.c.channel == sa.bindparam("c"))
        .values(hourly=sa.bindparam("h"), ring=sa.bindparam("g")),
        params,
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # json has no cast to bytea: keep its text's bytes for now, re-encoded below.
        for col in ("hourly", "ring"):
            op.execute(
                f"ALTER TABLE signal_states ALTER COLUMN {col} TYPE bytea"
                f" USING convert_to({col}::text, 'UTF8')"
            )
    else:
        with op.batch_alter_table("signal_states", schema=None) as batch_op:
            batch_op.alter_column("hourly", type_=sa.LargeBinary(), existing_nullable=False)
            batch_op.alter_column("ring", type_=sa.LargeBinary(), existing_nullable=False)
    _rewrite(lambda v: _pack(json.loads(_text(v))), sa.LargeBinary())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Binary to JSON text in place: the bytes are first turned into their JSON list here.
        for col in ("hourly", "ring"):
            op.execute(
                f"ALTER TABLE signal_states ALTER COLUMN {col} TYPE text USING encode({col}, 'hex')"
            )
        _rewrite(lambda v: json.dumps(_unpack(bytes.fromhex(v))), sa.Text())
        for col in ("hourly", "ring"):
            op.execute(f"ALTER TABLE signal_states ALTER COLUMN {col} TYPE json USING {col}::json")
    else:
        _rewrite(lambda v: json.dumps(_unpack(bytes(v))), sa.Text())
        with op.batch_alter_table("signal_states", schema=None) as batch_op:
            batch_op.alter_column("hourly", type_=sa.JSON(), existing_nullable=False)
            batch_op.alter_column("ring", type_=sa.JSON(), existing_nullable=False)
