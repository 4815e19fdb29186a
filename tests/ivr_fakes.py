"""Fake peers for the ivr tests. They speak the real wire protocols over real loopback sockets:
an AMI server (banner, Login, FullyBooted, Ping, scripted actions and events) and an
"Asterisk side" FastAGI client (the variable block, then scripted results per command)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import pytest

from ivr.ami import AmiMessage, encode_message, read_message

# ---------------------------------------------------------------------------------------------
# AMI


class FakeAmiConn:
    def __init__(self, server: FakeAmi, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.logged_in = False

    def send(self, **fields: str) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_message(fields.items()))

    def send_pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_message(pairs))

    def respond(self, action: AmiMessage, response: str = "Success", **fields: str) -> None:
        self.send(Response=response, ActionID=action.action_id or "", **fields)

    def close(self) -> None:
        self.writer.close()


ActionHandler = Callable[[FakeAmiConn, AmiMessage], Awaitable[None]]


class FakeAmi:
    """A minimal Asterisk Manager: Login (user ``anbu`` / ``secret``), FullyBooted right after
    login (or after ``boot_delay_s``), Ping, Logoff, CoreShowChannels over ``live_channels``,
    and ``handlers[action] (conn, message)`` for anything else (default: Success)."""

    def __init__(self, *, username: str = "anbu", secret: str = "secret") -> None:
        self.username = username
        self.secret = secret
        self.boot_delay_s = 0.0
        self.send_fully_booted = True
        self.answer_pings = True
        self.silent_actions: set[str] = set()
        self.handlers: dict[str, ActionHandler] = {}
        self.live_channels: set[str] = set()
        self.actions: list[AmiMessage] = []
        self.conns: list[FakeAmiConn] = []
        self.logins = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, "127.0.0.1", port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection (like Asterisk going away)."""
        if self._server is not None:
            self._server.close()
        self.drop_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def drop_all(self) -> None:
        for conn in self.conns:
            conn.writer.transport.abort()
        self.conns.clear()

    def event(self, name: str, **fields: str) -> None:
        """Broadcast an event to every logged-in connection."""
        for conn in self.conns:
            if conn.logged_in:
                conn.send(Event=name, **fields)

    def actions_named(self, name: str) -> list[AmiMessage]:
        return [a for a in self.actions if (a.get("Action") or "").lower() == name.lower()]

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.spawn(self._serve(FakeAmiConn(self, reader, writer)))

    async def _serve(self, conn: FakeAmiConn) -> None:
        self.conns.append(conn)
        conn.writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while (message := await read_message(conn.reader)) is not None:
                await self._handle(conn, message)
        except (ConnectionError, OSError):
            pass
        finally:
            if conn in self.conns:
                self.conns.remove(conn)
            conn.writer.transport.abort()

    async def _handle(self, conn: FakeAmiConn, message: AmiMessage) -> None:
        action = (message.get("Action") or "").lower()
        self.actions.append(message)
        if action == "login":
            if message.get("Username") == self.username and message.get("Secret") == self.secret:
                self.logins += 1
                conn.logged_in = True
                conn.respond(message, Message="Authentication accepted")
                if self.send_fully_booted:
                    self.spawn(self._boot(conn))
            else:
                conn.respond(message, "Error", Message="Authentication failed")
            return
        if not conn.logged_in:
            conn.respond(message, "Error", Message="Permission denied")
            return
        if action in {a.lower() for a in self.silent_actions}:
            return
        if action == "ping":
            if self.answer_pings:
                conn.respond(message, Ping="Pong", Timestamp="1.0")
            return
        if action == "logoff":
            conn.respond(message, "Goodbye", Message="Thanks for all the fish.")
            conn.close()
            return
        if action == "coreshowchannels":
            aid = message.action_id or ""
            conn.respond(message, EventList="start", Message="Channels will follow")
            for uid in sorted(self.live_channels):
                conn.send(
                    Event="CoreShowChannel",
                    ActionID=aid,
                    Uniqueid=uid,
                    Channel=f"PJSIP/trunk-{uid}",
                )
            conn.send(
                Event="CoreShowChannelsComplete",
                ActionID=aid,
                EventList="Complete",
                ListItems=str(len(self.live_channels)),
            )
            return
        for name, handler in self.handlers.items():
            if name.lower() == action:
                await handler(conn, message)
                return
        conn.respond(message)

    async def _boot(self, conn: FakeAmiConn) -> None:
        if self.boot_delay_s:
            await asyncio.sleep(self.boot_delay_s)
        conn.send(Event="FullyBooted", Privilege="system,all", Status="Fully Booted")


@pytest.fixture
async def fake_ami() -> AsyncIterator[FakeAmi]:
    """A started FakeAmi, stopped after the test."""
    server = FakeAmi()
    await server.start()
    yield server
    await server.stop()


# ---------------------------------------------------------------------------------------------
# FastAGI: the Asterisk side of a session


