"""The effectiveness report's figures, computed from what the database adapter read.

Pure: no I/O, no clock. The adapter (:mod:`anbu.report.query`) hands over small count tables
per month and the few row lists that percentiles need (alerts, their messages, findings, device
tasks); everything a reader sees (rates, shares, percentiles, the "97.5% within 60 s" line, the
true-alarm rate per source and per rule, the monthly trend) is computed here, so it is tested
without a database.

Definitions (the README's report section repeats them):
- a check-in, its calls and its alert belong to the month the check-in was opened in; a signal
  to the month it happened; a finding to the month it was recorded;
- answer rate = answered attempts / finished attempts; phone-off share = attempts that ended
  with Q.850 cause 20 (subscriber absent: the handset is off or out of coverage) / finished
  attempts; voicemail share: the ``voicemail`` and ``machine`` results;
- cleared by the call = check-ins whose outcome is ok; unreachable share = unreachable /
  check-ins with an outcome; escalated = check-ins that opened an alert;
- time to acknowledgement per chain step: from the moment the gateway accepted the SMS to the
  official of the step that acknowledged, to the acknowledgement; overall: from the alert's
  opening;
- true alarm = the official found the person hospitalised or dead; every other finding (safe,
  visited, quiet by habit, false alarm) counts against. A finding is attributed to each source
  (channel) and rule (quiet, long quiet, low) that raised the check-in it closed; check-ins
  opened by the API or a routine schedule count under that origin.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KST = dt.timezone(dt.timedelta(hours=9), "KST")
PHONE_OFF_CAUSE = 20  # Q.850 subscriber absent
TRUE_FINDINGS = frozenset({"hospitalised", "died"})


class ReportArgumentError(ValueError):
    """A report request that cannot be answered (bad dates, unknown district); one line."""


@dataclass(frozen=True, slots=True)
class Period:
    """Local (KST) dates, both included."""

    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ReportArgumentError(f"--to {self.last} is before --from {self.first}")
        if (self.last - self.first).days > 3 * 366:
            raise ReportArgumentError("a report covers at most three years")

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(), KST).astimezone(dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """Exclusive: the local midnight after ``last``."""
        nxt = self.last + dt.timedelta(days=1)
        return dt.datetime.combine(nxt, dt.time(), KST).astimezone(dt.UTC)

    def months(self) -> list[tuple[str, dt.datetime, dt.datetime]]:
        """Each calendar month the period touches: (``YYYY-MM``, start, end), clipped to it."""
        out = []
        y, m = self.first.year, self.first.month
        while (y, m) <= (self.last.year, self.last.month):
            ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
            lo = max(self.first, dt.date(y, m, 1))
            hi = min(self.last + dt.timedelta(days=1), dt.date(ny, nm, 1))
            out.append(
                (
                    f"{y:04d}-{m:02d}",
                    dt.datetime.combine(lo, dt.time(), KST).astimezone(dt.UTC),
                    dt.datetime.combine(hi, dt.time(), KST).astimezone(dt.UTC),
                )
            )
            y, m = ny, nm
        return out


def month_of(at: dt.datetime) -> str:
    return at.astimezone(KST).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class MonthSlice:
    """Counts of one calendar month (clipped to the period), as the database grouped them."""

    month: str
    signals: Mapping[str, int] = field(default_factory=dict)  # source -> events
    checkins: Mapping[str, int] = field(default_factory=dict)  # check-in source -> opened
    outcomes: Mapping[str, int] = field(default_factory=dict)  # outcome ("" = still open)
    # (result, Q.850 cause) -> finished attempts; result "" = not finished yet
    attempts: Mapping[tuple[str, int | None], int] = field(default_factory=dict)
    attempts_per_case: Mapping[int, int] = field(default_factory=dict)  # attempts -> check-ins
    escalated: int = 0  # check-ins of the month that opened an alert
    level_changes: Mapping[str, int] = field(default_factory=dict)  # new level -> rises to it


@dataclass(frozen=True, slots=True)
class AlertRow:
    opened_at: dt.datetime
    case_closed_at: dt.datetime
    urgency: str
    acknowledged_at: dt.datetime | None
    step_position: int | None  # the step told last (the one that acknowledged, if any)
    step_sent_at: dt.datetime | None  # when the gateway accepted that step's SMS


@dataclass(frozen=True, slots=True)
class MessageRow:
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivery_at: dt.datetime | None
    delivered: bool
    failed: bool


@dataclass(frozen=True, slots=True)
class FindingRow:
    at: dt.datetime
    finding: str
    origin: str  # the check-in's source: signal, api, routine
    triggers: tuple[tuple[str, str], ...] = ()  # (channel, rule) that raised the check-in


@dataclass(frozen=True, slots=True)
class TaskRow:
    kind: str
    opened_at: dt.datetime
    resolved_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ReportInput:
    district_code: str
    district_name: str
    dong: str | None
    period: Period
    residents_by_tier: Mapping[str, int]
    residents_by_source: Mapping[str, int]
    levels_reached: Mapping[str, int]  # level -> residents who were graded at it
    triggers: Mapping[tuple[str, str], int]  # (channel, rule) -> signal check-ins it raised
    months: Sequence[MonthSlice]
    alerts: Sequence[AlertRow]
    messages: Sequence[MessageRow]
    findings: Sequence[FindingRow]
    tasks: Sequence[TaskRow]
    ack_target_s: float = 600.0


# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (as numpy's default); ``None`` for no values."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def within_text(share_: float | None, target_s: float) -> str:
    """The alarm centres' form: "97.5% within 60 s"."""
    if share_ is None:
        return f"no alerts (target {target_s:g} s)"
    return f"{_pct(share_)}% within {target_s:g} s"


