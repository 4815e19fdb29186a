"""escalation.outbox.GroupCommit: items waiting together share one transaction, each caller is
answered only after the commit, and a failing item fails alone (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from escalation.outbox import GroupCommit


async def test_given_concurrent_items_when_one_fails_then_others_committed_and_it_raises(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        await s.execute(text("CREATE TABLE gc_items (n INTEGER PRIMARY KEY)"))
        await s.commit()
    transactions: list[int] = []

    async def work(session: AsyncSession, n: int) -> int:
        if n == 3:
            raise ValueError("item 3 is bad")
        await session.execute(text("INSERT INTO gc_items (n) VALUES (:n)"), {"n": n})
        # Seen by the caller only once committed: count the batch sizes.
        transactions.append(n)
        return n * 10

    group: GroupCommit[int, int] = GroupCommit(sessions, work, "test-group", order=str)
    results = await asyncio.gather(*(group.submit(n) for n in range(6)), return_exceptions=True)
    assert results[:3] == [0, 10, 20]
    assert isinstance(results[3], ValueError)
    assert results[4:] == [40, 50]
    async with sessions() as s:
        stored = (await s.execute(text("SELECT n FROM gc_items ORDER BY n"))).scalars().all()
    assert stored == [0, 1, 2, 4, 5]  # the bad item rolled back alone
    # The first try was one transaction for all six; it failed, then one per item.
    assert transactions[:3] == [0, 1, 2]
    assert len(transactions) == 3 + 5
    await group.aclose()


async def test_given_items_one_after_another_when_submitted_then_no_task_lingers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async def work(_session: AsyncSession, n: int) -> int:
        return n + 1

    group: GroupCommit[int, int] = GroupCommit(sessions, work, "test-group", order=str)
    assert await group.submit(1) == 2
    await asyncio.sleep(0)
    assert group._task is None or group._task.done()
    assert await group.submit(2) == 3


async def test_given_a_batch_waiting_when_more_items_come_then_a_second_batch_runs_meanwhile(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # One batch at a time made every statement of a burst wait for the one before it (on a
    # loaded PostgreSQL that pipeline bounded the alert burst): a second batch must start
    # while the first is still inside its transaction.
    first_inside = asyncio.Event()
    second_done = asyncio.Event()

    async def work(_session: AsyncSession, n: int) -> int:
        if n == 1:
            first_inside.set()
            await second_done.wait()  # held open until the second batch has committed
        return n

    group: GroupCommit[int, int] = GroupCommit(sessions, work, "test-group", order=str)
    first = asyncio.create_task(group.submit(1))
    await first_inside.wait()
    assert await asyncio.wait_for(group.submit(2), 30) == 2
    second_done.set()
    assert await first == 1
    await group.aclose()
