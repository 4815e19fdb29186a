"""Administrators' pages: a dead node, a network that answers nobody, a failed self-test.

Pure words and throttle, and the pager storing its SMS in the real outbox on both backends
(the outbox worker's sending through Kannel is tested in test_escalation_*; the two-node kill
test checks the node-down page end to end through the composition root).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models_escalation import OutboxMessage
from anbu.db.models_scheduling import SelfTestRun
from anbu.domain.calling_hours import zone
from anbu.domain.ops import OpsEvent, PageThrottle, ops_page
from anbu.domain.sms_text import SmsKind
from anbu.settings import Settings
from escalation.pager import AdminPager
from tests.db_fixtures import db_engine, db_url, sessions  # noqa: F401
from tests.test_escalation_service import FakeClock

SEOUL = zone("Asia/Seoul")
T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def test_given_node_down_when_worded_then_short_korean_sms_names_the_node() -> None:
    sms = ops_page(OpsEvent.NODE_DOWN, "engine-b", "AMI 연결 끊김", T0.astimezone(SEOUL))
    assert sms.kind is SmsKind.SMS
    assert sms.text == "[안부 운영] 통화 서버 engine-b 중단\n12-04 21:00 AMI 연결 끊김"


def test_given_same_page_within_interval_when_asked_then_only_first_goes() -> None:
    throttle = PageThrottle(dt.timedelta(minutes=15))
    assert throttle.allow(OpsEvent.NODE_DOWN, "a", T0)
    assert not throttle.allow(OpsEvent.NODE_DOWN, "a", T0 + dt.timedelta(minutes=14))
    assert throttle.allow(OpsEvent.NODE_DOWN, "b", T0)  # another node is news
    assert throttle.allow(OpsEvent.NETWORK_FAILURE, "a", T0)
    assert throttle.allow(OpsEvent.NODE_DOWN, "a", T0 + dt.timedelta(minutes=15))


def test_given_admin_phones_in_settings_when_malformed_then_refused_with_variable_name() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="ANBU_ESCALATION__ADMIN_PHONES"):
        Settings(escalation={"admin_phones": ["not-a-phone"]})
    ok = Settings(escalation={"admin_phones": ["010-5555-0001"]})
    assert ok.escalation.admin_phones == ["01055550001"]


async def test_given_pages_when_sent_then_outbox_holds_one_sms_per_admin_per_interval(
    sessions: async_sessionmaker[AsyncSession],  # noqa: F811
) -> None:
    clock = FakeClock(T0)
    woken: list[int] = []
    pager = AdminPager(
        sessions,
        ["01055550001", "01055550002"],
        "0212345678",
        clock,
        tz=SEOUL,
        interval=dt.timedelta(minutes=15),
        wake=lambda: woken.append(1),
    )
    await pager.node_down("engine-b")
    await pager.node_down("engine-b")  # the node flaps: no second page
    await pager.network_failure(7)
    clock.advance(16 * 60)
    await pager.node_down("engine-b")  # still down a quarter of an hour later: said again
    run = SelfTestRun(started_at=T0, ok=False, result="no_answer", detail="")
    await pager.self_test_failed(run)
    async with sessions() as s:
        rows = (
            (await s.execute(select(OutboxMessage).order_by(OutboxMessage.created_at)))
            .scalars()
            .all()
        )
    firsts = [(r.to, r.text.splitlines()[0]) for r in rows]
    assert sorted(firsts) == sorted(
        [(to, "[안부 운영] 통화 서버 engine-b 중단") for to in ("01055550001", "01055550002")] * 2
        + [(to, "[안부 운영] 통신망 장애 의심") for to in ("01055550001", "01055550002")]
        + [(to, "[안부 운영] 자가 점검 전화 실패") for to in ("01055550001", "01055550002")]
    )
    assert all(r.incident_id is None and r.ack_timeout_s is None for r in rows)
    assert len({r.reference for r in rows}) == len(rows)
    assert "주민 7명" in next(r.text for r in rows if "통신망" in r.text)
    assert len(woken) == 4


async def test_given_no_admin_phones_when_paged_then_nothing_stored(
    sessions: async_sessionmaker[AsyncSession],  # noqa: F811
) -> None:
    pager = AdminPager(
        sessions, [], "0212345678", FakeClock(T0), tz=SEOUL, interval=dt.timedelta(minutes=15)
    )
    assert await pager.page(OpsEvent.NODE_DOWN, "engine-a", "x") == 0
    async with sessions() as s:
        assert (await s.execute(select(OutboxMessage))).scalars().all() == []