def _pct(x: float) -> str:
    v = round(100 * x, 1)
    return f"{v:.0f}" if v == int(v) else f"{v:.1f}"


def _secs(a: dt.datetime, b: dt.datetime) -> float:
    return (b - a).total_seconds()


def _dist(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_s": _r(percentile(values, 50)),
        "p90_s": _r(percentile(values, 90)),
        "max_s": _r(max(values)) if values else None,
    }


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def _r3(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _merge(maps: Iterable[Mapping[Any, int]]) -> Counter[Any]:
    total: Counter[Any] = Counter()
    for m in maps:
        total.update(m)
    return total


def _sorted(c: Mapping[Any, int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))}


def compute(inp: ReportInput) -> dict[str, Any]:
    """Every figure of the report, as plain JSON-ready data (labels are applied by renderers)."""
    months = list(inp.months)
    signals = _merge(m.signals for m in months)
    checkins = _merge(m.checkins for m in months)
    outcomes = _merge(m.outcomes for m in months)
    attempts = _merge(m.attempts for m in months)
    per_case = _merge(m.attempts_per_case for m in months)
    level_changes = _merge(m.level_changes for m in months)

    calls = _calls(attempts, per_case)
    n_checkins = sum(checkins.values())
    closed = sum(v for k, v in outcomes.items() if k)
    escalated = sum(m.escalated for m in months)
    alerts = _alerts(inp.alerts, inp.messages, inp.ack_target_s)
    findings = _findings(inp.findings)
    return {
        "district": {"code": inp.district_code, "name": inp.district_name, "dong": inp.dong},
        "period": {"from": inp.period.first.isoformat(), "to": inp.period.last.isoformat()},
        "residents": {
            "total": sum(inp.residents_by_tier.values()),
            "by_tier": dict(inp.residents_by_tier),
            "by_source": dict(inp.residents_by_source),
        },
        "signals": {"total": sum(signals.values()), "by_source": _sorted(signals)},
        "levels": {
            "residents_reaching_level": dict(inp.levels_reached),
            "rises_by_level": dict(level_changes),
        },
        "checkins": {
            "total": n_checkins,
            "by_source": _sorted(checkins),
            "by_trigger": {f"{c}:{r}": n for (c, r), n in sorted(inp.triggers.items())},
            "outcomes": _sorted({k or "open": v for k, v in outcomes.items()}),
            "cleared_by_call": outcomes.get("ok", 0),
            "cleared_share": _r3(share(outcomes.get("ok", 0), closed)),
            "escalated": escalated,
            "escalated_share": _r3(share(escalated, n_checkins)),
            "unreachable": outcomes.get("unreachable", 0),
            "unreachable_share": _r3(share(outcomes.get("unreachable", 0), closed)),
        },
        "calls": calls,
        "alerts": alerts,
        "findings": findings,
        "device_tasks": _tasks(inp.tasks),
        "months": _months(months, inp),
    }


