"""The durable SMS outbox: store first, then send, exactly once as far as a gateway allows.

Life of a row (``sms_outbox``)::

    pending --claim (CAS)--> sending --accepted--> sent
       ^                        |  \\--refused by every provider / attempts used up--> failed
       |-- retryable error -----+
    pending --incident acknowledged first--> cancelled

- **Stored before sent.** :func:`enqueue` adds the row in the caller's transaction (the
  incident and its first message commit together), so a crash after the commit loses nothing.
- **Claimed by compare-and-set.** ``UPDATE ... SET status='sending', claim_token=T WHERE
  id=:id AND status='pending'``: one worker wins, on SQLite and PostgreSQL alike.
- **Sent with its reference** as the idempotency key (Kannel dlr-url, Solapi customFields,
  webhook Idempotency-Key), **marked sent** after the provider's answer
  (``... WHERE status='sending' AND claim_token=T``), in a transaction shared with the other
  sends that ended meanwhile (:class:`GroupCommit`); the caller hears "sent" only after it.
- **Retried with backoff** (doubling, capped); after ``failover_after`` attempts on one
  provider the next ones go to the other provider and back; a provider that refuses a message
  (non-retryable) is not asked again for it.
- **Delivery reports** only move forward: accepted < buffered < final. A late "accepted"
  never overwrites "delivered".

**The crash window, and the choice made.** Kannel's sendsms has no idempotency: if the
process dies after Kannel accepted a message and before ``sent`` is committed, the row stays
``sending``. After ``sending_lease_s`` (longer than the provider timeout and Kannel's callback
retry window) recovery looks for a delivery report with the row's reference: any report
proves the gateway had it -> ``sent`` (no resend). Without one, the row goes back to
``pending`` and is sent again: **at-least-once**. Losing an alert about a person who may be
lying on the floor is worse than an official getting the same SMS twice. The remaining
double-send window is "died within milliseconds after the gateway's accept, AND no report
arrived within the lease" - which needs the SMSC link to be down at the same moment (Kannel
then queues without reporting). Solapi and the webhook carry the reference, so their side can
drop the duplicate. The burst design below changes none of this: a row is ``sending`` from its
claim until its mark "sent" commits, whatever batch that commit is in.

**The alert burst (issue 15), and why this design won.** 1,000 cases closing at once
(bench/escalation.py, PostgreSQL, same machine): 31.9 alerts/s and 14.3 ms of this process's
CPU per alert before (2026-12-04, load 5.5-7.4); 147.7 alerts/s and 4.1 ms after (2026-12-05,
load ~3-4.5; 5.1 ms on SQLite), exactly once, every delivery report stored. What the CPU went
to, and what replaced it, measured step by step at load ~11 on the shared machine:

- incident openings through the ORM, 13 statements each: set-based, one query per kind of row
  and one insert per table per batch (``EscalationService._open_many``): the 1,000 openings
  took 4.7-6.6 s instead of 30-38 s;
- httpcore's import of the absent ``sniffio`` on every lock (a failed import is a path search,
  ~155 us, ~7 per request): installed; FastAPI running the app's access-log dependency for each
  delivery report (rebuilt per request while a ``dependency_overrides`` entry exists): the
  report route is a plain Starlette route (escalation.api.kannel_dlr); marks "sent" and
  delivery reports one UPDATE per batch (each row's values by CASE). With the openings:
  25.1 -> 22.8 alerts/s, 15.1 -> 10.8 ms per alert;
- a send held its slot until its mark "sent" committed, and batches stayed at 1-2 items: the
  slot is freed when the provider answers, and marks and reports wait up to 20 ms for company
  while another batch runs: 22.8 -> 41.9 alerts/s, 10.8 -> 7.4 ms;
- claims of four at a time, waited on by the sends: a queue refilled ~50 at a time by a claim
  in the background (:meth:`OutboxWorker.run`): 6,800 -> 1,650 statements per 1,000 alerts,
  41.9 -> 90.7 alerts/s, 7.4 -> 5.5 ms at that load.

Then the HTTP around it: the report route matched before every router, uvicorn on httptools,
our POST over :mod:`escalation.http11` instead of httpx, and the hot UPDATEs' id lists as
``= ANY(array)`` on PostgreSQL (:func:`_among`): 8.5-8.7 -> 3.6-4.1 ms per alert, 47-54 ->
80-100 alerts/s (main and this back to back, load 6.1-6.7). Still short of the issue's aim
(>= 200/s, half the bare loop, which now posts through the same client and reaches
1,200-2,100/s): what is left is per statement and per transaction (SQLAlchemy, the session,
BEGIN and COMMIT of each batch), ~1.2 statements and ~0.25 transactions per alert.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import enum
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NotRequired, TypedDict, TypeVar, Unpack

from sqlalchemy import (
    ARRAY,
    CursorResult,
    Executable,
    any_,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models_escalation import Incident, IncidentEvent, OutboxMessage
from anbu.db.outage import report_failure
from anbu.domain.incidents import DeliveryStatus, IncidentEventKind, IncidentStatus, OutboxStatus
from anbu.domain.phone import mask_phone
from anbu.domain.retry import doubling_backoff
from anbu.domain.sms_text import OutgoingSms, SendReceipt, SmsKind
from anbu.errors import SmsError, ValidationError
from anbu.ports import Clock, SmsSender, SystemClock
from anbu.services import webhooks
from escalation.dlr import DeliveryReport

if TYPE_CHECKING:
    from anbu.settings import Settings

log = logging.getLogger(__name__)

_RANK: dict[DeliveryStatus, int] = {
    DeliveryStatus.ACCEPTED: 1,
    DeliveryStatus.BUFFERED: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.UNDELIVERABLE: 3,
    DeliveryStatus.REJECTED: 3,
}


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    batch: int = 50
    concurrency: int = 8
    poll_interval_s: float = 0.5
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    failover_after: int = 2
    max_attempts: int = 200
    sending_lease_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxConfig:
        esc = settings.escalation
        if esc.sending_lease_s <= settings.sms.timeout_s:
            raise ValidationError(
                "ANBU_ESCALATION__SENDING_LEASE_S must exceed ANBU_SMS__TIMEOUT_S: a live send "
                "would otherwise be taken for a crashed one and sent twice"
            )
        return cls(
            batch=esc.outbox_batch,
            concurrency=esc.outbox_concurrency,
            poll_interval_s=esc.outbox_poll_interval_s,
            retry_initial_s=esc.retry_initial_s,
            retry_max_s=esc.retry_max_s,
            failover_after=esc.failover_after,
            max_attempts=esc.max_attempts,
            sending_lease_s=esc.sending_lease_s,
        )

    def backoff(self, attempts: int) -> dt.timedelta:
        return doubling_backoff(self.retry_initial_s, self.retry_max_s, attempts)


def choose_provider(
    names: Sequence[str], attempt_no: int, refused: set[str], failover_after: int
) -> str | None:
    """The provider for attempt ``attempt_no`` (1-based): ``failover_after`` attempts on one,
    then the next, round the list; providers that refused the message are skipped."""
    usable = [n for n in names if n not in refused]
    if not usable:
        return None
    return usable[((attempt_no - 1) // failover_after) % len(usable)]


def _refused(row_value: str) -> set[str]:
    return {n for n in row_value.split(",") if n}


class MessageFields(TypedDict):
    """One message to send, as :func:`enqueue` and :func:`outbox_values` take it."""

    reference: str
    to: str
    sender: str
    text: str
    kind: SmsKind
    subject: str | None
    now: dt.datetime
    incident_id: NotRequired[str | None]
    official_id: NotRequired[str | None]
    priority: NotRequired[int]
    ack_timeout_s: NotRequired[int | None]
    message_id: NotRequired[str | None]


def enqueue(session: AsyncSession, **fields: Unpack[MessageFields]) -> OutboxMessage:
    """Store one message to send (validated now: a message that cannot be built never lands in
    the outbox). The caller commits; wake the worker after the commit."""
    row = OutboxMessage(**outbox_values(**fields))
    session.add(row)
    return row


def outbox_values(**fields: Unpack[MessageFields]) -> dict[str, Any]:
    """The columns of one message to send, validated now (see :func:`enqueue`): for a Core
    insert of many rows at once (incident openings in a burst)."""
    reference, to, text = fields["reference"], fields["to"], fields["text"]
    sender, kind, subject = fields["sender"], fields["kind"], fields["subject"]
    now = fields["now"]
    OutgoingSms(reference, to, sender, text, kind, subject)  # raises on a malformed message
    return {
        "id": fields.get("message_id") or uuid.uuid4().hex,
        "reference": reference,
        "incident_id": fields.get("incident_id"),
        "official_id": fields.get("official_id"),
        "to": to,
        "sender": sender,
        "kind": kind,
        "subject": subject,
        "text": text,
        "priority": fields.get("priority", 0),
        "ack_timeout_s": fields.get("ack_timeout_s"),
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "refused_by": "",
        "created_at": now,
    }


async def log_event(
    session: AsyncSession,
    incident_id: str,
    kind: IncidentEventKind,
    at: dt.datetime,
    *,
    message_id: str | None = None,
    official_id: str | None = None,
    detail: str = "",
) -> None:
    """One line of the incident log, written now (Core insert: this is on the hot path).
    The integrator's webhook hears the steps and acknowledgements, in the same transaction."""
    await execute_core(
        session,
        insert(IncidentEvent).values(
            incident_id=incident_id,
            kind=kind,
            at=at,
            message_id=message_id,
            official_id=official_id,
            detail=detail,
        ),
    )
    await webhooks.incident_event(
        session, incident_id, kind, at, official_id=official_id, detail=detail
    )


