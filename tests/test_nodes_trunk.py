"""A node whose AMI answers but whose trunk is broken takes no calls (issue 11), for real:
two engine nodes and the carrier stand-in, the nodes' trunks pinged with SIP OPTIONS every
second. Node a's trunk is pointed at a port nobody listens on: its Asterisk reports the trunk
contact Unreachable, the dispatcher takes a out of the choice, every check-in goes to b and the
administrator is paged with the cause (a process connecting meanwhile reads the state at
connect). Its trunk repaired, a answers the pings again and
takes calls again. Every wait is for a condition, with a bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.app.parts import Telephony, build_container, build_dispatcher, build_escalation
from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, Checkin, Resident
from anbu.db.models_escalation import OutboxMessage
from anbu.domain.checkin import CheckinSource, CheckinStatus
from anbu.domain.node_health import FAULT_KOREAN, NodeFault
from anbu.services.checkins import CheckinClosed, open_checkin
from anbu.settings import TrunkSettings
from devstack.asterisk import AsteriskInstall
from ivr.ami import ami_client_from_settings
from ivr.trunk import TrunkWatch
from tests.call_rig import campaign_settings, dispatching, seed_campaign
from tests.fixtures_asterisk import AsteriskPair, free_ports, running_nodes
from tests.test_agi_correlation import short_prompts  # noqa: F401 (fixture)

pytestmark = pytest.mark.asterisk

ADMIN = "01099990080"  # the administrator paged when node a's trunk breaks
CASES = 6
CAP = 5  # per node
BOUND_S = 60.0


@pytest.fixture
def nodes(
    tmp_path_factory: pytest.TempPathFactory, asterisk_install: AsteriskInstall, bench_prompt: Path
) -> Iterator[AsteriskPair]:
    with running_nodes(
        asterisk_install,
        tmp_path_factory.mktemp("nodes"),
        bench_prompt=bench_prompt,
        max_calls=CAP,
        # A ping a second: a broken trunk is seen within a few seconds (production: 15 s).
        trunk=TrunkSettings(qualify_s=1),
    ) as pair:
        yield pair


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(BOUND_S):
            while not condition():  # noqa: ASYNC110 (state kept by the AMI reader task)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {BOUND_S:.0f} s: {what}") from None


async def reopen(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> None:
    """A new check-in for every resident (their first cases are closed)."""
    async with sessions() as s:
        for person in (await s.execute(select(Resident))).scalars():
            _, created = await open_checkin(
                s,
                person,
                source=CheckinSource.API,
                reason="again",
                now=now,
            )
            assert created
        await s.commit()


async def test_given_node_trunk_unreachable_when_checkins_come_then_other_node_takes_them(
    nodes: AsteriskPair,
    tmp_path: Path,
    short_prompts: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,  # the node's down and back lines: ERROR and WARNING
) -> None:
    broken = nodes.engine
    settings = campaign_settings(nodes, short_prompts, tmp_path, admin=ADMIN)
    container = build_container(settings)
    await upgrade(container.engine)
    sessions, clock = container.sessions, container.clock
    escalation = build_escalation(container, send=False)
    closed: set[str] = set()

    async def on_closed(event: CheckinClosed) -> None:
        closed.add(event.checkin_id)

    tel = Telephony.build(settings, clock)
    await tel.start()
    a, b = tel.links
    dispatcher = build_dispatcher(container, tel, escalation.service)
    dispatcher.add_listener(on_closed)
    async with dispatching(dispatcher, then=[tel.stop, escalation.aclose]):
        # Both trunks answer the pings (the carrier stand-in answers OPTIONS).
        await until(lambda: a.trunk.reachable is True and b.trunk.reachable is True, "pinged")
        # Node a's trunk to a port nobody listens on; its AMI stays up.
        repaired = broken.trunk
        broken.trunk = repaired.model_copy(update={"port": free_ports(1)[0]})
        await asyncio.to_thread(broken.reload)
        await until(lambda: a.trunk.reachable is False, "node a's trunk seen unreachable")
        assert a.ami.booted
        # A process connecting now reads the state (Asterisk reports changes only, and this
        # one is over): the Getvar read at connect.
        late = ami_client_from_settings(settings, a.settings)
        watch = TrunkWatch(late, a.settings.trunk)
        late.start()
        try:
            await until(lambda: watch.reachable is False, "trunk state read at connect")
        finally:
            await watch.close()
            await late.close()
        expected = await seed_campaign(sessions, CASES, tag="test", max_attempts=3, now=clock.now())
        dispatcher.wake()
        await until(lambda: len(closed) == CASES, "first check-ins closed")
        assert not dispatcher.pacer.is_up(a.name)
        broken.trunk = repaired
        await asyncio.to_thread(broken.reload)
        await until(lambda: dispatcher.pacer.is_up(a.name), "node a back")
        await reopen(sessions, clock.now())
        dispatcher.wake()
        await until(lambda: len(closed) == 2 * CASES, "second check-ins closed")

    async with sessions() as s:
        cases = (await s.execute(select(Checkin))).scalars().all()
        attempts = (await s.execute(select(CallAttempt))).scalars().all()
        pages = (
            (await s.execute(select(OutboxMessage.text).where(OutboxMessage.to == ADMIN)))
            .scalars()
            .all()
        )
    await container.aclose()

    first = {c.id for c in cases if c.reason == "test"}
    assert len(first) == CASES
    # Every case reached its person and closed with their answer.
    assert all(c.status is CheckinStatus.COMPLETED for c in cases)
    assert {c.outcome for c in cases if c.id in first} == set(expected.values())
    # While a's trunk was broken, no call went to a: none failed there and burnt a retry.
    assert {x.node for x in attempts if x.checkin_id in first} == {b.name}
    assert len([x for x in attempts if x.checkin_id in first]) == CASES
    # Repaired, a took calls again.
    assert a.name in {x.node for x in attempts if x.checkin_id not in first}
    # The administrator was paged once, with the cause in Korean; the log says it too.
    assert len(pages) == 1
    assert pages[0].splitlines()[0] == f"[안부 운영] 통화 서버 {a.name} 중단"
    assert FAULT_KOREAN[NodeFault.TRUNK_UNREACHABLE] in pages[0]
    assert f"ENGINE NODE DOWN: {a.name} (its trunk does not answer SIP OPTIONS)" in caplog.text
    assert f"engine node {a.name} is back (was: trunk_unreachable)" in caplog.text
