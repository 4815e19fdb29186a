"""status_due_at: the earliest time at which time alone can make a channel LOW or QUIET.

The sweep re-grades only residents whose due time has passed, so a due time later than the
truth hides a resident; an earlier one only costs a re-grade. The tables below pin the cases;
the property test holds it against assess_channel itself, hour by hour, on random histories
stored as the database stores them (rounded).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest

from anbu.domain.risk import (
    DEFAULT_RULES,
    KST,
    Baseline,
    Channel,
    ChannelStatus,
    ConsentScope,
    Level,
    MonitoringProfile,
    RiskCategory,
    SignalKind,
    Tier,
    assess,
    assess_channel,
    epoch_hour,
    hour_start,
    low_limit,
    observe,
    status_due_at,
)

D0 = dt.datetime(2026, 11, 2, 0, 0, tzinfo=KST).astimezone(dt.UTC)
H = dt.timedelta(hours=1)
WINDOW_H = RiskCategory.MEDIUM.window_h  # 72 h
CALLS_ONLY = MonitoringProfile(Tier.CALLS, RiskCategory.MEDIUM, None, frozenset(ConsentScope))


def _call(b: Baseline, at: dt.datetime) -> None:
    observe(b, SignalKind.CALL, at, 60.0, {"direction": "out", "duration_s": 60})


def regular_caller(days: int) -> Baseline:
    """Calls at 9, 13, 18 and 20 h, and at 11 h every third day (so the usual rate is not a
    round number that observed counts can tie with), for ``days`` days; then nothing."""
    b = Baseline(Channel.CALLS)
    for d in range(days):
        for hour in (9, 13, 18, 20) + ((11,) if d % 3 == 0 else ()):
            _call(b, D0 + dt.timedelta(days=d, hours=hour, minutes=5))
    return b


def _status(b: Baseline, at: dt.datetime, floor: dt.datetime | None = None) -> ChannelStatus:
    return assess_channel(b, b.channel, at, WINDOW_H, floor, []).status


def test_given_calls_stop_when_due_time_computed_then_low_arrives_at_it_before_quiet() -> None:
    b = regular_caller(14)
    assert b.last_activity_at is not None
    quiet_due = b.last_activity_at + dt.timedelta(hours=WINDOW_H)

    due = status_due_at(b, WINDOW_H)

    assert due is not None
    assert due < quiet_due - dt.timedelta(hours=12)  # the bug: the old key waited for quiet
    t = b.last_activity_at
    while t < due:
        assert _status(b, t) is ChannelStatus.ACTIVE, t
        t += H
    assert _status(b, due - H) is ChannelStatus.ACTIVE
    assert _status(b, due) is ChannelStatus.LOW
    # As the resident's level: nothing an hour before, 관심 at the due time.
    assert assess(CALLS_ONLY, {Channel.CALLS: b}, [], [], due - H).level is Level.NONE
    assert assess(CALLS_ONLY, {Channel.CALLS: b}, [], [], due).level is Level.CONCERN


def test_given_a_learning_channel_when_due_time_computed_then_none_as_it_never_changes() -> None:
    b = regular_caller(2)
    assert b.days < DEFAULT_RULES.min_baseline_days

    assert status_due_at(b, WINDOW_H) is None
    # Only events move ``days``: however long nothing arrives, the channel is still learning.
    assert b.last_activity_at is not None
    for later in (1, 3, 10, 40):
        assert _status(b, b.last_activity_at + dt.timedelta(days=later)) is ChannelStatus.LEARNING
    assert status_due_at(Baseline(Channel.CALLS), WINDOW_H) is None  # no event at all


def test_given_no_expected_activity_when_due_time_computed_then_the_quiet_due_time() -> None:
    # A plug that only ever reported standby power: a baseline of zeros, never LOW.
    b = Baseline(Channel.POWER)
    t = D0
    while t < D0 + dt.timedelta(days=6):
        observe(b, SignalKind.POWER, t, 1.0, {"interval_s": 1800})
        t += dt.timedelta(minutes=30)
    assert b.days >= DEFAULT_RULES.min_baseline_days
    assert b.first_hour is not None
    assert b.last_activity_at is None

    due = status_due_at(b, WINDOW_H)

    assert due == hour_start(b.first_hour) + dt.timedelta(hours=WINDOW_H)
    assert _status(b, t + dt.timedelta(days=5)) is ChannelStatus.ACTIVE


def test_given_a_twice_weekly_caller_when_due_time_computed_then_the_quiet_due_time() -> None:
    # Too few calls are usual in any 50 hours for "below half of usual" to mean anything.
    b = Baseline(Channel.CALLS)
    for d in range(0, 28, 3):
        _call(b, D0 + dt.timedelta(days=d, hours=10))
    assert b.last_activity_at is not None

    assert status_due_at(b, WINDOW_H) == b.last_activity_at + dt.timedelta(hours=WINDOW_H)


def test_given_a_channel_already_low_when_due_time_computed_then_it_is_due_already() -> None:
    b = regular_caller(14)
    # Two silent days, then one call: activity well below half of usual, and by more than
    # chance (1 call where about 9 are usual), while calls still come.
    _call(b, D0 + dt.timedelta(days=16, hours=13, minutes=5))
    assert b.last_activity_at is not None
    assert _status(b, b.last_activity_at) is ChannelStatus.LOW

    due = status_due_at(b, WINDOW_H)

    assert due is not None
    assert due <= b.last_activity_at
    assert _status(b, due) is ChannelStatus.LOW


def _stored(b: Baseline) -> Baseline:
    """The baseline as the sweep reads it back: values rounded to 4 decimals (anbu.risk.bulk)."""
    return dataclasses.replace(
        b, hourly=[round(v, 4) for v in b.hourly], ring=[round(v, 4) for v in b.ring]
    )


def _random_history(rng: random.Random, channel: Channel) -> Baseline:
    """A few days to weeks of one channel with a random daily rhythm, then a random turn (a
    stop, a decline or nothing) and an end somewhere inside the ring's reach of it."""
    b = Baseline(channel)
    days = rng.randint(2, 20)
    rate = [rng.random() ** 2 * (3 if rng.random() < 0.5 else 1) for _ in range(24)]
    scale = {Channel.CALLS: 0.4, Channel.STEPS: 120.0, Channel.POWER: 1.0}[channel]
    end = D0 + dt.timedelta(days=days, hours=rng.randrange(24))
    turn = end - dt.timedelta(hours=rng.uniform(0, 60))
    after = rng.choice([0.0, 0.2, 0.45, 0.6, 1.0])
    t = D0
    while t < end:
        f = rate[t.astimezone(KST).hour] * (after if t >= turn else 1.0)
        if channel is Channel.CALLS:
            for _ in range(sum(rng.random() < f * scale for _ in range(3))):
                _call(b, t + dt.timedelta(minutes=rng.randrange(60)))
        elif channel is Channel.STEPS:
            observe(b, SignalKind.STEPS, t + dt.timedelta(minutes=59), f * scale * rng.random())
        else:
            watts = 80.0 if rng.random() < min(f, 1.0) else 1.0
            observe(b, SignalKind.POWER, t, watts, {"interval_s": 3600})
        t += H
    return b


