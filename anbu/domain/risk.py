"""Risk signals: per-person baselines, rules that combine sources, and graded levels with evidence.

Pure core: no I/O, time comes in as an argument. The storage layer keeps one
:class:`Baseline` per resident and channel (the running summary of that channel's history), so
an assessment reads a handful of small rows, never the raw event history.

Vocabulary
- A *signal kind* is what an event reports (a call record, a plug's power reading, a heartbeat).
- A *channel* is one stream of evidence that the person is living their day (calls, steps, power
  use, light changes, motion). Several kinds feed one channel; heartbeats feed none (they only
  say a device is alive).
- A channel is *quiet* when it has shown no activity for the person's inactivity window while
  its baseline says activity was expected; *low* when the last ``low_window_h`` hours carried
  less than ``low_ratio`` of the usual activity (Seoul's plug rule: 50 h below 50%), by more
  than chance explains (:func:`low_limit`).
- A device that stopped reporting makes its channels *device_down*: that is a task for staff,
  never evidence that the person is quiet.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import math
from collections.abc import Iterable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any

KST = dt.timezone(dt.timedelta(hours=9), "KST")
# Hour-of-day patterns and day boundaries are Korean local time (UTC+9, no DST).
LOCAL_OFFSET_H = 9
# Hours of recent activity kept per channel: enough for the 50-hour "low" rule.
RING_H = 56
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Channel(enum.StrEnum):
    CALLS = "calls"
    STEPS = "steps"
    POWER = "power"
    LIGHT = "light"
    MOTION = "motion"

    @property
    def label(self) -> str:
        return _CHANNEL_LABEL[self]

    @property
    def unit(self) -> str:
        return _CHANNEL_UNIT[self]


_CHANNEL_LABEL = {
    Channel.CALLS: "통화",
    Channel.STEPS: "걸음 수",
    Channel.POWER: "전력 사용",
    Channel.LIGHT: "조명 변화",
    Channel.MOTION: "움직임",
}
_CHANNEL_UNIT = {
    Channel.CALLS: "건",
    Channel.STEPS: "걸음",
    Channel.POWER: "시간",
    Channel.LIGHT: "회",
    Channel.MOTION: "회",
}


class SignalKind(enum.StrEnum):
    CALL = "call"  # one call record: direction, duration
    CALL_COUNT = "call_count"  # a carrier's aggregate: calls in the period ending at ``at``
    POWER = "power"  # smart plug: watts averaged over ``interval_s``
    LIGHT = "light"  # smart plug light sensor: lux
    STEPS = "steps"  # step-count app: steps since the previous report
    DOOR = "door"
    MOTION = "motion"
    HEARTBEAT = "heartbeat"  # device or app alive (``online: false`` = going offline)

    @property
    def channel(self) -> Channel | None:
        return _KIND_CHANNEL[self]

    @property
    def needs_device(self) -> bool:
        return self not in (SignalKind.CALL, SignalKind.CALL_COUNT)


_KIND_CHANNEL: dict[SignalKind, Channel | None] = {
    SignalKind.CALL: Channel.CALLS,
    SignalKind.CALL_COUNT: Channel.CALLS,
    SignalKind.POWER: Channel.POWER,
    SignalKind.LIGHT: Channel.LIGHT,
    SignalKind.STEPS: Channel.STEPS,
    SignalKind.DOOR: Channel.MOTION,
    SignalKind.MOTION: Channel.MOTION,
    SignalKind.HEARTBEAT: None,
}


class CallDirection(enum.StrEnum):
    INCOMING = "in"
    OUTGOING = "out"


class DeviceKind(enum.StrEnum):
    PLUG = "plug"
    APP = "app"
    MOTION_SENSOR = "motion_sensor"
    DOOR_SENSOR = "door_sensor"

    @property
    def kinds(self) -> frozenset[SignalKind]:
        """Signal kinds this device may report."""
        return _DEVICE_KINDS[self]

    @property
    def channels(self) -> frozenset[Channel]:
        return _DEVICE_CHANNELS[self]


_DEVICE_KINDS = {
    DeviceKind.PLUG: frozenset({SignalKind.POWER, SignalKind.LIGHT, SignalKind.HEARTBEAT}),
    DeviceKind.APP: frozenset({SignalKind.STEPS, SignalKind.HEARTBEAT}),
    DeviceKind.MOTION_SENSOR: frozenset({SignalKind.MOTION, SignalKind.HEARTBEAT}),
    DeviceKind.DOOR_SENSOR: frozenset({SignalKind.DOOR, SignalKind.HEARTBEAT}),
}
_DEVICE_CHANNELS = {
    d: frozenset(c for k in kinds if (c := k.channel) is not None)
    for d, kinds in _DEVICE_KINDS.items()
}


class Tier(enum.StrEnum):
    """How much of a person's life is watched, as the seed's pilot grades it."""

    CALLS = "calls"  # call records only (nothing to install)
    APP = "app"  # + step-count app (few calls, much activity)
    IOT = "iot"  # + indoor IoT: smart plugs, motion/door sensors (few calls, little activity)

    @property
    def channels(self) -> frozenset[Channel]:
        return _TIER_CHANNELS[self]


_TIER_CHANNELS = {
    Tier.CALLS: frozenset({Channel.CALLS}),
    Tier.APP: frozenset({Channel.CALLS, Channel.STEPS}),
    Tier.IOT: frozenset(Channel),
}


class RiskCategory(enum.StrEnum):
    """Sets the inactivity window, 1 to 5 days (as the seed's vendor does)."""

    VERY_HIGH = "very_high"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    VERY_LOW = "very_low"

    @property
    def window_h(self) -> float:
        return _CATEGORY_DAYS[self] * 24.0


_CATEGORY_DAYS = {
    RiskCategory.VERY_HIGH: 1,
    RiskCategory.HIGH: 2,
    RiskCategory.MEDIUM: 3,
    RiskCategory.LOW: 4,
    RiskCategory.VERY_LOW: 5,
}


class ConsentScope(enum.StrEnum):
    CALL_RECORDS = "call_records"
    APP = "app"
    IOT = "iot"


_CONSENT_CHANNELS = {
    ConsentScope.CALL_RECORDS: frozenset({Channel.CALLS}),
    ConsentScope.APP: frozenset({Channel.STEPS}),
    ConsentScope.IOT: frozenset({Channel.POWER, Channel.LIGHT, Channel.MOTION}),
}


def consent_scope(channel: Channel) -> ConsentScope:
    return next(s for s, chans in _CONSENT_CHANNELS.items() if channel in chans)


class Level(enum.StrEnum):
    """Graded risk, as KEPCO grades it. Stored and sent as the English value; shown in Korean."""

    NONE = "none"
    CONCERN = "concern"  # 관심: recorded, no call
    CAUTION = "caution"  # 주의: a check-in call
    SERIOUS = "serious"  # 심각: a check-in call at high priority

    @property
    def label(self) -> str:
        return _LEVEL_LABEL[self]

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]

    @property
    def opens_checkin(self) -> bool:
        return self.rank >= Level.CAUTION.rank

    @property
    def priority(self) -> int:
        return _LEVEL_PRIORITY[self]


