"""Evaluate residents: grade them, keep the level history, open check-ins and device tasks.

Shared by the ingestion fast path and the periodic sweep. A check-in is opened (or joined) only
when the level *rises* to 주의 or 심각, so a resident who stays quiet after answering "I'm fine"
is not called again every sweep; a further rise (주의 -> 심각) calls again.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import Resident
from anbu.db.models_signals import DeviceTask, RiskAssessment
from anbu.domain.checkin import CheckinSource
from anbu.domain.risk import (
    DEFAULT_RULES,
    Assessment,
    Baseline,
    Channel,
    DeviceView,
    Hold,
    Level,
    Rules,
    TaskStatus,
    assess,
    grades_none,
)
from anbu.domain.risk import MonitoringProfile as ProfileRules
from anbu.risk.bulk import DeviceRow, DeviceUpdate, ResidentRow, StoredStates, bulk_store
from anbu.risk.feedback import strict_low_by_district
from anbu.risk.gcpause import collector_paused
from anbu.services.checkins import open_checkin

log = logging.getLogger(__name__)

# What an inactive resident is graded with: nothing (their level returns to none).
DISABLED = ProfileRules(enabled=False)


# Evaluation and Subject are NamedTuples rather than frozen dataclasses: ingestion makes one
# of each for every resident of a batch (thousands), and a frozen dataclass's __init__ (one
# object.__setattr__ per field) cost several times a tuple's.
class Evaluation(NamedTuple):
    resident_id: str
    level: Level
    previous: Level
    # The explanation, or how to make it: for the residents ingestion did not need to grade
    # (:func:`assess_unless_none`), it is written only if someone reads it.
    why: str | Callable[[], str]
    checkin_id: str | None = None
    checkin_created: bool = False
    tasks_opened: int = 0

    @property
    def changed(self) -> bool:
        return self.level is not self.previous

    @property
    def explanation(self) -> str:
        return self.why if isinstance(self.why, str) else self.why()


class Subject(NamedTuple):
    """Everything the rules need about one resident, however it was gathered: the ingestion
    path has it in memory already, the sweep reads it."""

    resident_id: str
    profile: ProfileRules  # disabled when the resident is inactive
    level: Level  # as last recorded
    baselines: Mapping[Channel, Baseline]
    devices: Sequence[tuple[str, DeviceView]]  # active devices: (primary key, view)
    district_id: int = 0


async def evaluate_residents(
    session: AsyncSession,
    resident_ids: Sequence[str],
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
) -> list[Evaluation]:
    """Read each resident's profile, baselines, devices and holds, grade them and act on it.
    Residents without a monitoring profile are skipped. The caller commits."""
    found = await gather(session, resident_ids, now)
    return await grade_in(session, found.subjects, found.context, now, rules)


@dataclass(frozen=True, slots=True)
class Gathered:
    subjects: list[Subject]
    context: Context
    stored: StoredStates  # the baselines as stored (due times included)
    residents: Mapping[str, ResidentRow]  # with their own profiles, even when inactive


async def gather(session: AsyncSession, resident_ids: Sequence[str], now: dt.datetime) -> Gathered:
    """What grading these residents needs, read through the bulk store: a handful of
    statements whatever their number."""
    ids = sorted(set(resident_ids))
    store = await bulk_store(session)
    if not ids:
        return Gathered([], Context({}, set()), await store.load_states(()), {})
    device_rows, residents = await store.load_senders((), ids)
    stored = await store.load_states(ids)
    context = Context(*await store.load_context(ids, now), await strict_low_by_district(session))
    by_id = {r.resident_id: r for r in residents}
    subjects = subjects_of(ids, by_id, device_rows, stored.baselines())
    return Gathered(subjects, context, stored, by_id)


async def grade(
    session: AsyncSession,
    subjects: Sequence[Subject],
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
) -> list[Evaluation]:
    """Assess subjects gathered by the caller at ``now`` and act on it. The caller commits."""
    if not subjects:
        return []
    store = await bulk_store(session)
    context = Context(
        *await store.load_context([s.resident_id for s in subjects], now),
        await strict_low_by_district(session),
    )
    return await grade_in(session, subjects, context, now, rules)


async def grade_in(
    session: AsyncSession,
    subjects: Sequence[Subject],
    context: Context,
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
) -> list[Evaluation]:
    """Assess the subjects in their context and record what changed."""
    return await act(session, subjects, assess_all(subjects, context, now, rules), context, now)


@dataclass(frozen=True, slots=True)
class Context:
    """What grading reads besides the subjects: holds, the devices with an open task, and per
    district the channels whose lone LOW officials' findings tightened."""

    holds: Mapping[str, Sequence[Hold]]
    open_tasks: set[str]
    strict_low: Mapping[int, frozenset[Channel]] = field(default_factory=dict)