@pytest.mark.parametrize("seed", range(6))
def test_given_random_histories_when_time_passes_then_nothing_worsens_before_the_due_time(
    seed: int,
) -> None:
    rng = random.Random(seed)
    rules = DEFAULT_RULES
    slack = 1e-4 * (rules.low_window_h + 1)  # as anbu.domain.risk._DUE_SLACK_PER_H
    tight = early = 0
    for _ in range(60):
        b = _random_history(rng, rng.choice([Channel.CALLS, Channel.STEPS, Channel.POWER]))
        assert b.ring_end is not None
        due = status_due_at(b, WINDOW_H, rules)  # from the in-memory baseline, as ingestion does
        stored = _stored(b)  # judged from the stored one, as the sweep does
        if due is None:
            assert b.days < rules.min_baseline_days
            continue
        # A hold that ended somewhere around the last event only delays the rules.
        floor = hour_start(b.ring_end) + dt.timedelta(hours=rng.randrange(-60, 40))
        t = hour_start(b.ring_end)
        while t < due:
            assert _status(stored, t) is ChannelStatus.ACTIVE, (seed, b, t, due)
            if floor <= t:
                assert _status(stored, t, floor) is ChannelStatus.ACTIVE, (seed, b, t, floor)
            t += H
        # Tight: at the due time the channel is LOW or quiet can start (quiet needs enough
        # expected activity too, which the due time does not wait for), or it is a near-tie.
        e = assess_channel(stored, b.channel, due, WINDOW_H, None, [])
        quiet_due = (b.last_activity_at or hour_start(b.first_hour or 0)) + dt.timedelta(
            hours=WINDOW_H
        )
        if e.status is not ChannelStatus.ACTIVE or due == quiet_due:
            tight += 1
        else:
            now_h = epoch_hour(due)
            start = now_h - rules.low_window_h + 1
            expected = stored.expected(start, now_h + 1)
            observed = stored.observed(start, now_h + 1)
            need = rules.min_expected[b.channel]
            # Counted as met within the slack from the in-memory values; the stored ones differ
            # by at most the slack again.
            assert expected >= need - 2 * slack, (seed, b, due)
            assert observed < low_limit(expected, rules) + 2 * slack, (seed, b, due)
            early += 1
    # Near-ties are common enough (counts are whole numbers, half of an even usual count too)
    # but must stay the exception.
    assert early * 4 < tight


def test_given_a_dip_chance_explains_when_assessed_then_not_low_unless_the_plain_ratio_rule() -> (
    None
):
    b = regular_caller(14)  # about 9 calls in any 50 hours
    # The next two days bring 3 calls: a third of usual, yet a Poisson count with mean 9 falls
    # to 3 or fewer about 2% of the time, and to this shortfall within 2 standard deviations.
    for d, hour in ((14, 9), (15, 13), (15, 20)):
        _call(b, D0 + dt.timedelta(days=d, hours=hour, minutes=5))
    at = D0 + dt.timedelta(days=15, hours=21)
    assert _status(b, at) is ChannelStatus.ACTIVE
    plain = dataclasses.replace(DEFAULT_RULES, low_z=0.0)
    assert assess_channel(b, b.channel, at, WINDOW_H, None, [], plain).status is ChannelStatus.LOW
    # The due time follows the same rule.
    due = status_due_at(b, WINDOW_H)
    assert due is not None
    assert due > at
