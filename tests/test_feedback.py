"""Outcome feedback: the pure rule (table-driven), grading with a widened channel, and the
stored path on both databases: a finding recorded through the acknowledgement link widens the
sources that raised the alert, bounded, reversible, and undone by a true alarm."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import District, Resident
from anbu.db.models_feedback import FeedbackStep, RuleFinding
from anbu.db.models_signals import MonitoringProfile, RiskAssessment
from anbu.domain.calls import CallResult
from anbu.domain.escalation import Finding
from anbu.domain.feedback import (
    Decision,
    FindingEffect,
    RuleRecord,
    decide,
    decode,
    effect_of,
    effective,
    encode,
    raised_by,
    strict_low_channels,
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
    assert decide(finding, {(c, "quiet") for c in raised}, base, current) == expected


@pytest.mark.parametrize(
    ("finding", "raised", "current", "expected"),
    [
        # A 관심 record raised by a lone LOW (no call) marks the channel for the stricter LOW
        # guard (a step of 0 hours) and leaves its quiet window, a rule that calls, as it is.
        ("quiet_habit", {(C, "low")}, {}, Decision(((C, 0.0),), False)),
        ("false_alarm", {(C, "low")}, {C: 0.0}, Decision((), False)),  # marked already
        ("false_alarm", {(C, "low")}, {C: 24.0}, Decision((), False)),  # widened: strict too
        # A quiet channel widens its window; a LOW beside it is only marked.
        ("false_alarm", {(C, "quiet"), (P, "low")}, {}, Decision(((C, 24.0), (P, 0.0)), False)),
        ("false_alarm", {(C, "quiet_long"), (C, "low")}, {}, Decision(((C, 24.0),), False)),
        ("died", {(C, "low")}, {C: 0.0}, Decision((), True)),  # a true alarm undoes the mark
    ],
)
def test_given_a_finding_about_a_low_then_only_the_low_guard_tightens(
    finding: str,
    raised: set[tuple[Channel, str]],
    current: dict[Channel, float],
    expected: Decision,
) -> None:
    assert decide(finding, raised, 72.0, current) == expected


def test_given_a_low_mark_then_it_is_in_force_without_widening_any_window() -> None:
    steps = [(C, 0.0), (P, 24.0), (P, 0.0)]
    assert effective(steps, 72.0) == ((C, 0.0), (P, 24.0))
    assert effective(steps, 120.0) == ((C, 0.0), (P, 0.0))  # no room: the marks stay
    assert encode(effective(steps, 72.0)) == "calls=0,power=24"
    assert decode("calls=0,power=24") == ((C, 0.0), (P, 24.0))
    marked = ProfileRules(
        Tier.CALLS, RiskCategory.MEDIUM, None, frozenset({ConsentScope.CALL_RECORDS}),
        widen_h=((C, 0.0),),
    )  # fmt: skip
    assert marked.window_for(C) == 72.0
    # Quiet 80 h is 주의 as for anyone (the window is not widened), and says nothing of it...
    last = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
    a = assess(marked, {C: _quiet_calls_baseline(last)}, [], [], last + dt.timedelta(hours=80))
    assert a.level is Level.CAUTION
    assert "기준 완화" not in a.explanation
    # ... while a lone LOW on that channel needs the stricter guard.
    assert assess(marked, {C: _low_calls(2.0, NOW)}, [], [], NOW).level is Level.NONE


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
    assert view["widen_h"] == {"calls": 0.0}  # a lone LOW: its guard tightens, no window
    (step,) = view["steps"]
    assert (step["channel"], step["hours"], step["assessment_id"]) == ("calls", 0.0, aid)

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


def _low_calls(observed: float, now: dt.datetime) -> Baseline:
    """9 calls usual over the 50-hour LOW window, ``observed`` of them seen (3 hours ago)."""
    now_h = epoch_hour(now)
    b = Baseline(C, hourly=[9 / 50] * 24, days=20, ring_end=now_h, first_hour=now_h - 500)
    if observed:
        b.ring[(now_h - 3) % len(b.ring)] = observed
    b.last_activity_at = now - dt.timedelta(hours=3 if observed else 40)
    return b


CALLS_ONLY = ProfileRules(
    Tier.CALLS, RiskCategory.MEDIUM, None, frozenset({ConsentScope.CALL_RECORDS})
)
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("observed", "strict", "widen", "level"),
    [
        (2.0, frozenset(), (), Level.CONCERN),  # plain: 2 calls where 9 are usual is LOW
        (2.0, frozenset({C}), (), Level.NONE),  # the district found calls LOW noise
        (2.0, frozenset({P}), (), Level.CONCERN),  # ... another channel's findings: no effect
        (2.0, frozenset(), ((C, 24.0),), Level.NONE),  # the person was found quiet by habit
        (0.0, frozenset({C}), ((C, 48.0),), Level.CONCERN),  # nothing at all: still LOW
        (1.0, frozenset({C}), (), Level.NONE),  # 1 in 9: limit max(min(4.5, 9 - 3*3), 1) = 1
    ],
)
def test_given_findings_when_a_lone_low_is_graded_then_it_needs_the_stricter_guard(
    observed: float,
    strict: frozenset[Channel],
    widen: tuple[tuple[Channel, float], ...],
    level: Level,
) -> None:
    profile = ProfileRules(
        Tier.CALLS, RiskCategory.MEDIUM, None, frozenset({ConsentScope.CALL_RECORDS}),
        widen_h=widen,
    )  # fmt: skip
    a = assess(profile, {C: _low_calls(observed, NOW)}, [], [], NOW, strict_low=strict)
    assert a.channels[0].status is ChannelStatus.LOW  # the evidence still says what it saw
    assert a.channels[0].expected == pytest.approx(9.0)
    assert a.level is level
    if level is Level.NONE:
        assert "단독 저활동 기준 강화" in a.explanation


def test_strict_low_limit_is_never_above_the_plain_one() -> None:
    from anbu.domain.risk import low_limit, strict_low_limit

    for tenths in range(500):
        e = tenths / 10
        assert strict_low_limit(e) <= low_limit(e)
    assert strict_low_limit(9.0) == 1.0  # only "nothing at all" (min(4.5, 9 - 3*3) = 0)
    assert low_limit(9.0) == 3.0


def test_given_strict_channels_when_a_low_adds_up_to_a_call_then_the_plain_limit_stands() -> None:
    """Two LOW channels make 주의 (a call): feedback's stricter guard never touches it."""
    iot = ProfileRules(
        Tier.IOT, RiskCategory.MEDIUM, None,
        frozenset({ConsentScope.CALL_RECORDS, ConsentScope.IOT}), widen_h=((C, 48.0), (L, 48.0)),
    )  # fmt: skip
    light = _low_calls(2.0, NOW)
    light = Baseline(L, hourly=light.hourly, days=light.days, ring_end=light.ring_end,
                     first_hour=light.first_hour, ring=light.ring,
                     last_activity_at=light.last_activity_at)  # fmt: skip
    from anbu.domain.risk import DeviceKind, DeviceView

    plug = DeviceView("plug-1", DeviceKind.PLUG, 3600, True, NOW, NOW - dt.timedelta(days=30))
    a = assess(
        iot, {C: _low_calls(2.0, NOW), L: light}, [plug], [], NOW, strict_low=frozenset({C, L})
    )
    assert [e.status for e in a.channels if e.channel in (C, L)] == [ChannelStatus.LOW] * 2
    assert a.level is Level.CAUTION