async def execute_core(
    session: AsyncSession, statement: Executable, params: list[dict[str, Any]] | None = None
) -> CursorResult[Any]:
    """Run a statement on the session's connection, past the ORM's bookkeeping: the hot
    paths (claims, sends, reports) spent most of their CPU there. ``params``: many rows."""
    conn = await session.connection()
    return await conn.execute(statement, params)


@dataclass(frozen=True, slots=True)
class _Msg:
    """The columns the incident bookkeeping needs (from RETURNING, not an ORM load)."""

    id: str
    incident_id: str | None
    official_id: str | None
    to: str
    provider: str | None
    ack_timeout_s: int | None


_MSG_COLUMNS = (
    OutboxMessage.id,
    OutboxMessage.incident_id,
    OutboxMessage.official_id,
    OutboxMessage.to,
    OutboxMessage.provider,
    OutboxMessage.ack_timeout_s,
)


def _msg(row: Any) -> _Msg:
    return _Msg(row[0], row[1], row[2], row[3], row[4], row[5])


def _orm_msg(row: OutboxMessage) -> _Msg:
    return _Msg(row.id, row.incident_id, row.official_id, row.to, row.provider, row.ack_timeout_s)


async def _start_ack_clock(session: AsyncSession, msg: _Msg, sent_at: dt.datetime) -> None:
    """The gateway has the alert: its recipient's acknowledgement clock starts now."""
    if msg.incident_id is None:
        return
    await log_event(
        session,
        msg.incident_id,
        IncidentEventKind.SENT,
        sent_at,
        message_id=msg.id,
        official_id=msg.official_id,
        detail=msg.provider or "",
    )
    if msg.ack_timeout_s is None:
        return
    await execute_core(
        session,
        update(Incident)
        .where(
            Incident.id == msg.incident_id,
            Incident.current_message_id == msg.id,
            Incident.status == IncidentStatus.OPEN,
            Incident.ack_due_at.is_(None),
        )
        .values(ack_due_at=sent_at + dt.timedelta(seconds=msg.ack_timeout_s))
        .execution_options(synchronize_session=False),
    )