def agi_env(uniqueid: str = "1700000000.1", path: str = "checkin", **extra: str) -> list[str]:
    env = {
        "agi_network": "yes",
        "agi_network_script": path,
        "agi_request": f"agi://127.0.0.1:4573/{path}",
        "agi_channel": f"PJSIP/trunk-{uniqueid}",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.10.1",
        "agi_callerid": "unknown",
        "agi_context": "anbu-checkin",
        "agi_extension": "s",
        "agi_priority": "1",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000",
    }
    env.update(extra)
    return [f"{k}: {v}" for k, v in env.items()]


class FakeAgiPeer:
    """Connects to our FastAGI server as Asterisk would, sends the variable block, then answers
    each command line with ``respond(command) -> lines`` (write them verbatim, ``\\n``-ended).
    Records every command received in ``commands``."""

    def __init__(self, port: int, respond: Callable[[str], list[str]], env: list[str]) -> None:
        self.port = port
        self.respond = respond
        self.env = env
        self.commands: list[str] = []
        self.closed_by_server = False

    async def run(self, timeout_s: float = 10.0) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            async with asyncio.timeout(timeout_s):
                writer.write(("\n".join(self.env) + "\n\n").encode())
                await writer.drain()
                while True:
                    line = await reader.readline()
                    if not line:
                        self.closed_by_server = True
                        return
                    command = line.decode().rstrip("\n")
                    self.commands.append(command)
                    out = self.respond(command)
                    if out:
                        writer.write(("\n".join(out) + "\n").encode())
                        await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass
class FakeChannel:
    """A scripted caller on the Asterisk side of the AGI, for flow tests.

    ``press`` lists (prompt id, digit): the caller presses the digit while that prompt plays
    (the prompt id is the last path component); entries are used up in order, so a prompt
    played twice can get two different answers. ``press_after`` likewise for the wait after a
    GET DATA prompt. ``hangup_during`` names a prompt during which the caller hangs up; the
    channel then behaves like Asterisk: the media command returns -1, a ``HANGUP`` line
    follows, and every later command gets 511.
    """

    press: list[tuple[str, str]] = field(default_factory=list)
    press_after: list[tuple[str, str]] = field(default_factory=list)
    hangup_during: str | None = None
    hangup_cause: str = "16"  # what HANGUPCAUSE reads after the caller hung up
    played: list[str] = field(default_factory=list)
    dead: bool = False
    hung_up_by_us: bool = False

    def __call__(self, command: str) -> list[str]:
        words = _split(command)
        verb = " ".join(words[:2]).upper()
        if self.dead and not verb.startswith(("GET VARIABLE", "VERBOSE")):
            return ["511 Command Not Permitted on a dead channel or intercepted by a Gosub"]
        if verb.startswith("ANSWER"):
            return ["200 result=0"]
        if verb == "HANGUP" or words[0].upper() == "HANGUP" or verb == "EXEC HANGUP":
            self.dead = True
            self.hung_up_by_us = True
            return ["200 result=1", "HANGUP"]
        if verb == "CHANNEL STATUS":
            return ["200 result=6"]
        if verb in ("STREAM FILE", "GET DATA"):
            prompt = words[2].rsplit("/", 1)[-1]
            self.played.append(prompt)
            if self.hangup_during == prompt:
                self.dead = True
                line = "200 result=-1 endpos=800" if verb == "STREAM FILE" else "200 result=-1"
                return [line, "HANGUP"]
            digit = _take(self.press, prompt)
            if verb == "STREAM FILE":
                escape = words[3] if len(words) > 3 else ""
                if digit and digit in escape:
                    return [f"200 result={ord(digit)} endpos=4000"]
                return ["200 result=0 endpos=16000"]  # a key not in escape is ignored
            digit = digit or _take(self.press_after, prompt)
            return [f"200 result={digit}"] if digit else ["200 result= (timeout)"]
        if verb == "WAIT FOR":
            return ["200 result=0"]
        if verb.startswith(("SET VARIABLE", "VERBOSE")):
            return ["200 result=1"]
        if verb == "GET VARIABLE":
            if self.dead and words[2] == "HANGUPCAUSE":
                return [f"200 result=1 ({self.hangup_cause})"]
            return ["200 result=0"]
        return ["510 Invalid or unknown command"]


def _take(script: list[tuple[str, str]], prompt: str) -> str | None:
    if script and script[0][0] == prompt:
        return script.pop(0)[1]
    return None


def _split(command: str) -> list[str]:
    """Split an AGI command line the way Asterisk does (double quotes, backslash escapes)."""
    out: list[str] = []
    current: list[str] = []
    quoted = escaped = in_word = False
    for ch in command:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            in_word = True
        elif ch == " " and not quoted:
            if in_word:
                out.append("".join(current))
            current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
    if in_word:
        out.append("".join(current))
    return out


async def eventually(
    predicate: Callable[[], object], timeout_s: float = 3.0, step_s: float = 0.01
) -> None:
    """Poll ``predicate`` until it is true; TimeoutError after ``timeout_s``. For state owned by
    another component that offers nothing to wait on."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(step_s)
