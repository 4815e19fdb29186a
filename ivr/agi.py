"""A FastAGI server on asyncio: Asterisk's ``AGI(agi://host:port/path)`` connects here.

Why our own: panoramisk's FastAGI server (tried, see shared/notes/asterisk.md) has two bugs we
must not have. (1) When the channel hangs up Asterisk writes an asynchronous ``HANGUP`` line;
panoramisk reads it as the result of the next command, so every later result is shifted by
one. Here the reader skips ``HANGUP`` lines, remembers the hangup, and still consumes the
command's own result line. (2) A peer that closes before the blank line ending its ``agi_*``
block makes panoramisk loop forever on EOF and block the event loop. Here the block is read
with a deadline and a size cap, and EOF ends the session.

Protocol: Asterisk sends ``agi_key: value`` lines and a blank line, then we write one command
line at a time and read one result line (``200 result=1 (data) endpos=123``; ``510`` unknown
command; ``511`` dead channel; ``520-`` starts a multi-line usage message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from anbu.errors import TelephonyError
from anbu.settings import Settings
from ivr.tcp import bound_port

log = logging.getLogger(__name__)

STREAM_LIMIT = 64 * 1024
RESULT_HANGUP_LINE = "HANGUP"


class AgiError(TelephonyError):
    """A FastAGI session failed."""


class AgiHangupError(AgiError):
    """The channel hung up (``HANGUP`` line, ``511``, or the socket closed)."""


class AgiTimeoutError(AgiError):
    """No answer within the deadline; the session is closed (its state is unknown)."""


class AgiProtocolError(AgiError):
    """The peer sent something that is not AGI (or too much of it)."""


class AgiCommandError(AgiError):
    """Asterisk refused a command (510/520) or a command failed (result -1 on a live channel)."""

    def __init__(self, command: str, response: AgiResponse | None, why: str = "") -> None:
        detail = why or (response.raw if response else "")
        super().__init__(f"AGI {command.split(' ', 1)[0]} failed: {detail}")
        self.command = command
        self.response = response


_RESPONSE = re.compile(
    r"^(?P<code>\d{3})(?: result=(?P<result>\S*))?(?: \((?P<data>.*)\))?(?P<rest>.*)$"
)
_FIELD = re.compile(r"(\w+)=(\S*)")


@dataclass(frozen=True, slots=True)
class AgiResponse:
    """One result line. ``result`` is the raw token after ``result=``; ``data`` the text in
    parentheses (``timeout``, a variable's value); ``fields`` trailing ``key=value`` pairs."""

    code: int
    result: str
    data: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None

    @classmethod
    def parse(cls, line: str) -> AgiResponse:
        match = _RESPONSE.match(line)
        if match is None:
            raise AgiProtocolError(f"not an AGI result line: {line[:80]!r}")
        rest = match.group("rest") or ""
        return cls(
            code=int(match.group("code")),
            result=match.group("result") or "",
            data=match.group("data"),
            fields=dict(_FIELD.findall(rest)),
            raw=line,
        )


def quote_arg(arg: str) -> str:
    """Quote one command argument the way Asterisk's AGI parser reads it back."""
    if any(c in arg for c in "\r\n"):
        raise AgiProtocolError("an AGI argument cannot hold a line break")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _digit(code: int) -> str | None:
    """STREAM FILE / WAIT FOR DIGIT report a digit as its character code; 0 means none."""
    return chr(code) if code > 0 else None


@dataclass(frozen=True, slots=True)
class RecordResult:
    digit: str | None  # the escape digit that stopped the recording
    reason: str | None  # Asterisk's word: "dtmf", "timeout", "hangup", "silence"...
    endpos: int | None


async def read_agi_env(
    reader: asyncio.StreamReader, *, timeout_s: float, max_bytes: int
) -> dict[str, str]:
    """Read the ``agi_*`` block up to its blank line.

    A peer that stalls is cut off at ``timeout_s``; one that closes mid-block (EOF, or a last
    line without newline) or sends more than ``max_bytes`` raises at once: nothing here loops
    on EOF.
    """
    env: dict[str, str] = {}
    total = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    raw = await reader.readline()
                except ValueError as exc:  # one line over the stream limit
                    raise AgiProtocolError("AGI variable line too long") from exc
                if not raw.endswith(b"\n"):
                    raise AgiProtocolError(
                        f"peer closed inside the variable block after {len(env)} lines"
                    )
                total += len(raw)
                if total > max_bytes:
                    raise AgiProtocolError(f"AGI variable block over {max_bytes} bytes")
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    return env
                key, sep, value = line.partition(":")
                if not sep:
                    raise AgiProtocolError(f"not an AGI variable line: {line[:80]!r}")
                env[key.strip()] = value.strip()
    except TimeoutError:
        raise AgiTimeoutError(
            f"AGI variable block not finished within {timeout_s:.1f} s ({len(env)} lines)"
        ) from None


class AgiSession:
    """One FastAGI connection: the channel's variables and a command channel to Asterisk.

    Commands are serialised (one in flight). After a hangup, commands raise
    :class:`AgiHangupError` without being sent unless ``dead_ok=True`` (GET VARIABLE and
    VERBOSE work on a dead channel).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        command_timeout_s: float = 15.0,
        media_timeout_s: float = 120.0,
    ) -> None:
        self.env = dict(env)
        self._reader = reader
        self._writer = writer
        self.command_timeout_s = command_timeout_s
        self.media_timeout_s = media_timeout_s
        self._lock = asyncio.Lock()
        self.hung_up = False
        self._closed = False

    # ---- what Asterisk told us ---------------------------------------------------------------

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def request(self) -> str:
        return self.env.get("agi_request", "")

    @property
    def path(self) -> str:
        """The route: ``/checkin`` for ``agi://host:port/checkin?x=1``."""
        request = self.request
        if "://" in request:
            return urlsplit(request).path or "/"
        script = self.env.get("agi_network_script", request)
        return "/" + script.split("?", 1)[0].lstrip("/")

    def arg(self, n: int) -> str | None:
        """``agi_arg_n``: the n-th argument after the URL in ``AGI(url,arg1,arg2)``."""
        return self.env.get(f"agi_arg_{n}")

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- the command channel -------------------------------------------------------------------

    async def command(
        self, command: str, *, timeout_s: float | None = None, dead_ok: bool = False
    ) -> AgiResponse:
        """Send one command line and return its result.

        Raises AgiHangupError on hangup/511/EOF, AgiTimeoutError (session closed),
        AgiCommandError on 510/520.
        """
        if "\n" in command or "\r" in command:
            raise AgiProtocolError("an AGI command is one line")
        timeout = timeout_s if timeout_s is not None else self.command_timeout_s
        async with self._lock:
            if self._closed:
                raise AgiHangupError(f"AGI session closed before {command.split(' ', 1)[0]}")
            if self.hung_up and not dead_ok:
                raise AgiHangupError(f"channel hung up before {command.split(' ', 1)[0]}")
            try:
                self._writer.write(command.encode() + b"\n")
                await self._writer.drain()
            except (OSError, RuntimeError) as exc:
                self._closed = True
                raise AgiHangupError(f"AGI socket closed while sending: {exc!r}") from exc
            try:
                response = await asyncio.wait_for(self._read_response(), timeout)
            except TimeoutError:
                # The result may still come and would answer the next command: the session
                # cannot be trusted any more, so end it.
                self._abort()
                raise AgiTimeoutError(
                    f"AGI {command.split(' ', 1)[0]}: no result after {timeout:.1f} s"
                ) from None
        if response.code == 511:
            self.hung_up = True
            raise AgiHangupError(f"channel is dead ({response.raw})")
        if response.code != 200:
            raise AgiCommandError(command, response)
        if self.hung_up and not dead_ok:
            raise AgiHangupError(f"channel hung up during {command.split(' ', 1)[0]}")
        return response

    async def _readline(self) -> str:
        try:
            raw = await self._reader.readline()
        except (OSError, ValueError) as exc:
            self._closed = True
            raise AgiHangupError(f"AGI socket failed: {exc!r}") from exc
        if not raw.endswith(b"\n"):
            self._closed = True
            self.hung_up = True
            raise AgiHangupError("AGI socket closed by Asterisk")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def _read_response(self) -> AgiResponse:
        while True:
            line = await self._readline()
            if line == RESULT_HANGUP_LINE:
                # Asynchronous notice, not a result: the result of our command still follows.
                if not self.hung_up:
                    log.debug("agi %s: HANGUP notice", self.uniqueid)
                self.hung_up = True
                continue
            if not line:
                continue
            if line.startswith("520-"):
                usage = [line]
                while not (line := await self._readline()).startswith("520 "):
                    usage.append(line)
                return AgiResponse(520, "", "\n".join(usage[1:]), {}, usage[0])
            return AgiResponse.parse(line)

    def _abort(self) -> None:
        self._closed = True
        self._writer.transport.abort()

    async def close(self) -> None:
        if self._closed and self._writer.is_closing():
            return
        self._closed = True
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        except (OSError, TimeoutError):
            self._writer.transport.abort()

    # ---- conveniences ------------------------------------------------------------------------

    async def _media_failed(self, name: str) -> AgiError:
        """A media command returned -1: a hangup whose HANGUP notice is still on its way, or a
        real failure (missing file). A cheap probe tells them apart."""
        if self.hung_up:
            return AgiHangupError(f"channel hung up during {name}")
        try:
            await self.command("CHANNEL STATUS")
        except AgiHangupError as exc:
            return exc
        return AgiCommandError(name, None, "result -1 on a live channel (missing sound file?)")

    async def answer(self) -> None:
        response = await self.command("ANSWER")
        if response.result_int == -1:
            raise await self._media_failed("ANSWER")

    async def stream_file(
        self, path: str, escape_digits: str = "", *, timeout_s: float | None = None
    ) -> str | None:
        """Play ``path`` (no extension); return the escape digit pressed, or None."""
        response = await self.command(
            f"STREAM FILE {quote_arg(path)} {quote_arg(escape_digits)}",
            timeout_s=timeout_s or self.media_timeout_s,
        )
        code = response.result_int
        if code is None or code < 0:
            raise await self._media_failed("STREAM FILE")
        return _digit(code)

    async def get_data(
        self, path: str, timeout_ms: int, max_digits: int, *, timeout_s: float | None = None
    ) -> str:
        """Play ``path`` (any digit interrupts it), then collect up to ``max_digits`` digits,
        waiting ``timeout_ms`` for each. Returns the digits ("" when none)."""
        response = await self.command(
            f"GET DATA {quote_arg(path)} {int(timeout_ms)} {int(max_digits)}",
            timeout_s=timeout_s or self.media_timeout_s + max_digits * timeout_ms / 1000,
        )
        if response.result == "-1":
            raise await self._media_failed("GET DATA")
        return response.result

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        response = await self.command(
            f"WAIT FOR DIGIT {int(timeout_ms)}",
            timeout_s=timeout_ms / 1000 + self.command_timeout_s,
        )
        code = response.result_int
        if code is None or code < 0:
            raise await self._media_failed("WAIT FOR DIGIT")
        return _digit(code)

    async def exec(self, app: str, args: str, *, timeout_s: float) -> int | None:
        """EXEC an application (``Dial``) on the channel; its result code (-2: no such app).
        ``timeout_s`` must cover the whole application: a Dial lasts the conversation."""
        response = await self.command(f"EXEC {app} {quote_arg(args)}", timeout_s=timeout_s)
        return response.result_int

    async def get_variable(self, name: str) -> str | None:
        response = await self.command(f"GET VARIABLE {quote_arg(name)}", dead_ok=True)
        return response.data if response.result == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f"SET VARIABLE {quote_arg(name)} {quote_arg(value)}")

    async def record_file(
        self,
        path: str,
        fmt: str = "wav",
        escape_digits: str = "",
        timeout_ms: int = 10000,
        silence_s: float | None = None,
        *,
        beep: bool = False,
    ) -> RecordResult:
        """Record to ``path.fmt`` until an escape digit, ``timeout_ms`` or ``silence_s`` of
        silence. A hangup while recording raises AgiHangupError (the file is kept)."""
        parts = [
            "RECORD FILE",
            quote_arg(path),
            quote_arg(fmt),
            quote_arg(escape_digits),
            str(int(timeout_ms)),
        ]
        if beep:
            parts.append("BEEP")
        if silence_s is not None:
            parts.append(f"s={max(1, round(silence_s))}")
        response = await self.command(
            " ".join(parts), timeout_s=timeout_ms / 1000 + self.command_timeout_s
        )
        code = response.result_int
        reason = response.data
        endpos = response.fields.get("endpos")
        if code is not None and code < 0:
            if reason == "hangup" or self.hung_up:
                self.hung_up = True
                raise AgiHangupError("channel hung up while recording")
            raise AgiCommandError("RECORD FILE", response)
        return RecordResult(
            digit=_digit(code) if reason == "dtmf" and code else None,
            reason=reason,
            endpos=int(endpos) if endpos and endpos.isdigit() else None,
        )

    async def hangup(self, cause: int | None = None) -> None:
        """Hang up the channel; a no-op when it is already gone.

        AGI's own HANGUP leaves the channel's cause at 0 ("unknown"), so with a Q.850
        ``cause`` this runs the Hangup() application instead (16 = normal clearing).
        """
        command = "HANGUP" if cause is None else f"EXEC Hangup {int(cause)}"
        with contextlib.suppress(AgiHangupError):
            await self.command(command)

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command(f"VERBOSE {quote_arg(message)} {int(level)}", dead_ok=True)