async def _start_ack_clocks(session: AsyncSession, sent: list[tuple[_Msg, dt.datetime]]) -> None:
    """:func:`_start_ack_clock` for many messages: one insert of their log lines, one UPDATE
    of their incidents (each its own due time, by CASE on the incident's id)."""
    told = [(m, at) for m, at in sent if m.incident_id is not None]
    if not told:
        return
    await _log_events(
        session, IncidentEventKind.SENT, [(m, at, m.provider or "") for m, at in told]
    )
    due = {
        m.incident_id: at + dt.timedelta(seconds=m.ack_timeout_s)
        for m, at in told
        if m.ack_timeout_s is not None and m.incident_id is not None
    }
    if not due:
        return
    pairs = [(m.incident_id, m.id) for m, _ in told if m.incident_id in due]
    await execute_core(
        session,
        update(Incident)
        .where(
            tuple_(Incident.id, Incident.current_message_id).in_(pairs),
            Incident.status == IncidentStatus.OPEN,
            Incident.ack_due_at.is_(None),
        )
        .values(ack_due_at=_case(Incident.id, Incident.ack_due_at, due))
        .execution_options(synchronize_session=False),
    )


async def _log_events(
    session: AsyncSession, kind: IncidentEventKind, rows: list[tuple[_Msg, dt.datetime, str]]
) -> None:
    """:func:`log_event` for many messages of incidents: one insert of their log lines, then
    the integrator's webhook (a no-op unless it hears ``kind``; "sent" and "delivered": not
    today). ``rows``: (message, at, detail)."""
    await execute_core(
        session,
        insert(IncidentEvent),
        [
            {
                "incident_id": m.incident_id,
                "kind": kind,
                "at": at,
                "message_id": m.id,
                "official_id": m.official_id,
                "detail": detail,
            }
            for m, at, detail in rows
        ],
    )
    for m, at, detail in rows:
        assert m.incident_id is not None
        await webhooks.incident_event(
            session, m.incident_id, kind, at, official_id=m.official_id, detail=detail
        )


def _case(key: Any, column: Any, values: dict[Any, Any]) -> Any:
    """``column``'s new value per row, chosen by ``key`` (CASE key WHEN ... THEN ...), each
    bound with the column's own type (UtcDateTime stores UTC on SQLite); one plain value
    when they are all the same."""
    distinct = set(values.values())
    if len(distinct) == 1:
        return literal(distinct.pop(), column.type)
    return case({k: literal(v, column.type) for k, v in values.items()}, value=key)


def _per_row(key: Any, column: Any, receipts: dict[str, SendReceipt], field: str) -> Any:
    return _case(key, column, {i: getattr(r, field) for i, r in receipts.items()})


async def _among(session: AsyncSession, column: Any, values: Sequence[str]) -> Any:
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``: one statement text for
    any number of values, compiled once and cached, where an IN list is rendered again on
    every execution, one cast parameter per value (the burst's batches are 1-100 rows)."""
    if (await session.connection()).dialect.name != "postgresql":
        return column.in_(values)
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))


async def _in_id_order(session: AsyncSession, query: Any) -> Any:
    """``query`` locking its outbox rows in id order (see :func:`_lock_in_id_order`)."""
    if (await session.connection()).dialect.name == "sqlite":
        return query
    return query.order_by(OutboxMessage.id).with_for_update()


async def _lock_in_id_order(session: AsyncSession, where: Any) -> None:
    """Lock the batch's outbox rows in id order before a set-based UPDATE (PostgreSQL; SQLite
    has one writer anyway): an UPDATE ... IN locks in the order it scans, which differs
    between the marked-sent batch (by id) and a delivery-report batch (by reference), and
    the two race for the same rows (Kannel's "accepted" report comes with its HTTP answer).
    Two batches that lock in different orders can deadlock; one order cannot."""
    if (await session.connection()).dialect.name == "sqlite":
        return
    await execute_core(
        session,
        select(OutboxMessage.id).where(where).order_by(OutboxMessage.id).with_for_update(),
    )


