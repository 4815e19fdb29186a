"""Pure risk core: baselines, channel judgements, level rules, explanations. Time passed in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pytest

from anbu.domain.risk import (
    DEFAULT_RULES,
    KST,
    Baseline,
    Channel,
    ChannelStatus,
    ConsentScope,
    DeviceIssueKind,
    DeviceKind,
    DeviceView,
    Hold,
    HoldReason,
    Level,
    MonitoringProfile,
    RiskCategory,
    Rules,
    SignalKind,
    Tier,
    assess,
    epoch_hour,
    fmt_duration,
    grades_none,
    observe,
    status_due_at,
)

# Day 0 of every story: a Monday, 00:00 KST.
D0 = dt.datetime(2026, 11, 2, 0, 0, tzinfo=KST).astimezone(dt.UTC)
ALL_CONSENT = frozenset(ConsentScope)
CALL_HOURS = (9, 13, 18, 20)  # four outgoing calls a day
TV_HOURS = (8, 9, 19, 20, 21, 22)


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=n)


def calls(start: dt.datetime, end: dt.datetime, hours: Iterable[int] = CALL_HOURS) -> Baseline:
    b = Baseline(Channel.CALLS)
    t = start
    while t < end:
        if t.astimezone(KST).hour in hours:
            observe(b, SignalKind.CALL, t, 60.0, {"direction": "out", "duration_s": 60})
        t += dt.timedelta(hours=1)
    return b


def sparse_calls(start: dt.datetime, end: dt.datetime, every: dt.timedelta) -> Baseline:
    b = Baseline(Channel.CALLS)
    t = start + dt.timedelta(hours=10)
    while t <= end:
        observe(b, SignalKind.CALL, t, 60.0, {"direction": "out", "duration_s": 60})
        t += every
    return b


def power(
    start: dt.datetime, end: dt.datetime, until: dt.datetime | None = None, factor_after: float = 1
) -> Baseline:
    """A TV on a plug: 80 W in TV hours, 1 W standby, a reading every 30 minutes until ``end``.

    After ``until`` the TV is on only a ``factor_after`` share of its usual readings.
    """
    b = Baseline(Channel.POWER)
    t = start
    n = 0
    while t < end:
        on = t.astimezone(KST).hour in TV_HOURS
        if until is not None and t >= until:
            n += 1
            on = on and (n % 10) < factor_after * 10
        observe(b, SignalKind.POWER, t, 80.0 if on else 1.0, {"interval_s": 1800})
        t += dt.timedelta(minutes=30)
    return b


def plug(last_seen: dt.datetime | None, online: bool = True) -> DeviceView:
    return DeviceView("plug-1", DeviceKind.PLUG, 1800, online, last_seen, D0)


CALLS_ONLY = MonitoringProfile(Tier.CALLS, RiskCategory.MEDIUM, consent=ALL_CONSENT)
IOT = MonitoringProfile(Tier.IOT, RiskCategory.MEDIUM, consent=ALL_CONSENT)


def test_given_steady_calls_when_folded_daily_then_baseline_learns_count_and_hours() -> None:
    b = calls(D0, D0 + days(10))
    assert b.days == 8  # the partial first day is skipped, day 10 still accumulates
    assert b.daily == pytest.approx(4.0)
    assert b.hourly[9] == pytest.approx(1.0)
    assert b.hourly[3] == pytest.approx(0.0)


def test_given_a_long_silence_when_next_event_arrives_then_baseline_decays_without_rescan() -> None:
    b = calls(D0, D0 + days(30))
    before = b.daily
    observe(b, SignalKind.CALL, D0 + days(60), 10.0, {"direction": "out"})
    assert b.days == 59
    assert 0 < b.daily < before * 0.2  # 30 empty days folded (in closed form)
    assert b.last_activity_at == D0 + days(60)


def test_given_missed_incoming_call_when_observed_then_it_is_no_activity() -> None:
    b = calls(D0, D0 + days(5))
    last = b.last_activity_at
    observe(b, SignalKind.CALL, D0 + days(6), 0.0, {"direction": "in", "duration_s": 0})
    assert b.last_activity_at == last
    assert b.last_event_at == D0 + days(6)


def test_given_call_count_when_observed_then_activity_is_placed_mid_period() -> None:
    b = Baseline(Channel.CALLS)
    at = D0 + days(1)
    assert observe(b, SignalKind.CALL_COUNT, at, 5.0, {"period_h": 24}) == 5.0
    assert b.last_activity_at == at - dt.timedelta(hours=12)


NOW = D0 + days(20)


CASES = [
    # (name, profile, baselines, devices, holds, expected level, statuses, words in explanation)
    (
        "calls only, active",
        CALLS_ONLY,
        {Channel.CALLS: calls(D0, NOW)},
        [],
        [],
        Level.NONE,
        {Channel.CALLS: ChannelStatus.ACTIVE},
        ["[정상]", "통화 활동 있음"],
    ),
    (
        "calls only, quiet past the 3-day window",
        CALLS_ONLY,
        {Channel.CALLS: calls(D0, NOW - days(3.5))},
        [],
        [],
        Level.CAUTION,
        {Channel.CALLS: ChannelStatus.QUIET},
        ["[주의]", "통화 3일", "째 없음", "평소 하루 4건"],
    ),
    (
        "calls only, quiet for two windows",
        CALLS_ONLY,
        {Channel.CALLS: calls(D0, NOW - days(6.5))},
        [],
        [],
        Level.SERIOUS,
        {Channel.CALLS: ChannelStatus.QUIET},
        ["[심각]", "통화 6일"],
    ),
    (
        "calls quiet, TV in use: cross-check says alive",
        IOT,
        {Channel.CALLS: calls(D0, NOW - days(3.5)), Channel.POWER: power(D0, NOW)},
        [plug(NOW)],
        [],
        Level.CONCERN,
        {
            Channel.CALLS: ChannelStatus.QUIET,
            Channel.POWER: ChannelStatus.ACTIVE,
            Channel.LIGHT: ChannelStatus.LEARNING,
        },
        ["[관심]", "통화 3일", "전력 사용 활동 있음"],
    ),
    (
        "calls and TV both quiet, plug still reporting",
        IOT,
        {
            Channel.CALLS: calls(D0, NOW - days(3.5)),
            Channel.POWER: power(D0, NOW, until=NOW - days(3.5), factor_after=0),
        },
        [plug(NOW)],
        [],
        Level.SERIOUS,
        {
            Channel.CALLS: ChannelStatus.QUIET,
            Channel.POWER: ChannelStatus.QUIET,
            Channel.LIGHT: ChannelStatus.LEARNING,
        },
        ["[심각]", "통화 3일", "전력 사용 3일"],
    ),
    (
        "plug unplugged, person phoning: a device task, no call",
        IOT,
        {Channel.CALLS: calls(D0, NOW), Channel.POWER: power(D0, NOW - days(2))},
        [plug(NOW - days(2))],
        [],
        Level.NONE,
        {
            Channel.CALLS: ChannelStatus.ACTIVE,
            Channel.POWER: ChannelStatus.DEVICE_DOWN,
            Channel.LIGHT: ChannelStatus.DEVICE_DOWN,
        },
        ["[정상]", "판단 불가", "plug-1", "응답 없음"],
    ),
    (
        "plug offline and calls quiet: calls alone decide",
        IOT,
        {Channel.CALLS: calls(D0, NOW - days(3.5)), Channel.POWER: power(D0, NOW - days(1))},
        [plug(NOW - days(1), online=False)],
        [],
        Level.CAUTION,
        {
            Channel.CALLS: ChannelStatus.QUIET,
            Channel.POWER: ChannelStatus.DEVICE_DOWN,
            Channel.LIGHT: ChannelStatus.DEVICE_DOWN,
        },
        ["[주의]", "오프라인"],
    ),
    (
        "on a hospital hold",
        CALLS_ONLY,
        {Channel.CALLS: calls(D0, NOW - days(5))},
        [],
        [Hold(NOW - days(5), NOW + days(2), HoldReason.HOSPITAL)],
        Level.NONE,
        {},
        ["보류 중(hospital)"],
    ),
    (
        "back from travel a day ago: quiet counts from the return",
        CALLS_ONLY,
        {Channel.CALLS: calls(D0, NOW - days(6))},
        [],
        [Hold(NOW - days(6), NOW - days(1), HoldReason.TRAVEL)],
        Level.NONE,
        {Channel.CALLS: ChannelStatus.ACTIVE},
        ["[정상]"],
    ),
    (
        "only two days of history: still learning",
        CALLS_ONLY,
        {Channel.CALLS: calls(NOW - days(6), NOW - days(4))},
        [],
        [],
        Level.NONE,
        {Channel.CALLS: ChannelStatus.LEARNING},
        ["기준선 학습 중"],
    ),
    (
        "a person who phones twice a week is not quiet after 3.5 days",
        CALLS_ONLY,
        {Channel.CALLS: sparse_calls(D0, NOW - days(3.5), every=days(3.5))},
        [],
        [],
        Level.NONE,
        {Channel.CALLS: ChannelStatus.ACTIVE},
        ["[정상]"],
    ),
    (
        "TV use fell to 30% over 50 hours, no calls consent: 관심",
        MonitoringProfile(Tier.IOT, consent=frozenset({ConsentScope.IOT})),
        {Channel.POWER: power(D0, NOW, until=NOW - days(2.5), factor_after=0.3)},
        [plug(NOW)],
        [],
        Level.CONCERN,
        {Channel.POWER: ChannelStatus.LOW, Channel.LIGHT: ChannelStatus.LEARNING},
        ["[관심]", "전력 사용 평소의"],
    ),
    (
        "no IoT consent: the plug's channel is not watched",
        MonitoringProfile(Tier.IOT, consent=frozenset({ConsentScope.CALL_RECORDS})),
        {Channel.CALLS: calls(D0, NOW), Channel.POWER: power(D0, NOW - days(4))},
        [plug(NOW)],
        [],
        Level.NONE,
        {Channel.CALLS: ChannelStatus.ACTIVE},
        ["[정상]"],
    ),
    (
        "very-high-risk category: one quiet day is enough",
        MonitoringProfile(Tier.CALLS, RiskCategory.VERY_HIGH, consent=ALL_CONSENT),
        {Channel.CALLS: calls(D0, NOW - days(1.2))},
        [],
        [],
        Level.CAUTION,
        {Channel.CALLS: ChannelStatus.QUIET},
        ["통화 1일"],
    ),
    (
        "per-person override to five days: 3.5 quiet days are only 관심 (low, no call)",
        MonitoringProfile(Tier.CALLS, window_h_override=120, consent=ALL_CONSENT),
        {Channel.CALLS: calls(D0, NOW - days(3.5))},
        [],
        [],
        Level.CONCERN,
        {Channel.CALLS: ChannelStatus.LOW},
        ["[관심]", "통화 평소의 0%"],
    ),
]


@pytest.mark.parametrize(
    ("profile", "baselines", "devices", "holds", "level", "statuses", "words"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_given_story_when_assessed_then_level_statuses_and_explanation_match(
    profile: MonitoringProfile,
    baselines: dict[Channel, Baseline],
    devices: list[DeviceView],
    holds: list[Hold],
    level: Level,
    statuses: dict[Channel, ChannelStatus],
    words: list[str],
) -> None:
    a = assess(profile, baselines, devices, holds, NOW)
    assert a.level is level, a.explanation
    assert {e.channel: e.status for e in a.channels} == statuses
    for w in words:
        assert w in a.explanation, a.explanation


def test_given_quiet_calls_when_assessed_then_evidence_names_since_and_baseline() -> None:
    b = calls(D0, NOW - days(3.5))
    a = assess(CALLS_ONLY, {Channel.CALLS: b}, [], [], NOW)
    (e,) = a.evidence()["channels"]
    assert e["status"] == "quiet"
    assert e["quiet_since"] == b.last_activity_at.isoformat()  # type: ignore[union-attr]
    assert e["quiet_hours"] >= 84
    assert e["usual_per_day"] == pytest.approx(4.0)
    assert a.quiet_channels == (Channel.CALLS,)


@pytest.mark.parametrize(
    ("last_seen", "online", "issue"),
    [
        (NOW - dt.timedelta(minutes=30), True, None),
        (NOW - dt.timedelta(hours=1, minutes=29), True, None),
        (NOW - dt.timedelta(hours=2), True, DeviceIssueKind.STALE),  # 3 x 30 min < 2 h floor
        (NOW, False, DeviceIssueKind.OFFLINE),
        (None, True, DeviceIssueKind.STALE),  # registered on D0, never reported
    ],
)
def test_given_device_last_seen_when_checked_then_staleness_follows_its_interval(
    last_seen: dt.datetime | None, online: bool, issue: DeviceIssueKind | None
) -> None:
    assert plug(last_seen, online).issue(NOW, DEFAULT_RULES) is issue


@pytest.mark.parametrize(
    ("hours", "text"), [(3.2, "3시간"), (24, "1일"), (50, "2일 2시간"), (84.9, "3일 12시간")]
)
def test_given_hours_when_formatted_then_korean_days_and_hours(hours: float, text: str) -> None:
    assert fmt_duration(hours) == text


def test_given_epoch_hours_when_computed_then_utc_based() -> None:
    assert epoch_hour(dt.datetime(1970, 1, 1, 5, 59, tzinfo=dt.UTC)) == 5


def test_given_partial_min_expected_when_rules_made_then_other_channels_keep_defaults() -> None:
    rules = Rules(min_expected={Channel.CALLS: 5.0})
    assert rules.min_expected[Channel.CALLS] == 5.0
    assert rules.min_expected[Channel.STEPS] == DEFAULT_RULES.min_expected[Channel.STEPS]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"low_window_h": 80}, "low_window_h must be 1..56"),
        ({"low_ratio": 1.5}, "low_ratio must be between 0 and 1"),
        ({"caution_points": 5, "serious_points": 4}, "caution_points <= serious_points"),
        ({"baseline_span_days": 0}, "baseline_span_days must be > 0"),
        ({"min_expected": {Channel.CALLS: -1.0}}, "min_expected values must be >= 0"),
        ({"stale_intervals": 0}, "stale_min_h and stale_intervals must be > 0"),
    ],
)
def test_given_rules_the_engine_cannot_use_when_made_then_refused_with_the_reason(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        Rules(**change)  # type: ignore[arg-type]


def test_given_rules_in_the_environment_when_settings_load_then_applied_or_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from anbu.settings import Settings

    monkeypatch.setenv("ANBU_RISK__RULES__LOW_RATIO", "0.4")
    monkeypatch.setenv("ANBU_RISK__RULES__MIN_EXPECTED__CALLS", "3")
    rules = Settings().risk.rules
    assert (rules.low_ratio, rules.min_expected[Channel.CALLS]) == (0.4, 3.0)
    assert rules.min_expected[Channel.POWER] == DEFAULT_RULES.min_expected[Channel.POWER]
    monkeypatch.setenv("ANBU_RISK__RULES__LOW_RATIO", "4")
    with pytest.raises(ValueError, match="low_ratio must be between 0 and 1"):
        Settings()


@pytest.mark.parametrize(
    ("profile", "baselines", "devices", "holds"),
    [pytest.param(*c[1:5], id=c[0]) for c in CASES],
)
def test_given_story_when_due_times_say_none_then_assessment_grades_none_without_issues(
    profile: MonitoringProfile,
    baselines: dict[Channel, Baseline],
    devices: list[DeviceView],
    holds: list[Hold],
) -> None:
    # Ingestion skips grading whom grades_none() clears: over every story, a resident it clears
    # is graded none with no device issue by the full assessment (so the shortcut never hides
    # a level or a task).
    dues = {c: status_due_at(b, profile.window_h) for c, b in baselines.items()}
    if grades_none(profile, baselines, dues, devices, NOW):
        a = assess(profile, baselines, devices, holds, NOW)
        assert (a.level, a.device_issues) == (Level.NONE, ()), a.explanation


def test_given_the_stories_when_checked_then_the_shortcut_clears_some_and_not_others() -> None:
    cleared = [
        grades_none(p, bs, {c: status_due_at(b, p.window_h) for c, b in bs.items()}, ds, NOW)
        for _, p, bs, ds, *_ in CASES
    ]
    normal = [c[5] is Level.NONE for c in CASES]
    assert any(cleared)
    assert not all(cleared)
    assert all(n for n, c in zip(normal, cleared, strict=True) if c)


def test_given_a_channel_without_its_due_time_when_checked_then_not_cleared() -> None:
    b = calls(D0, NOW)
    assert grades_none(CALLS_ONLY, {Channel.CALLS: b}, {Channel.CALLS: None}, [], NOW)
    assert not grades_none(CALLS_ONLY, {Channel.CALLS: b}, {}, [], NOW)
    assert not grades_none(CALLS_ONLY, {Channel.CALLS: b}, {Channel.CALLS: NOW}, [], NOW)
