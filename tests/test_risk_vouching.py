"""Vouching: an active channel steps a call down to a record only when its count shows a normal
day, not a count that a life at half its usual rate also gives (``Rules.vouch_z``)."""

from __future__ import annotations

import dataclasses

import pytest

from anbu.domain.risk import (
    DEFAULT_RULES,
    Channel,
    ChannelStatus,
    Level,
    Rules,
    assess,
    vouch_limit,
)
from tests.test_risk_domain import D0, IOT, NOW, calls, days, plug, power

PLAIN_RATIO = dataclasses.replace(DEFAULT_RULES, vouch_z=0.0)


@pytest.mark.parametrize(
    ("expected", "observed", "rules", "vouches"),
    [
        # A lamp switched 8 times in 50 hours against a usual 11.4: 70% of usual, but a life at
        # half the usual (5.7) gives 8 or more one time in four. The bench's two uncalled
        # declines: calls and steps LOW, this lamp stepped the call down.
        pytest.param(11.4, 8.0, DEFAULT_RULES, False, id="lamp at 70%: a half life gives it"),
        pytest.param(11.4, 11.0, DEFAULT_RULES, True, id="lamp at 96%: vouches"),
        pytest.param(11.4, 8.0, PLAIN_RATIO, True, id="vouch_z 0: the plain 70% ratio"),
        # A large count is told apart from half its usual by the ratio alone.
        pytest.param(11_160.0, 7_812.0, DEFAULT_RULES, True, id="steps at 70%: vouches"),
        pytest.param(11_160.0, 7_700.0, DEFAULT_RULES, False, id="steps at 69%: too few"),
        # A small count needs about its usual: 7 calls cannot tell a normal life from a half one.
        pytest.param(7.0, 7.0, DEFAULT_RULES, False, id="7 of 7 calls: not told apart"),
        pytest.param(7.0, 8.0, DEFAULT_RULES, True, id="8 of 7 calls: vouches"),
    ],
)
def test_given_a_count_when_limit_applied_then_vouches_only_above_a_half_life(
    expected: float, observed: float, rules: Rules, vouches: bool
) -> None:
    assert (observed >= vouch_limit(expected, rules)) is vouches


@pytest.mark.parametrize(
    ("tv_share", "rules", "level"),
    [
        pytest.param(1.0, DEFAULT_RULES, Level.CONCERN, id="TV as usual: vouches, a record"),
        pytest.param(0.9, DEFAULT_RULES, Level.CONCERN, id="TV at 93%: vouches, a record"),
        pytest.param(0.8, DEFAULT_RULES, Level.CAUTION, id="TV at 82%: no voucher, a call"),
        pytest.param(0.8, PLAIN_RATIO, Level.CONCERN, id="TV at 82%, vouch_z 0: a record"),
    ],
)
def test_given_calls_quiet_and_tv_in_use_when_assessed_then_only_a_normal_tv_day_vouches(
    tv_share: float, rules: Rules, level: Level
) -> None:
    """Calls quiet for 3.5 days (2 points, a call); the TV's use over the last 50 hours decides
    whether the plug vouches (one step down to 관심)."""
    baselines = {
        Channel.CALLS: calls(D0, NOW - days(3.5)),
        Channel.POWER: power(D0, NOW, until=NOW - days(3), factor_after=tv_share),
    }
    a = assess(IOT, baselines, [plug(NOW)], [], NOW, rules)
    statuses = {e.channel: e.status for e in a.channels}
    assert statuses[Channel.CALLS] is ChannelStatus.QUIET
    assert statuses[Channel.POWER] is ChannelStatus.ACTIVE
    assert a.level is level, a.explanation


def test_given_vouch_z_below_zero_when_rules_made_then_refused() -> None:
    with pytest.raises(ValueError, match="vouch_z must be >= 0"):
        Rules(vouch_z=-1.0)
