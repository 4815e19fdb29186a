"""AudioSocket: the call's audio both ways over TCP, for listening while a prompt plays.

Asterisk's ``AudioSocket(uuid,host:port)`` application (app_audiosocket) connects to us, sends
the 16-byte UUID we gave it, then every 20 ms frame it receives from the caller (signed linear
16-bit 8 kHz mono) and each DTMF digit; whatever audio we send back is played to the caller.
We end it by sending the hangup message (or closing): the application then returns and the
AGI session that ran it goes on.

Protocol (Asterisk docs, "AudioSocket"): each message is a 1-byte kind, a 2-byte big-endian
payload length, the payload. Kinds: 0x00 hangup, 0x01 UUID, 0x03 DTMF (1 ASCII byte), 0x10
audio, 0xff error.

Why AudioSocket (and not EAGI or TALK_DETECT) for barge-in, see :mod:`ivr.stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
import uuid
from dataclasses import dataclass

from ivr.tcp import bound_port

log = logging.getLogger(__name__)

FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit mono
FRAME_S = 0.02
_HEADER = struct.Struct(">BH")


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


@dataclass(frozen=True, slots=True)
class Message:
    kind: int
    payload: bytes


class AudioSocketError(Exception):
    """The AudioSocket connection did not come or broke."""


class AudioStream:
    """One call's AudioSocket connection (after its UUID arrived)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.closed = False

    async def read(self) -> Message | None:
        """The next message from Asterisk; None when the connection is gone."""
        try:
            header = await self._reader.readexactly(_HEADER.size)
            kind, length = _HEADER.unpack(header)
            payload = await self._reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, OSError):
            self.closed = True
            return None
        return Message(kind, payload)

    async def send_audio(self, pcm: bytes) -> None:
        """Queue ``pcm`` (whole 20 ms frames) for the caller. The caller paces it."""
        if self.closed:
            return
        try:
            for i in range(0, len(pcm), FRAME_BYTES):
                chunk = pcm[i : i + FRAME_BYTES]
                self._writer.write(_HEADER.pack(Kind.AUDIO, len(chunk)) + chunk)
            await self._writer.drain()
        except (OSError, RuntimeError):
            self.closed = True

    async def close(self) -> None:
        """Tell Asterisk we are done (the application returns) and close the socket."""
        if not self._writer.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write(_HEADER.pack(Kind.HANGUP, 0))
                await self._writer.drain()
            self._writer.close()
        self.closed = True
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)


class AudioSocketServer:
    """Accepts Asterisk's AudioSocket connections and hands each to whoever expects its UUID."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, advertise_host: str | None = None
    ) -> None:
        self.host = host
        self._port = port
        self.advertise_host = advertise_host or host
        self._server: asyncio.Server | None = None
        self._waiting: dict[uuid.UUID, asyncio.Future[AudioStream]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._starting = asyncio.Lock()

    @property
    def port(self) -> int:
        return bound_port(self._server, self._port)

    @property
    def address(self) -> str:
        """``host:port`` as the AudioSocket application's second argument wants it."""
        return f"{self.advertise_host}:{self.port}"

    async def start(self) -> None:
        async with self._starting:  # the first calls may arrive together
            if self._server is not None:
                return
            self._server = await asyncio.start_server(
                self._on_connect, self.host, self._port, family=socket.AF_INET, reuse_address=True
            )
        log.info("AudioSocket listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        for task in set(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    def expect(self) -> tuple[uuid.UUID, asyncio.Future[AudioStream]]:
        """A fresh UUID and the future its connection will resolve."""
        key = uuid.uuid4()
        future: asyncio.Future[AudioStream] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        future.add_done_callback(lambda _: self._waiting.pop(key, None))
        return key, future

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._handshake(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = AudioStream(reader, writer)
        try:
            first = await asyncio.wait_for(stream.read(), 5.0)
        except TimeoutError:
            first = None
        key = None
        if first is not None and first.kind == Kind.UUID and len(first.payload) == 16:
            key = uuid.UUID(bytes=first.payload)
        future = self._waiting.get(key) if key is not None else None
        if future is None or future.done():
            log.warning("AudioSocket: connection for unknown or late uuid %s dropped", key)
            await stream.close()
            return
        future.set_result(stream)


__all__ = [
    "FRAME_BYTES",
    "FRAME_S",
    "AudioSocketError",
    "AudioSocketServer",
    "AudioStream",
    "Kind",
    "Message",
]
