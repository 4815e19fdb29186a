"""Outcome feedback: what an official found tunes that person's rules (pure).

A finding of "false alarm" or "safe, quiet by habit" about an alert raised by signals widens
that person's thresholds for the sources (channels) that raised it, one step per finding, for
the rule that raised it: a channel found quiet gets a quiet window longer by :data:`STEP_H`
hours, never past the loosest risk category's window (:data:`anbu.domain.risk.MAX_WINDOW_H`,
5 days); a channel found LOW gets the stricter chance guard for a LOW standing alone on it
(:func:`anbu.domain.risk.strict_low_limit`; a step of 0 hours), and its quiet window stays.
Each step is stored on its own and can be reverted. "Hospitalised" and "died" are true
alarms: they widen nothing and undo the person's widenings, so a tuned person in a new crisis
is judged by the plain rules again. "Safe" and "visited" change nothing (the official saw the
person, but not why they were quiet).

Per person is not enough (measured, ``bench/detection.py``): most 관심 records about people who
are fine are chance, a LOW on a channel with few events (a 50-hour window of Poisson counts
tested every hour), and chance does not pick the same person twice: of the people who are fine,
those widened in weeks 1-3 were flagged in weeks 4-6 at 0.088, but those never flagged before
(two thirds of them) at 0.334, as often as with no feedback at all (0.35). So findings also
count per district and channel (:func:`strict_low_channels`): once officials have looked at
enough alerts raised by a LOW on a channel and nearly none was a real crisis, a lone LOW on
that channel needs the stricter guard everywhere in the district.

Why this is safe (a real crisis must not be suppressed):
- the stricter guard applies only to a LOW that stands alone: 1 point, a 관심 record, which
  calls nobody; a LOW that adds up to 주의 or 심각 with anything else is judged by the plain
  limit (:func:`anbu.domain.risk.assess`), so no call depends on feedback through LOW;
- widening moves the quiet window by at most 24 h a finding and never past 5 days, and never
  loosens 심각: what the plain rules grade 심각 stays 심각 (a delay, bounded, never a miss);
- a true alarm undoes the person's widening, and true alarms raised by a LOW on a channel count
  against the district's evidence (the guard relaxes again when they pass ``MAX_TRUE_SHARE``);
- "nothing at all" over the LOW window stays LOW however strict.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anbu.domain.risk import MAX_WINDOW_H, Channel

STEP_H = 24.0  # one risk category's step


class FindingEffect(enum.StrEnum):
    WIDEN = "widen"  # the alarm was false: loosen the sources that raised it
    TRUE_ALARM = "true_alarm"  # a real crisis: never loosen; undo earlier loosening
    NONE = "none"


# By the finding's stored value (escalation.policy.Finding), so the core does not import it.
_EFFECT = {
    "false_alarm": FindingEffect.WIDEN,
    "quiet_habit": FindingEffect.WIDEN,
    "hospitalised": FindingEffect.TRUE_ALARM,
    "died": FindingEffect.TRUE_ALARM,
    "safe": FindingEffect.NONE,
    "visited": FindingEffect.NONE,
}


def effect_of(finding: str) -> FindingEffect:
    return _EFFECT.get(finding, FindingEffect.NONE)


@dataclass(frozen=True, slots=True)
class Decision:
    widen: tuple[tuple[Channel, float], ...]  # (channel, hours added) for this finding
    revert_all: bool  # undo every widening of the person in force


def decide(
    finding: str,
    raised: Iterable[tuple[Channel | str, str]],
    base_window_h: float,
    current: Mapping[Channel, float],
    step_h: float = STEP_H,
    cap_h: float = MAX_WINDOW_H,
) -> Decision:
    """What one finding does to a person whose window is ``base_window_h`` and whose channels
    are widened by ``current`` hours, given the (channel, rule) pairs that raised the alert
    (:func:`raised_by`).

    A channel the quiet rule raised gets one step, bounded so that the window never passes
    ``cap_h`` (nothing to add once it is reached). A channel only a LOW raised gets a step of
    0 hours, unless one is in force already: its lone LOW needs the stricter guard, and its
    quiet window stays. Why: a LOW alone is a 관심 record that calls nobody, so a finding about
    it says the person's dips are habit, not that their silences are; widening the quiet window
    (a rule that calls) on it let such a record delay a real crisis's call (measured,
    ``bench/detection.py``: a slow decline called after the run's end)."""
    effect = effect_of(finding)
    if effect is FindingEffect.TRUE_ALARM:
        return Decision((), revert_all=bool(current))
    if effect is not FindingEffect.WIDEN:
        return Decision((), revert_all=False)
    quiet = {Channel(c) for c, rule in raised if rule != "low"}
    low = {Channel(c) for c, rule in raised if rule == "low"} - quiet
    room = max(0.0, cap_h - base_window_h)
    out = []
    for channel in sorted(quiet | low):
        if channel in low:
            if channel not in current:
                out.append((channel, 0.0))
            continue
        add = min(step_h, room - current.get(channel, 0.0))
        if add > 0:
            out.append((channel, add))
    return Decision(tuple(out), revert_all=False)