def test_given_a_widened_person_quiet_past_the_plain_severe_span_then_serious_stands() -> None:
    """Widening delays 주의, never 심각: quiet 150 h is 심각 under the plain 3-day window (2 x
    72 h), whatever the findings widened (the old rule graded it 주의 at a 5-day window)."""
    last = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
    b = _quiet_calls_baseline(last)
    widened = ProfileRules(
        Tier.CALLS, RiskCategory.MEDIUM, None, frozenset({ConsentScope.CALL_RECORDS}),
        widen_h=((C, 48.0),),
    )  # fmt: skip
    at = last + dt.timedelta(hours=150)
    assert assess(CALLS_ONLY, {C: b}, [], [], at).level is Level.SERIOUS
    a = assess(widened, {C: b}, [], [], at)
    assert a.level is Level.SERIOUS
    assert a.channels[0].severe
    # Below the plain severe span the widening holds: 100 h is quiet in 3 days, not in 5 (no
    # call at all in the LOW window stays LOW, a 관심 record, however strict).
    assert assess(widened, {C: b}, [], [], last + dt.timedelta(hours=100)).level is Level.CONCERN
    assert assess(CALLS_ONLY, {C: b}, [], [], last + dt.timedelta(hours=100)).level is (
        Level.CAUTION
    )


