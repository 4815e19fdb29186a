"""A small asyncio client for the Asterisk Manager Interface (AMI).

Why our own and not panoramisk (the best library we tried, see shared/notes/asterisk.md):
- an Async Originate's ``send_action`` resolves only at OriginateResponse, so the dialer cannot
  tell "queued" from "answered" and cannot subscribe before the first event of the call;
- event handlers can be registered but never removed, so per-call handlers leak and every
  handler scans every event (50 concurrent calls = 50 scans per event);
- its FastAGI server (the other half we need) shifts results by one after the asynchronous
  ``HANGUP`` line and spins forever on a peer that closes mid variable-block (see ivr/agi.py).
What we keep from it: reconnect with backoff and hold actions until ``FullyBooted``.

Protocol: after a one-line banner both sides exchange messages made of ``Key: Value`` lines
ended by a blank line (CRLF). Responses carry the ``ActionID`` we sent; list actions answer
``EventList: start``, then events with our ActionID, then ``EventList: Complete``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import random
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from anbu.errors import AmiError
from anbu.settings import AsteriskSettings, NodeSettings, Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

BANNER_PREFIX = b"Asterisk Call Manager"
# A message longer than this is a broken peer, not a big event (the largest real ones, e.g.
# CoreShowChannel or a Command's output, stay far below).
MAX_MESSAGE_LINES = 4096
STREAM_LIMIT = 256 * 1024


class AmiConnectionError(AmiError):
    """Not connected, or the connection dropped before the action was answered."""


class AmiNotConnectedError(AmiConnectionError):
    """The action was not sent: no BOOTED connection within its timeout."""


class AmiAuthError(AmiError):
    """Asterisk refused the Login."""


class AmiTimeoutError(AmiError):
    """No response within the action's timeout."""


class AmiProtocolError(AmiError):
    """The peer does not speak AMI (bad banner, oversized message)."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error`` to an action."""

    def __init__(self, action: str, response: AmiMessage) -> None:
        message = response.get("Message") or "no message"
        super().__init__(f"AMI action {action} refused: {message}")
        self.action = action
        self.response = response