def effective(
    steps: Iterable[tuple[Channel, float]], base_window_h: float, cap_h: float = MAX_WINDOW_H
) -> tuple[tuple[Channel, float], ...]:
    """The widening in force from the steps not reverted, per channel, bounded by the cap
    (a category change may have moved the base since the steps were taken). A channel with a
    0-hour step (a LOW's finding) stays in force at 0 hours: its lone LOW is judged strictly."""
    total: dict[Channel, float] = {}
    marked: set[Channel] = set()
    for channel, hours in steps:
        total[channel] = total.get(channel, 0.0) + hours
        if hours == 0:
            marked.add(channel)
    room = max(0.0, cap_h - base_window_h)
    return tuple(
        (c, min(h, room)) for c, h in sorted(total.items()) if min(h, room) > 0 or c in marked
    )


def encode(widen: Iterable[tuple[Channel, float]]) -> str | None:
    """The stored form on the profile row: ``calls=24,power=48`` (None when nothing)."""
    text = ",".join(f"{c.value}={h:g}" for c, h in sorted(widen))
    return text or None


def decode(text: str | None) -> tuple[tuple[Channel, float], ...]:
    if not text:
        return ()
    out = []
    for part in text.split(","):
        name, _, hours = part.partition("=")
        out.append((Channel(name), float(hours)))
    return tuple(sorted(out))


# A district's lone LOW on a channel is tightened after this many findings about alerts that a
# LOW on that channel raised (enough that "nearly none was true" is not luck of a few) ...
MIN_LOW_FINDINGS = 20
# ... while at most this share of them were true alarms (hospitalised, died). Seoul's plugs:
# 154 crises in 46,974 signals (0.33%); a rule true one time in 20 keeps its plain limit.
MAX_TRUE_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """Findings about alerts one rule on one channel raised in one district."""

    false_alarms: int = 0  # findings that widen: false alarm, quiet by habit
    true_alarms: int = 0  # hospitalised, died

    def add(self, effect: FindingEffect) -> RuleRecord:
        if effect is FindingEffect.WIDEN:
            return RuleRecord(self.false_alarms + 1, self.true_alarms)
        if effect is FindingEffect.TRUE_ALARM:
            return RuleRecord(self.false_alarms, self.true_alarms + 1)
        return self

    @property
    def noise(self) -> bool:
        """Officials found enough of these alerts, and nearly none was true."""
        n = self.false_alarms + self.true_alarms
        return n >= MIN_LOW_FINDINGS and self.true_alarms <= MAX_TRUE_SHARE * n


def strict_low_channels(records: Mapping[tuple[str, str], RuleRecord]) -> frozenset[Channel]:
    """The channels of one district whose lone LOW needs the stricter guard, from its findings
    by (channel, rule) (rules as :func:`raised_by` names them; only ``low`` counts here)."""
    return frozenset(
        Channel(channel) for (channel, rule), r in records.items() if rule == "low" and r.noise
    )


def raised_by(evidence: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (channel, rule) pairs that raised an assessment, from its stored evidence: rule
    ``quiet``, ``quiet_long`` (quiet for the severe span) or ``low``."""
    out: set[tuple[str, str]] = set()
    for c in evidence.get("channels", []):
        status = c.get("status")
        if status == "quiet":
            out.add((c["channel"], "quiet_long" if c.get("severe") else "quiet"))
        elif status == "low":
            out.add((c["channel"], "low"))
    return out