_LEVEL_LABEL = {
    Level.NONE: "정상",
    Level.CONCERN: "관심",
    Level.CAUTION: "주의",
    Level.SERIOUS: "심각",
}
_LEVEL_RANK = {Level.NONE: 0, Level.CONCERN: 1, Level.CAUTION: 2, Level.SERIOUS: 3}
_LEVEL_PRIORITY = {Level.NONE: 0, Level.CONCERN: 0, Level.CAUTION: 50, Level.SERIOUS: 90}


class ChannelStatus(enum.StrEnum):
    ACTIVE = "active"
    LOW = "low"  # activity well below the person's usual
    QUIET = "quiet"  # no activity for the window although activity was expected
    LEARNING = "learning"  # not enough history for a baseline yet: no judgement
    DEVICE_DOWN = "device_down"  # every device feeding it is stale or offline: no judgement


class HoldReason(enum.StrEnum):
    HOSPITAL = "hospital"
    TRAVEL = "travel"
    OTHER = "other"


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class DeviceIssueKind(enum.StrEnum):
    STALE = "stale"  # no report for longer than its staleness limit
    OFFLINE = "offline"  # the device (or the broker, by its last will) said it went offline


@dataclass(frozen=True, slots=True)
class Rules:
    """Every threshold of the risk rules, in one place, configurable per deployment."""

    # Baseline: exponentially weighted daily profiles; span in days (alpha = 2 / (span + 1)).
    baseline_span_days: float = 28.0
    min_baseline_days: int = 3
    # A quiet channel is evidence only if its baseline expected at least this much activity
    # over the quiet stretch (a person who phones twice a week is not "quiet" after a day).
    # Channels left out keep their default (a deployment can change one channel's alone).
    min_expected: Mapping[Channel, float] = field(default_factory=lambda: dict(_MIN_EXPECTED))
    # Seoul's plug rule: the last 50 hours below 50% of usual.
    low_window_h: int = 50
    low_ratio: float = 0.5
    # ... and short of the usual by more than this many standard deviations of chance (Poisson
    # counts): a quiet spell that is only bad luck is not LOW (0 = the plain ratio rule).
    low_z: float = 2.0
    # A LOW that stands alone (one channel, nothing else: a 관심 record, no call) on a channel
    # officials' findings showed to be noise must be short by this many standard deviations
    # (anbu.domain.feedback): only ever stricter than ``low_z``, never for a LOW that adds up
    # to a call.
    strict_low_z: float = 3.0
    # A channel quiet for this many windows counts double (a long silence is worse).
    severe_factor: float = 2.0
    quiet_points: int = 2
    severe_points: int = 4
    low_points: int = 1
    # An active channel at this share of its usual rate vouches for the person (one step down)
    # ... if its count is also above half the usual by more than this many standard deviations
    # of chance (:func:`vouch_limit`): a count that a life at half its usual rate gives often
    # is no evidence of a normal day (0 = the plain ratio).
    vouch_ratio: float = 0.7
    vouch_z: float = 2.0
    caution_points: int = 2
    serious_points: int = 4
    # Smart plug: a reading at or above this many watts means the appliance is in use.
    plug_on_w: float = 5.0
    # Light: a change of at least max(light_min_delta_lux, light_rel_delta * previous) is activity.
    light_min_delta_lux: float = 30.0
    light_rel_delta: float = 0.3
    min_steps: float = 20.0
    # A device is stale after max(stale_min_h, stale_intervals * its reporting interval).
    stale_min_h: float = 2.0
    stale_intervals: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_expected", {**_MIN_EXPECTED, **self.min_expected})
        problems = [
            what
            for what, ok in (
                ("baseline_span_days must be > 0", self.baseline_span_days > 0),
                ("min_baseline_days must be >= 1", self.min_baseline_days >= 1),
                ("min_expected values must be >= 0", min(self.min_expected.values()) >= 0),
                (
                    f"low_window_h must be 1..{RING_H} (the hours a baseline keeps)",
                    1 <= self.low_window_h <= RING_H,
                ),
                ("low_ratio must be between 0 and 1", 0 < self.low_ratio < 1),
                ("low_z must be >= 0", self.low_z >= 0),
                ("strict_low_z must be >= low_z", self.strict_low_z >= self.low_z),
                ("vouch_ratio must be between 0 and 1", 0 < self.vouch_ratio <= 1),
                ("vouch_z must be >= 0", self.vouch_z >= 0),
                ("severe_factor must be >= 1", self.severe_factor >= 1),
                (
                    "points must be > 0 with caution_points <= serious_points",
                    min(self.quiet_points, self.severe_points, self.low_points) > 0
                    and 0 < self.caution_points <= self.serious_points,
                ),
                (
                    "plug_on_w, light_min_delta_lux, light_rel_delta, min_steps must be >= 0",
                    min(
                        self.plug_on_w,
                        self.light_min_delta_lux,
                        self.light_rel_delta,
                        self.min_steps,
                    )
                    >= 0,
                ),
                (
                    "stale_min_h and stale_intervals must be > 0",
                    self.stale_min_h > 0 and self.stale_intervals > 0,
                ),
            )
            if not ok
        ]
        if problems:
            raise ValueError("risk rules: " + "; ".join(problems))

    @property
    def alpha(self) -> float:
        return 2.0 / (self.baseline_span_days + 1.0)