class AmiState(enum.StrEnum):
    """Where the connection is. Actions are released only in ``BOOTED``."""

    DISCONNECTED = "disconnected"
    CONNECTED = "connected"  # TCP up, banner read
    LOGGED_IN = "logged_in"  # Login accepted, waiting for FullyBooted
    BOOTED = "booted"  # FullyBooted seen: actions flow
    CLOSED = "closed"  # close() was called; terminal


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message. Keys are looked up case-insensitively (Asterisk spells ``Uniqueid``,
    ``UniqueID`` and ``ActionID`` inconsistently); repeated keys (``Output``, ``Variable``)
    are kept in order."""

    pairs: tuple[tuple[str, str], ...]
    _index: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, str] = {}
        for key, value in self.pairs:
            index.setdefault(key.lower(), value)
        object.__setattr__(self, "_index", index)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self._index.get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._index[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def getall(self, key: str) -> list[str]:
        lowered = key.lower()
        return [value for k, value in self.pairs if k.lower() == lowered]

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def is_response(self) -> bool:
        # OriginateResponse is an *event* with a ``Response:`` header: Event decides.
        return "Response" in self and "Event" not in self

    @property
    def ok(self) -> bool:
        return (self.get("Response") or "").lower() in ("success", "follows", "goodbye")

    @classmethod
    def of(cls, **fields: str) -> AmiMessage:
        return cls(tuple(fields.items()))


def encode_message(fields: Iterable[tuple[str, str]]) -> bytes:
    """Serialise ``Key: Value`` pairs; a CR or LF inside would inject a second message."""
    lines = []
    for key, value in fields:
        if any(c in key or c in value for c in "\r\n") or ":" in key:
            raise AmiProtocolError(f"AMI field {key!r} holds a line break or colon")
        lines.append(f"{key}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


async def read_message(reader: asyncio.StreamReader) -> AmiMessage | None:
    """Read one message; ``None`` at EOF (a partial message at EOF is dropped).

    Lines without a colon (the body of a legacy ``Response: Follows``) are kept as ``Output``.
    """
    pairs: list[tuple[str, str]] = []
    while True:
        raw = await reader.readline()
        if not raw.endswith(b"\n"):
            return None
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if pairs:
                return AmiMessage(tuple(pairs))
            continue
        key, sep, value = line.partition(":")
        pairs.append((key.strip(), value.strip()) if sep else ("Output", line))
        if len(pairs) > MAX_MESSAGE_LINES:
            raise AmiProtocolError(f"AMI message longer than {MAX_MESSAGE_LINES} lines")


EventHandler = Callable[[AmiMessage], None]
StateHandler = Callable[[AmiState], None]


class Subscription:
    """A handle returned by ``subscribe``/``on_state``; ``cancel()`` unsubscribes (idempotent)."""

    def __init__(self, remove: Callable[[Subscription], None]) -> None:
        self._remove: Callable[[Subscription], None] | None = remove

    def cancel(self) -> None:
        if self._remove is not None:
            remove, self._remove = self._remove, None
            remove(self)

    @property
    def active(self) -> bool:
        return self._remove is not None


@dataclass(slots=True)
class _Pending:
    action: str
    action_id: str
    future: asyncio.Future[AmiMessage]
    # For list actions: events with our ActionID are collected until ``EventList: Complete``.
    events: list[AmiMessage] | None = None
    list_done: asyncio.Future[None] | None = None


class AmiClient:
    """One AMI connection that keeps itself up.

    ``start()`` runs a background loop: connect, read the banner, Login, wait for FullyBooted,
    then ping every ``ping_interval_s``; on any failure it reconnects with exponential backoff
    (``reconnect_initial_s`` doubling up to ``reconnect_max_s``, with jitter). Actions wait
    until the connection is BOOTED (within their timeout) and are never re-sent after a drop:
    an Originate sent twice would ring the resident twice.

    Event handlers are synchronous callbacks run in the reader task, in arrival order; they must
    not block. They are indexed by event name, so a handler costs nothing for other events.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        events: str = "system,call,user",
        connect_timeout_s: float = 5.0,
        boot_timeout_s: float = 30.0,
        action_timeout_s: float = 10.0,
        ping_interval_s: float = 20.0,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self._username = username
        self._secret = secret
        # Login's ``Events`` mask: FullyBooted is a "system" event, the dialer needs "call" and
        # "user" (the engine's hangup handler reports the far end's SIP status as a UserEvent).
        self._events = events
        self._connect_timeout_s = connect_timeout_s
        self._boot_timeout_s = boot_timeout_s
        self.action_timeout_s = action_timeout_s
        self._ping_interval_s = ping_interval_s
        self._reconnect_initial_s = reconnect_initial_s
        self._reconnect_max_s = reconnect_max_s

        self._state = AmiState.DISCONNECTED
        self._ready = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._id_prefix = f"anbu-{secrets.token_hex(3)}"
        self._handlers: dict[str, list[tuple[Subscription, EventHandler]]] = {}
        self._any_handlers: list[tuple[Subscription, EventHandler]] = []
        self._state_handlers: list[tuple[Subscription, StateHandler]] = []
        self._runner: asyncio.Task[None] | None = None
        self._session_tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.last_error: BaseException | None = None
        # Bumped at every FullyBooted: a caller can tell "reconnected since I looked".
        self.generation = 0

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def state(self) -> AmiState:
        return self._state

    @property
    def booted(self) -> bool:
        return self._state is AmiState.BOOTED

    def start(self) -> None:
        """Start the connect/reconnect loop in the background (idempotent)."""
        if self._closing:
            raise AmiConnectionError("AMI client is closed")
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"ami-{self.host}:{self.port}")

    async def connect(self, timeout_s: float | None = None) -> None:
        """Start and wait until BOOTED. Raises (and closes) on auth failure or timeout."""
        self.start()
        try:
            await self.wait_booted(timeout_s if timeout_s is not None else self._boot_timeout_s)
        except AmiError:
            await self.close()
            raise

    async def wait_booted(self, timeout_s: float) -> None:
        """Wait until the connection is BOOTED; an auth failure ends the wait at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._ready.is_set():
            if self._closing:
                raise AmiConnectionError("AMI client is closed")
            if isinstance(self.last_error, AmiAuthError):
                raise self.last_error
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AmiConnectionError(
                    f"AMI {self.host}:{self.port} not ready after {timeout_s:.1f} s"
                    f" (last error: {self.last_error!r})"
                )
            # Wake up now and then to notice an auth failure while we wait.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), min(remaining, 0.1))

    async def close(self) -> None:
        """Log off, stop the loop, fail pending actions. Leaves no task behind."""
        if self._state is AmiState.CLOSED:
            return
        was_ready = self._ready.is_set() and not self._closing
        # Set first: Asterisk drops the connection right after Logoff, and the loop must not
        # take that for a failure to recover from.
        self._closing = True
        if was_ready:
            with contextlib.suppress(AmiError):
                await self.action("Logoff", timeout_s=1.0)
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        self._fail_pending(AmiConnectionError("AMI client closed"))
        self._set_state(AmiState.CLOSED)

    async def __aenter__(self) -> AmiClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- subscriptions ---------------------------------------------------------------------

    def subscribe(self, handler: EventHandler, *events: str) -> Subscription:
        """Call ``handler`` for the named events (all events when none are named)."""
        names = [e.lower() for e in events]

        def remove(sub: Subscription) -> None:
            if not names:
                self._any_handlers[:] = [h for h in self._any_handlers if h[0] is not sub]
            for name in names:
                handlers = [h for h in self._handlers.get(name, []) if h[0] is not sub]
                if handlers:
                    self._handlers[name] = handlers
                else:
                    self._handlers.pop(name, None)

        sub = Subscription(remove)
        if not names:
            self._any_handlers.append((sub, handler))
        for name in names:
            self._handlers.setdefault(name, []).append((sub, handler))
        return sub

    def on_state(self, handler: StateHandler) -> Subscription:
        """Call ``handler`` on every state change (connected, booted, disconnected, closed)."""

        def remove(sub: Subscription) -> None:
            self._state_handlers[:] = [h for h in self._state_handlers if h[0] is not sub]

        sub = Subscription(remove)
        self._state_handlers.append((sub, handler))
        return sub

    # ---- actions ---------------------------------------------------------------------------

    async def action(
        self,
        name: str,
        fields: Mapping[str, str | Sequence[str]] | None = None,
        *,
        timeout_s: float | None = None,
        action_id: str | None = None,
    ) -> AmiMessage:
        """Send one action once BOOTED and return its response.

        Raises AmiActionError on ``Response: Error``, AmiTimeoutError, AmiConnectionError.
        A list value in ``fields`` becomes repeated lines (``Variable: a=1``, ``Variable: b=2``).
        """
        timeout = timeout_s if timeout_s is not None else self.action_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout  # one budget for waiting to connect and the answer
        pending = await self._send(name, fields, timeout, action_id, collect=False)
        return await self._await_response(pending, name, deadline - loop.time())

    async def action_list(
        self,
        name: str,
        fields: Mapping[str, str | Sequence[str]] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> list[AmiMessage]:
        """Send a list action (CoreShowChannels, Status, ...) and return its events, without
        the closing ``...Complete`` event."""
        timeout = timeout_s if timeout_s is not None else self.action_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = await self._send(name, fields, timeout, None, collect=True)
        response = await self._await_response(pending, name, deadline - loop.time())
        if (response.get("EventList") or "").lower() != "start":
            return []  # nothing to list: no events will follow
        assert pending.list_done is not None
        assert pending.events is not None
        try:
            await asyncio.wait_for(pending.list_done, max(deadline - loop.time(), 0))
        except TimeoutError:
            raise AmiTimeoutError(f"AMI {name}: list not complete after {timeout:.1f} s") from None
        finally:
            self._drop_pending(pending)
        return pending.events

    def next_action_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    async def _send(
        self,
        name: str,
        fields: Mapping[str, str | Sequence[str]] | None,
        timeout_s: float | None,
        action_id: str | None,
        *,
        collect: bool,
        gate: bool = True,
    ) -> _Pending:
        timeout = timeout_s if timeout_s is not None else self.action_timeout_s
        if gate and not self._ready.is_set():
            if self._closing or self._state is AmiState.CLOSED:
                raise AmiNotConnectedError("AMI client is closed")
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                raise AmiNotConnectedError(
                    f"AMI {name}: not connected within {timeout:.1f} s"
                    f" (last error: {self.last_error!r})"
                ) from None
        writer = self._writer
        if writer is None or writer.is_closing():
            raise AmiNotConnectedError(f"AMI {name}: not connected")
        aid = action_id or self.next_action_id()
        pairs: list[tuple[str, str]] = [("Action", name), ("ActionID", aid)]
        for key, value in (fields or {}).items():
            if isinstance(value, str):
                pairs.append((key, value))
            else:
                pairs.extend((key, v) for v in value)
        data = encode_message(pairs)
        loop = asyncio.get_running_loop()
        pending = _Pending(name, aid, loop.create_future())
        if collect:
            pending.events = []
            pending.list_done = loop.create_future()
        self._pending[aid] = pending
        try:
            writer.write(data)
            await writer.drain()
        except (OSError, RuntimeError) as exc:
            self._pending.pop(aid, None)
            raise AmiConnectionError(f"AMI {name}: send failed: {exc!r}") from exc
        return pending

    async def _await_response(
        self, pending: _Pending, name: str, timeout_s: float | None
    ) -> AmiMessage:
        timeout = timeout_s if timeout_s is not None else self.action_timeout_s
        try:
            response = await asyncio.wait_for(pending.future, max(timeout, 0))
        except TimeoutError:
            self._drop_pending(pending)
            raise AmiTimeoutError(f"AMI {name}: no response in time") from None
        except BaseException:
            self._drop_pending(pending)
            raise
        if pending.events is None:
            self._drop_pending(pending)
        if not response.ok:
            self._drop_pending(pending)
            raise AmiActionError(name, response)
        return response

    def _drop_pending(self, pending: _Pending) -> None:
        if self._pending.get(pending.action_id) is pending:
            del self._pending[pending.action_id]
        if not pending.future.done():
            pending.future.cancel()
        if pending.list_done is not None and not pending.list_done.done():
            pending.list_done.cancel()

    def _fail_pending(self, exc: AmiError) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            for fut in (p.future, p.list_done):
                if fut is not None and not fut.done():
                    fut.set_exception(exc)
                    # Mark retrieved: a caller that already gave up must not log "never retrieved".
                    fut.exception()

    # ---- connection loop -------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._reconnect_initial_s
        while not self._closing:
            reached_boot = False
            try:
                reached_boot = await self._session()
            except asyncio.CancelledError:
                raise
            except (OSError, AmiError, TimeoutError, EOFError) as exc:
                self.last_error = exc
                if not self._closing:
                    log.warning("AMI %s:%s: %s", self.host, self.port, str(exc) or repr(exc))
            if self._closing:
                break
            if reached_boot:
                delay = self._reconnect_initial_s
            # Jitter keeps many clients from hammering a restarting Asterisk in step.
            sleep = delay * random.uniform(0.8, 1.2)  # not cryptographic
            log.info("AMI %s:%s: reconnecting in %.2f s", self.host, self.port, sleep)
            await asyncio.sleep(sleep)
            delay = min(delay * 2, self._reconnect_max_s)

    async def _session(self) -> bool:
        """One connection's life. Returns whether it reached BOOTED; raises on failure."""
        reached_boot = False
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=STREAM_LIMIT),
            self._connect_timeout_s,
        )
        self._writer = writer
        reader_task: asyncio.Task[None] | None = None
        ping_task: asyncio.Task[None] | None = None
        try:
            banner = await asyncio.wait_for(reader.readline(), self._connect_timeout_s)
            if not banner.startswith(BANNER_PREFIX):
                raise AmiProtocolError(f"not an AMI banner: {banner[:60]!r}")
            self._set_state(AmiState.CONNECTED)
            booted_or_gone = asyncio.Event()
            reader_task = asyncio.create_task(self._read_loop(reader, booted_or_gone))
            self._session_tasks.add(reader_task)
            await self._login()
            self._set_state(AmiState.LOGGED_IN)
            try:
                await asyncio.wait_for(booted_or_gone.wait(), self._boot_timeout_s)
            except TimeoutError:
                raise AmiConnectionError(
                    f"no FullyBooted within {self._boot_timeout_s:.0f} s"
                    " (does the AMI user have read=system?)"
                ) from None
            if reader_task.done():
                raise AmiConnectionError("connection closed before FullyBooted")
            reached_boot = True
            self.last_error = None
            self.generation += 1
            self._ready.set()
            self._set_state(AmiState.BOOTED)
            log.info(
                "AMI %s:%s: fully booted (generation %d)", self.host, self.port, self.generation
            )
            ping_task = asyncio.create_task(self._ping_loop(writer))
            self._session_tasks.add(ping_task)
            await reader_task
            if not self._closing:
                self.last_error = AmiConnectionError("connection lost")
                log.warning("AMI %s:%s: connection lost", self.host, self.port)
            return reached_boot
        finally:
            self._ready.clear()
            self._writer = None
            for task in (ping_task, reader_task):
                if task is not None:
                    task.cancel()
            tasks = [t for t in (ping_task, reader_task) if t is not None]
            await asyncio.gather(*tasks, return_exceptions=True)
            self._session_tasks.difference_update(tasks)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            self._fail_pending(AmiConnectionError("AMI connection lost"))
            if not self._closing:
                self._set_state(AmiState.DISCONNECTED)

    async def _login(self) -> None:
        fields = {"Username": self._username, "Secret": self._secret, "Events": self._events}
        pending = await self._send("Login", fields, None, None, collect=False, gate=False)
        try:
            await self._await_response(pending, "Login", self._connect_timeout_s)
        except AmiActionError as exc:
            raise AmiAuthError(
                f"AMI login as {self._username!r} refused: {exc.response.get('Message')}"
            ) from None

    async def _read_loop(self, reader: asyncio.StreamReader, booted: asyncio.Event) -> None:
        try:
            while True:
                try:
                    message = await read_message(reader)
                except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                    # ValueError: a line over STREAM_LIMIT; the stream cannot be resynchronised.
                    log.warning("AMI %s:%s: read failed: %r", self.host, self.port, exc)
                    return
                if message is None:
                    return
                self._dispatch(message, booted)
        finally:
            booted.set()  # wake the boot waiter: the session is over

    def _dispatch(self, message: AmiMessage, booted: asyncio.Event) -> None:
        aid = message.action_id
        pending = self._pending.get(aid) if aid else None
        if message.is_response:
            if pending is not None and not pending.future.done():
                pending.future.set_result(message)
            return
        name = message.event
        if name is None:
            log.debug("AMI: ignoring a message that is neither response nor event")
            return
        if pending is not None and pending.events is not None:
            if (message.get("EventList") or "").lower() == "complete":
                if pending.list_done is not None and not pending.list_done.done():
                    pending.list_done.set_result(None)
            else:
                pending.events.append(message)
        if name == "FullyBooted":
            booted.set()
        elif name == "Shutdown":
            log.warning(
                "AMI %s:%s: Asterisk is shutting down (%s)",
                self.host,
                self.port,
                message.get("Shutdown"),
            )
        handlers = [*self._handlers.get(name.lower(), ()), *self._any_handlers]
        _deliver(handlers, message, "event", name)

    async def _ping_loop(self, writer: asyncio.StreamWriter) -> None:
        # A half-open TCP connection (Asterisk killed, network gone) never reads EOF: a Ping
        # that goes unanswered is the only way to notice.
        while True:
            await asyncio.sleep(self._ping_interval_s)
            try:
                await self.action("Ping", timeout_s=min(self._ping_interval_s, 10.0))
            except AmiError as exc:
                log.warning(
                    "AMI %s:%s: ping failed (%s); dropping the connection",
                    self.host,
                    self.port,
                    exc,
                )
                writer.transport.abort()
                return

    def _set_state(self, state: AmiState) -> None:
        if state is self._state:
            return
        self._state = state
        _deliver(list(self._state_handlers), state, "state", state)


def _deliver(
    handlers: Iterable[tuple[Subscription, Callable[[T], None]]], arg: T, what: str, about: object
) -> None:
    """Call each still active subscriber with ``arg``; a handler that fails is logged and the
    others still run (a subscriber's bug must not stop the reader)."""
    for sub, handler in handlers:
        if not sub.active:
            continue
        try:
            handler(arg)
        except Exception:
            log.exception("AMI %s handler failed on %s", what, about)


def ami_client_from_settings(
    settings: Settings, instance: AsteriskSettings | NodeSettings | None = None
) -> AmiClient:
    """The engine's (or an engine node's) AMI client, tuned by ``settings.ivr``."""
    target = instance or settings.engine
    ivr = settings.ivr
    return AmiClient(
        target.ami_host,
        target.ami_port,
        target.ami_user,
        target.ami_secret.get_secret_value(),
        connect_timeout_s=ivr.ami_connect_timeout_s,
        action_timeout_s=ivr.ami_action_timeout_s,
        ping_interval_s=ivr.ami_ping_interval_s,
        reconnect_initial_s=ivr.ami_reconnect_initial_s,
        reconnect_max_s=ivr.ami_reconnect_max_s,
    )
