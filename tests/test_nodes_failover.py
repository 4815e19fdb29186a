"""Several engine nodes (issue 11): two engine Asterisk instances and the carrier stand-in,
100 check-ins, one engine SIGKILLed mid-campaign and restarted.

What must hold: every case ends once with its final outcome; no call is dialled twice (counted
on the carrier's own AMI: each INVITE carries the engine's call id, the carrier reports it);
the dead node's calls in flight are closed as unknown when it returns and retried as new
attempts; new calls go to the other node while it is down; the administrator is paged; the node
rejoins by itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from anbu.app.parts import Telephony, build_container, build_dispatcher, build_escalation
from anbu.db.migrate import upgrade
from anbu.db.models import CallAttempt, Checkin
from anbu.db.models_escalation import OutboxMessage
from anbu.domain.checkin import AttemptStatus, CheckinStatus
from devstack.asterisk import AsteriskInstall
from tests.call_rig import Closings, campaign_settings, dispatching, seed_campaign
from tests.fixtures_asterisk import AmiProbe, AsteriskPair, running_nodes
from tests.test_agi_correlation import short_prompts  # noqa: F401 (fixture)

pytestmark = pytest.mark.asterisk

ADMIN = "01055550001"  # the administrator paged when a node dies
CASES = 100
CAP = 10  # per node


@pytest.fixture
def nodes(
    tmp_path_factory: pytest.TempPathFactory, asterisk_install: AsteriskInstall, bench_prompt: Path
) -> Iterator[AsteriskPair]:
    with running_nodes(
        asterisk_install, tmp_path_factory.mktemp("nodes"), bench_prompt=bench_prompt, max_calls=CAP
    ) as pair:
        yield pair


async def test_given_two_nodes_when_one_is_killed_mid_campaign_then_no_case_lost_or_dialled_twice(
    nodes: AsteriskPair,
    short_prompts: Path,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    killed, survivor = nodes.engine, nodes.extra[0]
    ivr = nodes.settings.ivr.model_copy(
        # Quick reconnects, so the node rejoins soon after it is back; a bound long enough
        # that its lost calls are reconciled on its return, not by the bound.
        update={"ami_reconnect_initial_s": 0.2, "ami_reconnect_max_s": 0.5, "ami_lost_grace_s": 60}
    )
    settings = campaign_settings(nodes, short_prompts, tmp_path, admin=ADMIN, ivr=ivr)
    # Built by the composition root, as `anbu serve` and the dispatch workers are.
    container = build_container(settings)
    await upgrade(container.engine)
    sessions, clock = container.sessions, container.clock
    escalation = build_escalation(container, send=False)
    expected = await seed_campaign(sessions, CASES, tag="test", max_attempts=3, now=clock.now())

    closings = Closings()

    carrier = await AmiProbe.connect(
        "127.0.0.1", nodes.carrier.ami_port, nodes.carrier.ami_user, nodes.carrier.ami_secret
    )
    tel = Telephony.build(settings, clock)
    await tel.start()
    dispatcher = build_dispatcher(container, tel, escalation.service)
    dispatcher.add_listener(closings.on_closed)
    async with dispatching(dispatcher, then=[tel.stop, escalation.aclose, carrier.close]):
        await closings.until(10, 120)
        # Mid-call: wait until the node has calls in flight, most of them not yet answered
        # by a key (the carrier presses 1.5 s after answering).
        on_killed = tel.links[0].dialer
        async with asyncio.timeout(60):
            while on_killed.active_calls < CAP // 2:  # noqa: ASYNC110 (the dialer's counter)
                await asyncio.sleep(0.02)
        in_flight = on_killed.active_calls
        await asyncio.to_thread(killed.kill)  # SIGKILL
        await closings.until(len(closings.count) + 20, 120)  # carried on by the other node alone
        await asyncio.to_thread(killed.start)
        restarted_at = clock.now()
        await closings.until(CASES, 240)

    async with sessions() as s:
        cases = (await s.execute(select(Checkin))).scalars().all()
        attempts = (await s.execute(select(CallAttempt))).scalars().all()
        pages = (
            (await s.execute(select(OutboxMessage).where(OutboxMessage.to == ADMIN)))
            .scalars()
            .all()
        )
    await container.aclose()

    # Every case: one final outcome, the right one, closed once.
    assert len(cases) == CASES
    assert all(c.status is CheckinStatus.COMPLETED for c in cases), Counter(c.status for c in cases)
    assert {c.id: expected[c.resident_id] for c in cases} == {c.id: c.outcome for c in cases}
    assert set(closings.count.values()) == {1}

    # No call dialled twice, counted on the carrier's side; every answered attempt reached it.
    dials = carrier.carrier_dials()
    assert dials
    assert max(dials.values()) == 1, dials.most_common(3)
    channel_ids = {a.channel_id for a in attempts}
    assert set(dials) <= channel_ids
    finished = [a for a in attempts if a.status is AttemptStatus.FINISHED]
    assert {a.channel_id for a in finished} <= set(dials)

    # Every attempt records its node.
    assert {a.node for a in attempts} == {killed_name(nodes), survivor_name(nodes)}

    # The dead node's calls: closed as unknown (counted), each case retried by a new attempt.
    lost = [a for a in attempts if a.status is AttemptStatus.UNKNOWN]
    assert in_flight
    assert lost, "every call in flight on the killed node had its reply already"
    assert {a.node for a in lost} == {killed_name(nodes)}
    assert dispatcher.lost_calls[killed_name(nodes)] == len(lost)
    by_case = {c.id: c for c in cases}
    for a in lost:
        later = [b for b in by_case[a.checkin_id].attempts if b.attempt_no > a.attempt_no]
        assert later
        assert later[-1].status is AttemptStatus.FINISHED
    assert "ENGINE NODE DOWN: engine-a" in caplog.text
    # The administrator is paged by SMS once (the outbox sends it), naming the node.
    assert [p.text.splitlines()[0] for p in pages] == [
        f"[안부 운영] 통화 서버 {killed_name(nodes)} 중단"
    ]
    assert pages[0].incident_id is None

    # While it was down, calls went to the other node; once back, it took calls again.
    def dialled(a: CallAttempt) -> dt.datetime:
        assert a.originated_at is not None
        return a.originated_at

    started = [a for a in attempts if a.originated_at is not None]
    # Once the dispatcher has marked the node down (its AMI connection dropped), no new call
    # goes to it. The moment is the log record's, not a fixed delay after the kill: how soon
    # the drop is seen is a speed (bench nodes), and a loaded machine must not fail this test.
    down_at = dt.datetime.fromtimestamp(
        next(r.created for r in caplog.records if "ENGINE NODE DOWN" in r.getMessage()), dt.UTC
    )
    assert down_at < restarted_at
    while_down = [a for a in started if down_at < dialled(a) < restarted_at]
    assert while_down
    assert {a.node for a in while_down} == {survivor_name(nodes)}
    assert any(a.node == killed_name(nodes) for a in started if dialled(a) > restarted_at)
    assert "engine node engine-a is back" in caplog.text
    del survivor


def killed_name(pair: AsteriskPair) -> str:
    return pair.settings.nodes[0].name


def survivor_name(pair: AsteriskPair) -> str:
    return pair.settings.nodes[1].name
