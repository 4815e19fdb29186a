"""Outcome feedback: the pure rule (table-driven), grading with a widened channel, and the
stored path on both databases: a finding recorded through the acknowledgement link widens the
sources that raised the alert, bounded, reversible, and undone by a true alarm."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import District, Resident
from anbu.db.models_feedback import FeedbackStep
from anbu.db.models_signals import MonitoringProfile, RiskAssessment
from anbu.domain.calls import CallResult
from anbu.domain.escalation import Finding
from anbu.domain.feedback import (
    Decision,
    FindingEffect,
    decide,
    decode,
    effect_of,
    effective,
    encode,
    raised_by,
)
from anbu.domain.risk import (
    Baseline,
    Channel,
    ChannelStatus,
    ConsentScope,
    Level,
    RiskCategory,
    SignalKind,
    Tier,
    assess,
    epoch_hour,
    observe,
)
from anbu.domain.risk import (
    MonitoringProfile as ProfileRules,
)
from anbu.risk import feedback, registry
from anbu.risk.evaluate import gather
from escalation.service import EscalationService
from tests.test_escalation_api import Api, api  # noqa: F401  (the fixture)
from tests.test_escalation_service import (
    T0,
    FakeClock,
    close_case,
    config,
    incident_of,
    link_token,
    make_world,
)

C, P, L = Channel.CALLS, Channel.POWER, Channel.LIGHT
HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("finding", "effect"),
    [
        ("false_alarm", FindingEffect.WIDEN),
        ("quiet_habit", FindingEffect.WIDEN),
        ("hospitalised", FindingEffect.TRUE_ALARM),
        ("died", FindingEffect.TRUE_ALARM),
        ("safe", FindingEffect.NONE),
        ("visited", FindingEffect.NONE),
        ("something new", FindingEffect.NONE),
    ],
)
def test_each_finding_has_its_effect(finding: str, effect: FindingEffect) -> None:
    assert effect_of(finding) is effect


def test_every_recorded_finding_kind_is_known_to_the_rule() -> None:
    assert {f.value for f in Finding} <= {
        "false_alarm", "quiet_habit", "hospitalised", "died", "safe", "visited",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("finding", "raised", "base", "current", "expected"),
    [
        # one step (24 h) per channel that raised the alert
        ("false_alarm", {C, P}, 72.0, {}, Decision(((C, 24.0), (P, 24.0)), False)),
        ("quiet_habit", {C}, 72.0, {C: 24.0}, Decision(((C, 24.0),), False)),
        # bounded: a 3-day window reaches 5 days after two steps, then nothing more
        ("false_alarm", {C}, 72.0, {C: 48.0}, Decision((), False)),
        ("false_alarm", {C}, 96.0, {C: 0.0}, Decision(((C, 24.0),), False)),
        ("false_alarm", {C}, 108.0, {}, Decision(((C, 12.0),), False)),
        ("false_alarm", {C}, 120.0, {}, Decision((), False)),
        # other channels are not touched; nothing raised, nothing widened
        ("false_alarm", set(), 72.0, {C: 24.0}, Decision((), False)),
        # true alarms widen nothing and undo what is in force
        ("died", {C}, 72.0, {C: 24.0}, Decision((), True)),
        ("hospitalised", {C}, 72.0, {}, Decision((), False)),
        ("safe", {C}, 72.0, {C: 24.0}, Decision((), False)),
        ("visited", {C}, 24.0, {}, Decision((), False)),
    ],
)
def test_decide(
    finding: str,
    raised: set[Channel],
    base: float,
    current: dict[Channel, float],
    expected: Decision,
) -> None:
    assert decide(finding, raised, base, current) == expected


def test_effective_sums_steps_and_keeps_the_bound_after_a_category_change() -> None:
    steps = [(C, 24.0), (P, 24.0), (C, 24.0)]
    assert effective(steps, 72.0) == ((C, 48.0), (P, 24.0))
    assert effective(steps, 96.0) == ((C, 24.0), (P, 24.0))  # category loosened meanwhile
    assert effective(steps, 120.0) == ()
    assert decode(encode(effective(steps, 72.0))) == ((C, 48.0), (P, 24.0))
    assert encode(()) is None
    assert encode([(P, 24.0), (C, 12.5)]) == "calls=12.5,power=24"


def test_raised_by_reads_quiet_long_quiet_and_low_from_the_evidence() -> None:
    evidence = {
        "channels": [
            {"channel": "calls", "status": "quiet", "severe": True},
            {"channel": "power", "status": "low", "severe": False},
            {"channel": "light", "status": "quiet", "severe": False},
            {"channel": "steps", "status": "active", "severe": False},
        ]
    }
    assert raised_by(evidence) == {("calls", "quiet_long"), ("power", "low"), ("light", "quiet")}


def _quiet_calls_baseline(last_call: dt.datetime) -> Baseline:
    """Four calls a day for a fortnight, the last at ``last_call``."""
    b = Baseline(C)
    t = last_call - dt.timedelta(days=14)
    while t <= last_call:
        observe(b, SignalKind.CALL, t, None, {"direction": "out"})
        t += dt.timedelta(hours=6)
    return b


def test_given_a_widened_channel_when_graded_then_quiet_later_and_the_reason_says_so() -> None:
    last = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
    b = _quiet_calls_baseline(last)
    plain = ProfileRules(
        Tier.CALLS, RiskCategory.MEDIUM, None, frozenset({ConsentScope.CALL_RECORDS})
    )
    widened = ProfileRules(
        Tier.CALLS, RiskCategory.MEDIUM, None, frozenset({ConsentScope.CALL_RECORDS}),
        widen_h=((C, 24.0),),
    )  # fmt: skip
    after_80h = last + dt.timedelta(hours=80)
    a = assess(plain, {C: b}, [], [], after_80h)
    assert a.channels[0].status is ChannelStatus.QUIET
    assert a.level is Level.CAUTION
    w = assess(widened, {C: b}, [], [], after_80h)
    assert w.channels[0].status is not ChannelStatus.QUIET  # 80 h < 96 h
    # Past the widened window it is quiet again, and the reason names the widening.
    after_100h = last + dt.timedelta(hours=100)
    w = assess(widened, {C: b}, [], [], after_100h)
    assert w.level is Level.CAUTION
    assert "(현장 확인 결과로 기준 완화: 통화 3일→4일)" in w.explanation
    assert w.evidence()["widen_h"] == {"calls": 24.0}
    # A widening never passes the loosest category's window (5 days).
    huge = ProfileRules(
        Tier.CALLS, RiskCategory.MEDIUM, None, frozenset({ConsentScope.CALL_RECORDS}),
        widen_h=((C, 500.0),),
    )  # fmt: skip
    assert huge.window_for(C) == 120.0
    # The LOW rule is never loosened by findings (it cost slow declines in the benchmark).
    assert huge.low_scale(C) == 1.0
    assert assess(huge, {C: b}, [], [], last + dt.timedelta(hours=121)).level is Level.CAUTION
    assert epoch_hour(after_100h) > epoch_hour(last)


async def _profiled_alert(
    sessions: async_sessionmaker[AsyncSession],
    world_resident: str,
    channels: list[str],
    at: dt.datetime,
) -> tuple[str, str]:
    """A signal alert about ``channels`` closed unanswered: (check-in id, incident token)."""
    event = await close_case(sessions, world_resident, [CallResult.NO_ANSWER], at)
    async with sessions() as s:
        s.add(
            RiskAssessment(
                resident_id=world_resident, level=Level.CAUTION, previous_level=Level.NONE,
                evidence={"channels": [{"channel": c, "status": "quiet", "severe": False}
                                       for c in channels]},
                explanation="", checkin_id=event.checkin_id, assessed_at=at,
            )
        )  # fmt: skip
        await s.commit()
    service = EscalationService(sessions, config(), clock=FakeClock(event.at))
    await service.on_checkin_closed(event)
    incident = await incident_of(sessions, event.checkin_id)
    return event.checkin_id, await link_token(sessions, incident.id)


async def _widen(sessions: async_sessionmaker[AsyncSession], rid: str) -> str | None:
    async with sessions() as s:
        p = await s.get(MonitoringProfile, rid)
        assert p is not None
        return p.widen_h


async def test_given_false_alarms_via_the_link_then_widened_bounded_and_undone_by_a_death(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = await make_world(sessions)
    rid = world.resident_id
    async with sessions() as s:
        r = await s.get(Resident, rid)
        assert r is not None
        spec = registry.ProfileSpec(Tier.IOT, RiskCategory.MEDIUM, None, True, True, True)
        await registry.set_profile(s, r, spec, T0)
        await s.commit()
    service = EscalationService(sessions, config(), clock=FakeClock(T0))

    _, token = await _profiled_alert(sessions, rid, ["calls", "power"], T0)
    await service.acknowledge_link(token, Finding.FALSE_ALARM, "", now=T0 + HOUR)
    assert await _widen(sessions, rid) == "calls=24,power=24"
    # Grading reads it (the bulk reader on this backend).
    async with sessions() as s:
        found = await gather(s, [rid], T0)
    assert found.subjects[0].profile.widen_h == ((C, 24.0), (P, 24.0))
    assert found.subjects[0].profile.window_for(C) == 96.0

    _, token = await _profiled_alert(sessions, rid, ["calls"], T0 + dt.timedelta(days=7))
    await service.acknowledge_link(
        token, Finding.QUIET_HABIT, "원래 전화를 잘 안 하심", now=T0 + dt.timedelta(days=7) + HOUR
    )
    assert await _widen(sessions, rid) == "calls=48,power=24"
    _, token = await _profiled_alert(sessions, rid, ["calls"], T0 + dt.timedelta(days=14))
    await service.acknowledge_link(
        token, Finding.FALSE_ALARM, "", now=T0 + dt.timedelta(days=14) + HOUR
    )
    assert await _widen(sessions, rid) == "calls=48,power=24"  # 3 + 2 days = 5: the bound

    # "Safe" and "visited" change nothing.
    _, token = await _profiled_alert(sessions, rid, ["light"], T0 + dt.timedelta(days=15))
    await service.acknowledge_link(token, Finding.SAFE, "", now=T0 + dt.timedelta(days=15) + HOUR)
    assert await _widen(sessions, rid) == "calls=48,power=24"

    # An official reverts one step (the console's button): the window follows.
    async with sessions() as s:
        steps = await feedback.list_steps(s, rid)
        assert [(st.channel, st.hours, st.finding) for st in steps] == [
            (C, 24.0, "quiet_habit"), (C, 24.0, "false_alarm"), (P, 24.0, "false_alarm"),
        ]  # fmt: skip
        await feedback.revert(s, steps[0], T0 + dt.timedelta(days=16), "by test")
        await feedback.revert(s, steps[0], T0 + dt.timedelta(days=17))  # idempotent
        await s.commit()
    assert await _widen(sessions, rid) == "calls=24,power=24"

    # A true alarm widens nothing and undoes every step in force.
    _, token = await _profiled_alert(sessions, rid, ["calls"], T0 + dt.timedelta(days=20))
    await service.acknowledge_link(token, Finding.DIED, "", now=T0 + dt.timedelta(days=20) + HOUR)
    assert await _widen(sessions, rid) is None
    async with sessions() as s:
        rows = (await s.execute(select(FeedbackStep).order_by(FeedbackStep.created_at))).scalars()
        why = sorted(str(r.reverted_why) for r in rows)
    assert why == ["by test", "true alarm: died", "true alarm: died"]


async def test_given_the_api_when_listing_reverting_and_reporting_a_concern_then_scoped(
    api: Api,  # noqa: F811
) -> None:
    async with api.container.sessions() as s:
        d = (await s.execute(select(District).where(District.code == "11620"))).scalar_one()
        r = Resident(district_id=d.id, name="김안부", phone="01099990001", dong="신림동")
        s.add(r)
        await s.flush()
        spec = registry.ProfileSpec(Tier.CALLS, RiskCategory.MEDIUM, None, True, False, False)
        await registry.set_profile(s, r, spec, T0)
        concern = RiskAssessment(
            resident_id=r.id, level=Level.CONCERN, previous_level=Level.NONE,
            evidence={"channels": [{"channel": "calls", "status": "low", "severe": False}]},
            explanation="[관심] 통화 평소의 20%", assessed_at=T0,
        )  # fmt: skip
        s.add(concern)
        await s.commit()
        rid, aid = r.id, concern.id

    url = f"/v1/residents/{rid}/feedback"
    got = await api.client.get(url, headers=api.h("gwanak"))
    assert got.status_code == 200, got.text
    assert got.json() == {"resident_id": rid, "window_h": 72.0, "widen_h": {}, "steps": []}

    body = {"assessment_id": aid, "finding": "quiet_habit"}
    posted = await api.client.post(url, headers=api.h("gwanak"), json=body)
    assert posted.status_code == 200, posted.text
    view = posted.json()
    assert view["widen_h"] == {"calls": 24.0}
    (step,) = view["steps"]
    assert (step["channel"], step["hours"], step["assessment_id"]) == ("calls", 24.0, aid)

    # Another district's key sees nothing of it.
    assert (await api.client.get(url, headers=api.h("gangnam"))).status_code in (403, 404)
    denied = await api.client.post(f"/v1/feedback/{step['id']}/revert", headers=api.h("gangnam"))
    assert denied.status_code in (403, 404)
    # Bad input: an unknown assessment, an unknown finding.
    nope = {"assessment_id": "nope", "finding": "quiet_habit"}
    bad = await api.client.post(url, headers=api.h("gwanak"), json=nope)
    assert bad.status_code == 404
    assert "risk assessment nope not found" in bad.text
    bad = await api.client.post(url, headers=api.h("gwanak"),
                                json={"assessment_id": aid, "finding": "bored"})  # fmt: skip
    assert bad.status_code == 422

    reverted = await api.client.post(f"/v1/feedback/{step['id']}/revert", headers=api.h("gwanak"))
    assert reverted.status_code == 200, reverted.text
    assert reverted.json()["widen_h"] == {}
    assert reverted.json()["steps"][0]["reverted_why"] == "reverted by an official"
    missing = await api.client.post("/v1/feedback/nope/revert", headers=api.h("gwanak"))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("low_scale", "observed", "status"),
    [
        (1.0, 2.0, ChannelStatus.LOW),  # 2 calls where 9 are usual: below min(4.5, 9 - 2*3)
        (0.75, 2.0, ChannelStatus.ACTIVE),  # widened a day: below min(3.4, 9 - 2.67*3) = 1 only
        (0.75, 0.0, ChannelStatus.LOW),  # but no call at all is still LOW
        (0.6, 0.0, ChannelStatus.LOW),  # even at the 5-day bound
    ],
)
def test_a_widened_channel_is_low_only_for_a_larger_shortfall(
    low_scale: float, observed: float, status: ChannelStatus
) -> None:
    now = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
    now_h = epoch_hour(now)
    b = Baseline(C, hourly=[9 / 50] * 24, days=20, ring_end=now_h, first_hour=now_h - 500)
    if observed:
        b.ring[(now_h - 3) % len(b.ring)] = observed
    b.last_activity_at = now - dt.timedelta(hours=3 if observed else 40)
    from anbu.domain.risk import assess_channel

    e = assess_channel(b, C, now, 72.0, None, [], low_scale=low_scale)
    assert e.expected == pytest.approx(9.0)
    assert e.status is status
