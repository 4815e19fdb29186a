"""FastAGI server and session against fake Asterisk peers over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ivr.agi import (
    AgiCommandError,
    AgiHangupError,
    AgiResponse,
    AgiServer,
    AgiSession,
    AgiTimeoutError,
    quote_arg,
)
from tests.ivr_fakes import FakeAgiPeer, agi_env, eventually

Handler = Callable[[AgiSession], Awaitable[None]]


@pytest.fixture
def outcomes() -> dict[str, object]:
    return {}


async def serve(routes: dict[str, Handler], **kwargs: float) -> AgiServer:
    server = AgiServer(routes, host="127.0.0.1", port=0, **kwargs)  # type: ignore[arg-type]
    await server.start()
    return server


@pytest.fixture
async def stopper() -> AsyncIterator[list[AgiServer]]:
    servers: list[AgiServer] = []
    yield servers
    for server in servers:
        await server.stop(grace_s=1.0)


async def play_script(
    stopper: list[AgiServer], handler: Handler, *steps: tuple[str, list[str]]
) -> FakeAgiPeer:
    """Serves ``handler`` at /checkin and plays Asterisk's side of one call against it to the
    end, answering its commands with ``steps`` in order (see ``script``)."""
    server = await serve({"/checkin": handler})
    stopper.append(server)
    peer = FakeAgiPeer(server.port, script(*steps), agi_env())
    await peer.run()
    return peer


def script(*steps: tuple[str, list[str]]) -> Callable[[str], list[str]]:
    """Answer the n-th command with the n-th step's lines, checking its prefix."""
    queue = list(steps)

    def respond(command: str) -> list[str]:
        assert queue, f"unexpected command {command!r}"
        prefix, lines = queue.pop(0)
        assert command.startswith(prefix), f"expected {prefix!r}, got {command!r}"
        return lines

    return respond


# ---- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code", "result", "data", "fields"),
    [
        ("200 result=0", 200, "0", None, {}),
        ("200 result=49 endpos=12345", 200, "49", None, {"endpos": "12345"}),
        ("200 result= (timeout)", 200, "", "timeout", {}),
        ("200 result=1 (timeout)", 200, "1", "timeout", {}),
        ("200 result=1 (a value (with) parens)", 200, "1", "a value (with) parens", {}),
        ("200 result=0 (silence) endpos=800", 200, "0", "silence", {"endpos": "800"}),
        ("200 result=-1 endpos=0", 200, "-1", None, {"endpos": "0"}),
        ("510 Invalid or unknown command", 510, "", None, {}),
        (
            "511 Command Not Permitted on a dead channel or intercepted by a Gosub",
            511,
            "",
            None,
            {},
        ),
    ],
)
def test_given_result_line_when_parsed_then_fields_split(
    line: str, code: int, result: object, data: str | None, fields: dict[str, str]
) -> None:
    response = AgiResponse.parse(line)
    assert (response.code, response.result, response.data, dict(response.fields)) == (
        code,
        result,
        data,
        fields,
    )


def test_given_quotes_and_backslashes_when_quoted_then_escaped() -> None:
    assert quote_arg('a "b" \\c') == '"a \\"b\\" \\\\c"'
    assert quote_arg("") == '""'


# ---- hangup handling: results never shift ----------------------------------------------------


async def test_given_hangup_line_after_media_result_when_next_commands_then_results_not_shifted(
    stopper: list[AgiServer],
) -> None:
    seen: dict[str, object] = {}

    async def handler(session: AgiSession) -> None:
        await session.answer()
        with pytest.raises(AgiHangupError):
            await session.stream_file("/prompts/greeting", "12")
        seen["hung_up"] = session.hung_up
        # Dead-channel commands still get *their own* results, in order.
        seen["var"] = await session.get_variable("HANGUPCAUSE")
        seen["other"] = await session.get_variable("DIALSTATUS")
        with pytest.raises(AgiHangupError):
            await session.stream_file("/prompts/question")
        seen["end"] = True

    peer = await play_script(
        stopper,
        handler,
        ("ANSWER", ["200 result=0"]),
        # Asterisk: the media command returns -1, then the async HANGUP notice.
        ("STREAM FILE", ["200 result=-1 endpos=1200", "HANGUP"]),
        # Our probe reads the notice; a dead channel refuses CHANNEL STATUS.
        ("CHANNEL STATUS", ["511 Command Not Permitted on a dead channel"]),
        ("GET VARIABLE", ["200 result=1 (16)"]),
        ("GET VARIABLE", ["200 result=1 (ANSWER)"]),
    )
    assert seen == {"hung_up": True, "var": "16", "other": "ANSWER", "end": True}
    assert len(peer.commands) == 5  # the last STREAM FILE was never sent