async def _move_chain_on(session: AsyncSession, msg: _Msg, at: dt.datetime, why: str) -> None:
    """The alert cannot reach its recipient: tell the next step at the next tick."""
    if msg.incident_id is None:
        return
    await log_event(
        session,
        msg.incident_id,
        IncidentEventKind.FAILED,
        at,
        message_id=msg.id,
        official_id=msg.official_id,
        detail=why[:500],
    )
    await execute_core(
        session,
        update(Incident)
        .where(
            Incident.id == msg.incident_id,
            Incident.current_message_id == msg.id,
            Incident.status == IncidentStatus.OPEN,
        )
        .values(ack_due_at=at)
        .execution_options(synchronize_session=False),
    )


T = TypeVar("T")
R = TypeVar("R")

# Items written in one transaction at most.
GROUP_MAX = 100
# Batches of one GroupCommit in flight at once.
GROUP_PARALLEL = 4
# How long a batch waits for more items when fewer than GROUP_MAX wait (marked sent,
# delivery reports: nobody is held up by it; see OutboxWorker._send).
GROUP_LINGER_S = 0.02


class GroupCommit(Generic[T, R]):
    """Runs ``work(session, item)`` for every item waiting, in ONE transaction, and answers
    each caller only after the commit: so nothing is acknowledged (an HTTP 200 to Kannel, a
    row marked sent) before it is durable, while a burst pays one session and one commit per
    batch instead of one per item.

    Why: in a burst of 1,000 alerts each message is marked sent once and gets two delivery
    reports, and a session with its own commit each was most of the CPU spent per alert
    (bench/escalation.py). If the batch fails, it is rolled back and its items are retried
    one per transaction, so one bad item cannot fail the others.

    Up to ``parallel`` batches run at once, each on its own connection. With one batch at a
    time every statement of a burst waited for the one before it: on a loaded PostgreSQL
    (round trips of several ms) that pipeline, not the CPU, bounded the burst (burst 41 ->
    8.6 msg/s when group commits came in). Batches lock rows in one order (``order``), so
    two of them cannot deadlock.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        work: Callable[[AsyncSession, T], Awaitable[R]] | None,
        name: str,
        order: Callable[[T], str],
        parallel: int = GROUP_PARALLEL,
        *,
        batch_work: Callable[[AsyncSession, list[T]], Awaitable[list[R]]] | None = None,
        linger_s: float = 0.0,
    ) -> None:
        """``work`` handles one item; ``batch_work`` (instead) all of a batch at once, in
        ``order``, answering one result per item: set-based statements, one per table per
        batch rather than one per item."""
        if (work is None) == (batch_work is None):
            raise ValueError("GroupCommit needs exactly one of work and batch_work")
        self._sessions = sessions
        self._work = work
        self._batch_work = batch_work
        self._linger_s = linger_s
        self._name = name
        self._order = order
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(parallel)
        self._batches: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=self._name)
        return await fut

    async def aclose(self) -> None:
        tasks = [t for t in (self._task, *self._batches) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._batches.clear()

    async def _loop(self) -> None:
        # Ends when nothing waits (submit starts it again): no task outlives the work.
        while not self._queue.empty():
            await self._slots.acquire()
            if self._queue.empty():  # a batch already running took what waited
                self._slots.release()
                return
            if self._linger_s and self._batches and self._queue.qsize() < GROUP_MAX:
                # Busy (another batch is running): let more items join, each batch costs a
                # checkout, a BEGIN and a COMMIT. A lone item goes at once (latency).
                await asyncio.sleep(self._linger_s)
            batch = [self._queue.get_nowait()]
            while not self._queue.empty() and len(batch) < GROUP_MAX:
                batch.append(self._queue.get_nowait())
            task = asyncio.create_task(self._batch(batch), name=f"{self._name}-batch")
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            try:
                results: list[R | BaseException] = list(await self._run(batch))
            except Exception:
                if len(batch) > 1:
                    log.warning(
                        "%s: a batch of %d failed; one by one",
                        self._name,
                        len(batch),
                        exc_info=True,
                    )
                results = []
                for one in batch:
                    try:
                        results += await self._run([one])
                    except Exception as exc:
                        results.append(exc)
            for (_item, fut), outcome in zip(batch, results, strict=True):
                if fut.done():  # the caller was cancelled
                    continue
                if isinstance(outcome, BaseException):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)
        finally:
            self._slots.release()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> list[R]:
        # Rows are locked in one order (``order``: the message's reference) by every batch, so
        # two batches touching the same messages (marked sent / a report) cannot deadlock.
        ranked = sorted(range(len(batch)), key=lambda i: self._order(batch[i][0]))
        out: list[R | None] = [None] * len(batch)
        async with self._sessions() as session:
            if self._batch_work is not None:
                results = await self._batch_work(session, [batch[i][0] for i in ranked])
                for i, result in zip(ranked, results, strict=True):
                    out[i] = result
            else:
                assert self._work is not None
                for i in ranked:
                    out[i] = await self._work(session, batch[i][0])
            await session.commit()
        return out  # type: ignore[return-value]  # every slot was filled


class DeliveryOutcome(enum.StrEnum):
    STORED = "stored"
    IGNORED = "ignored"  # older than what we have (a late "accepted" after "delivered")
    UNKNOWN = "unknown"  # not our reference


async def record_delivery(
    session: AsyncSession, report: DeliveryReport, now: dt.datetime
) -> DeliveryOutcome:
    """Store a delivery report against its message (forward only). The caller commits.
    An unknown reference is answered 2xx all the same: Kannel would retry it forever."""
    return (await record_deliveries(session, [(report, now)]))[0]


async def record_deliveries(
    session: AsyncSession, reports: list[tuple[DeliveryReport, dt.datetime]]
) -> list[DeliveryOutcome]:
    """Store many delivery reports (each forward only), set-based: one UPDATE ... RETURNING
    per report type in the batch, then one insert of the "delivered" log lines. The caller
    commits.

    Reports for the same message are applied in the order given (rounds: a message once per
    round), so "delivered" then a late "accepted" leaves "delivered", as one by one.
    Why set-based: two reports come per alert, and in the 1,000-alert burst one UPDATE, one
    insert and a webhook look-up per report were the largest part of the statements per
    alert (bench/escalation.py)."""
    out: list[DeliveryOutcome | None] = [None] * len(reports)
    pending = list(range(len(reports)))
    # Every row of the batch locked at once, in id order, before any UPDATE (the rounds and
    # report types below would otherwise lock in several steps, and deadlock each other);
    # the same read tells an unknown reference from a report that came too late.
    found: Any = await execute_core(
        session,
        await _in_id_order(
            session,
            select(OutboxMessage.reference, OutboxMessage.delivery).where(
                await _among(
                    session, OutboxMessage.reference, sorted({r.reference for r, _ in reports})
                )
            ),
        ),
    )
    known: dict[str, Any] = dict(found.all())
    events: list[tuple[_Msg, dt.datetime, str]] = []
    while pending:
        round_: dict[str, int] = {}
        later: list[int] = []
        for i in pending:
            ref = reports[i][0].reference
            if ref in round_:
                later.append(i)
            else:
                round_[ref] = i
        pending = later
        by_status: dict[DeliveryStatus, list[int]] = {}
        for i in round_.values():
            by_status.setdefault(reports[i][0].status, []).append(i)
        for status, idx in by_status.items():
            moved = await _store_reports(session, status, [reports[i] for i in idx])
            for i in idx:
                report, now = reports[i]
                msg = moved.get(report.reference)
                if msg is None:
                    continue
                out[i] = DeliveryOutcome.STORED
                if msg.incident_id is not None and status is DeliveryStatus.DELIVERED:
                    kannel_time = f"kannel {report.at:%H:%M:%S}" if report.at else ""
                    events.append((msg, now, kannel_time))
                elif status in (DeliveryStatus.UNDELIVERABLE, DeliveryStatus.REJECTED):
                    log.warning(
                        "SMS %s to %s %s by the network: %s",
                        report.reference,
                        mask_phone(msg.to),
                        report.status,
                        report.detail,
                    )
                    await _move_chain_on(session, msg, now, f"{report.status}: {report.detail}")
    if None in out:
        for i, o in enumerate(out):
            if o is not None:
                continue
            report = reports[i][0]
            if report.reference not in known:
                log.warning(
                    "delivery report %s for unknown SMS %s", report.status, report.reference
                )
                out[i] = DeliveryOutcome.UNKNOWN
            else:
                log.info(
                    "delivery report %s for SMS %s ignored (already %s)",
                    report.status,
                    report.reference,
                    known[report.reference],
                )
                out[i] = DeliveryOutcome.IGNORED
    if events:
        await _log_events(session, IncidentEventKind.DELIVERED, events)
    return [o for o in out if o is not None]


async def _store_reports(
    session: AsyncSession,
    status: DeliveryStatus,
    reports: list[tuple[DeliveryReport, dt.datetime]],
) -> dict[str, _Msg]:
    """One report type for distinct messages: the rows it moved forward, by reference."""
    lower = [s for s, rank in _RANK.items() if rank < _RANK[status]]
    if not status.final:
        lower.append(status)  # buffered after buffered: harmless, keeps the latest time
    # Our own receipt time: Kannel's %T has whole seconds only and would sort the report
    # before the send it reports on. Kannel's time goes into the log's detail.
    at = {report.reference: now for report, now in reports}
    refs = sorted(at)
    when = _case(OutboxMessage.reference, OutboxMessage.delivery_at, at)
    values: dict[str, Any] = {"delivery": status, "delivery_at": when}
    if status is DeliveryStatus.ACCEPTED:
        values["accepted_report_at"] = func.coalesce(OutboxMessage.accepted_report_at, when)
    moved = await execute_core(
        session,
        update(OutboxMessage)
        .where(
            await _among(session, OutboxMessage.reference, refs),
            OutboxMessage.delivery.is_(None) | OutboxMessage.delivery.in_(lower),
        )
        .values(**values)
        .returning(OutboxMessage.reference, *_MSG_COLUMNS)
        .execution_options(synchronize_session=False),
    )
    rows: Any = moved
    return {row[0]: _msg(row[1:]) for row in rows}


async def cancel_pending(session: AsyncSession, incident_id: str) -> int:
    """Drop the incident's messages not yet handed to a provider (it was acknowledged)."""
    result = await execute_core(
        session,
        update(OutboxMessage)
        .where(
            OutboxMessage.incident_id == incident_id,
            OutboxMessage.status == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.CANCELLED),
    )
    return int(result.rowcount)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: str
    reference: str
    provider: str
    attempt_no: int
    message: OutgoingSms
    claimed: float = 0.0  # the event loop's time when claimed (run()'s ready queue)


