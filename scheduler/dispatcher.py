"""The dispatcher: claims due call attempts from the database and dials them, paced.

All state that matters is in the database (attempt ``scheduled -> dialing -> finished``, or
``unknown`` when its result was lost); the dispatcher only holds the in-flight tasks. After a
crash, :meth:`Dispatcher.reconcile` finds the attempts a dead worker left ``dialing``, asks
Asterisk whether their channel (our own channel id) still exists, waits while it does, and
otherwise closes them as ``unknown``: counted toward the policy and retried no sooner than a
full interval later. So a crash can cost an attempt, never add a dial the policy forbids.

Pacing: a global cap on simultaneous calls (counted in the database over every worker), a cap
per trunk and a calls-per-second limit (per process), severe cases first, calling hours per
resident when claiming (out-of-hours attempts move to the next allowed time).

Refill: a call's channel is free at its hang-up. The next call is claimed then, before the
result is written (the recorder runs that claim pass first; the table still says ``dialing``
for the hung-up attempt, and the pass leaves it out of the global count, up to this worker's
share of the cap when several workers run). A wave of calls ending together at the cap thus
restarts at once instead of after its batch of results is stored.

Engine nodes: calls go out through several Asterisk instances (:class:`EngineNode`). The
process's :class:`~anbu.domain.pacing.Pacer` picks the healthy node with the most free channels
within its cap, and the attempt records it. A node whose AMI is lost, or whose trunk stops
answering SIP OPTIONS (:mod:`anbu.domain.node_health`), gets no new calls from the next pass on
(an administrator is paged, told which); after a lost AMI its calls in flight end when the
node's AMI returns and shows their channels gone, or after ``ivr.ami_lost_grace_s``, and are
stored as ``unknown`` (counted, retried as a new attempt). Crash recovery asks each attempt's
own node.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.models import CallAttempt, Checkin
from anbu.db.outage import report_failure
from anbu.domain.calling_hours import CallingWindow
from anbu.domain.calls import CallResult, NetworkFailureWatch
from anbu.domain.node_health import NodeFault
from anbu.domain.pacing import DEFAULT_TRUNK, Pacer, fair_share, refill_allowance
from anbu.domain.phone import mask_phone
from anbu.domain.retry import RetryPolicy
from anbu.domain.risk import Level
from anbu.errors import AnbuError
from anbu.ports import CallRecord, CallRequest, ChannelProbe, Clock, Dialer
from anbu.services.checkins import (
    CheckinClosed,
    CheckinListener,
    lose_attempt,
    notify,
    record_attempt,
)
from anbu.settings import Settings
from scheduler.claims import Claimed, ClaimPass, claim_due, close_lost, orphaned_attempts
from scheduler.workers import WorkerLife

log = logging.getLogger(__name__)

# Check-ins at or above this priority are 심각 (severe): they may use the calling-hours
# override (anbu.domain.calling_hours). The risk engine opens 심각 cases at this priority (90);
# API callers choose 0-100.
SEVERE_PRIORITY = Level.SERIOUS.priority
RECORD_BATCH = 100  # finished calls stored in one transaction at most
# Claim passes the recorder runs at most before storing a batch (hang-ups keep coming while a
# pass runs; past this the loop's own passes take over and the results are stored).
REFILL_PASSES = 3
DEFAULT_NODE = "engine"  # the single engine's name when no nodes are configured
_FAULT_WORDS = {
    NodeFault.AMI_LOST: "AMI lost",
    NodeFault.TRUNK_UNREACHABLE: "its trunk does not answer SIP OPTIONS",
}


def _never_faulty() -> NodeFault | None:
    return None


@dataclass(frozen=True, slots=True)
class EngineNode:
    """One engine Asterisk as the dispatcher uses it: its dialer, its channel cap, how to ask
    it which channels exist (crash recovery) and why it may take no calls now (``fault``:
    None when it may; see :func:`anbu.domain.node_health.node_fault`)."""

    name: str
    dialer: Dialer
    cap: int
    probe: ChannelProbe | None = None
    fault: Callable[[], NodeFault | None] = _never_faulty

    def healthy(self) -> bool:
        return self.fault() is None


class AmiChannelProbe:
    """Asks Asterisk with AMI ``CoreShowChannels``: our Originate ``ChannelId`` is the
    channel's ``Uniqueid``."""

    def __init__(self, ami: _ListsActions) -> None:
        self._ami = ami

    async def live_channel_ids(self) -> set[str]:
        events = await self._ami.action_list("CoreShowChannels")
        return {uid for e in events if (uid := e.get("Uniqueid"))}


