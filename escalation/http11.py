"""A small HTTP/1.1 client for one gateway (Kannel's sendsms): keep-alive connections to one
host, reused across requests, answers parsed by ``httptools`` (the parser uvicorn uses).

Why not httpx here: in the 1,000-alert burst (bench/escalation.py) our POST to Kannel was the
largest single cost per alert left after the database work was made set-based. httpx builds a
``Request`` and a ``Response``, runs its auth and redirect machinery, and httpcore walks its
pool (every connection's state, per request), locks and the h11 state machine for every
request: 1.4-2.0 ms of this process's CPU per POST of the alert LMS, against 65-80 us with
this client (2026-12-05, 3,000 POSTs 8 at once to a local keep-alive server, load average
7-9). Kannel's sendsms needs none of that: one fixed URL, no redirects, no cookies, a short
text answer. Solapi and the webhook sender stay on
httpx (a few messages a day each, TLS to the internet).

What it keeps of httpx's behaviour: connections are reused while the server allows it (a
connection the server closed is dropped as soon as the loop hears of it, before it could be
handed out again), every request has one deadline covering connect, write and answer, and a
connection whose request failed or timed out is closed, never reused (its state is unknown).
Nothing is retried here: the outbox decides (see escalation.outbox on exactly-once).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

# Idle connections kept per gateway (the outbox sends 8 at once by default).
MAX_IDLE = 16
# Kannel answers a line of text; a longer answer is not from the gateway we post to, and is
# not held in memory while it streams in.
MAX_ANSWER_BYTES = 64 * 1024


class GatewayError(Exception):
    """The exchange with the gateway failed (base of the errors below)."""


class GatewayUnreachableError(GatewayError):
    """No connection, or the connection broke before the whole answer came."""


class GatewayProtocolError(GatewayError):
    """The gateway answered something that is not HTTP/1.x."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser: httptools.HttpResponseParser | None = None
        self._answer: asyncio.Future[tuple[Answer, bool]] | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._framed = False  # Content-Length or chunked: the answer ends by itself
        self._headers_done = False

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance test: other loops' transports (uvloop's) do not derive
        # from asyncio's classes, and only write() and close() are used.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            # Bytes nobody asked for on an idle connection: it cannot be trusted any more.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # A callback's own error (the answer's bound) comes wrapped: keep its reason.
            cause = exc.__cause__ or exc.__context__
            self._fail(
                cause
                if isinstance(cause, GatewayError)
                else GatewayProtocolError(f"bad answer from the gateway: {exc}")
            )
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            if self._headers_done and not self._framed and self._parser is not None:
                # An answer without Content-Length ends when the server closes (HTTP/1.0 style).
                self._complete(keep_alive=False)
            else:
                self._fail(GatewayUnreachableError("connection closed before the whole answer"))

    # --- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, _value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_ANSWER_BYTES:
            # Raised inside feed_data: it comes back as a parser error, the exchange fails and
            # the connection is closed (data_received).
            raise GatewayProtocolError(f"answer longer than {MAX_ANSWER_BYTES} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        self._complete(keep_alive=self._parser.should_keep_alive())

    # --- ours ---------------------------------------------------------------------------------

    def _complete(self, *, keep_alive: bool) -> None:
        assert self._parser is not None
        if self._answer is not None and not self._answer.done():
            answer = Answer(self._parser.get_status_code(), b"".join(self._body))
            self._answer.set_result((answer, keep_alive))

    def _fail(self, error: GatewayError) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)

    async def exchange(self, request: bytes) -> tuple[Answer, bool]:
        """Send ``request``, wait for its whole answer: (answer, reusable afterwards)."""
        if self.closed or self.transport is None:
            raise GatewayUnreachableError("connection closed")
        self._parser = httptools.HttpResponseParser(self)
        self._body = []
        self._size = 0
        self._framed = self._headers_done = False
        self._answer = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(request)
            return await self._answer
        finally:
            self._parser = None
            self._answer = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class KeepAliveClient:
    """Requests to one ``http(s)://host:port`` over reused connections."""

    def __init__(self, base_url: str, *, max_idle: int = MAX_IDLE) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        default = self._port == (443 if parts.scheme == "https" else 80)
        self._host_header = (parts.netloc.rsplit("@", 1)[-1] if not default else self._host).encode(
            "idna"
        )
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        timeout_s: float,
    ) -> Answer:
        """One request (``target``: path and query); the whole exchange within ``timeout_s``.
        Raises ``TimeoutError``, :class:`GatewayError`, or ``ValueError`` for a header that
        would break the request (a CR or LF in it)."""
        request = self._encode(method, target, headers, body)
        async with asyncio.timeout(timeout_s):
            conn = self._take() or await self._connect()
            try:
                answer, reusable = await conn.exchange(request)
            except BaseException:
                conn.close()  # half an exchange: its state is unknown, never reuse it
                raise
        if reusable and not conn.closed and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def _encode(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        # A CR or LF in a value would start a header (or a request) of the value's choosing.
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("a request line or header holds a CR or LF")
        head = "\r\n".join(lines)
        try:
            encoded = head.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ValueError("a request line or header is not latin-1") from exc
        return b"%s\r\nHost: %s\r\n\r\n%s" % (encoded, self._host_header, body)

    def _take(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, conn = await loop.create_connection(
                _Connection,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
        except OSError as exc:
            raise GatewayUnreachableError(
                f"cannot connect to {self._host}:{self._port} ({type(exc).__name__})"
            ) from exc
        return conn

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