class OutboxWorker:
    """Sends what the outbox holds: ``run()`` forever (wakes on ``wake()`` or every poll)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        senders: Sequence[SmsSender],
        *,
        config: OutboxConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not senders:
            raise ValidationError("the outbox needs at least one SMS sender")
        names = [s.name for s in senders]
        if len(set(names)) != len(names):
            raise ValidationError(f"SMS senders must differ: {names}")
        self._sessions = sessions
        self._senders = {s.name: s for s in senders}
        self._names = names
        self.config = config or OutboxConfig()
        self._clock = clock or SystemClock()
        self._token = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        # Seen by benchmarks and tests: (reference, accepted at) for each send accepted here.
        self.on_sent: Callable[[str, dt.datetime], None] | None = None
        # Accepted sends are marked sent in shared transactions (a burst's sends end together).
        self._sent: GroupCommit[tuple[_Claimed, SendReceipt], bool] = GroupCommit(
            sessions,
            None,
            "outbox-mark-sent",
            order=lambda sent: sent[0].id,
            batch_work=self._mark_sent,
            linger_s=GROUP_LINGER_S,
        )
        # Sends waiting for the provider's answer (slots in use); their records may wait on.
        self._busy = 0
        # Claimed, not yet sent (run()).
        self._ready: collections.deque[_Claimed] = collections.deque()
        self._enqueued = 0  # wake() calls: one during a claim may have missed its row

    def wake(self) -> None:
        """Something was enqueued: look now rather than at the next poll."""
        self._enqueued += 1
        self._wake.set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # --- claiming ---------------------------------------------------------------------------

    async def _claim(self, limit: int, now: dt.datetime) -> list[_Claimed]:
        """Take up to ``limit`` due rows: select their ids (PostgreSQL: ``FOR UPDATE SKIP
        LOCKED``, so workers do not queue behind each other), then ``UPDATE ... WHERE id IN
        (...) AND status='pending' RETURNING ...``: the status test makes it compare-and-set.

        Two statements on purpose: PostgreSQL may re-run an ``IN (SELECT ... LIMIT n FOR
        UPDATE SKIP LOCKED)`` subquery and then update more than ``n`` rows."""
        due = (
            select(OutboxMessage.id)
            .where(
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.next_attempt_at <= now,
            )
            .order_by(
                OutboxMessage.priority.desc(),
                OutboxMessage.next_attempt_at,
                OutboxMessage.created_at,
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed: list[_Claimed] = []
        async with self._sessions() as session:
            ids = list((await execute_core(session, due)).scalars())
            if not ids:
                await session.commit()
                return claimed
            result = (
                await execute_core(
                    session,
                    update(OutboxMessage)
                    .where(
                        await _among(session, OutboxMessage.id, ids),
                        OutboxMessage.status == OutboxStatus.PENDING,
                    )
                    .values(
                        status=OutboxStatus.SENDING,
                        claim_token=self._token,
                        claimed_at=now,
                        attempts=OutboxMessage.attempts + 1,
                    )
                    .returning(
                        *_MSG_COLUMNS,
                        OutboxMessage.reference,
                        OutboxMessage.sender,
                        OutboxMessage.text,
                        OutboxMessage.kind,
                        OutboxMessage.subject,
                        OutboxMessage.attempts,
                        OutboxMessage.refused_by,
                        OutboxMessage.priority,
                        OutboxMessage.next_attempt_at,
                    )
                    .execution_options(synchronize_session=False),
                )
            ).all()
            # RETURNING has no order: urgent first, then oldest.
            rows = sorted(result, key=lambda r: (-r.priority, r.next_attempt_at))
            for row in rows:
                provider = choose_provider(
                    self._names, row.attempts, _refused(row.refused_by), self.config.failover_after
                )
                try:
                    if provider is None:  # cannot happen: such a row is failed, not pending
                        raise ValidationError("no provider left that has not refused it")
                    message = OutgoingSms(
                        row.reference, row.to, row.sender, row.text, row.kind, row.subject
                    )
                except ValidationError as exc:
                    # Validated at enqueue; a row edited by hand may still be malformed.
                    await execute_core(
                        session,
                        update(OutboxMessage)
                        .where(OutboxMessage.id == row.id)
                        .values(status=OutboxStatus.FAILED, last_error=str(exc))
                        .execution_options(synchronize_session=False),
                    )
                    await _move_chain_on(session, _msg(row), now, str(exc))
                    continue
                claimed.append(_Claimed(row.id, row.reference, provider, row.attempts, message))
            await session.commit()
        return claimed

    # --- sending ----------------------------------------------------------------------------

    async def _send(self, item: _Claimed, sent: Callable[[], None] | None = None) -> None:
        """Send one claimed message and record the answer. ``sent`` is called as soon as the
        provider has answered, before the answer is recorded: the slot it held is free for
        the next message while the record waits for its group commit (the row stays
        ``sending`` until then, which is what recovery expects of a send in flight)."""
        try:
            try:
                receipt = await self._senders[item.provider].send(item.message)
            finally:
                if sent is not None:
                    sent()
        except SmsError as exc:
            await self._failed(item, exc)
            return
        except Exception as exc:
            log.exception("SMS %s via %s: unexpected error", item.reference, item.provider)
            await self._failed(item, SmsError(f"{type(exc).__name__}: {exc}", retryable=True))
            return
        if await self._sent.submit((item, receipt)) and self.on_sent is not None:
            self.on_sent(item.reference, receipt.accepted_at)

    async def _mark_sent(
        self, session: AsyncSession, batch: list[tuple[_Claimed, SendReceipt]]
    ) -> list[bool]:
        """Record accepted sends (compare-and-set on our claim) and start their ack clocks:
        one UPDATE for the batch (each row's own time, provider and id by CASE on its id), one
        insert for their log lines, one UPDATE for their incidents' clocks."""
        receipts = {item.id: receipt for item, receipt in batch}
        ids = sorted(receipts)
        among = await _among(session, OutboxMessage.id, ids)
        await _lock_in_id_order(session, among)
        done = (
            await execute_core(
                session,
                update(OutboxMessage)
                .where(
                    among,
                    OutboxMessage.status == OutboxStatus.SENDING,
                    OutboxMessage.claim_token == self._token,
                )
                .values(
                    status=OutboxStatus.SENT,
                    sent_at=_per_row(
                        OutboxMessage.id, OutboxMessage.sent_at, receipts, "accepted_at"
                    ),
                    provider=_per_row(
                        OutboxMessage.id, OutboxMessage.provider, receipts, "provider"
                    ),
                    provider_message_id=_per_row(
                        OutboxMessage.id,
                        OutboxMessage.provider_message_id,
                        receipts,
                        "provider_message_id",
                    ),
                    last_error=None,
                )
                .returning(*_MSG_COLUMNS)
                .execution_options(synchronize_session=False),
            )
        ).all()
        marked = {row[0]: _msg(row) for row in done}
        await _start_ack_clocks(
            session, [(marked[i], receipts[i].accepted_at) for i in ids if i in marked]
        )
        out = []
        for item, _receipt in batch:
            if item.id not in marked:
                # Recovery took the row back: the lease was shorter than this send took.
                log.error(
                    "SMS %s accepted by %s after its lease ran out: it may go out twice",
                    item.reference,
                    item.provider,
                )
            out.append(item.id in marked)
        return out

    async def _failed(self, item: _Claimed, exc: SmsError) -> None:
        now = self._clock.now()
        async with self._sessions() as session:
            row = await session.get(OutboxMessage, item.id)
            if (
                row is None
                or row.status is not OutboxStatus.SENDING
                or row.claim_token != self._token
            ):
                await session.commit()
                return
            refused = _refused(row.refused_by)
            if not exc.retryable:
                refused.add(item.provider)
            row.refused_by = ",".join(sorted(refused))
            row.last_error = f"{item.provider}: {exc}"[:1000]
            out_of_providers = all(n in refused for n in self._names)
            if out_of_providers or item.attempt_no >= self.config.max_attempts:
                row.status = OutboxStatus.FAILED
                log.error(
                    "SMS %s to %s failed for good after %d attempts: %s",
                    item.reference,
                    mask_phone(row.to),
                    item.attempt_no,
                    exc,
                )
                await _move_chain_on(session, _orm_msg(row), now, row.last_error)
            else:
                row.status = OutboxStatus.PENDING
                # Another provider left to try after a refusal: try it at once.
                delay = (
                    dt.timedelta(0) if not exc.retryable else self.config.backoff(item.attempt_no)
                )
                row.next_attempt_at = now + delay
                log.warning(
                    "SMS %s via %s attempt %d failed (%s); next try in %.1f s",
                    item.reference,
                    item.provider,
                    item.attempt_no,
                    exc,
                    delay.total_seconds(),
                )
            await session.commit()

    # --- crash recovery ---------------------------------------------------------------------

    async def recover(self, now: dt.datetime | None = None) -> int:
        """Resolve rows left ``sending`` past the lease (a crashed worker): a delivery report
        proves the gateway had the message -> ``sent``; none -> ``pending`` (sent again)."""
        now = now or self._clock.now()
        cutoff = now - dt.timedelta(seconds=self.config.sending_lease_s)
        resolved = 0
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.status == OutboxStatus.SENDING,
                        OutboxMessage.claimed_at < cutoff,
                    )
                    .limit(500)
                )
            ).scalars()
            for row in list(rows):
                proven = row.delivery is not None
                values: dict[str, Any] = (
                    {
                        "status": OutboxStatus.SENT,
                        "sent_at": row.accepted_report_at or row.delivery_at or row.claimed_at,
                        "last_error": "recovered: a delivery report proves it was accepted",
                    }
                    if proven
                    else {
                        "status": OutboxStatus.PENDING,
                        "next_attempt_at": now,
                        "last_error": "recovered: no report, sending again (at-least-once)",
                    }
                )
                won = await session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id == row.id,
                        OutboxMessage.status == OutboxStatus.SENDING,
                        OutboxMessage.claim_token == row.claim_token,
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if won.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                resolved += 1
                if proven:
                    log.warning(
                        "SMS %s: left sending by a crash, report proves it sent", row.reference
                    )
                    await _start_ack_clock(session, _orm_msg(row), values["sent_at"])
                else:
                    log.warning(
                        "SMS %s: left sending by a crash, no report: sending again", row.reference
                    )
            await session.commit()
        return resolved

    # --- the loop ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due and send it all (waits for the sends). Returns how many."""
        claimed = await self._claim(self.config.batch, self._clock.now())
        sem = asyncio.Semaphore(self.config.concurrency)

        async def one(item: _Claimed) -> None:
            async with sem:
                await self._send(item)

        await asyncio.gather(*(one(item) for item in claimed))
        return len(claimed)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Send until nothing is due (tests, one-shot use)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while await self.run_once():
            if loop.time() > deadline:
                raise TimeoutError("outbox still busy")

    async def run(self) -> None:
        """Send forever, ``concurrency`` messages in flight, from a queue of claimed messages
        that a claim in the background refills (up to ``batch``) when it runs low.

        Why a queue: claiming only for the slots free (at most 8, when half were free) was a
        transaction per four messages, and the sends waited on each claim's round trips; in
        the 1,000-alert burst (bench/escalation.py) claims now come ~50 at a time while the
        sends go on. A claimed message that waited in the queue longer than a tenth of the
        lease is handed back (``pending``) instead of sent: its send could otherwise still
        be running when recovery takes the row back and sends it again."""
        loop = asyncio.get_running_loop()
        next_recover = 0.0
        refill: asyncio.Task[None] | None = None
        try:
            while not self._stopping:
                if loop.time() >= next_recover:
                    try:
                        await self.recover()
                    except Exception as error:
                        report_failure(log, self._sessions, "outbox recovery", error)
                    next_recover = loop.time() + max(1.0, self.config.sending_lease_s / 4)
                self._wake.clear()
                await self._start_ready(loop.time())
                if (refill is None or refill.done()) and len(self._ready) < self.config.concurrency:
                    refill = asyncio.create_task(self._refill(), name="outbox-claim")
                await self._wait(self.config.poll_interval_s)
        finally:
            if refill is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await refill
            await self._cancel_inflight()
            await self._hand_back(list(self._ready))
            self._ready.clear()

    async def _refill(self) -> None:
        woken = self._enqueued
        try:
            claimed = await self._claim(
                max(1, self.config.batch - len(self._ready)), self._clock.now()
            )
        except Exception as error:
            report_failure(log, self._sessions, "outbox claim", error)
            return
        if claimed:
            now = asyncio.get_running_loop().time()
            self._ready.extend(dataclasses.replace(item, claimed=now) for item in claimed)
        if claimed or self._enqueued != woken:
            # Sends to start, or a message was enqueued while this claim ran (its SELECT may
            # have come before that commit): look again now, not at the next poll.
            self._wake.set()

    async def _start_ready(self, now: float) -> None:
        stale: list[_Claimed] = []
        max_wait = self.config.sending_lease_s / 10
        while self._ready and self._busy < self.config.concurrency:
            item = self._ready.popleft()
            if now - item.claimed > max_wait:
                stale.append(item)
                continue
            self._busy += 1
            task = asyncio.create_task(
                self._send(item, self._slot_freed), name=f"sms-{item.reference}"
            )
            self._inflight.add(task)
            task.add_done_callback(self._done)
        if stale:
            await self._hand_back(stale)

    async def _hand_back(self, items: list[_Claimed]) -> None:
        """Claimed, never sent: back to ``pending`` (the attempt not counted)."""
        if not items:
            return
        try:
            async with self._sessions() as session:
                await execute_core(
                    session,
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id.in_([i.id for i in items]),
                        OutboxMessage.status == OutboxStatus.SENDING,
                        OutboxMessage.claim_token == self._token,
                    )
                    .values(
                        status=OutboxStatus.PENDING,
                        attempts=OutboxMessage.attempts - 1,
                        claim_token=None,
                        claimed_at=None,
                    )
                    .execution_options(synchronize_session=False),
                )
                await session.commit()
        except Exception as error:
            # The lease brings them back all the same (as after a crash).
            report_failure(log, self._sessions, "outbox hand-back", error)

    def _slot_freed(self) -> None:
        self._busy -= 1
        self._wake.set()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SMS send task failed", exc_info=task.exception())
        self._wake.set()

    async def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)

    async def _cancel_inflight(self) -> None:
        # Sends in flight finish (they are short and bounded by the provider timeout): a
        # cancelled send could leave a row "sending" that only the lease would resolve.
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def aclose(self) -> None:
        await self._sent.aclose()
        for sender in self._senders.values():
            await sender.aclose()