class _Message(Protocol):
    def get(self, key: str, default: str | None = None) -> str | None: ...


class _ListsActions(Protocol):
    async def action_list(self, name: str) -> Sequence[_Message]: ...


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        dialer: Dialer,
        clock: Clock,
        *,
        policy: RetryPolicy | None = None,
        window: CallingWindow | None = None,
        max_concurrent: int = 50,
        trunk_caps: Mapping[str, int] | None = None,
        calls_per_second: float | None = None,
        cps_burst: int | None = None,
        trunk_of: Callable[[str], str] | None = None,
        ring_timeout_s: float = 30.0,
        severe_priority: int = SEVERE_PRIORITY,
        channel_probe: ChannelProbe | None = None,
        stale_call_s: float = 400.0,
        reconcile_interval_s: float = 10.0,
        listeners: Sequence[CheckinListener] = (),
        engine: AsyncEngine | None = None,
        nodes: Sequence[EngineNode] | None = None,
    ) -> None:
        """``policy``/``window`` apply to residents without a program (no program rows).

        ``max_concurrent`` is the global cap (all workers, counted in the database) and this
        process's cap. ``stale_call_s``: an orphaned attempt whose channel still shows after
        this long (or that cannot be checked) is closed anyway. ``nodes``: the engine nodes
        calls go out through; None: one node, ``dialer`` and ``channel_probe`` (capped at
        ``max_concurrent``).
        """
        self._sessions = sessions
        self._clock = clock
        self.policy = policy or RetryPolicy()
        self.window = window or CallingWindow()
        self._max = max_concurrent
        if not nodes:
            nodes = [EngineNode(DEFAULT_NODE, dialer, max_concurrent, channel_probe)]
        self.nodes: dict[str, EngineNode] = {n.name: n for n in nodes}
        self.pacer = Pacer(
            max_concurrent,
            trunk_caps or {},
            calls_per_second,
            cps_burst if cps_burst is not None else max(1, int(calls_per_second or 1)),
            node_caps={n.name: n.cap for n in nodes},
        )
        for node in nodes:
            # A dialer that opens transfer legs (AmiDialer) announces them: each is a channel
            # of this process's share of the global cap, counted by the Pacer.
            watchers = getattr(node.dialer, "leg_watchers", None)
            if isinstance(watchers, list):
                watchers.append(functools.partial(self._leg, node.name))
        self._trunk_of = trunk_of or (lambda _number: DEFAULT_TRUNK)
        self._ring_timeout_s = ring_timeout_s
        self._severe_priority = severe_priority
        self._stale = dt.timedelta(seconds=stale_call_s)
        self._reconcile_interval_s = reconcile_interval_s
        self._listeners = list(listeners)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._slots: set[str] = set()  # attempts holding a pacer slot (until hang-up)
        # Attempts whose call is over but whose result is not stored yet: still ``dialing`` in
        # the table, no longer on a channel (see claim_due's ``hung_up``).
        self._hung_up: set[str] = set()
        self._wake = asyncio.Event()
        # Set when a hang-up frees a channel, cleared when a pass starts: the recorder claims
        # for freed channels before it stores their results (see _refill).
        self._freed = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._to_record: asyncio.Queue[
            tuple[Claimed, CallRecord, asyncio.Future[CheckinClosed | None]]
        ] = asyncio.Queue()
        self._recorder: asyncio.Task[None] | None = None
        bind = engine if engine is not None else sessions.kw.get("bind")
        if not isinstance(bind, AsyncEngine):
            raise TypeError("Dispatcher needs the AsyncEngine (pass engine=...)")
        self.life = WorkerLife(bind, sessions)
        self._sqlite = bind.dialect.name == "sqlite"
        self._live_workers = 1  # dispatcher processes alive on this database, as last seen
        self._next_wait = 0.0
        # Seen by benchmarks: (check-in created_at, dial start) per attempt started here.
        self.on_originate: Callable[[Claimed, dt.datetime], None] | None = None
        # Network failures (408, no answer to the INVITE, trunk down) repeated across residents
        # mean the trunk is broken for everyone: the administrator is paged (logged at ERROR,
        # as a failed self-test is, and ``on_network_failure`` if set).
        self.network_watch = NetworkFailureWatch()
        self.on_network_failure: Callable[[int], Awaitable[None]] | None = None
        # A node going down pages the administrator (ERROR line, and this hook if set).
        self.on_node_down: Callable[[str, NodeFault], Awaitable[None]] | None = None
        self._faults: dict[str, NodeFault] = {}  # why each node that is down is down
        # Calls whose outcome a dying node took with it, per node (stored unknown, retried).
        self.lost_calls: Counter[str] = Counter()
        self._pages: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        dialer: Dialer,
        clock: Clock,
        *,
        channel_probe: ChannelProbe | None = None,
        nodes: Sequence[EngineNode] | None = None,
    ) -> Dispatcher:
        """The dispatcher every process runs (``anbu serve`` and the dispatch workers)."""
        sc = settings.scheduling
        return cls(
            sessions,
            dialer,
            clock,
            max_concurrent=settings.max_concurrent_calls,
            trunk_caps=sc.trunk_caps,
            calls_per_second=sc.calls_per_second,
            ring_timeout_s=settings.trunk.ring_timeout_s,
            severe_priority=sc.severe_priority,
            channel_probe=channel_probe,
            stale_call_s=sc.stale_call_s,
            reconcile_interval_s=sc.reconcile_interval_s,
            engine=engine,
            nodes=nodes,
        )

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def listeners(self) -> tuple[CheckinListener, ...]:
        """Who hears of every case this dispatcher closes."""
        return tuple(self._listeners)

    def add_listener(self, listener: CheckinListener) -> None:
        self._listeners.append(listener)

    def wake(self) -> None:
        """Ask for a dispatch pass now (a check-in was just opened)."""
        self._wake.set()

    async def start(self) -> None:
        """Register this worker life and reconcile what earlier lives left behind."""
        if self.life.id is None:
            await self.life.register(self._clock.now())
            await self.reconcile()

    # ---- dispatching ---------------------------------------------------------------------------

    async def dispatch_once(self) -> int:
        """Claim and start as many due attempts as pacing allows. Returns how many."""
        await self.start()
        async with self._pass_lock:
            result = await self._pass()
        for event in result.closed:
            await notify(self._listeners, event)
        return len(result.claimed)

    async def _pass(self) -> ClaimPass:
        """One claim pass, the pass lock held: claim, start the calls, note the next wait."""
        assert self.life.id is not None
        loop = asyncio.get_running_loop()
        # Node health as of now, not of before the lock: on SQLite the lock may have been held
        # by a batch of results for a while, and a node may have died meanwhile.
        self.check_nodes()
        self._freed.clear()
        mono = loop.time()
        limit = self.pacer.available(mono)
        if self._live_workers > 1:
            share = fair_share(self._max, self._live_workers)
            limit = min(limit, max(0, share - self.pacer.active))
        if limit == 0:
            # Nothing may start: no claim transaction (the next chance is a hang-up's wake-up,
            # or the next token when the rate, not the channels, holds it back).
            self._next_wait = self._wait_after(ClaimPass(), mono)
            return ClaimPass()
        reserved: list[tuple[str, str]] = []

        def reserve(trunk: str) -> str | None:
            node = self.pacer.choose_node()
            if node is None or not self.pacer.trunk_free(trunk):
                return None
            self.pacer.started(trunk, mono, node)
            reserved.append((trunk, node))
            return node

        now = self._clock.now()
        try:
            async with self._sessions() as session:
                result = await claim_due(
                    session,
                    worker_id=self.life.id,
                    now=now,
                    global_cap=self._max,
                    can_start=reserve,
                    limit=limit,
                    trunk_of=self._trunk_of,
                    severe_priority=self._severe_priority,
                    default_policy=self.policy,
                    default_window=self.window,
                    hung_up=frozenset(self._hung_up),
                    refill_allowance=refill_allowance(
                        self._max, self._live_workers, self.pacer.active
                    ),
                )
        except BaseException:
            for trunk, node in reserved:
                self.pacer.finished(trunk, node)
            raise
        # A reservation whose claim lost the race is given back.
        unused = list(reserved)
        for c in result.claimed:
            unused.remove((c.trunk, c.node or ""))
        for trunk, node in unused:
            self.pacer.finished(trunk, node)
        for claimed in result.claimed:
            self._start_call(claimed, now)
        log.debug(
            "dispatch pass: %d claimed, %d deferred in %.1f ms (limit %d)",
            len(result.claimed),
            result.deferred,
            (loop.time() - mono) * 1000,
            limit,
        )
        self._next_wait = self._wait_after(result, mono)
        return result

    def _wait_after(self, result: ClaimPass, mono: float) -> float:
        """How long the loop may sleep before the next pass (a wake-up cuts it short).

        Never 0 just because attempts are due: when every channel is busy the next chance
        comes with a wake-up (a call ended), and spinning would starve the calls themselves.
        """
        if result.more:
            return 0.0  # rows were deferred or closed and more due ones wait behind them
        waits: list[float] = []
        now = self._clock.now()
        if result.next_due is not None and result.next_due > now:
            waits.append((result.next_due - now).total_seconds())
        if self.pacer.max_concurrent - self.pacer.active > 0:
            token = self.pacer.next_token_in(mono)
            if token > 0:
                waits.append(token)  # rate-limited, not full: the next token is the next chance
        return min(waits) if waits else float("inf")

    def _start_call(self, claimed: Claimed, now: dt.datetime) -> None:
        request = CallRequest(
            channel_id=claimed.channel_id,
            number=claimed.number,
            ring_timeout_s=self._ring_timeout_s,
        )
        if self.on_originate is not None:
            self.on_originate(claimed, now)
        task = asyncio.create_task(self._run(claimed, request), name=f"call-{claimed.channel_id}")
        self._inflight[claimed.attempt_id] = task
        self._slots.add(claimed.attempt_id)
        task.add_done_callback(functools.partial(self._finished, claimed))

    def _finished(self, claimed: Claimed, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(claimed.attempt_id, None)
        self._hung_up.discard(claimed.attempt_id)
        self._release(claimed)

    def _release(self, claimed: Claimed) -> None:
        """The call's slot is free (once: at hang-up, or when its task ends)."""
        if claimed.attempt_id not in self._slots:
            return
        self._slots.discard(claimed.attempt_id)
        self.pacer.finished(claimed.trunk, claimed.node)
        self._freed.set()
        self._wake.set()  # a channel is free again

    async def _run(self, claimed: Claimed, request: CallRequest) -> None:
        node = self.nodes[claimed.node or DEFAULT_NODE]
        try:
            record = await node.dialer.call(request)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "call %s to %s failed in the dialer", request.channel_id, mask_phone(request.number)
            )
            now = self._clock.now()
            record = CallRecord(
                channel_id=request.channel_id,
                result=CallResult.FAILED,
                hangup_cause=None,
                originated_at=now,
                answered_at=None,
                ended_at=now,
            )
        # The channel is free from the hang-up on: the next call takes it now, while this
        # result is being stored (a wave's results take a while to write under load, and the
        # whole wave's channels would sit idle meanwhile). The claim pass leaves this attempt
        # out of the global count, which it still sees ``dialing``, until it is stored.
        self._hung_up.add(claimed.attempt_id)
        self._release(claimed)
        if self.network_watch.observe(claimed.resident_id, record.result, self._clock.now()):
            await self._page_network_failure()
        done: asyncio.Future[CheckinClosed | None] = asyncio.get_running_loop().create_future()
        self._to_record.put_nowait((claimed, record, done))
        self._ensure_recorder()
        try:
            closed = await done
        finally:
            self._hung_up.discard(claimed.attempt_id)
        log.info(
            "call %s to %s: %s reply=%s",
            request.channel_id,
            mask_phone(request.number),
            record.result,
            record.reply,
        )
        if closed is not None:
            await notify(self._listeners, closed)

    def _ensure_recorder(self) -> None:
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_loop(), name="dispatcher-recorder")

    async def _record_loop(self) -> None:
        """Store finished calls in batches: one transaction for every result that is waiting.

        When many calls end together (a wave at the cap) one commit each would queue up on the
        database; a batch stores them in one. Their channels were freed at hang-up: the claim
        pass for them goes first (:meth:`_refill`), the results after.
        """
        while True:
            batch = [await self._to_record.get()]
            async with self._write_turn():
                closed = await self._refill()
                while not self._to_record.empty() and len(batch) < RECORD_BATCH:
                    batch.append(self._to_record.get_nowait())
                results = await self._record_all(batch)
            if self.pacer.available(asyncio.get_running_loop().time()) > 0:
                # Stored: the table counts these calls no more. Channels the refill could not
                # take (beyond this worker's share) are free now.
                self._wake.set()
            for (_claimed, _record, fut), outcome in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(outcome, BaseException):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)
            for event in closed:
                await notify(self._listeners, event)

    async def _refill(self) -> list[CheckinClosed]:
        """Claim for the channels hang-ups freed since the last pass began, before their results
        are written: the channels are not idle for that write. Hang-ups that came during a pass
        get another. Returns the cases the passes closed (listeners are told after the write)."""
        closed: list[CheckinClosed] = []
        for _ in range(REFILL_PASSES):
            if not self._freed.is_set():
                break  # a pass began after the last hang-up: it claimed for that channel
            try:
                if self._sqlite:  # the write turn is the pass lock, held already
                    result = await self._pass()
                else:
                    async with self._pass_lock:
                        result = await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The loop's own pass retries; the results must be stored whatever happens.
                report_failure(log, self._sessions, "refill pass", error)
                break
            closed += result.closed
        return closed

    def _write_turn(self) -> contextlib.AbstractAsyncContextManager[object]:
        """SQLite has one writer: claims and results take turns in this process (the pass lock),
        claims first, instead of a claim sleeping in SQLite's busy handler behind a batch of
        results. PostgreSQL writes them side by side."""
        if self._sqlite:
            return self._pass_lock
        return contextlib.nullcontext()

    async def _record_all(
        self, batch: list[tuple[Claimed, CallRecord, asyncio.Future[CheckinClosed | None]]]
    ) -> list[CheckinClosed | BaseException | None]:
        try:
            return await self._record_batch(batch)
        except Exception:
            log.exception("recording %d results in one batch failed; one by one", len(batch))
        results: list[CheckinClosed | BaseException | None] = []
        for item in batch:
            try:
                results += await self._record_batch([item])
            except Exception as exc:
                log.exception("recording call %s failed", item[0].channel_id)
                results.append(exc)
        return results

    async def _record_batch(
        self, batch: list[tuple[Claimed, CallRecord, asyncio.Future[CheckinClosed | None]]]
    ) -> list[CheckinClosed | BaseException | None]:
        now = self._clock.now()
        out: list[CheckinClosed | BaseException | None] = []
        async with self._sessions() as session:
            # One read for all the batch's attempts (locked, in id order) and one for their
            # cases (with the resident and attempts the model loads with them): record_attempt
            # then finds each case in the session instead of reading it again. On SQLite a
            # claim pass waits for this batch, so it is kept short.
            await session.execute(
                select(CallAttempt)
                .where(CallAttempt.id.in_([c.attempt_id for c, _r, _f in batch]))
                .order_by(CallAttempt.id)
                .with_for_update()
            )
            await session.execute(
                select(Checkin).where(Checkin.id.in_({c.checkin_id for c, _r, _f in batch}))
            )
            # No flush per result (each record_attempt reads its row again, which would flush
            # the one before): the batch's updates go out together at the commit.
            with session.no_autoflush:
                for claimed, record, _f in batch:
                    out.append(await self._store(session, claimed, record, now))
            await session.commit()
        return out

    async def _store(
        self, session: AsyncSession, claimed: Claimed, record: CallRecord, now: dt.datetime
    ) -> CheckinClosed | None:
        if record.lost:
            # The node died under the call: outcome unknown, counted and retried.
            self.lost_calls[claimed.node or DEFAULT_NODE] += 1
            log.warning(
                "call %s on node %s: outcome lost with the node; closing as unknown",
                claimed.channel_id,
                claimed.node,
            )
            return await lose_attempt(session, claimed.attempt_id, claimed.policy, now)
        return await record_attempt(session, claimed.attempt_id, record, claimed.policy, now)

    async def _page_network_failure(self) -> None:
        residents = self.network_watch.residents()
        log.error(
            "NETWORK FAILURE: calls to %d residents got no answer from the network within %s "
            "(trunk down, 408, INVITE unanswered): check the trunk",
            residents,
            self.network_watch.window,
        )
        if self.on_network_failure is not None:
            try:
                await self.on_network_failure(residents)
            except Exception:
                log.exception("network failure page failed")

    def _leg(self, node: str, delta: int) -> None:
        if delta > 0:
            self.pacer.leg_started(node)
        else:
            self.pacer.leg_finished(node)
            self._wake.set()  # a channel is free again

    async def dial_direct(self, request: CallRequest, *, trunk: str = DEFAULT_TRUNK) -> CallRecord:
        """Dial outside the queue (the daily self-test) while still keeping to the pacing."""
        loop = asyncio.get_running_loop()
        while True:
            self.check_nodes()
            node = self.pacer.choose_node()
            if (
                node is not None
                and self.pacer.available(loop.time()) > 0
                and self.pacer.trunk_free(trunk)
            ):
                break
            self._wake.clear()
            await _sleep_until_woken(self._wake, 0.5)
        self.pacer.started(trunk, loop.time(), node)
        try:
            return await self.nodes[node].dialer.call(request)
        finally:
            self.pacer.finished(trunk, node)
            self._wake.set()

    # ---- engine nodes --------------------------------------------------------------------------

    def check_nodes(self) -> None:
        """Follow each node's health: a node that went down gets no new calls and pages the
        administrator; one that is back takes calls again (it rejoins by itself)."""
        for node in self.nodes.values():
            fault = node.fault()
            if fault is None:
                if self.pacer.node_up(node.name):
                    was = self._faults.pop(node.name, None)
                    log.warning(
                        "engine node %s is back (was: %s): taking calls again", node.name, was
                    )
                    self._wake.set()
            elif self.pacer.node_down(node.name):
                self._faults[node.name] = fault
                others = [n for n in self.nodes if self.pacer.is_up(n)]
                log.error(
                    "ENGINE NODE DOWN: %s (%s); %d calls in flight there go on or end with it;"
                    " new calls go to %s",
                    node.name,
                    _FAULT_WORDS[fault],
                    self.pacer.node_active(node.name),
                    ", ".join(others) or "no node (none is up)",
                )
                if self.on_node_down is not None:
                    task = asyncio.create_task(self._page_node_down(node.name, fault))
                    self._pages.add(task)
                    task.add_done_callback(self._pages.discard)
            elif self._faults.get(node.name) is not fault:
                # Still down, for another reason (its AMI is back, its trunk is not): logged,
                # not paged again (the page already said the node is down).
                self._faults[node.name] = fault
                log.error("ENGINE NODE STILL DOWN: %s (%s)", node.name, _FAULT_WORDS[fault])

    async def _page_node_down(self, name: str, fault: NodeFault) -> None:
        assert self.on_node_down is not None
        try:
            await self.on_node_down(name, fault)
        except Exception:
            log.exception("node-down page failed")

    # ---- crash safety --------------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Close the attempts dead workers left ``dialing`` whose channel is gone. Returns how
        many were closed; the others are looked at again on the next call."""
        now = self._clock.now()
        async with self._sessions() as session:
            live = await self.life.live_workers(session)
            self._live_workers = len(live)
            lost = await orphaned_attempts(
                session, live_workers=live, own_inflight=set(self._inflight)
            )
        if not lost:
            return 0
        # Each attempt's own node is asked (an attempt from before nodes: the first node). A
        # node this process does not know, or one that is down, cannot tell: its attempts wait
        # until stale_call_s.
        channels: dict[str, set[str] | None] = {}
        first = next(iter(self.nodes))
        for name in {item.node or first for item in lost}:
            node = self.nodes.get(name)
            channels[name] = None
            if node is None or node.probe is None:
                continue
            try:
                channels[name] = await node.probe.live_channel_ids()
            except (AnbuError, OSError, TimeoutError) as exc:
                log.warning("cannot list node %s's channels (%s); its lost calls wait", name, exc)
        closed_n = 0
        for item in lost:
            age = now - (item.originated_at or now)
            node = self.nodes.get(item.node or first)
            if (node is None or node.probe is not None) and age < self._stale:
                up = channels[item.node or first]
                if up is None:
                    continue  # cannot tell yet: look again later
                if item.channel_id in up:
                    log.info("attempt %s: channel still up after a crash; waiting", item.channel_id)
                    continue
            log.warning(
                "attempt %s to %s: result lost (worker gone); closing as unknown",
                item.channel_id,
                mask_phone(item.number),
            )
            async with self._sessions() as session:
                closed = await close_lost(
                    session,
                    item,
                    now=now,
                    default_policy=self.policy,
                    default_window=self.window,
                )
            closed_n += 1
            if closed is not None:
                await notify(self._listeners, closed)
        if closed_n:
            self._wake.set()
        return closed_n

    # ---- the loop ------------------------------------------------------------------------------

    async def run(self, poll_interval_s: float = 1.0) -> None:
        """Dispatch forever: on every wake-up (new check-in, freed channel), when the next
        attempt falls due, or at least every ``poll_interval_s``; reconcile now and then."""
        await self.start()
        loop = asyncio.get_running_loop()
        next_reconcile = loop.time() + self._reconcile_interval_s
        while True:
            self._wake.clear()
            wait = poll_interval_s
            try:
                await self.dispatch_once()
                wait = min(poll_interval_s, self._next_wait)
                if loop.time() >= next_reconcile:
                    next_reconcile = loop.time() + self._reconcile_interval_s
                    await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                report_failure(log, self._sessions, "dispatch pass", error)
            if wait > 0:
                await _sleep_until_woken(self._wake, wait)

    async def drain(self) -> None:
        """Wait for every in-flight call to finish (tests, graceful stop)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def close(self) -> None:
        for page in list(self._pages):
            page.cancel()
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
            self._recorder = None
        await self.life.close(self._clock.now())


async def _sleep_until_woken(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for ``event`` at most ``timeout_s``. Not ``asyncio.wait_for``: on Python 3.11 it
    swallows a cancellation that lands as the event fires, and the loop would never stop."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