def _calls(attempts: Mapping[tuple[str, int | None], int], per_case: Mapping[int, int]) -> Any:
    finished = {k: v for k, v in attempts.items() if k[0]}
    n = sum(finished.values())
    results: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    for (result, cause), v in finished.items():
        results[result] += v
        if cause is not None:
            causes[str(cause)] += v
    # Phone off or out of coverage: the result the classifier gives a 480 / causes 18-20
    # before answer (``unreachable``), or cause 20 stored by older versions.
    phone_off = sum(
        v for (r, c), v in finished.items() if r == "unreachable" or c == PHONE_OFF_CAUSE
    )
    cases = sum(per_case.values())
    return {
        "attempts": n,
        "not_finished": sum(v for k, v in attempts.items() if not k[0]),
        "answered": results.get("answered", 0),
        "answer_rate": _r3(share(results.get("answered", 0), n)),
        "results": _sorted(results),
        "causes": _sorted(causes),
        "attempts_per_case": {
            "mean": _r(share(sum(k * v for k, v in per_case.items()), cases), 2),
            "distribution": {str(k): v for k, v in sorted(per_case.items())},
        },
        "phone_off_share": _r3(share(phone_off, n)),
        # The carrier's voicemail (소리샘) or an answering machine, told apart after answer.
        "voicemail_share": _r3(share(results.get("voicemail", 0) + results.get("machine", 0), n)),
    }


def _alerts(alerts: Sequence[AlertRow], messages: Sequence[MessageRow], target: float) -> Any:
    acked = [a for a in alerts if a.acknowledged_at is not None]
    overall = [_secs(a.opened_at, a.acknowledged_at) for a in acked if a.acknowledged_at]
    per_step: dict[int, list[float]] = {}
    for a in acked:
        assert a.acknowledged_at is not None
        if a.step_position is not None and a.step_sent_at is not None:
            per_step.setdefault(a.step_position, []).append(
                max(0.0, _secs(a.step_sent_at, a.acknowledged_at))
            )
    within = sum(1 for s in overall if s <= target)
    # Unacknowledged alerts count as late: the share is over every alert, not the answered.
    share_within = share(within, len(alerts))
    gateway = [_secs(m.created_at, m.sent_at) for m in messages if m.sent_at is not None]
    delivered = [
        _secs(m.created_at, m.delivery_at)
        for m in messages
        if m.delivered and m.delivery_at is not None
    ]
    return {
        "alerts": len(alerts),
        "urgent": sum(1 for a in alerts if a.urgency == "urgent"),
        "acknowledged": len(acked),
        "acknowledged_share": _r3(share(len(acked), len(alerts))),
        "case_to_alert": _dist([_secs(a.case_closed_at, a.opened_at) for a in alerts]),
        "messages": len(messages),
        "messages_failed": sum(1 for m in messages if m.failed),
        "to_gateway": _dist(gateway),
        "to_delivery": _dist(delivered),
        "to_ack": _dist(overall),
        "to_ack_by_step": {str(k): _dist(v) for k, v in sorted(per_step.items())},
        "ack_target_s": target,
        "ack_within_target_share": _r3(share_within),
        "ack_within_target": within_text(share_within, target),
    }


