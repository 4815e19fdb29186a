"""A node's health is its AMI and its trunk (issue 11): the pure rule, the trunk contacts'
states as Asterisk reports them, the dispatcher following the rule and naming the cause, and
the trunk's OPTIONS pings in the rendered engine configuration.

The real thing (a node whose trunk goes unreachable loses its new calls to the other node
and rejoins) is tests/test_nodes_trunk.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.models_escalation import OutboxMessage
from anbu.domain.calling_hours import zone
from anbu.domain.node_health import FAULT_KOREAN, NodeFault, TrunkContacts, node_fault
from anbu.settings import Settings, TrunkSettings
from devstack.asterisk import AsteriskInstall, provision_engine
from escalation.pager import AdminPager
from scheduler.dispatcher import Dispatcher, EngineNode
from tests.api_support import MovableClock
from tests.test_nodes_recovery import NeverDials
from tests.test_scheduler_claims import WED_10

A = "sip:127.0.0.1:5060"
B = "sip:127.0.0.2:5060"


@pytest.mark.parametrize(
    ("ami_booted", "trunk_reachable", "expected"),
    [
        (True, True, None),
        (True, None, None),  # not known yet (first OPTIONS not sent, pings off): takes calls
        (True, False, NodeFault.TRUNK_UNREACHABLE),
        (False, True, NodeFault.AMI_LOST),
        (False, None, NodeFault.AMI_LOST),
        (False, False, NodeFault.AMI_LOST),  # the AMI first: without it nothing is known
    ],
)
def test_node_fault_table(
    ami_booted: bool, trunk_reachable: bool | None, expected: NodeFault | None
) -> None:
    assert node_fault(ami_booted=ami_booted, trunk_reachable=trunk_reachable) is expected


@pytest.mark.parametrize(
    ("events", "reachable"),
    [
        ([], None),  # nothing reported yet
        ([(A, "NonQualified")], None),  # just created, or pings off
        ([(A, "Unknown")], None),
        ([(A, "Reachable")], True),
        ([(A, "Unreachable")], False),
        ([(A, "Reachable"), (A, "Unreachable")], False),
        ([(A, "Unreachable"), (A, "Reachable")], True),
        ([(A, "Unreachable"), (A, "Removed")], None),  # the contact is gone (reload)
        # A reload that re-points the trunk: the old contact goes, the new one is not known
        # until pinged, then it answers or not.
        ([(A, "Reachable"), (B, "NonQualified"), (A, "Removed")], None),
        ([(A, "Reachable"), (B, "NonQualified"), (A, "Removed"), (B, "Unreachable")], False),
        ([(A, "Unreachable"), (B, "Reachable")], True),  # one contact answering is enough
        ([(A, "Unreachable"), (B, "NonQualified")], None),  # B not asked yet
        ([(A, "Unreachable"), (A, "Updated")], False),  # details changed, not the state
        ([(A, "Created")], None),
        ([(A, "reachable")], True),  # case does not matter
        ([(A, "SomethingNew")], None),  # a word a later Asterisk adds: not known
    ],
)
def test_trunk_contacts_table(events: list[tuple[str, str]], reachable: bool | None) -> None:
    contacts = TrunkContacts()
    for uri, label in events:
        contacts.seen(uri, label)
    assert contacts.reachable is reachable


def test_given_event_after_snapshot_was_asked_when_snapshot_arrives_then_event_stands() -> None:
    contacts = TrunkContacts()
    asked_at = contacts.events
    contacts.seen(A, "Unreachable")  # newer than what the snapshot read
    contacts.snapshot({A: "Reachable", B: "NonQualified"}, asked_at)
    assert contacts.reachable is None  # A stays unreachable, B is not asked yet
    contacts.seen(B, "Unreachable")
    assert contacts.reachable is False
    # A snapshot asked after the events is the truth: contacts missing from it are gone.
    contacts.snapshot({A: "Reachable"}, contacts.events)
    assert contacts.reachable is True
    contacts.snapshot({}, contacts.events)
    assert contacts.reachable is None
    contacts.seen(A, "Unreachable")
    contacts.forget()  # AMI lost: nothing known until read again
    assert contacts.reachable is None


class Facts:
    def __init__(self) -> None:
        self.fault: NodeFault | None = None

    def __call__(self) -> NodeFault | None:
        return self.fault


async def test_given_node_faults_when_checked_then_down_paged_with_cause_and_back(
    db_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    a, b = Facts(), Facts()
    dispatcher = Dispatcher(
        sessions,
        NeverDials(),
        MovableClock(WED_10),
        nodes=[
            EngineNode("a", NeverDials(), 5, fault=a),
            EngineNode("b", NeverDials(), 5, fault=b),
        ],
        engine=db_engine,
    )
    pages: list[tuple[str, NodeFault]] = []

    async def page(name: str, fault: NodeFault) -> None:
        pages.append((name, fault))

    dispatcher.on_node_down = page
    try:
        dispatcher.check_nodes()
        assert dispatcher.pacer.choose_node() == "a"
        a.fault = NodeFault.TRUNK_UNREACHABLE
        dispatcher.check_nodes()
        dispatcher.check_nodes()  # still down: no second page
        assert dispatcher.pacer.choose_node() == "b"
        assert "ENGINE NODE DOWN: a (its trunk does not answer SIP OPTIONS)" in caplog.text
        # Down for another reason: logged, not paged again.
        a.fault = NodeFault.AMI_LOST
        dispatcher.check_nodes()
        assert "ENGINE NODE STILL DOWN: a (AMI lost)" in caplog.text
        b.fault = NodeFault.AMI_LOST
        dispatcher.check_nodes()
        assert dispatcher.pacer.choose_node() is None
        a.fault = None
        dispatcher.check_nodes()
        assert dispatcher.pacer.choose_node() == "a"
        assert "engine node a is back (was: ami_lost)" in caplog.text
        await asyncio.sleep(0)  # the pages are tasks: let them run
    finally:
        await dispatcher.close()
    assert pages == [("a", NodeFault.TRUNK_UNREACHABLE), ("b", NodeFault.AMI_LOST)]


@pytest.mark.parametrize(
    ("cause", "words"),
    [(NodeFault.AMI_LOST, "AMI 연결 끊김"), (NodeFault.TRUNK_UNREACHABLE, "트렁크 응답 없음")],
)
async def test_given_node_down_when_paged_then_the_sms_names_the_cause_in_korean(
    sessions: async_sessionmaker[AsyncSession], cause: NodeFault, words: str
) -> None:
    pager = AdminPager(
        sessions,
        ["01099990080"],
        "0212345678",
        MovableClock(WED_10),
        tz=zone("Asia/Seoul"),
        interval=dt.timedelta(minutes=15),
    )
    await pager.node_down("engine-b", cause)
    async with sessions() as s:
        (text,) = (await s.execute(select(OutboxMessage.text))).scalars().all()
    assert text.splitlines()[0] == "[안부 운영] 통화 서버 engine-b 중단"
    assert words in text
    assert FAULT_KOREAN[cause] in text


def test_given_one_engine_when_listed_then_trunk_counts_unless_its_pings_are_off() -> None:
    assert Settings().engine_nodes()[0].trunk_qualify
    off = Settings(trunk=TrunkSettings(qualify_s=0))
    assert not off.engine_nodes()[0].trunk_qualify


@pytest.mark.parametrize("qualify_s", [15, 0])
def test_given_trunk_settings_when_engine_rendered_then_its_aor_is_pinged(
    tmp_path: Path, asterisk_install: AsteriskInstall, qualify_s: int
) -> None:
    settings = Settings(var_dir=tmp_path, trunk=TrunkSettings(qualify_s=qualify_s))
    engine = provision_engine(settings, install=asterisk_install, bench_prompt=tmp_path / "q.wav")
    endpoints = (engine.etc_dir / "pjsip_endpoints.conf").read_text(encoding="utf-8")
    aor = re.search(r"^type = aor\n(?:.*\n)*?qualify_frequency = (\d+)$", endpoints, re.M)
    assert aor is not None
    assert int(aor[1]) == qualify_s
    # The state at AMI connect is read with these functions (ivr.trunk).
    modules = (engine.etc_dir / "modules.conf").read_text(encoding="utf-8")
    assert "load => func_pjsip_aor.so" in modules
    assert "load => func_pjsip_contact.so" in modules
