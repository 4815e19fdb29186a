"""The pieces Alembic's autogenerate writes over and over, as functions the revisions call.

This module is history, as the revisions are: every database created from now on runs the old
revisions through these functions again, and must get the schema the districts already running
got. So what a function here emits must never change, not even a name or the order of two
statements. A revision that needs something else gets a new function (or a new keyword whose
default keeps the old output). tests/test_migration_history.py compares each revision's schema
with its committed snapshot, on SQLite and PostgreSQL, and fails on a changed helper.

Revisions import it as ``from anbu.db.migrations import helpers as mig``, beside ``sa`` and
``op``. Constraint and index names are spelled here, after the naming convention of the models
(anbu.db.base.NAMING), rather than taken from it: a later change of the convention must not
rename old constraints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import op

import anbu.db.base

# An index: a column alone is the one ``index=True`` gives (``ix_<table>_<column>``), a pair
# (name, columns) an index the model names itself.
IndexSpec = str | tuple[str, Sequence[str]]


def id_column(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """A row's id, its own or another row's: 32 characters (anbu.db.models.new_id)."""
    return sa.Column(name, sa.String(length=32), nullable=nullable)


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """A timestamp column (UTC, timezone-aware on both backends)."""
    return sa.Column(name, anbu.db.base.UtcDateTime(timezone=True), nullable=nullable)


def enum(name: str, type_name: str, values: str, *, nullable: bool = False) -> sa.Column[Any]:
    """A column of an enum stored as its value's text (not a database enum type); ``values``
    separated by spaces, as the enum had them at that revision."""
    kind = sa.Enum(*values.split(), name=type_name, native_enum=False, length=32)
    return sa.Column(name, kind, nullable=nullable)


@dataclass(frozen=True)
class References:
    """A foreign key from ``column`` to ``<target>.id``, named ``fk_<table>_<column>_<target>``."""

    column: str
    target: str
    ondelete: str | None = None


def create_table(
    name: str,
    *columns: sa.Column[Any],
    primary_key: Sequence[str] = ("id",),
    foreign_keys: Sequence[References] = (),
    unique: Sequence[Sequence[str]] = (),
    indexes: Sequence[IndexSpec] = (),
) -> sa.Table:
    """``op.create_table`` with the constraints named by the convention (foreign keys, primary
    key, unique constraints, in that order, as autogenerate wrote them), then its indexes."""
    constraints: list[sa.Constraint] = [
        sa.ForeignKeyConstraint(
            [fk.column],
            [f"{fk.target}.id"],
            name=op.f(f"fk_{name}_{fk.column}_{fk.target}"),
            ondelete=fk.ondelete,
        )
        for fk in foreign_keys
    ]
    constraints.append(sa.PrimaryKeyConstraint(*primary_key, name=op.f(f"pk_{name}")))
    constraints += [
        sa.UniqueConstraint(*cols, name=op.f(f"uq_{name}_{cols[0]}")) for cols in unique
    ]
    table = op.create_table(name, *columns, *constraints)
    if indexes:
        create_indexes(name, *indexes)
    return table


def create_indexes(table: str, *indexes: IndexSpec) -> None:
    """Non-unique indexes on ``table``, in one batch (SQLite's batch mode emits plain CREATE
    INDEX for them)."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for index in indexes:
            if isinstance(index, str):
                batch_op.create_index(batch_op.f(f"ix_{table}_{index}"), [index], unique=False)
            else:
                batch_op.create_index(index[0], list(index[1]), unique=False)


def drop_table(name: str, *indexes: str) -> None:
    """The named indexes of table ``name`` dropped in that order, then the table."""
    if indexes:
        with op.batch_alter_table(name, schema=None) as batch_op:
            for index in indexes:
                batch_op.drop_index(index)
    op.drop_table(name)


def add_columns(table: str, *columns: sa.Column[Any]) -> None:
    """Columns added to ``table`` in one batch."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in columns:
            batch_op.add_column(column)


def drop_columns(table: str, *names: str) -> None:
    """Columns dropped from ``table`` in one batch, in that order."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name in names:
            batch_op.drop_column(name)