def _findings(rows: Sequence[FindingRow]) -> Any:
    by_kind = Counter(r.finding for r in rows)
    per_source: dict[str, list[bool]] = {}
    per_rule: dict[str, list[bool]] = {}
    for r in rows:
        true = r.finding in TRUE_FINDINGS
        if r.triggers:
            for channel in sorted({c for c, _ in r.triggers}):
                per_source.setdefault(channel, []).append(true)
            for rule in sorted({rule for _, rule in r.triggers}):
                per_rule.setdefault(rule, []).append(true)
        else:
            per_source.setdefault(r.origin, []).append(true)
            per_rule.setdefault(r.origin, []).append(true)
    n_true = sum(1 for r in rows if r.finding in TRUE_FINDINGS)
    return {
        "total": len(rows),
        "by_kind": _sorted(by_kind),
        "true_alarms": n_true,
        "true_alarm_rate": _r3(share(n_true, len(rows))),
        "true_alarm_rate_by_source": _rates(per_source),
        "true_alarm_rate_by_rule": _rates(per_rule),
    }


def _rates(groups: Mapping[str, list[bool]]) -> dict[str, Any]:
    return {
        k: {"findings": len(v), "true": sum(v), "rate": _r3(share(sum(v), len(v)))}
        for k, v in sorted(groups.items())
    }


def _tasks(rows: Sequence[TaskRow]) -> Any:
    fixed = [_secs(t.opened_at, t.resolved_at) for t in rows if t.resolved_at is not None]
    d = _dist(fixed)
    return {
        "opened": len(rows),
        "by_kind": _sorted(Counter(t.kind for t in rows)),
        "resolved": len(fixed),
        "still_open": len(rows) - len(fixed),
        "time_to_fix_h": {
            "n": d["n"],
            "p50": _r(d["p50_s"] / 3600 if d["p50_s"] is not None else None),
            "p90": _r(d["p90_s"] / 3600 if d["p90_s"] is not None else None),
        },
    }


def _months(months: Sequence[MonthSlice], inp: ReportInput) -> list[dict[str, Any]]:
    alerts: dict[str, list[AlertRow]] = {}
    for a in inp.alerts:
        alerts.setdefault(month_of(a.opened_at), []).append(a)
    findings: dict[str, list[FindingRow]] = {}
    for f in inp.findings:
        findings.setdefault(month_of(f.at), []).append(f)
    tasks = Counter(month_of(t.opened_at) for t in inp.tasks)
    out = []
    for m in months:
        finished = sum(v for k, v in m.attempts.items() if k[0])
        answered = sum(v for k, v in m.attempts.items() if k[0] == "answered")
        ma = alerts.get(m.month, [])
        acks = [_secs(a.opened_at, a.acknowledged_at) for a in ma if a.acknowledged_at is not None]
        within = sum(1 for s in acks if s <= inp.ack_target_s)
        mf = findings.get(m.month, [])
        n_true = sum(1 for f in mf if f.finding in TRUE_FINDINGS)
        out.append(
            {
                "month": m.month,
                "signals": sum(m.signals.values()),
                "checkins": sum(m.checkins.values()),
                "attempts": finished,
                "answer_rate": _r3(share(answered, finished)),
                "cleared_by_call": m.outcomes.get("ok", 0),
                "unreachable": m.outcomes.get("unreachable", 0),
                "escalated": m.escalated,
                "alerts": len(ma),
                "ack_p50_s": _r(percentile(acks, 50)),
                "ack_within_target_share": _r3(share(within, len(ma))),
                "findings": len(mf),
                "true_alarms": n_true,
                "true_alarm_rate": _r3(share(n_true, len(mf))),
                "device_tasks": tasks.get(m.month, 0),
            }
        )
    return out