AgiHandler = Callable[[AgiSession], Awaitable[None]]


class AgiServer:
    """FastAGI listener: routes each connection by its URL path to an async handler.

    Every session runs in its own tracked task; ``stop()`` stops accepting, gives running
    sessions ``grace_s`` to finish, then cancels them and closes their sockets.
    """

    def __init__(
        self,
        routes: Mapping[str, AgiHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        env_timeout_s: float = 5.0,
        env_max_bytes: int = 16384,
        command_timeout_s: float = 15.0,
        media_timeout_s: float = 120.0,
    ) -> None:
        self._routes = {("/" + path.lstrip("/")): handler for path, handler in routes.items()}
        self.host = host
        self._port = port
        self._env_timeout_s = env_timeout_s
        self._env_max_bytes = env_max_bytes
        self._command_timeout_s = command_timeout_s
        self._media_timeout_s = media_timeout_s
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sessions_served = 0

    @classmethod
    def from_settings(cls, settings: Settings, routes: Mapping[str, AgiHandler]) -> AgiServer:
        ivr = settings.ivr
        return cls(
            routes,
            host=settings.agi_host,
            port=settings.agi_port,
            env_timeout_s=ivr.agi_env_timeout_s,
            env_max_bytes=ivr.agi_env_max_bytes,
            command_timeout_s=ivr.agi_command_timeout_s,
            media_timeout_s=ivr.agi_media_timeout_s,
        )

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return bound_port(self._server, self._port)

    @property
    def active_sessions(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        if self._server is not None:
            return
        # SO_REUSEADDR before bind, or a restart within TIME_WAIT cannot bind the port.
        self._server = await asyncio.start_server(
            self._on_connect,
            self.host,
            self._port,
            family=socket.AF_INET,
            reuse_address=True,
            limit=STREAM_LIMIT,
        )
        log.info(
            "FastAGI listening on %s:%d (routes %s)",
            self.host,
            self.port,
            ", ".join(sorted(self._routes)),
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = set(self._tasks)
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=grace_s)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> AgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        session: AgiSession | None = None
        try:
            try:
                env = await read_agi_env(
                    reader, timeout_s=self._env_timeout_s, max_bytes=self._env_max_bytes
                )
            except AgiError as exc:
                log.warning("agi %s: dropped: %s", peer, exc)
                return
            session = AgiSession(
                env,
                reader,
                writer,
                command_timeout_s=self._command_timeout_s,
                media_timeout_s=self._media_timeout_s,
            )
            self.sessions_served += 1
            handler = self._routes.get(session.path)
            if handler is None:
                log.warning("agi %s: no route for %r", session.uniqueid, session.path)
                return
            try:
                await handler(session)
            except AgiHangupError as exc:
                log.debug("agi %s: hung up: %s", session.uniqueid, exc)
            except AgiError as exc:
                log.warning("agi %s: %s", session.uniqueid, exc)
            except Exception:
                log.exception("agi %s: handler %s failed", session.uniqueid, session.path)
        finally:
            if session is not None:
                await session.close()
            else:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
