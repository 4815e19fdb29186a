"""``AmiDialer``: the :class:`anbu.ports.Dialer` on Asterisk.

One call: Async Originate with our own ``ChannelId`` (the request's ``channel_id``, which
becomes the channel's uniqueid and the AGI's ``agi_uniqueid``) to ``PJSIP/<number>@trunk``;
once answered the channel enters ``anbu-checkin`` where the FastAGI flow runs the dialogue and
reports its :class:`ivr.flow.IvrOutcome` to the :class:`CallRegistry` under that id. A dialer
built with ``agi_address`` names its own FastAGI server in the Originate (``ANBU_AGI``), so with
several processes placing calls each one's outcomes come back to it.

What AMI tells us, gathered into :class:`anbu.domain.calls.DialReport`:
- ``OriginateResponse`` (matched by our ActionID): Success = answered; Reason on failure;
- ``Newchannel``/``Newstate``/``Hangup`` (matched by Uniqueid = our ChannelId): whether a
  channel existed, whether it ever rang (ChannelState 5), the Q.850 ``Cause``;
- ``DialState`` (DestUniqueid = our ChannelId; Originate publishes it too): ``PROGRESS`` is a
  183 with early media (Korean mobile ringback, 컬러링, the network's announcements), which
  never sets ChannelState 5 but counts as ringing;
- ``UserEvent AnbuHangup`` from the hangup handler every Originate pushes on its channel
  (dialplans/engine/extensions.conf ``anbu-hangup``): the far end's last SIP status line from
  ``HANGUPCAUSE(chan,tech)``;
- ``HangupRequest`` (the channel driver hung up: the far end's BYE/CANCEL/final response)
  versus ``SoftHangupRequest`` (Asterisk itself: our AGI, the dialplan, shutdown).
Busy, congestion and rejection all answer Failure/Reason 0, and a phone that is off (480), an
INVITE nobody answers and a ring-out all end in cause 19: so the SIP status is read too.

Why the hangup handler and not the alternatives (measured against SIPp, Asterisk 22): the
Hangup event carries only the Q.850 cause (480 -> 19; a ``Reason: Q.850;cause=20`` on the
response is ignored); ``PJSIP_RESPONSE_HEADER`` reads nothing outside a pre-dial handler; a
Local channel running Dial() would give DIALSTATUS and the hash too, but doubles the channels
per call and changes which uniqueid the AGI sees. The handler runs in ast_hangup() even for a
channel that never reached the dialplan, and its UserEvent precedes the Hangup event.

The call is over when both the OriginateResponse and the Hangup are in (they race: OriginateResponse
is raised by the originating thread, Hangup comes through stasis), or one of them plus a short
grace. An answered call then waits (briefly) for the IVR outcome, which the flow reports just
before it hangs up, so it is normally there already.

One subscription serves every call: events are looked up in dicts by Uniqueid/ActionID, so 50+
concurrent calls cost one dict lookup per event.

AMI lost mid-call (Asterisk restart, network): the AGI socket is separate and keeps working, so
(1) an answered call whose IVR outcome arrives is finished from that outcome (ANSWERED);
(2) once AMI is back, ``CoreShowChannels`` reconciles: a channel still up is followed as before
(the events missed meanwhile are lost, e.g. "rang"), a channel gone ends the call: ANSWERED
with the IVR outcome if there was one, else FAILED ("channel vanished while AMI was down");
(3) if AMI does not come back within ``ami_lost_grace_s`` the call ends FAILED.
A call that ends FAILED for want of AMI (cases 2 and 3, or never sent because AMI was down) is
marked ``lost`` in its record: the node died under it, so the dispatcher stores it as unknown
and retries it as a new attempt rather than counting a failure of the resident's line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from anbu.domain.calls import CallResult, DialReport, classify_call, sip_status_of
from anbu.domain.phone import mask_phone
from anbu.domain.replies import Reply
from anbu.errors import AmiError, TelephonyError, ValidationError
from anbu.ports import CallRecord, CallRequest, Clock, IvrOutcome, SystemClock
from anbu.settings import NodeSettings, Settings
from ivr.ami import (
    AmiActionError,
    AmiClient,
    AmiConnectionError,
    AmiMessage,
    AmiNotConnectedError,
    AmiState,
    Subscription,
)
from ivr.flow import utc_ms

log = logging.getLogger(__name__)

CHANNEL_STATE_RINGING = "5"  # AST_STATE_RINGING: the far end sent 180/183
CHANNEL_STATE_UP = "6"
SIP_SESSION_PROGRESS = 183
# Asterisk's AST_MAX_PUBLIC_UNIQUEID.
MAX_CHANNEL_ID = 149
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9._\-]+$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The channel variable that tells the engine's ``anbu-checkin`` context which FastAGI server
# runs the call (dialplans/engine/extensions.conf); unset, the AGI_HOST/AGI_PORT globals do.
AGI_ADDRESS_VARIABLE = "ANBU_AGI"
# host:port as it goes into agi://<address>/checkin: a name, IPv4 or [IPv6], and a port.
_AGI_ADDRESS = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")
# After a failed OriginateResponse with no channel seen, how long to wait for a straggling
# Newchannel/Hangup before deciding no channel was ever created.
NO_CHANNEL_GRACE_S = 0.3


# Hangup cause the engine's anbu-checkin context uses when AGI() fails (network out of order).
AGI_UNREACHABLE_CAUSE = 38
# Pushed on every originated channel. The AMI splits an Originate ``Variable`` on commas, so the
# Gosub address's commas are escaped.
HANGUP_HANDLER_VARIABLE = r"CHANNEL(hangup_handler_push)=anbu-hangup\,s\,1"
HANGUP_USER_EVENT = "AnbuHangup"


class CallRegistry:
    """Where the IVR leaves each call's outcome for the dialer that placed it.

    The dialer ``expect``s a channel id before it originates; the flow ``report``s under the
    AGI's ``agi_uniqueid``. Outcomes for calls nobody expects (placed by someone else) go to
    ``on_unclaimed`` if set, else are logged and dropped.
    """

    def __init__(self, on_unclaimed: Callable[[IvrOutcome], None] | None = None) -> None:
        self._waiting: dict[str, asyncio.Future[IvrOutcome]] = {}
        self._on_unclaimed = on_unclaimed

    def expect(self, channel_id: str) -> asyncio.Future[IvrOutcome]:
        if channel_id in self._waiting:
            raise TelephonyError(f"call {channel_id} is already in progress")
        future: asyncio.Future[IvrOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[channel_id] = future
        return future

    def report(self, outcome: IvrOutcome) -> None:
        future = self._waiting.get(outcome.channel_id)
        if future is None:
            if self._on_unclaimed is not None:
                self._on_unclaimed(outcome)
            else:
                log.info(
                    "call %s: IVR outcome for a call this dialer did not place (dropped)",
                    outcome.channel_id,
                )
            return
        if not future.done():
            future.set_result(outcome)

    def forget(self, channel_id: str) -> None:
        future = self._waiting.pop(channel_id, None)
        if future is not None and not future.done():
            future.cancel()

    def __len__(self) -> int:
        return len(self._waiting)


@dataclass(slots=True, eq=False)
class _Call:
    request: CallRequest
    action_id: str
    outcome: asyncio.Future[IvrOutcome]
    changed: asyncio.Event
    deadline: float  # loop time: past it the dialer hangs the channel up itself
    originated_at: dt.datetime | None = None
    channel_name: str | None = None
    channel_created: bool = False
    rang: bool = False
    answered_at: dt.datetime | None = None
    response: AmiMessage | None = None
    response_loop: float = 0.0
    hangup_seen: bool = False
    hangup_cause: int | None = None
    hangup_at: dt.datetime | None = None
    hangup_loop: float = 0.0
    hangup_requested: bool = False
    progress: bool = False  # 183 with early media
    sip_status: int | None = None  # last SIP status the channel saw (hangup handler)
    sip_reported: bool = False  # the hangup handler's report arrived
    far_end_hangup: bool = False  # the channel driver hung up (BYE), not Asterisk
    ami_lost_at: float | None = None
    vanished: bool = False
    failure: str | None = None

    @property
    def cid(self) -> str:
        return self.request.channel_id

    @property
    def originate_success(self) -> bool:
        return self.response is not None and (self.response.get("Response") or "") == "Success"


class AmiDialer:
    """Places calls over AMI. Build one per process (``from_settings``), ``start()`` it once
    the AmiClient exists, ``close()`` it at shutdown. ``call()`` is safe to run concurrently;
    at most ``max_concurrent_calls`` originate at once, the rest wait for a slot."""

    def __init__(
        self,
        ami: AmiClient,
        registry: CallRegistry,
        *,
        trunk_endpoint: str = "trunk",
        context: str = "anbu-checkin",
        exten: str = "s",
        caller_id: str | None = None,
        max_concurrent_calls: int = 50,
        event_grace_s: float = 2.0,
        agi_result_grace_s: float = 3.0,
        ami_lost_grace_s: float = 30.0,
        max_call_s: float = 300.0,
        clock: Clock | None = None,
        agi_address: str | None = None,
        call_id_header: str | None = None,
    ) -> None:
        """``agi_address`` (``host:port``): the FastAGI server of *this* process, sent with every
        Originate as ``ANBU_AGI`` so the call's IVR outcome comes back here, not to whichever
        process the engine's globals name (several dispatcher workers each serve their own)."""
        if agi_address is not None and not _AGI_ADDRESS.fullmatch(agi_address):
            raise ValidationError(f"AGI address {agi_address!r} is not host:port")
        self._ami = ami
        self.registry = registry
        self._endpoint = trunk_endpoint
        self._context = context
        self._exten = exten
        self._caller_id = caller_id
        self._slots = asyncio.Semaphore(max_concurrent_calls)
        self._event_grace_s = event_grace_s
        self._agi_result_grace_s = agi_result_grace_s
        self._ami_lost_grace_s = ami_lost_grace_s
        self._max_call_s = max_call_s
        self._clock: Clock = clock or SystemClock()
        self.agi_address = agi_address
        self._call_id_header = call_id_header
        self._by_uid: dict[str, _Call] = {}
        self._by_action: dict[str, _Call] = {}
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Told of every transfer leg this node opens (+1) and closes (-1): the dispatcher's
        # Pacer counts it against the global cap too (anbu.domain.pacing), not only the node's.
        self.leg_watchers: list[Callable[[int], None]] = []

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        ami: AmiClient,
        registry: CallRegistry,
        clock: Clock | None = None,
        *,
        agi_address: str | None = None,
        node: NodeSettings | None = None,
    ) -> AmiDialer:
        """``node``: the engine node this dialer calls through (its trunk endpoint, its cap)."""
        ivr = settings.ivr
        return cls(
            ami,
            registry,
            trunk_endpoint=node.trunk if node is not None else ivr.trunk_endpoint,
            context=ivr.context,
            exten=ivr.exten,
            # The registered 발신번호: Korean carriers drop anonymous or unregistered numbers.
            caller_id=ivr.caller_id or settings.trunk.caller_id,
            max_concurrent_calls=(
                node.max_calls if node is not None else settings.max_concurrent_calls
            ),
            event_grace_s=ivr.call_event_grace_s,
            agi_result_grace_s=ivr.agi_result_grace_s,
            ami_lost_grace_s=ivr.ami_lost_grace_s,
            max_call_s=ivr.max_call_s,
            clock=clock,
            agi_address=(node.agi_address if node is not None else None) or agi_address,
            call_id_header=ivr.call_id_header,
        )

    @property
    def active_calls(self) -> int:
        return len(self._by_uid)

    def start(self) -> None:
        """Subscribe to the AMI events (idempotent)."""
        if self._subs:
            return
        self._subs = [
            self._ami.subscribe(
                self._on_event,
                "OriginateResponse",
                "Newchannel",
                "Newstate",
                "Hangup",
                "DialState",
                "UserEvent",
                "HangupRequest",
            ),
            self._ami.on_state(self._on_ami_state),
        ]

    async def close(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs = []
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- placing a call ----------------------------------------------------------------------

    async def call(self, request: CallRequest) -> CallRecord:
        self._validate(request)
        self.start()
        async with self.channel_slot():
            return await self._place(request)

    def places(self, channel_id: str) -> bool:
        """Whether this dialer has the call ``channel_id`` in progress."""
        return channel_id in self._by_uid

    def extend_call(self, channel_id: str, seconds: float) -> bool:
        """Let the answered call ``channel_id`` run at least ``seconds`` more than now, past
        ``max_call_s``: a resident put through to an official (``ivr.handoff``) must not be cut
        off by the check-in call's length cap. False when this dialer does not place it."""
        call = self._by_uid.get(channel_id)
        if call is None:
            return False
        until = asyncio.get_running_loop().time() + seconds
        if until > call.deadline:
            call.deadline = until
        return True

    @contextlib.asynccontextmanager
    async def channel_slot(self, wait_s: float | None = None) -> AsyncIterator[None]:
        """The one cap check for every channel this dialer (its node) opens: a placed call, and a
        transfer's second channel (``ivr.handoff``). Waits for a free slot (at most
        ``wait_s``; TimeoutError then) and frees it on exit."""
        if wait_s is None:
            await self._slots.acquire()
        else:
            await asyncio.wait_for(self._slots.acquire(), wait_s)
        try:
            yield
        finally:
            self._slots.release()

    @contextlib.asynccontextmanager
    async def leg_slot(self, wait_s: float | None = None) -> AsyncIterator[None]:
        """A transfer's second channel: a slot of this node (``channel_slot``), announced to
        the ``leg_watchers`` while it is held."""
        async with self.channel_slot(wait_s):
            for watcher in self.leg_watchers:
                watcher(1)
            try:
                yield
            finally:
                for watcher in self.leg_watchers:
                    watcher(-1)

    @staticmethod
    def _validate(request: CallRequest) -> None:
        cid = request.channel_id
        if not (0 < len(cid) <= MAX_CHANNEL_ID and _CHANNEL_ID.match(cid)):
            raise ValidationError(f"channel id {cid!r} is not a valid Asterisk uniqueid")
        # The number goes into a dial string: anything but digits could add a second target.
        if not request.number.isdigit():
            raise ValidationError(f"number {mask_phone(request.number)!r} is not digits only")
        for name, value in request.variables.items():
            if not _VARIABLE_NAME.match(name) or any(c in value for c in ",\r\n"):
                raise ValidationError(f"channel variable {name!r} is not usable in Originate")

    async def _place(self, request: CallRequest) -> CallRecord:
        loop = asyncio.get_running_loop()
        cid = request.channel_id
        if cid in self._by_uid:
            raise TelephonyError(f"call {cid} is already in progress")
        call = _Call(
            request=request,
            action_id=self._ami.next_action_id(),
            outcome=self.registry.expect(cid),
            changed=asyncio.Event(),
            deadline=loop.time() + request.ring_timeout_s + 10 + self._event_grace_s,
        )
        call.outcome.add_done_callback(lambda _: call.changed.set())
        # Registered before the Originate is sent: the first event may beat its response.
        self._by_uid[cid] = call
        self._by_action[call.action_id] = call
        try:
            call.originated_at = utc_ms(self._clock)
            log.info(
                "call %s: originate to %s@%s (ring %.0f s)",
                cid,
                mask_phone(request.number),
                self._endpoint,
                request.ring_timeout_s,
            )
            try:
                await self._ami.action(
                    "Originate", self._originate_fields(request), action_id=call.action_id
                )
            except AmiActionError as exc:
                log.warning("call %s: originate refused: %s", cid, exc)
                call.failure = f"originate refused: {exc.response.get('Message')}"
                return self._record(call, CallResult.FAILED, None)
            except AmiNotConnectedError as exc:
                log.warning("call %s: not originated, AMI unavailable: %s", cid, exc)
                call.failure = "AMI unavailable"
                call.vanished = True  # never reached the node: lost, not failed
                return self._record(call, CallResult.FAILED, None)
            except AmiConnectionError as exc:
                # Sent, then the connection dropped: Asterisk may have queued it. The state
                # handler marked the call lost; reconciliation decides once AMI is back.
                log.warning("call %s: AMI dropped during originate (%s)", cid, exc)
                if call.ami_lost_at is None:
                    call.ami_lost_at = loop.time()
            except AmiError as exc:
                # No response, still connected: if it was queued its events will come; if not,
                # the ring deadline ends the call.
                log.warning("call %s: originate unanswered (%s); following events", cid, exc)
            await self._await_end(call)
            return await self._finish(call)
        except asyncio.CancelledError:
            if not call.hangup_seen:
                log.warning("call %s: cancelled; hanging the channel up", cid)
                self._spawn(self._hangup(call))
            raise
        finally:
            self._by_uid.pop(cid, None)
            self._by_action.pop(call.action_id, None)
            self.registry.forget(cid)

    def _originate_fields(self, request: CallRequest) -> dict[str, str | list[str]]:
        fields: dict[str, str | list[str]] = {
            "Channel": f"PJSIP/{request.number}@{self._endpoint}",
            "Context": self._context,
            "Exten": self._exten,
            "Priority": "1",
            "Timeout": str(max(1, round(request.ring_timeout_s * 1000))),
            "Async": "true",
            "ChannelId": request.channel_id,
        }
        if self._caller_id:
            fields["CallerID"] = self._caller_id
        variables = dict(request.variables)
        if self.agi_address is not None:
            variables.setdefault(AGI_ADDRESS_VARIABLE, self.agi_address)
        if self._call_id_header is not None:
            # chan_pjsip adds it to the INVITE (set on the channel before it dials).
            variables[f"PJSIP_HEADER(add,{self._call_id_header})"] = request.channel_id
        fields["Variable"] = [HANGUP_HANDLER_VARIABLE, *(f"{k}={v}" for k, v in variables.items())]
        return fields

    async def _await_end(self, call: _Call) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._progress(call, loop.time())) is not None:
            call.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.changed.wait(), wait)

    def _progress(self, call: _Call, now: float) -> float | None:
        """None when the call is over, else how long to wait before looking again."""
        if call.hangup_seen and call.response is not None:
            return None
        if call.vanished:
            return None
        if call.ami_lost_at is not None:
            if call.outcome.done():
                return None  # the IVR finished: answered, whatever AMI missed
            remaining = call.ami_lost_at + self._ami_lost_grace_s - now
            if remaining <= 0:
                call.failure = f"AMI lost for {self._ami_lost_grace_s:.0f} s; outcome unknown"
                return None
            return remaining
        if call.hangup_seen:
            # Hangup came first: the OriginateResponse normally follows within milliseconds.
            remaining = call.hangup_loop + self._event_grace_s - now
            return remaining if remaining > 0 else None
        if call.response is not None and not call.originate_success:
            grace = self._event_grace_s if call.channel_created else NO_CHANNEL_GRACE_S
            remaining = call.response_loop + grace - now
            return remaining if remaining > 0 else None
        remaining = call.deadline - now
        if remaining > 0:
            return remaining
        if not call.hangup_requested:
            call.hangup_requested = True
            what = (
                "answered call over max_call_s"
                if call.originate_success
                else ("no OriginateResponse after the ring timeout")
            )
            log.warning("call %s: %s; hanging up", call.cid, what)
            call.failure = what
            self._spawn(self._hangup(call))
            call.deadline = now + self._event_grace_s
            return self._event_grace_s
        return None

    async def _finish(self, call: _Call) -> CallRecord:
        cid = call.cid
        answered = call.originate_success or call.answered_at is not None
        if not call.outcome.done() and (answered or call.ami_lost_at is not None):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(call.outcome), self._agi_result_grace_s)
        outcome = (
            call.outcome.result() if call.outcome.done() and not call.outcome.cancelled() else None
        )
        if outcome is not None:
            answered = True
        if outcome is not None and outcome.machine is not None:
            # Answered by the carrier's voicemail or an answering machine, not the resident.
            result = CallResult(outcome.machine.value)
        elif answered and self._ivr_failed(call, outcome):
            result = CallResult.FAILED
        elif answered:
            result = CallResult.ANSWERED
        elif call.vanished or call.ami_lost_at is not None:
            call.failure = call.failure or "channel vanished while AMI was down"
            result = CallResult.FAILED
        else:
            reason = call.response.get("Reason") if call.response is not None else None
            report = DialReport(
                originate_success=False,
                reason=int(reason) if reason and reason.lstrip("-").isdigit() else None,
                hangup_cause=call.hangup_cause,
                rang=call.rang,
                channel_created=call.channel_created,
                sip_status=call.sip_status,
                progress=call.progress or call.sip_status == SIP_SESSION_PROGRESS,
                sip_reported=call.sip_reported,
            )
            result = classify_call(report)
            log.debug("call %s: %s -> %s", cid, report, result)
        return self._record(call, result, outcome)

    @staticmethod
    def _ivr_failed(call: _Call, outcome: IvrOutcome | None) -> bool:
        """Answered, but the check-in did not happen through no doing of the resident's: the
        IVR failed before any reply, or no IVR outcome and no far-end hangup to read.

        A BYE without a ``Reason`` header (most phones) leaves hangup cause 0, which the IVR
        alone cannot tell from Asterisk tearing the channel down; the channel driver's
        ``HangupRequest`` can: the resident hung up, whatever the cause number."""
        if outcome is not None:
            if outcome.reply is None and not call.far_end_hangup:
                call.failure = f"IVR failed: {outcome.error}"
                return True
            return False
        if call.far_end_hangup and call.hangup_cause != AGI_UNREACHABLE_CAUSE:
            return False
        if not call.hangup_cause:  # None (AMI lost) or 0 (Asterisk tore it down)
            call.failure = f"answered, no IVR outcome, hangup cause {call.hangup_cause}"
            return True
        if call.hangup_cause == AGI_UNREACHABLE_CAUSE:
            # The engine's dialplan hangs up with 38 when AGI() could not reach us.
            call.failure = "answered, but the FastAGI server could not be reached"
            return True
        return False

    def _record(self, call: _Call, result: CallResult, outcome: IvrOutcome | None) -> CallRecord:
        now = utc_ms(self._clock)
        reply: Reply | None = None
        keys, transcript, confidence = "", None, None
        if result is CallResult.ANSWERED:
            if outcome is not None:
                # No reply with a far-end hangup: the resident hung up (see _ivr_failed).
                reply, keys = outcome.reply or Reply.HUNG_UP, outcome.keys
                transcript, confidence = outcome.transcript, outcome.confidence
                if outcome.error:
                    log.warning("call %s: IVR error: %s", call.cid, outcome.error)
            else:
                # Answered, no IVR outcome, a real far-end cause: the resident hung up before
                # the AGI session could start (or the AGI server is unreachable: see its logs).
                log.warning("call %s: answered but no IVR outcome; taking it as hung up", call.cid)
                reply = Reply.HUNG_UP
        answered_at = call.answered_at
        if answered_at is None and outcome is not None:
            answered_at = outcome.started_at
        if result is CallResult.FAILED and answered_at is not None:
            log.warning("call %s: answered, but counted FAILED: %s", call.cid, call.failure)
        record = CallRecord(
            channel_id=call.cid,
            result=result,
            hangup_cause=call.hangup_cause,
            originated_at=call.originated_at or now,
            answered_at=answered_at,
            ended_at=call.hangup_at or now,
            reply=reply,
            keys=keys,
            transcript=transcript,
            confidence=confidence,
            sip_status=call.sip_status,
            lost=result is CallResult.FAILED and (call.vanished or call.ami_lost_at is not None),
        )
        log.info(
            "call %s: %s%s (cause %s, sip %s, rang %s, early media %s)%s",
            call.cid,
            result,
            f"/{reply}" if reply else "",
            call.hangup_cause,
            call.sip_status,
            call.rang,
            call.progress,
            f": {call.failure}" if call.failure and result is CallResult.FAILED else "",
        )
        return record

    async def _hangup(self, call: _Call) -> None:
        target = call.channel_name or call.cid  # AMI Hangup also finds a channel by uniqueid
        try:
            await self._ami.action("Hangup", {"Channel": target, "Cause": "16"}, timeout_s=5.0)
        except AmiError as exc:
            log.info("call %s: hangup request not done: %s", call.cid, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- AMI events (one dispatcher for every call) --------------------------------------------

    def _on_event(self, msg: AmiMessage) -> None:
        name = msg.event
        if name == "OriginateResponse":
            call = self._by_action.get(msg.action_id or "")
            if call is None:
                return
            call.response = msg
            call.response_loop = asyncio.get_running_loop().time()
            if call.originate_success:
                if call.answered_at is None:
                    call.answered_at = utc_ms(self._clock)
                # Answered: the ring deadline no longer applies, the call-length cap does.
                call.deadline = call.response_loop + self._max_call_s
            log.info(
                "call %s: OriginateResponse %s reason %s",
                call.cid,
                msg.get("Response"),
                msg.get("Reason"),
            )
            call.changed.set()
            return
        if name == "DialState":
            call = self._by_uid.get(msg.get("DestUniqueid") or "")
            if call is not None and msg.get("DialStatus") == "PROGRESS" and not call.progress:
                log.info("call %s: early media (183)", call.cid)
                call.progress = True
            return
        uid = msg.get("Uniqueid")
        call = self._by_uid.get(uid) if uid else None
        if call is None:
            return
        if name == "UserEvent":
            if msg.get("UserEvent") == HANGUP_USER_EVENT:
                call.sip_status = sip_status_of(msg.get("Sip"))
                call.sip_reported = True
                log.info("call %s: far end's last SIP status %r", call.cid, msg.get("Sip"))
            return
        if name == "HangupRequest":
            call.far_end_hangup = True
            return
        call.channel_created = True
        call.channel_name = msg.get("Channel") or call.channel_name
        state = msg.get("ChannelState")
        if state == CHANNEL_STATE_RINGING:
            if not call.rang:
                log.info("call %s: ringing", call.cid)
            call.rang = True
        elif state == CHANNEL_STATE_UP and name == "Newstate" and call.answered_at is None:
            call.answered_at = utc_ms(self._clock)
        if name == "Hangup":
            cause = msg.get("Cause")
            call.hangup_seen = True
            call.hangup_cause = int(cause) if cause and cause.isdigit() else None
            call.hangup_at = utc_ms(self._clock)
            call.hangup_loop = asyncio.get_running_loop().time()
            log.info("call %s: hangup cause %s (%s)", call.cid, cause, msg.get("Cause-txt"))
        call.changed.set()

    def _on_ami_state(self, state: AmiState) -> None:
        if state is AmiState.DISCONNECTED:
            now = asyncio.get_running_loop().time()
            for call in self._by_uid.values():
                if call.ami_lost_at is None and not (call.hangup_seen and call.response):
                    call.ami_lost_at = now
                    log.warning("call %s: AMI lost mid-call", call.cid)
                    call.changed.set()
        elif state is AmiState.BOOTED and any(
            c.ami_lost_at is not None for c in self._by_uid.values()
        ):
            self._spawn(self._reconcile())

    async def _reconcile(self) -> None:
        """After AMI is back: which of the calls we lost track of still have a channel?"""
        try:
            channels = await self._ami.action_list("CoreShowChannels")
        except AmiError as exc:
            log.warning("AMI reconcile failed (%s); lost calls end after the grace", exc)
            return
        live = {c.get("Uniqueid") for c in channels}
        for call in list(self._by_uid.values()):
            if call.ami_lost_at is None:
                continue
            if call.cid in live:
                log.info("call %s: channel still up after AMI came back; following it", call.cid)
                call.ami_lost_at = None
            else:
                log.warning("call %s: channel gone while AMI was down", call.cid)
                call.vanished = True
            call.changed.set()


__all__ = ["AGI_ADDRESS_VARIABLE", "AmiDialer", "CallRegistry"]