async def test_given_hangup_line_before_result_when_command_then_hangup_raised_and_next_aligned(
    stopper: list[AgiServer],
) -> None:
    seen: dict[str, object] = {}

    async def handler(session: AgiSession) -> None:
        with pytest.raises(AgiHangupError):
            await session.command("WAIT FOR DIGIT 5000")
        seen["var"] = await session.get_variable("X")

    await play_script(
        stopper,
        handler,
        ("WAIT FOR DIGIT", ["HANGUP", "200 result=-1"]),
        ("GET VARIABLE", ["200 result=1 (x-value)"]),
    )
    assert seen == {"var": "x-value"}


async def test_given_hangup_between_commands_when_next_command_then_511_consumed_not_shifted(
    stopper: list[AgiServer],
) -> None:
    seen: list[object] = []

    async def handler(session: AgiSession) -> None:
        seen.append(await session.stream_file("/p/greeting", "12"))
        try:
            await session.get_data("/p/question", 1000, 1)
        except AgiHangupError as exc:
            seen.append(type(exc).__name__)
        seen.append(await session.get_variable("A"))

    await play_script(
        stopper,
        handler,
        # The result, then (channel hangs up between commands) the notice.
        ("STREAM FILE", ["200 result=49 endpos=10", "HANGUP"]),
        ("GET DATA", ["511 Command Not Permitted on a dead channel"]),
        ("GET VARIABLE", ["200 result=1 (a)"]),
    )
    assert seen == ["1", "AgiHangupError", "a"]


async def test_given_missing_file_on_live_channel_when_stream_file_then_command_error(
    stopper: list[AgiServer],
) -> None:
    seen: list[str] = []

    async def handler(session: AgiSession) -> None:
        with pytest.raises(AgiCommandError, match="missing sound file"):
            await session.stream_file("/nope")
        seen.append("live" if not session.hung_up else "dead")

    await play_script(
        stopper,
        handler,
        ("STREAM FILE", ["200 result=-1 endpos=0"]),
        ("CHANNEL STATUS", ["200 result=6"]),
    )
    assert seen == ["live"]