def subjects_of(
    ids: Iterable[str],
    residents: Mapping[str, ResidentRow],
    device_rows: Iterable[DeviceRow],
    baselines: Mapping[str, Mapping[Channel, Baseline]],
    updates: Mapping[str, DeviceUpdate] | None = None,
) -> list[Subject]:
    """The residents ``ids`` as the rules see them; ``updates`` (by device primary key) is
    device liveness newer than ``device_rows``. Residents without a profile are left out."""
    wanted = set(ids)
    updates = updates or {}
    devices: dict[str, list[tuple[str, DeviceView]]] = {}
    for d in device_rows:
        if not d.active or d.resident_id not in wanted:
            continue
        u = updates.get(d.pk)
        online, seen = (u.online, u.last_seen_at) if u else (d.online, d.last_seen_at)
        view = DeviceView(d.device_id, d.kind, d.expected_interval_s, online, seen, d.created_at)
        devices.setdefault(d.resident_id, []).append((d.pk, view))
    out: list[Subject] = []
    for rid in sorted(wanted):
        r = residents.get(rid)
        if r is None or r.profile is None:
            continue
        out.append(
            Subject(
                rid,
                r.profile if r.active else DISABLED,
                r.level,
                baselines.get(rid, {}),
                devices.get(rid, []),
                r.district_id,
            )
        )
    return out


def assess_all(
    subjects: Sequence[Subject], context: Context, now: dt.datetime, rules: Rules = DEFAULT_RULES
) -> list[Assessment]:
    """The pure part: no I/O, so the ingestion path runs it while the database works."""
    return [_assess(s, context, now, rules) for s in subjects]


def assess_unless_none(
    subjects: Sequence[Subject],
    context: Context,
    dues: Mapping[tuple[str, Channel], dt.datetime | None],
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
) -> list[Assessment | None]:
    """As :func:`assess_all`, but None for a subject whose level is none and who is sure to
    stay none with no device issue (:func:`anbu.domain.risk.grades_none`, from the channels'
    due times ``dues``): nothing would be recorded for them.

    Why: a carrier's daily feed touches thousands of residents per batch, nearly all of them
    living a normal day; grading each in full (evidence per channel, the Korean explanation)
    was a fifth of that path's time, for verdicts that change nothing.
    """
    out: list[Assessment | None] = []
    for s in subjects:
        if s.level is Level.NONE and grades_none(
            s.profile,
            s.baselines,
            {c: dues[(s.resident_id, c)] for c in s.baselines if (s.resident_id, c) in dues},
            [v for _, v in s.devices],
            now,
            rules,
        ):
            out.append(None)
        else:
            out.append(_assess(s, context, now, rules))
    return out


def _assess(s: Subject, context: Context, now: dt.datetime, rules: Rules) -> Assessment:
    return assess(
        s.profile,
        s.baselines,
        [v for _, v in s.devices],
        context.holds.get(s.resident_id, ()),
        now,
        rules,
        context.strict_low.get(s.district_id, _NO_CHANNELS),
    )