_MIN_EXPECTED: dict[Channel, float] = {
    Channel.CALLS: 2.0,
    Channel.STEPS: 300.0,
    Channel.POWER: 1.0,
    Channel.LIGHT: 2.0,
    Channel.MOTION: 3.0,
}
DEFAULT_RULES = Rules()


# The widest inactivity window any person gets: the loosest category's (5 days). Officials'
# findings widen a person's window per channel (anbu.domain.feedback), never past this.
MAX_WINDOW_H = 120.0


@dataclass(frozen=True, slots=True)
class MonitoringProfile:
    tier: Tier = Tier.CALLS
    category: RiskCategory = RiskCategory.MEDIUM
    window_h_override: float | None = None
    consent: frozenset[ConsentScope] = frozenset()
    enabled: bool = True
    # Hours added to the window per channel by officials' findings (false alarm, quiet by
    # habit): see anbu.domain.feedback. Sorted by channel; empty for most people.
    widen_h: tuple[tuple[Channel, float], ...] = ()

    @property
    def window_h(self) -> float:
        return self.window_h_override or self.category.window_h

    def window_for(self, channel: Channel) -> float:
        """The quiet window of one channel: the person's window, widened by findings (bounded)."""
        base = self.window_h
        for c, hours in self.widen_h:
            if c is channel:
                return max(base, min(base + hours, MAX_WINDOW_H))
        return base

    def widened(self, channel: Channel) -> bool:
        return any(c is channel for c, _ in self.widen_h)

    @property
    def channels(self) -> frozenset[Channel]:
        """Channels the tier watches and the resident consented to."""
        return _watched(self.tier, self.consent)

    def accepts(self, channel: Channel) -> bool:
        return channel in self.channels


@functools.cache
def _watched(tier: Tier, consent: frozenset[ConsentScope]) -> frozenset[Channel]:
    allowed = frozenset(c for s in consent for c in _CONSENT_CHANNELS[s])
    return tier.channels & allowed


