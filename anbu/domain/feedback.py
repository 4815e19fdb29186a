"""Outcome feedback: what an official found tunes that person's rules (pure).

A finding of "false alarm" or "safe, quiet by habit" about an alert raised by signals widens
that person's thresholds for the sources (channels) that raised it, one step per finding: the
quiet window of that channel grows by :data:`STEP_H` hours (and its LOW limit in proportion,
see :meth:`anbu.domain.risk.MonitoringProfile.low_scale`), never past the loosest risk
category's window (:data:`anbu.domain.risk.MAX_WINDOW_H`, 5 days). Each step is stored on its
own and can be reverted. "Hospitalised" and "died" are true alarms: they widen nothing and undo
the person's widenings, so a tuned person in a new crisis is judged by the plain rules again.
"Safe" and "visited" change nothing (the official saw the person, but not why they were quiet).
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
    raised: Iterable[Channel],
    base_window_h: float,
    current: Mapping[Channel, float],
    step_h: float = STEP_H,
    cap_h: float = MAX_WINDOW_H,
) -> Decision:
    """What one finding does to a person whose window is ``base_window_h`` and whose channels
    are widened by ``current`` hours: one step per channel that raised the alert, each
    bounded so that the window never passes ``cap_h`` (nothing to add once it is reached)."""
    effect = effect_of(finding)
    if effect is FindingEffect.TRUE_ALARM:
        return Decision((), revert_all=bool(current))
    if effect is not FindingEffect.WIDEN:
        return Decision((), revert_all=False)
    room = max(0.0, cap_h - base_window_h)
    out = []
    for channel in sorted(set(raised)):
        add = min(step_h, room - current.get(channel, 0.0))
        if add > 0:
            out.append((channel, add))
    return Decision(tuple(out), revert_all=False)


def effective(
    steps: Iterable[tuple[Channel, float]], base_window_h: float, cap_h: float = MAX_WINDOW_H
) -> tuple[tuple[Channel, float], ...]:
    """The widening in force from the steps not reverted, per channel, bounded by the cap
    (a category change may have moved the base since the steps were taken)."""
    total: dict[Channel, float] = {}
    for channel, hours in steps:
        total[channel] = total.get(channel, 0.0) + hours
    room = max(0.0, cap_h - base_window_h)
    return tuple((c, min(h, room)) for c, h in sorted(total.items()) if min(h, room) > 0)


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