_NO_CHANNELS: frozenset[Channel] = frozenset()


def _explain_later(s: Subject, context: Context, now: dt.datetime, rules: Rules) -> str:
    return _assess(s, context, now, rules).explanation


async def act(
    session: AsyncSession,
    subjects: Sequence[Subject],
    assessments: Sequence[Assessment | None],
    context: Context,
    now: dt.datetime,
    rules: Rules = DEFAULT_RULES,
) -> list[Evaluation]:
    """Record what changed: new levels (opening check-ins) and new device tasks. A resident
    whose level stayed and whose devices have no new issue costs no statement; one not graded
    (a None assessment: sure to stay none) costs nothing at all.

    Levels move by compare-and-set, all in one statement: another evaluation (the sweep, a
    concurrent batch) may have graded a resident since their level was read. Then theirs stands
    and ours is dropped: the next event or sweep grades again from the stored state.
    """
    graded = [(i, a) for i, a in enumerate(assessments) if a is not None]
    changes = [
        (subjects[i].resident_id, subjects[i].level, a.level)
        for i, a in graded
        if a.level is not subjects[i].level
    ]
    moved = await (await bulk_store(session)).set_levels(changes, now) if changes else set()
    with collector_paused():
        out = _not_graded(subjects, context, now, rules)
    for i, a in graded:
        out[i] = await _act(session, subjects[i], a, moved, context.open_tasks, now)
    return out


def _not_graded(
    subjects: Sequence[Subject], context: Context, now: dt.datetime, rules: Rules
) -> list[Evaluation]:
    """Every subject as one not graded: level none, the explanation made only if read. Made for
    all (thousands, in a carrier's batch) in one synchronous pass; the graded few are replaced."""
    none = Level.NONE
    partial = functools.partial
    return [
        Evaluation(s.resident_id, none, none, partial(_explain_later, s, context, now, rules))
        for s in subjects
    ]


async def _act(
    session: AsyncSession,
    s: Subject,
    a: Assessment,
    moved: set[str],
    open_tasks: set[str],
    now: dt.datetime,
) -> Evaluation:
    rid = s.resident_id
    previous = s.level
    checkin_id: str | None = None
    created = False
    if a.level is not previous:
        if rid not in moved:
            log.info("resident %s was graded meanwhile; this evaluation is not recorded", rid)
            return Evaluation(rid, a.level, a.level, a.explanation)
        record = RiskAssessment(
            resident_id=rid,
            level=a.level,
            previous_level=previous,
            evidence=a.evidence(),
            explanation=a.explanation,
            assessed_at=now,
        )
        if a.level.opens_checkin and a.level.rank > previous.rank:
            resident = await session.get(Resident, rid)
            assert resident is not None  # FK
            checkin, created = await open_checkin(
                session,
                resident,
                source=CheckinSource.SIGNAL,
                reason=a.explanation,
                now=now,
                priority=a.level.priority,
            )
            checkin_id = record.checkin_id = checkin.id
            log.info(
                "resident %s risk %s -> %s: check-in %s (%s)",
                rid,
                previous.value,
                a.level.value,
                checkin.id,
                "opened" if created else "joined",
            )
        session.add(record)
    tasks = 0
    pk_by_device = {v.device_id: pk for pk, v in s.devices}
    for issue in a.device_issues:
        pk = pk_by_device.get(issue.device_id)
        if pk is None or pk in open_tasks:
            continue
        session.add(
            DeviceTask(
                device_pk=pk,
                resident_id=rid,
                kind=issue.kind,
                status=TaskStatus.OPEN,
                detail=issue.describe(),
                opened_at=now,
            )
        )
        open_tasks.add(pk)
        tasks += 1
        log.info("resident %s: device task for %s (%s)", rid, issue.device_id, issue.kind)
    return Evaluation(rid, a.level, previous, a.explanation, checkin_id, created, tasks)