@dataclass(frozen=True, slots=True)
class Hold:
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: HoldReason

    def covers(self, at: dt.datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the rules need to know about one registered device."""

    device_id: str
    kind: DeviceKind
    expected_interval_s: int
    online: bool
    last_seen_at: dt.datetime | None
    registered_at: dt.datetime

    def stale_after(self, rules: Rules) -> dt.timedelta:
        return dt.timedelta(
            hours=max(rules.stale_min_h, rules.stale_intervals * self.expected_interval_s / 3600)
        )

    def issue(
        self, now: dt.datetime, rules: Rules, since: dt.datetime | None = None
    ) -> DeviceIssueKind | None:
        """What is wrong with the device at ``now``; ``since`` (a hold's end) restarts the clock."""
        if not self.online:
            return DeviceIssueKind.OFFLINE
        seen = self.last_seen_at or self.registered_at
        if since is not None and since > seen:
            seen = since
        if now - seen >= self.stale_after(rules):
            return DeviceIssueKind.STALE
        return None


def stale_due_at(
    last_seen_at: dt.datetime, expected_interval_s: int, rules: Rules = DEFAULT_RULES
) -> dt.datetime:
    """When a device that last reported at ``last_seen_at`` becomes stale (sweep index key)."""
    return last_seen_at + dt.timedelta(
        hours=max(rules.stale_min_h, rules.stale_intervals * expected_interval_s / 3600)
    )


# --------------------------------------------------------------------------------------------
# Baselines


def epoch_hour(at: dt.datetime) -> int:
    return int((at - _EPOCH).total_seconds() // 3600)


def local_hour(h: int) -> int:
    """Hour of day (KST) of the UTC epoch hour ``h``."""
    return (h + LOCAL_OFFSET_H) % 24


def local_day(h: int) -> int:
    return (h + LOCAL_OFFSET_H) // 24


def _day_start(day: int) -> int:
    return day * 24 - LOCAL_OFFSET_H


def hour_start(h: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(hours=h)


@dataclass(slots=True)
class Baseline:
    """The running summary of one channel of one resident.

    ``hourly[i]`` is the exponentially weighted mean activity in local hour ``i`` over past full
    days; ``ring`` holds the last ``RING_H`` hours of activity (slot ``h % RING_H``, valid for
    hours in ``(ring_end - RING_H, ring_end]``). Updated one event at a time by :func:`observe`;
    a finished day is folded into ``hourly`` when the first event of a later hour arrives.

    ``hourly`` and ``ring`` are any mutable sequence of floats: a list, or the ``array('d')``
    the ingestion path reads them into straight from their stored bytes (a carrier's feed reads
    and writes thousands of baselines per batch; making 80 float objects of each, and two lists
    for the garbage collector to walk, was the largest part of reading one).
    """

    channel: Channel
    hourly: MutableSequence[float] = field(default_factory=lambda: [0.0] * 24)
    days: int = 0
    ring: MutableSequence[float] = field(default_factory=lambda: [0.0] * RING_H)
    ring_end: int | None = None
    first_hour: int | None = None
    last_activity_at: dt.datetime | None = None
    last_event_at: dt.datetime | None = None
    last_value: float | None = None

    @property
    def daily(self) -> float:
        """Usual activity per day."""
        return sum(self.hourly)

    def expected(self, start_h: int, end_h: int) -> float:
        """Usual activity in epoch hours ``[start_h, end_h)`` by the hour-of-day profile."""
        n = max(0, end_h - start_h)
        full, rest = divmod(n, 24)
        total = full * self.daily
        for h in range(start_h + full * 24, start_h + full * 24 + rest):
            total += self.hourly[local_hour(h)]
        return total

    def observed(self, start_h: int, end_h: int) -> float:
        """Activity recorded in epoch hours ``[start_h, end_h)`` (only the ring's reach)."""
        if self.ring_end is None:
            return 0.0
        lo = max(start_h, self.ring_end - RING_H + 1)
        hi = min(end_h, self.ring_end + 1)
        return sum(self.ring[h % RING_H] for h in range(lo, hi))


def _fold_day(b: Baseline, day: int, alpha: float) -> None:
    start = _day_start(day)
    a = max(alpha, 1.0 / (b.days + 1))  # plain mean while young: no bias towards zero
    assert b.ring_end is not None
    lo = b.ring_end - RING_H + 1
    for i in range(24):
        h = start + i
        v = b.ring[h % RING_H] if lo <= h <= b.ring_end else 0.0
        slot = local_hour(h)
        b.hourly[slot] += a * (v - b.hourly[slot])
    b.days += 1


def _advance(b: Baseline, h: int, alpha: float) -> None:
    """Move the ring's end to hour ``h``, folding every local day that ended on the way."""
    if b.ring_end is None:
        b.ring_end = h
        b.first_hour = h
        return
    if h <= b.ring_end:
        return
    if local_day(h) > local_day(b.ring_end):
        _fold_days(b, h, alpha)
    for k in range(b.ring_end + 1, min(h, b.ring_end + RING_H) + 1):
        b.ring[k % RING_H] = 0.0
    if h - b.ring_end > RING_H:
        b.ring = [0.0] * RING_H
    b.ring_end = h


def _fold_days(b: Baseline, h: int, alpha: float) -> None:
    """Fold into the hourly profile every full local day that ended before hour ``h``."""
    assert b.ring_end is not None
    assert b.first_hour is not None
    first_full_day = local_day(b.first_hour) + (0 if local_hour(b.first_hour) == 0 else 1)
    start_day = max(local_day(b.ring_end), first_full_day)
    end_day = local_day(h)  # days strictly before this one have ended
    days = end_day - start_day
    # Days long past the ring are all zeros; fold them in closed form.
    if days > 3:
        for d in range(start_day, start_day + 3):
            _fold_day(b, d, alpha)
        rest = days - 3
        decay = (1.0 - alpha) ** rest
        b.hourly = [v * decay for v in b.hourly]
        b.days += rest
    else:
        for d in range(start_day, end_day):
            _fold_day(b, d, alpha)


def activity(
    kind: SignalKind,
    value: float | None,
    attrs: Mapping[str, Any] | None,
    last_value: float | None,
    rules: Rules = DEFAULT_RULES,
) -> float:
    """How much living one event shows, in its channel's unit (0 for a sign of no activity)."""
    attrs = attrs or {}
    v = value if value is not None else 0.0
    if kind is SignalKind.CALL:
        direction = attrs.get("direction")
        duration = float(attrs.get("duration_s") or v)
        # An unanswered incoming call shows nothing about the person; any outgoing call does.
        return 1.0 if direction == CallDirection.OUTGOING or duration > 0 else 0.0
    if kind is SignalKind.CALL_COUNT:
        return max(v, 0.0)
    if kind is SignalKind.POWER:
        interval_s = float(attrs.get("interval_s") or 600)
        return interval_s / 3600 if v >= rules.plug_on_w else 0.0
    if kind is SignalKind.LIGHT:
        if last_value is None:
            return 0.0
        delta = abs(v - last_value)
        return (
            1.0
            if delta >= max(rules.light_min_delta_lux, rules.light_rel_delta * last_value)
            else 0.0
        )
    if kind is SignalKind.STEPS:
        return v if v >= rules.min_steps else 0.0
    if kind in (SignalKind.DOOR, SignalKind.MOTION):
        return 1.0
    return 0.0


def observe(
    b: Baseline,
    kind: SignalKind,
    at: dt.datetime,
    value: float | None,
    attrs: Mapping[str, Any] | None = None,
    rules: Rules = DEFAULT_RULES,
) -> float:
    """Fold one event into the baseline (in place) and return its activity amount.

    Events should come in time order; an event older than the ring still counts for
    ``last_activity_at`` but no longer for the hourly profile.
    """
    amount = activity(kind, value, attrs, b.last_value, rules)
    when = at
    if kind is SignalKind.CALL_COUNT:
        # A daily count says "this many calls in the period", not when: put it mid-period.
        period_h = float((attrs or {}).get("period_h") or 24)
        when = at - dt.timedelta(hours=period_h / 2)
    # This runs once per ingested event: the common cases (same hour as the last event, an
    # event in time order) are decided inline, without further calls.
    h = int((when - _EPOCH).total_seconds() // 3600)  # epoch_hour(when)
    end = b.ring_end
    if end is None or h > end:
        _advance(b, h, rules.alpha)
        end = h
    if amount > 0:
        if h > end - RING_H:
            b.ring[h % RING_H] += amount
        if b.last_activity_at is None or when > b.last_activity_at:
            b.last_activity_at = when
    if b.last_event_at is None or at > b.last_event_at:
        b.last_event_at = at
        if kind is SignalKind.LIGHT and value is not None:
            b.last_value = value
    return amount


# --------------------------------------------------------------------------------------------
# Assessment


@dataclass(frozen=True, slots=True)
class ChannelEvidence:
    channel: Channel
    status: ChannelStatus
    last_activity_at: dt.datetime | None
    quiet_since: dt.datetime | None
    quiet_h: float
    usual_per_day: float
    expected: float  # usual activity over the quiet stretch (or the low window)
    observed: float  # activity actually seen in the low window
    severe: bool = False
    devices: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "label": self.channel.label,
            "status": self.status.value,
            "last_activity_at": _iso(self.last_activity_at),
            "quiet_since": _iso(self.quiet_since),
            "quiet_hours": round(self.quiet_h, 1),
            "usual_per_day": round(self.usual_per_day, 2),
            "expected": round(self.expected, 2),
            "observed": round(self.observed, 2),
            "severe": self.severe,
            "devices": list(self.devices),
        }


@dataclass(frozen=True, slots=True)
class DeviceIssue:
    device_id: str
    device_kind: DeviceKind
    kind: DeviceIssueKind
    last_seen_at: dt.datetime | None

    def describe(self) -> str:
        last = _fmt_time(self.last_seen_at) if self.last_seen_at else "신호 없음"
        what = "오프라인" if self.kind is DeviceIssueKind.OFFLINE else "응답 없음"
        return f"기기 {self.device_id}({self.device_kind.value}) {what}, 마지막 신호 {last}"


@dataclass(frozen=True, slots=True)
class Assessment:
    level: Level
    at: dt.datetime
    channels: tuple[ChannelEvidence, ...]
    device_issues: tuple[DeviceIssue, ...]
    on_hold: HoldReason | None
    explanation: str
    widen_h: tuple[tuple[Channel, float], ...] = ()

    @property
    def quiet_channels(self) -> tuple[Channel, ...]:
        return tuple(c.channel for c in self.channels if c.status is ChannelStatus.QUIET)

    def evidence(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "label": self.level.label,
            "at": _iso(self.at),
            "on_hold": self.on_hold.value if self.on_hold else None,
            "channels": [c.as_dict() for c in self.channels],
            "device_issues": [
                {
                    "device_id": d.device_id,
                    "device_kind": d.device_kind.value,
                    "kind": d.kind.value,
                    "last_seen_at": _iso(d.last_seen_at),
                }
                for d in self.device_issues
            ],
            **({"widen_h": {c.value: h for c, h in self.widen_h}} if self.widen_h else {}),
        }


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _fmt_time(at: dt.datetime) -> str:
    return at.astimezone(KST).strftime("%m-%d %H:%M")


def fmt_duration(hours: float) -> str:
    """'2일 5시간' style, for officials reading an SMS."""
    total = int(hours)
    d, h = divmod(total, 24)
    if d and h:
        return f"{d}일 {h}시간"
    if d:
        return f"{d}일"
    return f"{h}시간"


def low_limit(expected: float, rules: Rules = DEFAULT_RULES) -> float:
    """Observed activity below this, over the low window, is LOW: under ``low_ratio`` of the
    usual, and short of it by more than ``low_z`` standard deviations of chance.

    Activity comes in counts (calls, light switches, motions), and a count over 50 hours
    scatters like a Poisson count (standard deviation = sqrt(mean)): someone who usually makes
    6 calls in 50 hours makes 3 or fewer about one time in seven. Without the second condition
    half of the people with few calls would be flagged every month for nothing.
    """
    return min(rules.low_ratio * expected, expected - rules.low_z * math.sqrt(max(expected, 0.0)))


def strict_low_limit(expected: float, rules: Rules = DEFAULT_RULES) -> float:
    """:func:`low_limit` with the stricter chance guard ``strict_low_z``, for a LOW that stands
    alone on a channel officials' findings showed to be noise for this person or district.

    Never above the plain limit (it only ever asks for more evidence). Nothing at all over the
    window, where chance gives a zero less than once in 100, stays LOW however strict: a habit
    of few calls is not a habit of none.
    """
    plain = low_limit(expected, rules)
    limit = min(
        rules.low_ratio * expected,
        expected - rules.strict_low_z * math.sqrt(max(expected, 0.0)),
    )
    if expected >= _NOTHING_AT_ALL:
        limit = max(limit, min(1.0, plain))
    return min(limit, plain)


_NOTHING_AT_ALL = math.log(100)  # a Poisson count with this mean is 0 one time in 100


def assess_channel(
    b: Baseline | None,
    channel: Channel,
    now: dt.datetime,
    window_h: float,
    quiet_floor: dt.datetime | None,
    devices_down: Sequence[str],
    rules: Rules = DEFAULT_RULES,
) -> ChannelEvidence:
    """Judge one channel. ``quiet_floor`` (end of the last hold) caps how far back quiet counts."""
    if devices_down:
        last = b.last_activity_at if b else None
        return ChannelEvidence(
            channel, ChannelStatus.DEVICE_DOWN, last, None, 0.0, b.daily if b else 0.0, 0, 0,
            devices=tuple(devices_down),
        )  # fmt: skip
    if b is None or b.days < rules.min_baseline_days or b.ring_end is None:
        last = b.last_activity_at if b else None
        return ChannelEvidence(channel, ChannelStatus.LEARNING, last, None, 0.0, 0.0, 0.0, 0.0)
    now_h = epoch_hour(now)
    floor = b.last_activity_at or hour_start(b.first_hour or now_h)
    quiet_since = max(floor, quiet_floor) if quiet_floor else floor
    quiet_h = max(0.0, (now - quiet_since).total_seconds() / 3600)
    need = rules.min_expected.get(channel, 1.0)
    expected_quiet = b.expected(epoch_hour(quiet_since) + 1, now_h)
    if quiet_h >= window_h and expected_quiet >= need:
        return ChannelEvidence(
            channel,
            ChannelStatus.QUIET,
            b.last_activity_at,
            quiet_since,
            quiet_h,
            b.daily,
            expected_quiet,
            0.0,
            severe=quiet_h >= rules.severe_factor * window_h,
        )
    start = now_h - rules.low_window_h + 1
    if quiet_floor is not None:
        start = max(start, epoch_hour(quiet_floor) + 1)
    expected_recent = b.expected(start, now_h + 1)
    observed_recent = b.observed(start, now_h + 1)
    if (
        now_h - start + 1 >= rules.low_window_h
        and expected_recent >= need
        and observed_recent < low_limit(expected_recent, rules)
    ):
        status = ChannelStatus.LOW
    else:
        status = ChannelStatus.ACTIVE
    return ChannelEvidence(
        channel,
        status,
        b.last_activity_at,
        quiet_since,
        quiet_h,
        b.daily,
        expected_recent,
        observed_recent,
    )


def monitored_channels(profile: MonitoringProfile, devices: Iterable[DeviceView]) -> list[Channel]:
    """Consented tier channels that have a feed: call records always, others via a device."""
    return list(_monitored(profile.channels, frozenset(d.kind for d in devices)))


@functools.cache
def _monitored(watched: frozenset[Channel], kinds: frozenset[DeviceKind]) -> tuple[Channel, ...]:
    # Graded for every touched resident of every batch and every sweep candidate, from a
    # handful of distinct combinations: computed once each.
    fed = {Channel.CALLS}.union(*(k.channels for k in kinds))
    return tuple(c for c in Channel if c in watched and c in fed)


def assess(
    profile: MonitoringProfile,
    baselines: Mapping[Channel, Baseline],
    devices: Sequence[DeviceView],
    holds: Sequence[Hold],
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
    strict_low: frozenset[Channel] = frozenset(),
) -> Assessment:
    """Grade one resident's risk at ``now`` from their channel baselines, devices and holds.

    Points add up over channels: quiet = 2 (4 when quiet for ``severe_factor`` windows),
    low = 1; 1 point = 관심 (recorded, no call), 2 = 주의 (a call), 4 = 심각. A channel that is
    active at a normal rate (:func:`vouch_limit`: at least ``vouch_ratio`` of usual, and more
    than chance gives at half the usual) *vouches* for the person and
    lowers the level one step, never below 관심: so one source quiet while another is active is
    관심, not a crisis, while several quiet sources still call even if one shows life. Channels
    whose devices are down and channels still learning carry no points and vouch for nothing;
    a down device becomes a :class:`DeviceIssue` (a task for staff) instead.

    Officials' findings tune this in two bounded ways (:mod:`anbu.domain.feedback`): the
    person's widened channels (``profile.widen_h``) get a longer quiet window, but whatever the
    plain rules grade 심각 stays 심각; and a 관심 that rests on one LOW channel alone, on a
    channel in ``strict_low`` (the district's findings) or widened for this person, must pass
    :func:`strict_low_limit` or is not recorded.
    """
    if not profile.enabled:
        return Assessment(Level.NONE, now, (), (), None, "[정상] 모니터링 꺼짐")
    active_hold = next((h for h in holds if h.covers(now)), None)
    if active_hold is not None:
        text = f"[정상] 보류 중({active_hold.reason.value}) ~{_fmt_time(active_hold.ends_at)}"
        return Assessment(Level.NONE, now, (), (), active_hold.reason, text)
    past = [h.ends_at for h in holds if h.ends_at <= now]
    quiet_floor = max(past) if past else None

    issues: list[DeviceIssue] = []
    down_by_channel: dict[Channel, list[str]] = {}
    up_channels: set[Channel] = set()
    for d in devices:
        kind = d.issue(now, rules, since=quiet_floor)
        if kind is None:
            up_channels |= d.kind.channels
            continue
        issues.append(DeviceIssue(d.device_id, d.kind, kind, d.last_seen_at))
        for c in d.kind.channels:
            down_by_channel.setdefault(c, []).append(d.device_id)

    channels = monitored_channels(profile, devices)

    def judge(widened: bool) -> list[ChannelEvidence]:
        return [
            assess_channel(
                baselines.get(channel),
                channel,
                now,
                profile.window_for(channel) if widened else profile.window_h,
                quiet_floor,
                [] if channel in up_channels else down_by_channel.get(channel, []),
                rules,
            )
            for channel in channels
        ]

    widened = bool(profile.widen_h)
    evidence = judge(widened)
    level = _level(evidence, rules)
    if widened and level is not Level.SERIOUS:
        # Feedback never loosens the crisis level: what the plain rules grade 심각 stays 심각,
        # so a widened window can delay a call by at most the plain severe span, never stop it.
        plain = judge(False)
        if _level(plain, rules) is Level.SERIOUS:
            evidence, level, widened = plain, Level.SERIOUS, False
    strict = strict_low | {c for c, _ in profile.widen_h}
    demoted = (
        level is Level.CONCERN and bool(strict) and _lone_low_is_noise(evidence, strict, rules)
    )
    if demoted:
        level = Level.NONE
    text = explain(level, evidence, issues)
    if demoted:
        text += " (현장 확인 결과로 단독 저활동 기준 강화: 기록 안 함)"
    if widened and level is not Level.NONE:
        text += widening_note(profile, [e.channel for e in evidence])
    return Assessment(level, now, tuple(evidence), tuple(issues), None, text, profile.widen_h)


def _level(evidence: Sequence[ChannelEvidence], rules: Rules) -> Level:
    points = 0
    for e in evidence:
        if e.status is ChannelStatus.QUIET:
            points += rules.severe_points if e.severe else rules.quiet_points
        elif e.status is ChannelStatus.LOW:
            points += rules.low_points
    if points == 0:
        level = Level.NONE
    elif points >= rules.serious_points:
        level = Level.SERIOUS
    elif points >= rules.caution_points:
        level = Level.CAUTION
    else:
        level = Level.CONCERN
    if level.rank > Level.CONCERN.rank and any(_vouches(e, rules) for e in evidence):
        level = _STEP_DOWN[level]  # another source shows a normal day: one step less
    return level


def _lone_low_is_noise(
    evidence: Sequence[ChannelEvidence], strict: frozenset[Channel] | set[Channel], rules: Rules
) -> bool:
    """Whether a 관심 grade rests on one LOW channel alone, on a channel whose LOW officials
    found to be noise (``strict``), and that LOW does not pass :func:`strict_low_limit`.

    Why this is the only place feedback may silence a grade: a lone LOW is 1 point, a record
    nobody is called about. Any LOW that adds up to 주의 or 심각 (with another LOW or a quiet
    channel) is judged by the plain limit, so no call, and no crisis, depends on it.
    """
    scored = [e for e in evidence if e.status in (ChannelStatus.QUIET, ChannelStatus.LOW)]
    if len(scored) != 1:
        return False
    e = scored[0]
    return (
        e.status is ChannelStatus.LOW
        and e.channel in strict
        and e.observed >= strict_low_limit(e.expected, rules)
    )


def widening_note(profile: MonitoringProfile, channels: Iterable[Channel]) -> str:
    """Names the thresholds officials' findings widened, so the official reading the alert knows
    the rules were already loosened for this person (and can undo it)."""
    parts = [
        f"{c.label} {fmt_duration(profile.window_h)}→{fmt_duration(profile.window_for(c))}"
        for c in channels
        if profile.window_for(c) > profile.window_h
    ]
    return f" (현장 확인 결과로 기준 완화: {', '.join(parts)})" if parts else ""


def grades_none(
    profile: MonitoringProfile,
    baselines: Mapping[Channel, Baseline],
    dues: Mapping[Channel, dt.datetime | None],
    devices: Sequence[DeviceView],
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
) -> bool:
    """Whether :func:`assess` at ``now`` is sure to grade NONE with no device issue, told from
    the channels' :func:`status_due_at` (``dues``) alone: no channel can be LOW or QUIET before
    its due time, holds only delay both (and a device going stale), and a channel without a
    baseline is learning. The sweep skips residents by the same rule; ingestion uses it to
    skip grading the many residents of a batch whose day is plainly normal. A channel with a
    baseline but no due time given counts as unknown (not sure).
    """
    if not profile.enabled:
        return True
    for d in devices:
        if d.issue(now, rules) is not None:
            return False
    for channel in monitored_channels(profile, devices):
        if channel not in baselines:
            continue
        if channel not in dues:
            return False
        due = dues[channel]
        if due is not None and due <= now:
            return False
    return True


_STEP_DOWN = {Level.SERIOUS: Level.CAUTION, Level.CAUTION: Level.CONCERN}


def _vouches(e: ChannelEvidence, rules: Rules) -> bool:
    if e.status is not ChannelStatus.ACTIVE:
        return False
    need = rules.min_expected.get(e.channel, 1.0)
    return e.expected < need or e.observed >= vouch_limit(e.expected, rules)


def vouch_limit(expected: float, rules: Rules = DEFAULT_RULES) -> float:
    """Observed activity at or above this, over the low window, vouches for the person: at least
    ``vouch_ratio`` of the usual, and above half the usual (``low_ratio``, the LOW line) by
    more than ``vouch_z`` standard deviations of chance (Poisson counts, as :func:`low_limit`).

    Why the second condition: vouching steps a call down to a record, so it must show a normal
    day, not merely a count a fading life also gives. Someone who usually switches a lamp 11
    times in 50 hours and now lives at half that still switches it 8 times one time in four;
    at the plain 70% that count vouched, and two declines with calls and steps already LOW
    went uncalled (bench/detection.py). A large count (a day's steps, many hours of power)
    needs no more than the ratio; a small one needs about its usual.
    """
    half = rules.low_ratio * expected
    return max(rules.vouch_ratio * expected, half + rules.vouch_z * math.sqrt(max(half, 0.0)))


def explain(
    level: Level, evidence: Sequence[ChannelEvidence], issues: Sequence[DeviceIssue]
) -> str:
    """One line for an official: which sources went quiet, since when, against what baseline."""
    parts: list[str] = []
    order = {
        ChannelStatus.QUIET: 0,
        ChannelStatus.LOW: 1,
        ChannelStatus.DEVICE_DOWN: 2,
        ChannelStatus.ACTIVE: 3,
        ChannelStatus.LEARNING: 4,
    }
    for e in sorted(evidence, key=lambda e: order[e.status]):
        c = e.channel
        if e.status is ChannelStatus.QUIET:
            since = _fmt_time(e.quiet_since) if e.quiet_since else "?"
            parts.append(
                f"{c.label} {fmt_duration(e.quiet_h)}째 없음"
                f"({since}부터, 평소 하루 {_num(e.usual_per_day)}{c.unit})"
            )
        elif e.status is ChannelStatus.LOW:
            pct = 100 * e.observed / e.expected if e.expected else 0
            since = (
                f", {_fmt_time(e.quiet_since)}부터 {fmt_duration(e.quiet_h)}째 없음"
                if e.quiet_since and e.quiet_h >= 1
                else ""
            )
            parts.append(
                f"{c.label} 평소의 {pct:.0f}%"
                f"(최근 {_num(e.observed)}/{_num(e.expected)}{c.unit}{since})"
            )
        elif e.status is ChannelStatus.DEVICE_DOWN:
            parts.append(f"{c.label} 판단 불가(기기 {', '.join(e.devices)} 응답 없음)")
        elif e.status is ChannelStatus.ACTIVE:
            last = f", 마지막 {_fmt_time(e.last_activity_at)}" if e.last_activity_at else ""
            parts.append(f"{c.label} 활동 있음{last}")
        else:
            parts.append(f"{c.label} 기준선 학습 중")
    for i in issues:
        parts.append(i.describe())
    return f"[{level.label}] " + ("; ".join(parts) if parts else "관측 채널 없음")


def _num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}".rstrip("0").rstrip(".") if not math.isclose(v, round(v)) else f"{v:.0f}"


def _quiet_due(b: Baseline, window_h: float) -> dt.datetime | None:
    """When this channel could turn quiet if nothing more arrives (``quiet_h`` reaches the window;
    whether enough activity was expected by then is left to the assessment)."""
    since = b.last_activity_at
    if since is None:
        if b.first_hour is None:
            return None
        since = hour_start(b.first_hour)
    return since + dt.timedelta(hours=window_h)


# Baselines are stored rounded to 4 decimals (anbu.risk.bulk), so the sums an assessment computes
# from a stored row may differ from those of the in-memory baseline the due time was computed
# from: by up to 5e-5 per hour summed, observed and expected alike, i.e. 1e-4 per window hour for
# ``low_ratio <= 1``. The due time counts near-ties within this slack (plus a margin for the
# order of float additions) as met, so such differences can only make it earlier, never later.
_DUE_SLACK_PER_H = 1e-4


def status_due_at(b: Baseline, window_h: float, rules: Rules = DEFAULT_RULES) -> dt.datetime | None:
    """The earliest time at which time alone (no further events) could make this channel worse
    than it is: LOW or QUIET (the sweep's index key; ``None`` = never).

    - A channel still learning stays learning: ``days`` moves only when an event is observed
      (:func:`_advance`), and :func:`assess_channel` judges nothing before that, not even quiet.
    - QUIET: not before :func:`_quiet_due`. Quiet never ends with time alone (``quiet_h`` and the
      expected activity over the quiet stretch only grow), so once due the channel stays due.
    - LOW: the first hour ``H`` at which the last ``low_window_h`` hours, as
      :func:`assess_channel` computes them at ``now_h = H``, would hold less than ``low_ratio`` of
      the expected activity with nothing more observed. Scanned hour by hour from just before the
      ring's end (an event may be stamped up to a few minutes after the ingestion clock) to the
      quiet due time, with sliding sums: the observed sum loses the hour that leaves the window,
      and the expected sum depends only on the local hour of ``H`` (a 24-entry table).

    Holds are ignored: the floor a past hold puts under both rules only delays QUIET and LOW, so
    ignoring it gives an earlier time, never a later one. Devices going stale have their own key.
    """
    end = b.ring_end
    if end is None or b.days < rules.min_baseline_days:
        return None
    quiet = _quiet_due(b, window_h)
    assert quiet is not None  # ring_end is set, so is first_hour
    quiet_h = epoch_hour(quiet)
    if quiet_h < end - 1:
        return quiet  # due before the first hour the scan would look at
    n = rules.low_window_h
    slack = _DUE_SLACK_PER_H * (n + 1)
    need = rules.min_expected.get(b.channel, 1.0) - slack
    full, rest = divmod(n, 24)
    hourly = b.hourly
    base = full * sum(hourly)
    # LOW at H iff observed(H) < limit[local_hour(H)]; -1 where too little is expected for LOW.
    # The window's last ``rest`` hours end at local hour k: a sliding sum over the day.
    tail = sum(hourly[24 - rest :])  # the ``rest`` hours ending at local hour 23
    limit = [0.0] * 24
    ratio, z = rules.low_ratio, rules.low_z
    for k in range(24):
        tail += hourly[k] - hourly[k - rest]
        expected = base + tail
        # low_limit(expected), inline: this runs for every baseline an ingested batch saves.
        low = min(ratio * expected, expected - z * math.sqrt(expected)) if expected > 0 else 0.0
        limit[k] = low + slack if expected >= need else -1.0
    if max(limit) < 0:
        return quiet  # too little expected activity in every window: LOW cannot happen
    h = end - 1
    last = min(quiet_h, end + n + 23)  # past end + n nothing observed: 24-periodic
    ring = b.ring
    oldest = end - RING_H + 1  # the ring's reach
    observed = _ring_sum(ring, max(h - n + 1, oldest), h)
    while True:
        if observed < limit[(h + LOCAL_OFFSET_H) % 24]:
            return min(quiet, hour_start(h))
        if h >= last:
            return quiet
        h += 1
        if h == end:
            observed += ring[h % RING_H]
        gone = h - n
        if oldest <= gone <= end:
            observed -= ring[gone % RING_H]


def _ring_sum(ring: Sequence[float], lo: int, hi: int) -> float:
    """Sum of the ring's slots for epoch hours ``[lo, hi]`` (at most ``RING_H`` of them)."""
    if hi < lo:
        return 0.0
    a, z = lo % RING_H, hi % RING_H + 1
    return sum(ring[a:z]) if a < z else sum(ring[a:]) + sum(ring[:z])
