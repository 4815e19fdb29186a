"""Detection benchmark: how often a check-in call is about a real crisis, on a simulated district.

The issue's background: Seoul's plugs raised 46,974 signals for 154 real crises (0.33%).
This runs a mixed population through the real ingestion service and the sweep (PostgreSQL) and
counts, per life story, who got a check-in call, a 관심 record, or a device task:

- crises: ``sudden_stop`` (stops at the turning point, the plug keeps reporting standby) and
  ``decline`` (activity fades);
- people who are fine: ``normal``; ``away`` (out for 1.5-3 days without telling anyone: phone
  and step-count app along, the home quiet); ``travel`` (away with a hold entered);
  ``unplugged`` (the plug goes dark while the person keeps phoning: a device task, not a call).

Everyone lives 14 days of normal life (the baselines learn), then their story turns at a
random hour of the next day; the run ends 7 days after. Events arrive in 6-hour batches and the
sweep runs after each. Figures (bench/results/detection.json):

- ``true_alarm_rate``: of the residents who got a check-in call, the share in crisis (and called
  after their turn);
- ``crisis_detected_rate`` and ``detection_delay_h_p50`` / ``_p90``: crises that got a call, and
  how long after the turn;
- per story: residents, with a call, with a 관심 record (recorded, nobody called), with a
  device task, with a smart plug.

The run is repeated under the plain ratio rule (``low_z = 0``, as Seoul's plugs): the
difference is what the chance guard on LOW removes, and what it costs.

Outcome feedback (``*_feedback``): the same district lives three more weeks first (another
draw of everyone's normal life), then the plain run's three weeks again, event for event
(:func:`_six_weeks`); each week officials record a finding for every check-in and every
resident flagged 관심 that week (crisis after the turn: hospitalised or died; away: false alarm;
otherwise: safe, quiet by habit; a 관심 record about a crisis after its turn: visited, which
changes nothing), through the call the acknowledgement link makes
(:func:`anbu.risk.feedback.on_finding`). The ``_feedback`` figures count weeks 4 to 6: the
plain run's lives with three weeks of findings behind them (and baselines three weeks older:
``--control`` runs the six weeks without using any finding, to tell the two apart).
``false_calls`` lists every check-in counted as a false alarm, with what raised it and what
officials had seen of that person before.

Simulated people are regular in a way real people are not: these figures say how the rules
behave on the stories they were written for, not how they do in a district.

    python -m bench.detection [--residents 1000] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import random
import time
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.migrate import upgrade
from anbu.db.models import Checkin
from anbu.db.models_feedback import FeedbackStep
from anbu.db.models_signals import DeviceTask, RiskAssessment
from anbu.db.session import make_engine, make_sessionmaker
from anbu.domain.checkin import CheckinSource, CheckinStatus
from anbu.domain.feedback import raised_by
from anbu.domain.risk import DEFAULT_RULES, Level, Rules
from anbu.risk.feedback import on_finding
from anbu.risk.ingest import IngestReport
from anbu.risk.sweep import sweep
from anbu.services.checkins import OPEN_STATUSES
from bench.common import RESULTS, percentile, write_results
from devstack.sim import SimResident, Story, population, simulate
from tests.db_fixtures import create_pg_database, drop_pg_database, pg_url
from tests.risk_support import START, feed, register

HISTORY = dt.timedelta(days=14)
AFTER = dt.timedelta(days=7)
BATCH = dt.timedelta(hours=6)
MIX = {
    Story.NORMAL: 70,
    Story.AWAY: 10,
    Story.TRAVEL: 5,
    Story.UNPLUGGED: 5,
    Story.SUDDEN_STOP: 5,
    Story.DECLINE: 5,
}
CRISES = (Story.SUDDEN_STOP, Story.DECLINE)


def _people(n: int, seed: int) -> tuple[list[SimResident], dict[str, dt.datetime]]:
    rng = random.Random(seed)
    stories = [s for s, weight in MIX.items() for _ in range(weight)]
    people: list[SimResident] = []
    turns: dict[str, dt.datetime] = {}
    for p in population(n, prefix="d", seed=seed):
        people.append(
            dataclasses.replace(
                p,
                story=rng.choice(stories),
                plug_interval_s=3600,  # hourly readings: fewer events, the same rules at work
                travel_days=rng.uniform(1.5, 3.0),
            )
        )
        turns[p.resident_id] = START + HISTORY + dt.timedelta(hours=rng.uniform(0, 24))
    return people, turns


async def run(n: int, seed: int, rules: Rules = DEFAULT_RULES) -> dict[str, Any]:
    people, turns = _people(n, seed)
    name = await create_pg_database()
    engine = make_engine(pg_url(name))
    try:
        await upgrade(engine)
        sessions = make_sessionmaker(engine)
        await register(sessions, people, travel_from=lambda p: turns[p.resident_id])
        end = START + HISTORY + AFTER
        events = [
            e
            for p in people
            for e in simulate(p, start=START, end=end, turn=turns[p.resident_id], seed=seed)
        ]
        t0 = time.perf_counter()

        async def sweep_after(_report: IngestReport, now: dt.datetime) -> None:
            await sweep(sessions, now, rules=rules)

        await feed(sessions, events, step=BATCH, until=end, after=sweep_after, rules=rules)
        await sweep(sessions, end, rules=rules)
        seconds = time.perf_counter() - t0
        async with sessions() as s:
            calls = {
                c.resident_id: c.created_at
                for c in (
                    await s.execute(
                        select(Checkin)
                        .where(Checkin.source == CheckinSource.SIGNAL)
                        .order_by(Checkin.created_at.desc())
                    )
                ).scalars()
            }  # newest first, so each resident keeps their earliest check-in
            concern = set(
                (
                    await s.execute(
                        select(RiskAssessment.resident_id).where(
                            RiskAssessment.level == Level.CONCERN
                        )
                    )
                ).scalars()
            )
            tasks = set((await s.execute(select(DeviceTask.resident_id))).scalars())
        false_calls = await _false_calls(sessions, calls, {p.resident_id: p for p in people}, turns)
    finally:
        await engine.dispose()
        await drop_pg_database(name)

    by_story: dict[str, Counter[str]] = defaultdict(Counter)
    true_calls = 0
    delays: list[float] = []
    for p in people:
        row = by_story[p.story.value]
        row["residents"] += 1
        called = calls.get(p.resident_id)
        if called is not None:
            row["called"] += 1
            if p.story in CRISES and called >= turns[p.resident_id]:
                true_calls += 1
                delays.append((called - turns[p.resident_id]).total_seconds() / 3600)
        row["concern"] += p.resident_id in concern
        row["device_task"] += p.resident_id in tasks
        row["with_plug"] += p.plug_id is not None  # only a plug can go dark in these stories
    crises = sum(by_story[s.value]["residents"] for s in CRISES)
    return {
        "residents": n,
        "events": len(events),
        "seconds": round(seconds, 1),
        "checkins": len(calls),
        "true_alarm_rate": round(true_calls / len(calls), 3) if calls else None,
        "crises": crises,
        "crisis_detected_rate": round(true_calls / crises, 3) if crises else None,
        "detection_delay_h_p50": round(percentile(delays, 50), 1) if delays else None,
        "detection_delay_h_p90": round(percentile(delays, 90), 1) if delays else None,
        "by_story": {k: dict(v) for k, v in sorted(by_story.items())},
        "false_calls": false_calls,
    }


async def _false_calls(
    sessions: async_sessionmaker[AsyncSession],
    calls: dict[str, dt.datetime],
    people: dict[str, SimResident],
    turns: dict[str, dt.datetime],
) -> list[dict[str, Any]]:
    """Each check-in counted as a false alarm, told so a reader can judge what could have
    prevented it: who (story, tier, usual calls a day), what raised it (the assessment's
    explanation and rules), and what officials knew of the person before it (관심 records,
    widening steps, and whether any step was in force)."""
    out: list[dict[str, Any]] = []
    async with sessions() as s:
        for rid, at in sorted(calls.items(), key=lambda kv: kv[1]):
            p = people[rid]
            if p.story in CRISES and at >= turns[rid]:
                continue
            evidence, explanation = (
                await s.execute(
                    select(RiskAssessment.evidence, RiskAssessment.explanation)
                    .join(Checkin, Checkin.id == RiskAssessment.checkin_id)
                    .where(Checkin.resident_id == rid, Checkin.created_at == at)
                )
            ).one()
            concern = (
                (
                    await s.execute(
                        select(RiskAssessment.assessed_at).where(
                            RiskAssessment.resident_id == rid,
                            RiskAssessment.level == Level.CONCERN,
                            RiskAssessment.assessed_at < at,
                        )
                    )
                )
                .scalars()
                .all()
            )
            steps = (
                await s.execute(
                    select(FeedbackStep.created_at, FeedbackStep.reverted_at).where(
                        FeedbackStep.resident_id == rid, FeedbackStep.created_at < at
                    )
                )
            ).all()
            out.append(
                {
                    "resident": rid,
                    "story": p.story.value,
                    "tier": p.tier.value,
                    "calls_per_day": round(p.calls_per_day, 2),
                    "at": at.isoformat(),
                    "raised_by": sorted(f"{c}:{r}" for c, r in raised_by(evidence)),
                    "explanation": explanation,
                    "concern_records_before": len(concern),
                    "last_concern_h_before": (
                        round((at - max(concern)).total_seconds() / 3600, 1) if concern else None
                    ),
                    "widening_steps_before": len(steps),
                    "widened_at_call": any(r is None or r > at for _c, r in steps),
                }
            )
    return out


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--residents", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--plain", action="store_true", help="re-run the plain ratio rule (else kept from the last)"
    )
    ap.add_argument(
        "--control", action="store_true", help="also run the six weeks without feedback"
    )
    args = ap.parse_args(argv)
    figures = await run(args.residents, args.seed)
    figures["normal_flagged_share"] = round(
        figures["by_story"]["normal"].get("concern", 0)
        / figures["by_story"]["normal"]["residents"],
        3,
    )
    after = await run_feedback(args.residents, args.seed)
    for key in (
        "true_alarm_rate",
        "normal_flagged_share",
        "crisis_detected_rate",
        "detection_delay_h_p50",
        "detection_delay_h_p90",
    ):
        figures[f"{key}_feedback"] = after[key]
    figures["feedback_checks"] = {
        "true_alarm_rate_feedback >= true_alarm_rate": _ge(
            after["true_alarm_rate"], figures["true_alarm_rate"]
        ),
        "normal_flagged_share_feedback <= normal_flagged_share / 2": _ge(
            figures["normal_flagged_share"] / 2, after["normal_flagged_share"]
        ),
        "crisis_detected_rate_feedback >= crisis_detected_rate": _ge(
            after["crisis_detected_rate"], figures["crisis_detected_rate"]
        ),
    }
    figures["feedback"] = after
    if args.control:
        figures["six_weeks_without_feedback"] = await run_feedback(
            args.residents, args.seed, with_feedback=False
        )
    if args.plain:
        plain = await run(args.residents, args.seed, dataclasses.replace(DEFAULT_RULES, low_z=0.0))
        figures["plain_ratio_rule"] = {
            k: v for k, v in plain.items() if k not in ("residents", "events")
        }
    else:  # the rule did not change: keep the last measured block, with its date
        last = RESULTS / "detection.json"
        if last.exists():
            old = json.loads(last.read_text(encoding="utf-8"))
            if "plain_ratio_rule" in old:
                figures["plain_ratio_rule"] = {
                    "measured_at": old["plain_ratio_rule"].get("measured_at", old["measured_at"]),
                    **{k: v for k, v in old["plain_ratio_rule"].items() if k != "measured_at"},
                }
    write_results("detection", figures)
    return 0


def _ge(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a >= b


# --- outcome feedback: three more weeks --------------------------------------------------------

WEEK = dt.timedelta(days=7)
PHASE = HISTORY + AFTER  # three weeks


def _finding(story: Story, crisis_turned: bool, checkin: bool) -> str:
    """What the official finds: a crisis after its turn is true; the rest are fine."""
    if story in CRISES and crisis_turned:
        if not checkin:
            return "visited"  # a 관심 record about a crisis: looked into, nothing decided
        return "died" if story is Story.SUDDEN_STOP else "hospitalised"
    return "false_alarm" if story is Story.AWAY else "quiet_habit"


async def _review(
    sessions: async_sessionmaker[AsyncSession],
    since: dt.datetime,
    until: dt.datetime,
    people: dict[str, SimResident],
    turn_of: dict[str, dt.datetime],
) -> Counter[str]:
    """Officials record a finding for each check-in opened and each resident flagged 관심 in
    ``[since, until)``; the check-ins are closed (the official dealt with them)."""
    done: Counter[str] = Counter()
    async with sessions() as s:
        checkins = (
            (
                await s.execute(
                    select(Checkin).where(
                        Checkin.source == CheckinSource.SIGNAL,
                        Checkin.created_at >= since,
                        Checkin.created_at < until,
                    )
                )
            )
            .scalars()
            .all()
        )
        for c in checkins:
            p = people[c.resident_id]
            finding = _finding(p.story, c.created_at >= turn_of[c.resident_id], True)
            await on_finding(
                s, resident_id=c.resident_id, finding=finding, now=until, checkin_id=c.id
            )
            c.status = CheckinStatus.CANCELLED
            c.closed_at = until
            done[finding] += 1
        flagged = (
            await s.execute(
                select(RiskAssessment.resident_id, RiskAssessment.id, RiskAssessment.assessed_at)
                .where(
                    RiskAssessment.level == Level.CONCERN,
                    RiskAssessment.assessed_at >= since,
                    RiskAssessment.assessed_at < until,
                )
                .order_by(RiskAssessment.assessed_at)
            )
        ).all()
        latest = {rid: (aid, at) for rid, aid, at in flagged}  # one look per person and week
        for rid, (aid, at) in sorted(latest.items()):
            finding = _finding(people[rid].story, at >= turn_of[rid], False)
            await on_finding(s, resident_id=rid, finding=finding, now=until, assessment_id=aid)
            done[f"concern:{finding}"] += 1
        await s.commit()
    return done


async def _outcomes(
    sessions: async_sessionmaker[AsyncSession], since: dt.datetime, until: dt.datetime
) -> tuple[dict[str, dt.datetime], set[str], set[str]]:
    """Who got a check-in (their first), a 관심 record, a device task in ``[since, until]``."""
    async with sessions() as s:
        rows = (
            await s.execute(
                select(Checkin.resident_id, Checkin.created_at)
                .where(
                    Checkin.source == CheckinSource.SIGNAL,
                    Checkin.created_at >= since,
                    Checkin.created_at <= until,
                )
                .order_by(Checkin.created_at.desc())
            )
        ).all()
        calls = dict(rows)  # newest first: the earliest is kept
        concern = set(
            (
                await s.execute(
                    select(RiskAssessment.resident_id).where(
                        RiskAssessment.level == Level.CONCERN,
                        RiskAssessment.assessed_at >= since,
                        RiskAssessment.assessed_at <= until,
                    )
                )
            ).scalars()
        )
        tasks = set(
            (
                await s.execute(
                    select(DeviceTask.resident_id).where(
                        DeviceTask.opened_at >= since, DeviceTask.opened_at <= until
                    )
                )
            ).scalars()
        )
    return calls, concern, tasks


def _figures(
    people: list[SimResident],
    turns: dict[str, dt.datetime],
    calls: dict[str, dt.datetime],
    concern: set[str],
    tasks: set[str],
) -> dict[str, Any]:
    by_story: dict[str, Counter[str]] = defaultdict(Counter)
    true_calls = 0
    delays: list[float] = []
    for p in people:
        row = by_story[p.story.value]
        row["residents"] += 1
        called = calls.get(p.resident_id)
        if called is not None:
            row["called"] += 1
            if p.story in CRISES and called >= turns[p.resident_id]:
                true_calls += 1
                delays.append((called - turns[p.resident_id]).total_seconds() / 3600)
        row["concern"] += p.resident_id in concern
        row["device_task"] += p.resident_id in tasks
    crises = sum(by_story[s.value]["residents"] for s in CRISES)
    normal = by_story[Story.NORMAL.value]
    return {
        "checkins": len(calls),
        "true_alarm_rate": round(true_calls / len(calls), 3) if calls else None,
        "crises": crises,
        "crisis_detected_rate": round(true_calls / crises, 3) if crises else None,
        "detection_delay_h_p50": round(percentile(delays, 50), 1) if delays else None,
        "detection_delay_h_p90": round(percentile(delays, 90), 1) if delays else None,
        "normal_flagged_share": round(normal["concern"] / normal["residents"], 3),
        "normal_called": normal["called"],
        "by_story": {k: dict(v) for k, v in sorted(by_story.items())},
    }


def _six_weeks(p: SimResident, turn: dt.datetime, seed: int) -> list[dict[str, Any]]:
    """One person's six weeks: three of normal life, then :func:`run`'s three, event for event.

    Weeks 4 to 6 replay the very events of the plain run (moved three weeks on, a whole number
    of weeks, so each event keeps its local hour and weekday; ids suffixed so they are new
    events), so that ``true_alarm_rate`` and ``true_alarm_rate_feedback`` count the same lives
    and differ only by what three weeks of findings (and three weeks older baselines) do. A
    fresh draw for weeks 4 to 6 would compare two samples of chance instead: a false call is a
    normal person's chance gap of several days, one to three in a run, so a new draw moves the
    rate by as much as any feedback could. Weeks 1 to 3 are another draw of the same people's
    normal lives (their own seed, no turn): replaying the plain run there too would let a
    person's findings foresee the very chance dips they are then measured on.
    """
    never = START + 3 * PHASE  # the story does not turn in weeks 1 to 3
    first = simulate(p, start=START, end=START + PHASE, turn=never, seed=seed + _WEEKS_1_TO_3)
    replay = [
        {
            **e,
            "event_id": f"{e['event_id']}-w4",
            "at": (dt.datetime.fromisoformat(e["at"]) + PHASE).isoformat(),
        }
        for e in simulate(p, start=START, end=START + PHASE, turn=turn, seed=seed)
    ]
    return first + replay


_WEEKS_1_TO_3 = 1_000_003  # seed offset: another draw than the plain run's (seed + 1's, too)


async def run_feedback(n: int, seed: int, *, with_feedback: bool = True) -> dict[str, Any]:
    """Three weeks of findings, then the three weeks of :func:`run` (see the module doc)."""
    people, base_turns = _people(n, seed)
    turns = {rid: t + PHASE for rid, t in base_turns.items()}  # the stories turn in week 6
    start2, end = START + PHASE, START + 2 * PHASE
    by_id = {p.resident_id: p for p in people}
    events = [e for p in people for e in _six_weeks(p, base_turns[p.resident_id], seed)]
    name = await create_pg_database()
    reviewed: list[dict[str, int]] = []
    try:
        engine = make_engine(pg_url(name))
        try:
            await upgrade(engine)
            sessions = make_sessionmaker(engine)
            await register(sessions, people, travel_from=lambda p: turns[p.resident_id])
            week_end = [START + WEEK]
            t0 = time.perf_counter()

            async def after(_report: IngestReport, now: dt.datetime) -> None:
                await sweep(sessions, now)
                if now >= week_end[0]:
                    if with_feedback:
                        done = await _review(sessions, week_end[0] - WEEK, now, by_id, turns)
                        reviewed.append(dict(done))
                    else:  # officials deal with the check-ins, but their findings are not used
                        await _close_checkins(sessions, now)
                    week_end[0] += WEEK

            await feed(sessions, events, step=BATCH, until=end, after=after)
            await sweep(sessions, end)
            seconds = time.perf_counter() - t0
            calls, concern, tasks = await _outcomes(sessions, start2, end)
            false_calls = await _false_calls(sessions, calls, by_id, turns)
            async with sessions() as s:
                steps = (
                    await s.execute(
                        select(FeedbackStep.channel, FeedbackStep.resident_id).where(
                            FeedbackStep.created_at <= start2
                        )
                    )
                ).all()
        finally:
            await engine.dispose()
    finally:
        await drop_pg_database(name)
    figures = _figures(people, turns, calls, concern, tasks)
    # Per person: are those widened before week 4 flagged again, and how often the others?
    widened = {rid for _, rid in steps}
    normal = [p.resident_id for p in people if p.story is Story.NORMAL]
    groups = {
        "widened": [rid for rid in normal if rid in widened],
        "not_widened": [rid for rid in normal if rid not in widened],
    }
    return {
        "seconds": round(seconds, 1),
        "events": len(events),
        **figures,
        "normal_flagged_weeks_4_to_6": {
            k: {
                "residents": len(v),
                "flagged": sum(rid in concern for rid in v),
                "share": round(sum(rid in concern for rid in v) / len(v), 3) if v else None,
            }
            for k, v in groups.items()
        },
        "false_calls": false_calls,
        "findings_by_week": reviewed,
        "residents_widened_before_week_4": len({rid for _, rid in steps}),
        "channels_widened_before_week_4": dict(Counter(str(c) for c, _ in steps)),
    }


async def _close_checkins(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> None:
    async with sessions() as s:
        await s.execute(
            update(Checkin)
            .where(Checkin.status.in_(OPEN_STATUSES))
            .values(status=CheckinStatus.CANCELLED, closed_at=now)
        )
        await s.commit()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
