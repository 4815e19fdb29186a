"""Signal ingestion: validate against the registry, store idempotently, update baselines, evaluate.

One call handles one batch (thousands of events). Per-item problems come back as
``ItemError(index, reason)``; every accepted event is committed even when others in the batch
were refused. Storing is ``INSERT ... ON CONFLICT (source, event_id) DO NOTHING RETURNING`` on
both backends, and only the rows that insert move baselines, so a resent batch changes nothing.
Event ids and device ids are namespaced per district (:func:`stored_event_id`,
:func:`visible_devices`): two districts may send the same ids without meeting.

The per-event work (storing, baselines, device liveness) goes through :mod:`anbu.risk.bulk`:
a few statements per batch straight to the driver, whatever the batch size.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models_signals import DeviceTask, SignalState
from anbu.domain.risk import (
    DEFAULT_RULES,
    Assessment,
    Baseline,
    Channel,
    DeviceView,
    Rules,
    SignalKind,
    TaskStatus,
    consent_scope,
    observe,
    stale_due_at,
    status_due_at,
)
from anbu.risk.bulk import (
    BulkStore,
    DeviceRow,
    DeviceUpdate,
    DuplicateEvents,
    ResidentRow,
    SignalRow,
    StateRow,
    StoredStates,
    bulk_store,
)
from anbu.risk.evaluate import Context, Evaluation, Subject, act, assess_unless_none, subjects_of
from anbu.risk.feedback import strict_low_by_district
from anbu.risk.gcpause import collector_paused
from anbu.risk.schemas import SignalEventIn

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ItemError:
    index: int
    reason: str


@dataclass(slots=True)
class IngestReport:
    accepted: int = 0  # stored now
    duplicates: int = 0  # already stored (same district, source and event_id): nothing changed
    errors: list[ItemError] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)


async def ingest(
    session: AsyncSession,
    items: Sequence[tuple[int, SignalEventIn]],
    *,
    now: dt.datetime,
    can_see: Callable[[int], bool] = lambda _d: True,
    rules: Rules = DEFAULT_RULES,
    evaluate: bool = True,
) -> IngestReport:
    """Store a batch of validated events (``(index, event)`` pairs) and act on them.

    ``can_see(district_id)`` scopes the batch to the caller's districts: a device or resident of
    another district is reported as unknown. Commits twice: the events with their baselines,
    then what the grading changed (so a failure there never loses events: the residents are
    marked due instead, and the next sweep grades them).
    The evaluation grades the touched residents from what this batch already holds in memory
    (profiles, the folded baselines, devices with their new liveness): reading it all back
    would cost more than storing the events.
    """
    report = IngestReport()
    store = await bulk_store(session)
    # The senders are locked as they are read (a batch's owners are among them), so their
    # baselines can be read next without a statement of their own to lock them.
    device_rows, resident_rows = await store.load_senders(
        sorted({e.device_id for _, e in items if e.device_id}),
        sorted({e.resident_id for _, e in items if e.resident_id}),
        lock=True,
    )
    residents = {r.resident_id: r for r in resident_rows}
    devices, ambiguous = visible_devices(device_rows, residents, can_see)

    with collector_paused():
        rows = _accepted(items, devices, ambiguous, residents, can_see, now, report)

    try:
        stored = await _store(session, store, rows, devices, device_rows, residents, now, rules)
    except DuplicateEvents:
        # Some events were stored before (a resent batch, a redelivered MQTT message): the fast
        # insert failed as a whole. Store again, skipping what is there.
        await session.rollback()  # which released the residents' locks: taken again
        store = await bulk_store(session)
        stored = await _store(
            session, store, rows, devices, device_rows, residents, now, rules, fast=False
        )
    report.accepted = len(stored.rows)
    report.duplicates += len(rows) - len(stored.rows)
    await session.commit()
    if evaluate and stored.rows:
        work = stored.work
        try:
            report.evaluations = await act(
                session, work.subjects, work.assessments, work.context, now, rules
            )
            await session.commit()  # nothing to commit unless a level or a device task changed
        except Exception:
            # The events and baselines are stored; only recording the grades failed (a check-in
            # that could not be opened, say). Make these residents due, so the next sweep
            # grades them again, rather than fail a request whose events are safe.
            log.exception("recording the grades of %d resident(s) failed", len(work.subjects))
            await session.rollback()
            await session.execute(
                update(SignalState)
                .where(SignalState.resident_id.in_([s.resident_id for s in work.subjects]))
                .values(status_due_at=now)
            )
            await session.commit()
            report.evaluations = []
    return report


def _accepted(
    items: Sequence[tuple[int, SignalEventIn]],
    devices: dict[str, DeviceRow],
    ambiguous: set[str],
    residents: dict[str, ResidentRow],
    can_see: Callable[[int], bool],
    now: dt.datetime,
    report: IngestReport,
) -> list[SignalRow]:
    """The events to store, as rows; the others are counted in ``report`` (refused, or sent
    twice in the batch)."""
    rows: list[SignalRow] = []
    seen: set[tuple[str, str]] = set()
    latest_allowed = now + MAX_CLOCK_SKEW
    # Apart from the clock, an event's verdict depends only on who sent which kind: a batch of
    # thousands has a few hundred distinct (device, resident, kind), so each is checked once.
    verdicts: dict[tuple[str | None, str | None, SignalKind], tuple[str | None, str | None]] = {}
    # Likewise a batch has a handful of distinct attribute sets ({"interval_s": 1800}, ...).
    attrs_by_key: dict[tuple[Any, ...], tuple[dict[str, Any] | None, str]] = {}
    for index, e in items:
        if e.at > latest_allowed:
            report.errors.append(ItemError(index, f"timestamp {e.at.isoformat()} is in the future"))
            continue
        who = (e.device_id, e.resident_id, e.kind)
        verdict = verdicts.get(who)
        if verdict is None:
            verdict = verdicts[who] = (
                _check(e, devices, residents, can_see)
                if e.device_id not in ambiguous
                else (f"device id {e.device_id!r} is registered in more than one of your"
                      " districts: send its events with a key of its district", None)
            )  # fmt: skip
        reason, resident_id = verdict
        if reason is not None:
            report.errors.append(ItemError(index, reason))
            continue
        assert resident_id is not None
        key = (e.source, stored_event_id(residents[resident_id].district_id, e.event_id))
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        shape = e.attrs_key()
        attrs = attrs_by_key.get(shape)
        if attrs is None:
            made = e.attrs()
            # As SQLAlchemy's JSON type stores it: Python None is the JSON text 'null'.
            attrs = attrs_by_key[shape] = (made, json.dumps(made))
        rows.append(
            SignalRow(e.source, key[1], resident_id, e.device_id, e.kind, e.at, e.value, *attrs)
        )
    return rows


@dataclass(slots=True)
class _Work:
    """What a batch does to its residents, computed while the database stores the events."""

    states: list[StateRow]
    texts: list[tuple[bytes, bytes]]  # the states' hourly profiles and rings, packed
    updates: list[DeviceUpdate]
    recovered: list[str]  # devices whose open tasks are resolved
    subjects: list[Subject]
    assessments: list[Assessment | None]  # None: sure to stay none, not graded
    context: Context


@dataclass(slots=True)
class _Stored:
    rows: list[SignalRow]  # the events that went in (the others were stored already)
    work: _Work


async def _store(
    session: AsyncSession,
    store: BulkStore,
    rows: list[SignalRow],
    devices: dict[str, DeviceRow],
    device_rows: Sequence[DeviceRow],
    residents: dict[str, ResidentRow],
    now: dt.datetime,
    rules: Rules,
    *,
    fast: bool = True,
) -> _Stored:
    """Store the events that are new, fold exactly those into baselines and device liveness,
    and grade their residents.

    ``fast``: :func:`ingest`'s first try, which locked the residents as it read them and
    stores the events the fast way; otherwise (after a rollback) the residents are locked
    here and the events stored skipping those stored before.

    The events go to the database first; while it stores them, the baselines, device
    liveness and the residents' grades are computed here (for all the rows: usually every
    event of a batch is new; on the slow path they are computed again if some were not).
    """
    if not rows:
        return _Stored([], _nothing())
    owners = sorted({r.resident_id for r in rows})
    # Baselines are read-modify-write: two batches for one resident (API and MQTT at once) must
    # not interleave, so the residents are locked before their baselines are read.
    if not fast:
        await store.lock_residents(owners)
    stored = await store.load_states(owners)
    context = Context(*await store.load_context(owners, now), await strict_low_by_district(session))
    inserting = asyncio.create_task(store.insert_events(rows, now, fast=fast))
    await asyncio.sleep(0)  # let the insert reach the database before the CPU-bound work
    try:
        with collector_paused():
            work = _compute(rows, stored, devices, device_rows, residents, context, now, rules)
    except BaseException:
        await asyncio.wait([inserting])  # the connection must be idle before the rollback
        raise
    new_rows = await inserting
    if len(new_rows) < len(rows):
        with collector_paused():
            work = _compute(new_rows, stored, devices, device_rows, residents, context, now, rules)
    if not new_rows:
        return _Stored([], _nothing())
    await store.save_states(work.states, work.texts, now)
    await store.update_devices(work.updates)
    if work.recovered:
        await session.execute(
            update(DeviceTask)
            .where(DeviceTask.device_pk.in_(work.recovered), DeviceTask.status == TaskStatus.OPEN)
            .values(status=TaskStatus.RESOLVED, resolved_at=now, resolution="device reported again")
        )
        log.info("%d device(s) reported again; their open tasks were resolved", len(work.recovered))
        context.open_tasks.difference_update(work.recovered)
    return _Stored(new_rows, work)


def _nothing() -> _Work:
    return _Work([], [], [], [], [], [], Context({}, set()))


def _compute(
    rows: list[SignalRow],
    stored: StoredStates,
    devices: dict[str, DeviceRow],
    device_rows: Sequence[DeviceRow],
    residents: dict[str, ResidentRow],
    context: Context,
    now: dt.datetime,
    rules: Rules,
) -> _Work:
    """Everything a batch changes, without I/O.

    Why in this process, not spread over worker processes (one of issue 15's candidates):
    measured on a carrier's batch (5,000 events, 4,300 baselines), this takes ~68 ms of CPU,
    while handing it to another process would cost this one ~34 ms to pickle the inputs and
    ~21 ms to unpickle the result (states, packed rows, subjects), and the worker ~64 ms more:
    this process would save a fifth of its time and the machine spend twice the CPU, on 2
    cores that PostgreSQL needs too.
    """
    baselines = stored.baselines()
    states = _fold(rows, baselines, residents, rules)
    texts = [stored.packed(s) for s in states]
    updates, recovered = _liveness(rows, devices, now, rules)
    subjects = subjects_of(
        {r.resident_id for r in rows},
        residents,
        device_rows,
        baselines,
        {u.pk: u for u in updates},
    )
    dues = stored.due_times()
    dues.update({(s.resident_id, s.baseline.channel): s.status_due_at for s in states})
    return _Work(
        states,
        texts,
        updates,
        recovered,
        subjects,
        assess_unless_none(subjects, context, dues, now, rules),
        context,
    )


# --- ids are namespaced per district (two districts may send the same event or device id) ---


def stored_event_id(district_id: int, event_id: str) -> str:
    """How an event id is stored: qualified by its resident's district, so ``(source, event_id)``
    deduplicates within a district only. Another district that happens to send the same id is
    neither dropped as a duplicate nor told that we sent it. (Kept out of the bulk store's
    statements, which stay as they are: the id they see is already qualified.)"""
    return f"{district_id}/{event_id}"


def visible_devices(
    device_rows: Sequence[DeviceRow],
    residents: dict[str, ResidentRow],
    can_see: Callable[[int], bool],
) -> tuple[dict[str, DeviceRow], set[str]]:
    """The devices the caller may address, by device id, and the ids used in more than one of
    the caller's districts (which one is meant cannot be told from the id alone). Another
    district's device of the same id is left out, so it answers "unknown device"."""
    out: dict[str, DeviceRow] = {}
    ambiguous: set[str] = set()
    for d in device_rows:
        owner = residents.get(d.resident_id)
        if owner is None or not can_see(owner.district_id):
            continue
        if d.device_id in out:
            ambiguous.add(d.device_id)
        out[d.device_id] = d
    return out, ambiguous


def _check(
    e: SignalEventIn,
    devices: dict[str, DeviceRow],
    residents: dict[str, ResidentRow],
    can_see: Callable[[int], bool],
) -> tuple[str | None, str | None]:
    """Why an event from this sender, of this kind, cannot be accepted (None when it can), and
    whose it is. The clock is checked by the caller."""
    resident_id = e.resident_id
    if e.device_id is not None:
        d = devices.get(e.device_id)
        owner = residents.get(d.resident_id) if d is not None else None
        if d is None or owner is None or not can_see(owner.district_id):
            return f"unknown device {e.device_id!r}", None
        if not d.active:
            return f"device {e.device_id!r} is deregistered", None
        if e.kind not in d.kind.kinds:
            return f"a {d.kind.value} device cannot report {e.kind.value} events", None
        if resident_id is not None and resident_id != d.resident_id:
            return f"device {e.device_id!r} does not belong to resident {resident_id}", None
        resident_id = d.resident_id
    assert resident_id is not None  # the schema requires one of the two
    r = residents.get(resident_id)
    if r is None or not can_see(r.district_id):
        return f"unknown resident {resident_id!r}", None
    if r.profile is None:
        return f"resident {resident_id} has no monitoring profile (consent not recorded)", None
    channel = e.kind.channel
    if channel is not None and not r.profile.accepts(channel):
        scope = consent_scope(channel).value
        return (
            f"resident {resident_id} is not monitored on {channel.value} "
            f"(tier {r.profile.tier.value}, consent {scope} needed)"
        ), None
    return None, resident_id


def _fold(
    rows: list[SignalRow],
    baselines: dict[str, dict[Channel, Baseline]],
    residents: dict[str, ResidentRow],
    rules: Rules,
) -> list[StateRow]:
    """Fold the events into their residents' baselines (in place, adding the channels seen for
    the first time), in time order per channel."""
    # Runs per event and per touched baseline (4,000 of them in a batch of a carrier's feed):
    # lookups are hoisted, and a channel with one event (the usual case there) is not sorted.
    by_key: dict[tuple[str, Channel], list[SignalRow]] = {}
    kind_channel = _KIND_CHANNEL
    for r in rows:
        channel = kind_channel[r.kind]
        if channel is not None:
            key = (r.resident_id, channel)
            events = by_key.get(key)
            if events is None:
                by_key[key] = [r]
            else:
                events.append(r)
    out: list[StateRow] = []
    append = out.append
    for (rid, channel), events in by_key.items():
        mine = baselines.get(rid)
        if mine is None:
            mine = baselines[rid] = {}
        b = mine.get(channel)
        if b is None:
            b = mine[channel] = Baseline(channel)
        if len(events) > 1:
            events.sort(key=_at)
        for r in events:
            observe(b, r.kind, r.at, r.value, r.attrs, rules)
        profile = residents[rid].profile
        assert profile is not None  # events are accepted only with a profile
        append(StateRow(rid, b, status_due_at(b, profile.window_h, rules)))
    return out


_KIND_CHANNEL = {k: k.channel for k in SignalKind}


def _at(r: SignalRow) -> dt.datetime:
    return r.at


def _liveness(
    rows: list[SignalRow],
    devices: dict[str, DeviceRow],
    now: dt.datetime,
    rules: Rules,
) -> tuple[list[DeviceUpdate], list[str]]:
    """What the events say about their devices: the updates, and which devices came back."""
    latest: dict[str, SignalRow] = {}
    for r in rows:
        did = r.device_id
        if did is not None and (did not in latest or r.at >= latest[did].at):
            latest[did] = r
    updates: list[DeviceUpdate] = []
    recovered: list[str] = []
    for did, r in latest.items():
        d = devices[did]
        seen = max(d.last_seen_at, r.at) if d.last_seen_at else r.at
        if d.last_seen_at is not None and r.at < d.last_seen_at:
            continue  # a late event says nothing new about liveness
        online = not (r.kind == SignalKind.HEARTBEAT and (r.attrs or {}).get("online") is False)
        was_down = DeviceView(
            d.device_id, d.kind, d.expected_interval_s, d.online, d.last_seen_at, d.created_at
        ).issue(now, rules)
        if was_down is not None and online:
            recovered.append(d.pk)
        due = stale_due_at(seen, d.expected_interval_s, rules) if online else now
        updates.append(DeviceUpdate(d.pk, seen, online, due))
    return updates, recovered
