"""The ORM models and the migrations describe one schema, on both backends.

Several people add tables and columns at once; a column added to a model but not to a
migration (or the reverse) works in a test that builds tables from the models and breaks the
first production upgrade. Each backend is migrated to head by Alembic and compared with the
models by Alembic's own autogenerate comparison.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import anbu.db.models  # noqa: F401  (every table registers on Base.metadata)
from anbu.db.base import Base
from tests.db_fixtures import db_engine, db_url  # noqa: F401


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": False}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_given_database_at_head_when_compared_with_models_then_nothing_differs(
    db_engine: AsyncEngine,  # noqa: F811
) -> None:
    async with db_engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []
