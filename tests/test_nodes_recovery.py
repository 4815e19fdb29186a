"""Crash recovery with several engine nodes, on SQLite and PostgreSQL: every claimed attempt
records the node that dials it, and the attempts a dead worker left are checked with their
own node (a channel up on node b keeps b's attempt open even when node a has no such channel;
a node that cannot be asked, or that this process does not know, keeps its attempts waiting
until ``stale_call_s``)."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt
from anbu.db.models_scheduling import DispatcherWorker
from anbu.domain.checkin import AttemptStatus
from anbu.domain.retry import RetryPolicy
from anbu.errors import TelephonyError
from anbu.ports import CallRecord, CallRequest
from scheduler.claims import claim_due
from scheduler.dispatcher import Dispatcher, EngineNode
from tests.api_support import MovableClock
from tests.call_rig import open_api_checkins
from tests.test_scheduler_claims import ANYTIME, WED_10


class NeverDials:
    async def call(self, request: CallRequest) -> CallRecord:
        raise AssertionError(f"recovery must not dial ({request.channel_id})")


class Channels:
    """A node's channel list as AMI CoreShowChannels would give it, or the node being down."""

    def __init__(self, ids: set[str] | None) -> None:
        self.ids = ids

    async def live_channel_ids(self) -> set[str]:
        if self.ids is None:
            raise TelephonyError("AMI not connected")
        return set(self.ids)


async def _seed_claimed(
    sessions: async_sessionmaker[AsyncSession], nodes: list[str]
) -> dict[str, str]:
    """One case per node name, claimed by a worker that then died. Returns node -> channel id."""
    async with sessions() as s:
        phones = [f"010{i:08d}" for i in range(len(nodes))]
        await open_api_checkins(s, phones, reason="t", now=WED_10)
        dead = DispatcherWorker(host="test", pid=1)
        s.add(dead)
        await s.commit()
        dead_id = dead.id
    order = itertools.cycle(nodes)
    async with sessions() as s:
        result = await claim_due(
            s,
            worker_id=dead_id,
            now=WED_10,
            global_cap=50,
            can_start=lambda _trunk: next(order),
            limit=len(nodes),
            trunk_of=lambda _n: "trunk",
            severe_priority=90,
            default_policy=RetryPolicy(),
            default_window=ANYTIME,
        )
    assert len(result.claimed) == len(nodes)
    return {c.node or "": c.channel_id for c in result.claimed}


async def test_given_attempts_on_three_nodes_when_reconciled_then_each_asks_its_own_node(
    db_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    channel = await _seed_claimed(sessions, ["a", "b", "c", "d"])
    async with sessions() as s:
        stored = {a.channel_id: a.node for a in (await s.execute(select(CallAttempt))).scalars()}
    assert stored == {cid: node for node, cid in channel.items()}

    clock = MovableClock(WED_10 + dt.timedelta(seconds=20))
    probes = {
        "a": Channels(set()),  # a's call is gone
        "b": Channels({channel["b"]}),  # b's call is still up there
        "c": Channels(None),  # c cannot be asked (its AMI is down)
    }
    # Node a would show b's channel as absent: only b is asked about b's attempt.
    dispatcher = Dispatcher(
        sessions,
        NeverDials(),
        clock,
        nodes=[EngineNode(n, NeverDials(), 10, probe) for n, probe in probes.items()],
        stale_call_s=400,
        engine=db_engine,
    )
    # "d" is not a node of this process: its attempt waits too.
    assert await dispatcher.reconcile() == 1

    async def status() -> dict[str | None, AttemptStatus]:
        async with sessions() as s:
            rows = (await s.execute(select(CallAttempt.node, CallAttempt.status))).all()
        return {node: st for node, st in rows if st is not AttemptStatus.SCHEDULED}

    assert await status() == {
        "a": AttemptStatus.UNKNOWN,
        "b": AttemptStatus.DIALING,
        "c": AttemptStatus.DIALING,
        "d": AttemptStatus.DIALING,
    }
    # b's call ended, c is back: both closed; d still waits for its own node.
    probes["b"].ids = set()
    probes["c"].ids = set()
    assert await dispatcher.reconcile() == 2
    assert (await status())["d"] is AttemptStatus.DIALING
    # Past the bound, an attempt nobody can check is closed anyway (counted, retried).
    clock.advance(dt.timedelta(seconds=400))
    assert await dispatcher.reconcile() == 1
    assert set((await status()).values()) == {AttemptStatus.UNKNOWN}
    await dispatcher.close()
