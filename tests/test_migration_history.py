"""Every Alembic revision builds the schema it built when it was released, on both backends.

Migrations are history: deployed districts have run them, and a district that upgrades later
runs the old revisions as they are in the tree then. A revision (or a helper it calls,
``anbu/db/migrations/helpers.py``) edited afterwards would give a new district another schema
than the ones already running. So a fresh database is upgraded one revision at a time, and the
schema after each revision is compared with a committed snapshot,
``tests/migration_snapshots/<revision>.<backend>.txt``: tables; columns with their types (as the
backend spells them), nullability, defaults and autoincrement; primary keys, foreign keys (name,
columns, target, ON DELETE), unique and check constraints, indexes (name, columns, uniqueness),
as SQLAlchemy's inspector reports them; the triggers, and on PostgreSQL the functions. Then the
database is downgraded one revision at a time, each step back to the schema of the revision
before (column order aside), to base (nothing may be left), and upgraded again to head.

A snapshot is never edited by hand, and never regenerated to make this test pass after an old
revision changed: the change is the defect. Snapshots are written (for a new revision, or after
an upgrade of SQLAlchemy or the database changed how the same schema is reported) with

    ANBU_MIGRATION_SNAPSHOTS=write .venv/bin/pytest tests/test_migration_history.py

which writes the files of every revision on the way up; ``git diff`` then shows
what changed, and only the new revision's files (or a pure reporting change) may be committed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from anbu.db.migrate import alembic_config, upgrade
from tests.db_fixtures import BACKENDS, downgrade, unmigrated_engine

SNAPSHOTS = Path(__file__).resolve().parent / "migration_snapshots"
WRITE = os.environ.get("ANBU_MIGRATION_SNAPSHOTS") == "write"


def _revisions() -> list[str]:
    """Every revision from the first to head, in the order an upgrade runs them."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def _value(value: Any, dialect: sa.Dialect) -> str:
    """One stable spelling of what the inspector reports (types as the backend's DDL)."""
    if isinstance(value, sa.types.TypeEngine):
        return str(value.compile(dialect=dialect))
    if isinstance(value, Mapping):  # what is None or empty is left out: it says nothing
        spelled = {k: _value(value[k], dialect) for k in sorted(value)}
        inner = ", ".join(f"{k}={v}" for k, v in spelled.items() if v not in ("None", "[]", "{}"))
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, dialect) for v in value) + "]"
    return repr(value)


def _entries(kind: str, items: Iterable[Mapping[str, Any]], dialect: sa.Dialect) -> list[str]:
    lines = [f"  {kind} {_value(item, dialect)}" for item in items if item]
    return lines if kind == "column" else sorted(lines)  # column order is part of the table


def _schema(conn: Connection) -> str:
    """The schema of the database behind ``conn`` as sorted text lines."""
    inspector = sa.inspect(conn)
    dialect = conn.dialect
    # One query per kind over all tables (per table, PostgreSQL would take seconds a revision).
    reports: dict[str, Mapping[Any, Sequence[Mapping[str, Any]]]] = {
        "column": inspector.get_multi_columns(),
        "primary_key": {k: [v] for k, v in inspector.get_multi_pk_constraint().items()},
        "foreign_key": inspector.get_multi_foreign_keys(),
        "unique": inspector.get_multi_unique_constraints(),
        "check": inspector.get_multi_check_constraints(),
        "index": inspector.get_multi_indexes(),
    }
    lines: list[str] = []
    for key in sorted(reports["column"], key=lambda table_key: str(table_key[1])):
        if key[1] == "alembic_version":
            continue
        lines.append(f"table {key[1]}")
        for kind, report in reports.items():
            lines += _entries(kind, report.get(key, []), dialect)
    if dialect.name == "sqlite":
        # Tables and indexes are the inspector's; their CREATE text is not stable (a batch
        # migration's table copy lists its constraints in no fixed order).
        rows = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
        )
        lines += [f"trigger {name}: {' '.join(sql.split())}" for name, sql in rows]
    else:
        rows = conn.exec_driver_sql(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger"
            " WHERE NOT tgisinternal ORDER BY tgname"
        )
        lines += [f"trigger {name}: {definition}" for name, definition in rows]
        rows = conn.exec_driver_sql(
            "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            " ORDER BY p.proname"
        )
        lines += [f"function {name}: {' '.join(sql.split())}" for name, sql in rows]
    return "\n".join(lines) + "\n"


async def _schema_of(engine: AsyncEngine) -> str:
    if engine.dialect.name == "sqlite":
        # Reflection runs a few PRAGMAs per table; through aiosqlite's thread hop that is
        # seconds a revision, over the sqlite3 module directly a few milliseconds.
        sync_engine = sa.create_engine(engine.url.set(drivername="sqlite"))
        try:
            with sync_engine.connect() as sync_conn:
                return _schema(sync_conn)
        finally:
            sync_engine.dispose()
    async with engine.connect() as conn:
        return await conn.run_sync(_schema)


def _released(revision: str, backend: str) -> str:
    """The committed schema of ``revision`` on ``backend``."""
    path = SNAPSHOTS / f"{revision}.{backend}.txt"
    assert path.exists(), f"no snapshot of {revision} on {backend}: see this module's docstring"
    return path.read_text(encoding="utf-8")


def test_given_the_revision_history_when_listed_then_one_line_from_first_to_head() -> None:
    revisions = _revisions()
    assert revisions[0] == "0001_spine"
    assert len(set(revisions)) == len(revisions)
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [revisions[-1]]  # one head: no branch left unmerged


@pytest.mark.parametrize("backend", BACKENDS)
async def test_given_empty_database_when_upgraded_revision_by_revision_then_each_schema_as_released(
    backend: str, tmp_path: Path
) -> None:
    revisions = _revisions()
    async with unmigrated_engine(backend, tmp_path) as engine:
        for revision in revisions:
            await upgrade(engine, revision)
            schema = await _schema_of(engine)
            if WRITE:
                (SNAPSHOTS / f"{revision}.{backend}.txt").write_text(schema, encoding="utf-8")
            assert schema == _released(revision, backend), f"{revision} changed"
        head = schema

        # Down one revision at a time: each gives back the schema of the one before, but for
        # the order of columns (a column a downgrade adds again comes last).
        for revision in reversed(revisions[:-1]):
            await downgrade(engine, revision)
            schema = await _schema_of(engine)
            released = _released(revision, backend)
            assert sorted(schema.splitlines()) == sorted(released.splitlines()), revision
        await downgrade(engine, "base")
        assert await _schema_of(engine) == "\n"  # no table, index, trigger or function left
        await upgrade(engine)
        assert await _schema_of(engine) == head
