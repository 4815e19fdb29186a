"""escalation.http11: the keep-alive client Kannel's sender posts through, against a local
HTTP/1.1 server that answers as told (real sockets, no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from escalation.http11 import (
    MAX_ANSWER_BYTES,
    GatewayProtocolError,
    GatewayUnreachableError,
    KeepAliveClient,
)

Answerer = Callable[[bytes, bytes], bytes | None]  # (head, body) -> raw answer, None = hang up


def plain(status: str = "202 Accepted", body: bytes = b"0: Accepted for delivery") -> Answerer:
    return lambda _head, _body: (
        b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status.encode(), len(body), body)
    )


def raw(answer: bytes) -> Answerer:
    return lambda _head, _body: answer


@dataclass
class Server:
    answer: Answerer
    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    close_after_answer: bool = False
    stall: bool = False
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                if self.stall:
                    await asyncio.sleep(30)
                raw = self.answer(head, body)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test ended with the connection idle
        finally:
            writer.close()

    def hang_up_idle(self) -> None:
        for writer in self.writers:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(plain())
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.port = listener.sockets[0].getsockname()[1]
    try:
        yield srv
    finally:
        srv.hang_up_idle()
        listener.close()
        await listener.wait_closed()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[KeepAliveClient]:
    keep_alive = KeepAliveClient(f"http://127.0.0.1:{server.port}/cgi-bin/sendsms")
    try:
        yield keep_alive
    finally:
        await keep_alive.aclose()


async def test_given_requests_in_turn_when_sent_then_one_connection_carries_them_all(
    server: Server, client: KeepAliveClient
) -> None:
    for i in range(3):
        answer = await client.request(
            "POST", "/cgi-bin/sendsms", {"X-Kannel-To": "0101234567"}, f"m{i}".encode(), 5
        )
        assert (answer.status, answer.body, answer.ok) == (
            202,
            b"0: Accepted for delivery",
            True,
        )
    assert server.connections == 1
    head, body = server.requests[2]
    assert head.startswith(b"POST /cgi-bin/sendsms HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % server.port in head
    assert b"\r\nX-Kannel-To: 0101234567\r\n" in head
    assert body == b"m2"


async def test_given_requests_at_once_when_sent_then_each_gets_its_own_answer(
    server: Server, client: KeepAliveClient
) -> None:
    server.answer = lambda _head, body: (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
        % (
            len(body),
            body,
        )
    )
    answers = await asyncio.gather(
        *(client.request("POST", "/x", {}, b"body-%d" % i, 5) for i in range(8))
    )
    assert [a.body for a in answers] == [b"body-%d" % i for i in range(8)]


async def test_given_server_closed_idle_connection_when_sending_then_a_new_one_is_opened(
    server: Server, client: KeepAliveClient
) -> None:
    await client.request("POST", "/x", {}, b"one", 5)
    server.hang_up_idle()
    await asyncio.sleep(0.05)  # the loop hears the close
    answer = await client.request("POST", "/x", {}, b"two", 5)
    assert answer.status == 202
    assert server.connections == 2


async def test_given_connection_close_answer_when_sent_then_not_reused(
    server: Server, client: KeepAliveClient
) -> None:
    server.answer = raw(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    server.close_after_answer = True
    for _ in range(2):
        assert (await client.request("POST", "/x", {}, b"", 5)).body == b"ok"
    assert server.connections == 2


async def test_given_chunked_or_unframed_answer_when_sent_then_whole_body_read(
    server: Server, client: KeepAliveClient
) -> None:
    server.answer = raw(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\n0: \r\n8\r\nAccepted\r\n0\r\n\r\n"
    )
    assert (await client.request("POST", "/x", {}, b"", 5)).body == b"0: Accepted"
    # HTTP/1.0 style: no length, the answer ends when the server closes.
    server.answer = raw(b"HTTP/1.0 200 OK\r\n\r\n0: Accepted")
    server.close_after_answer = True
    assert (await client.request("POST", "/x", {}, b"", 5)).body == b"0: Accepted"


async def test_given_server_hangs_up_without_answer_when_sent_then_unreachable(
    server: Server, client: KeepAliveClient
) -> None:
    server.answer = lambda _h, _b: None
    with pytest.raises(GatewayUnreachableError):
        await client.request("POST", "/x", {}, b"", 5)


async def test_given_garbage_answer_when_sent_then_protocol_error_and_connection_dropped(
    server: Server, client: KeepAliveClient
) -> None:
    server.answer = raw(b"SMTP ready\r\n\r\n")
    with pytest.raises(GatewayProtocolError):
        await client.request("POST", "/x", {}, b"", 5)
    server.answer = plain()
    assert (await client.request("POST", "/x", {}, b"", 5)).status == 202
    assert server.connections == 2


async def test_given_answer_longer_than_the_bound_when_sent_then_protocol_error_and_dropped(
    server: Server, client: KeepAliveClient
) -> None:
    server.answer = plain(body=b"x" * (MAX_ANSWER_BYTES + 1))
    with pytest.raises(GatewayProtocolError, match="longer than"):
        await client.request("POST", "/x", {}, b"", 5)
    server.answer = plain(body=b"x" * MAX_ANSWER_BYTES)  # at the bound: taken
    assert len((await client.request("POST", "/x", {}, b"", 5)).body) == MAX_ANSWER_BYTES
    assert server.connections == 2


async def test_given_no_answer_in_time_when_sent_then_timeout_and_connection_dropped(
    server: Server, client: KeepAliveClient
) -> None:
    server.stall = True
    with pytest.raises(TimeoutError):
        await client.request("POST", "/x", {}, b"", 0.2)
    server.stall = False
    assert (await client.request("POST", "/x", {}, b"", 5)).status == 202
    assert server.connections == 2


async def test_given_nothing_listening_when_sent_then_unreachable() -> None:
    probe = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    client = KeepAliveClient(f"http://127.0.0.1:{port}/")
    with pytest.raises(GatewayUnreachableError):
        await client.request("POST", "/", {}, b"", 5)


@pytest.mark.parametrize(
    "headers",
    [{"X-Kannel-To": "010\r\nX-Kannel-To: 0109999"}, {"X-Kannel-From": "a\nb"}, {"X-A": "한"}],
)
async def test_given_header_that_would_break_request_when_sent_then_refused_unsent(
    server: Server, client: KeepAliveClient, headers: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match=r"CR or LF|not latin-1"):
        await client.request("POST", "/x", headers, b"", 5)
    assert server.requests == []
    assert server.connections == 0  # refused before any connection was opened


def test_given_url_not_http_when_building_then_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        KeepAliveClient("ftp://127.0.0.1/sendsms")