async def test_given_peer_closes_mid_command_when_waiting_then_hangup_error(
    stopper: list[AgiServer],
) -> None:
    seen: list[str] = []

    async def handler(session: AgiSession) -> None:
        try:
            await session.answer()
        except AgiHangupError:
            seen.append("hangup")

    server = await serve({"/checkin": handler})
    stopper.append(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(("\n".join(agi_env()) + "\n\n").encode())
    assert (await reader.readline()).startswith(b"ANSWER")
    writer.write(b"200 resu")  # half a line, then gone
    writer.close()
    await writer.wait_closed()
    await eventually(lambda: not server.active_sessions)
    assert seen == ["hangup"]


async def test_given_usage_error_when_command_then_multiline_520_consumed(
    stopper: list[AgiServer],
) -> None:
    seen: list[object] = []

    async def handler(session: AgiSession) -> None:
        with pytest.raises(AgiCommandError):
            await session.command("GET DATA")
        seen.append(await session.get_variable("B"))

    await play_script(
        stopper,
        handler,
        (
            "GET DATA",
            [
                "520-Invalid command syntax.  Proper usage follows:",
                "Usage: GET DATA <file to be streamed> [timeout] [maxdigits]",
                "520 End of proper usage.",
            ],
        ),
        ("GET VARIABLE", ["200 result=1 (b)"]),
    )
    assert seen == ["b"]


# ---- the variable block: never blocks the loop ----------------------------------------------


async def answering_server(
    stopper: list[AgiServer], *, env_timeout_s: float
) -> tuple[AgiServer, list[str]]:
    """A server whose handler answers and notes the session's uniqueid (stopped afterwards)."""
    served: list[str] = []

    async def handler(session: AgiSession) -> None:
        await session.answer()
        served.append(session.uniqueid)

    server = await serve({"/checkin": handler}, env_timeout_s=env_timeout_s)
    stopper.append(server)
    return server, served


async def test_given_half_sent_block_then_close_when_other_session_runs_then_it_proceeds(
    stopper: list[AgiServer],
) -> None:
    server, served = await answering_server(stopper, env_timeout_s=5.0)
    # A peer that sends half its block and closes.
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\nagi_request: agi://127.0.0.1/checkin\nagi_chan")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    # Meanwhile a healthy session is served at once.
    peer = FakeAgiPeer(server.port, script(("ANSWER", ["200 result=0"])), agi_env("ok-1"))
    await asyncio.wait_for(peer.run(), 2.0)
    assert served == ["ok-1"]
    await eventually(lambda: not server.active_sessions)
    assert server.sessions_served == 1  # the broken one never reached a handler


async def test_given_stalled_block_when_env_timeout_passes_then_dropped_and_others_served(
    stopper: list[AgiServer],
) -> None:
    server, served = await answering_server(stopper, env_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\nagi_uniqueid: slow\n")  # ...and nothing more
    await writer.drain()
    peer = FakeAgiPeer(server.port, script(("ANSWER", ["200 result=0"])), agi_env("ok-2"))
    await asyncio.wait_for(peer.run(), 1.0)
    assert served == ["ok-2"]
    # The stalled peer is cut off by the server (EOF on our side) after the env timeout.
    assert await asyncio.wait_for(reader.read(), 2.0) == b""
    writer.close()
    await writer.wait_closed()


async def test_given_oversized_block_when_read_then_dropped(stopper: list[AgiServer]) -> None:
    server = await serve({"/checkin": _never_called}, env_max_bytes=2048)
    stopper.append(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"".join(f"agi_x{i}: {'v' * 50}\n".encode() for i in range(100)))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 2.0) == b""
    writer.close()
    await writer.wait_closed()


async def _never_called(session: AgiSession) -> None:
    raise AssertionError("handler must not run")


async def test_given_unknown_path_when_connected_then_closed_without_commands(
    stopper: list[AgiServer],
) -> None:
    server = await serve({"/checkin": _never_called})
    stopper.append(server)
    peer = FakeAgiPeer(server.port, script(), agi_env(path="other"))
    await peer.run()
    assert peer.commands == []
    assert peer.closed_by_server


# ---- timeouts, concurrency, shutdown ---------------------------------------------------------


async def test_given_slow_peer_when_command_timeout_then_timeout_error_and_session_closed(
    stopper: list[AgiServer],
) -> None:
    seen: list[str] = []

    async def handler(session: AgiSession) -> None:
        try:
            await session.command("ANSWER", timeout_s=0.2)
        except AgiTimeoutError:
            seen.append("timeout")
        with pytest.raises(AgiHangupError):
            await session.command("ANSWER")
        seen.append("closed")

    server = await serve({"/checkin": handler})
    stopper.append(server)
    peer = FakeAgiPeer(server.port, lambda _: [], agi_env())  # never answers
    await asyncio.wait_for(peer.run(), 2.0)
    assert seen == ["timeout", "closed"]
    assert peer.closed_by_server


async def test_given_many_concurrent_sessions_when_served_then_each_gets_its_own_results(
    stopper: list[AgiServer],
) -> None:
    results: dict[str, str | None] = {}

    async def handler(session: AgiSession) -> None:
        await session.answer()
        await asyncio.sleep(0.01)  # interleave the sessions
        results[session.uniqueid] = await session.get_variable("MINE")

    server = await serve({"/checkin": handler})
    stopper.append(server)

    def respond_for(uid: str) -> Callable[[str], list[str]]:
        return script(("ANSWER", ["200 result=0"]), ("GET VARIABLE", [f"200 result=1 ({uid})"]))

    n = 200
    peers = [FakeAgiPeer(server.port, respond_for(f"u{i}"), agi_env(f"u{i}")) for i in range(n)]
    await asyncio.wait_for(asyncio.gather(*(p.run() for p in peers)), 10.0)
    assert results == {f"u{i}": f"u{i}" for i in range(n)}
    assert server.sessions_served == n


async def test_given_sessions_running_when_stopped_then_cancelled_and_sockets_closed() -> None:
    started = asyncio.Event()

    async def handler(session: AgiSession) -> None:
        started.set()
        await session.command("WAIT FOR DIGIT 60000", timeout_s=60)

    server = await serve({"/checkin": handler})
    peer = FakeAgiPeer(server.port, lambda _: [], agi_env())
    peer_task = asyncio.create_task(peer.run())
    await asyncio.wait_for(started.wait(), 2.0)
    await server.stop(grace_s=0.1)
    assert server.active_sessions == 0
    await asyncio.wait_for(peer_task, 2.0)
    assert peer.closed_by_server


async def test_given_port_in_time_wait_when_restarted_on_same_port_then_binds(
    stopper: list[AgiServer],
) -> None:
    async def handler(session: AgiSession) -> None:
        await session.answer()

    server = await serve({"/checkin": handler})
    port = server.port
    await FakeAgiPeer(port, script(("ANSWER", ["200 result=0"])), agi_env()).run()
    await server.stop()
    again = AgiServer({"/checkin": handler}, host="127.0.0.1", port=port)
    await again.start()
    stopper.append(again)
    assert again.port == port
