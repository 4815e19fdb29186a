"""anbu.db.session.transaction_cache: one transaction's look-ups are asked once (a batch of
incident openings shares its chain and webhook look-ups), the next transaction asks again."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.session import transaction_cache


async def test_given_a_cached_value_when_the_transaction_ends_then_the_next_one_starts_empty(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        await s.execute(text("SELECT 1"))
        cache = transaction_cache(s, "test")
        cache["x"] = 1
        assert transaction_cache(s, "test") is cache  # the same transaction: the same dict
        await s.commit()
        assert transaction_cache(s, "test") == {}  # committed: forgotten
        await s.execute(text("SELECT 1"))
        transaction_cache(s, "test")["x"] = 2
        await s.rollback()
        assert transaction_cache(s, "test") == {}  # rolled back: forgotten too