@pytest.mark.parametrize(
    ("false_alarms", "true_alarms", "noise"),
    [
        (19, 0, False),  # too few looks to tell
        (20, 0, True),
        (19, 1, True),  # 1 in 20 true: the bound
        (18, 2, False),  # 2 in 20 true: the plain limit stays
        (190, 10, True),
        (189, 11, False),  # true alarms relax it again
    ],
)
def test_a_district_tightens_a_channel_only_when_its_low_alarms_were_nearly_all_false(
    false_alarms: int, true_alarms: int, noise: bool
) -> None:
    r = RuleRecord(false_alarms, true_alarms)
    assert r.noise is noise
    records = {("calls", "low"): r, ("power", "quiet"): RuleRecord(500, 0)}
    assert strict_low_channels(records) == (frozenset({C}) if noise else frozenset())


def test_a_rule_record_counts_by_the_findings_effect() -> None:
    r = RuleRecord()
    for f in ("false_alarm", "quiet_habit", "safe", "visited", "died", "hospitalised"):
        r = r.add(effect_of(f))
    assert r == RuleRecord(false_alarms=2, true_alarms=2)


async def test_given_findings_about_low_alerts_then_the_district_tightens_that_channel(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Stored path (both backends): 20 lone-LOW 관심 records found quiet by habit in one district
    tighten calls there, and only there; a later death counts against it."""
    async with sessions() as s:
        d1, d2 = District(code="91001", name="일구"), District(code="91002", name="이구")
        s.add_all([d1, d2])
        await s.flush()
        people = [Resident(district_id=d1.id, name=f"가{i}", phone=f"0109000{i:04d}")
                  for i in range(21)]  # fmt: skip
        other = Resident(district_id=d2.id, name="나", phone="01090009999")
        s.add_all([*people, other])
        await s.flush()
        for r in [*people, other]:
            spec = registry.ProfileSpec(Tier.CALLS, RiskCategory.MEDIUM, None, True, False, False)
            await registry.set_profile(s, r, spec, T0)
        await s.commit()
        ids = [r.id for r in people]
        d1_id, d2_id, other_id = d1.id, d2.id, other.id

    async def concern(rid: str, finding: str) -> None:
        async with sessions() as s:
            a = RiskAssessment(
                resident_id=rid, level=Level.CONCERN, previous_level=Level.NONE,
                evidence={"channels": [{"channel": "calls", "status": "low", "severe": False}]},
                explanation="", assessed_at=T0,
            )  # fmt: skip
            s.add(a)
            await s.flush()
            await feedback.on_finding(
                s, resident_id=rid, finding=finding, now=T0 + HOUR, assessment_id=a.id
            )
            await s.commit()

    for rid in ids[:19]:
        await concern(rid, "quiet_habit")
    await concern(other_id, "false_alarm")
    await concern(ids[0], "visited")  # changes nothing
    async with sessions() as s:
        assert await feedback.strict_low_by_district(s) == {}
    await concern(ids[19], "false_alarm")
    async with sessions() as s:
        assert await feedback.strict_low_by_district(s) == {d1_id: frozenset({C})}
        found = await gather(s, [ids[20], other_id], T0)
        marked = await gather(s, [ids[0]], T0)
    # Per person, a LOW's finding tightens that LOW and leaves the quiet window (a 0-hour step).
    assert await _widen(sessions, ids[0]) == "calls=0"
    assert marked.subjects[0].profile.widen_h == ((C, 0.0),)
    assert marked.subjects[0].profile.window_for(C) == 72.0
    assert found.context.strict_low == {d1_id: frozenset({C})}
    assert {x.resident_id: x.district_id for x in found.subjects} == {
        ids[20]: d1_id,
        other_id: d2_id,
    }
    await concern(ids[20], "died")
    await concern(ids[20], "hospitalised")
    async with sessions() as s:
        assert await feedback.strict_low_by_district(s) == {}  # 2 true in 22: relaxed
        rows = (await s.execute(select(RuleFinding).order_by(RuleFinding.district_id))).scalars()
        assert [(r.district_id, r.rule, r.false_alarms, r.true_alarms) for r in rows] == [
            (d1_id, "low", 20, 2),
            (d2_id, "low", 1, 0),
        ]
