"""AmiClient against a fake Asterisk Manager that speaks AMI over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from anbu.errors import AmiError
from ivr.ami import (
    AmiActionError,
    AmiAuthError,
    AmiClient,
    AmiConnectionError,
    AmiMessage,
    AmiNotConnectedError,
    AmiState,
    AmiTimeoutError,
    read_message,
)
from tests.ivr_fakes import FakeAmi, FakeAmiConn, eventually


@pytest.fixture
async def client(fake_ami: FakeAmi) -> AsyncIterator[AmiClient]:
    """A client logged in to the fake AMI, closed once the test is done."""
    client = make_client(fake_ami)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


def make_client(server: FakeAmi, **kwargs: float | str) -> AmiClient:
    options: dict[str, float | str] = {
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
        "action_timeout_s": 2.0,
        "boot_timeout_s": 2.0,
        **kwargs,
    }
    return AmiClient("127.0.0.1", server.port, "anbu", "secret", **options)  # type: ignore[arg-type]


def parse(raw: bytes) -> AmiMessage | None:
    async def run() -> AmiMessage | None:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_message(reader)

    return asyncio.run(run())


# ---- parsing ---------------------------------------------------------------------------------


def test_given_repeated_keys_and_mixed_case_when_parsed_then_all_kept_and_lookup_ignores_case() -> (
    None
):
    msg = parse(b"Response: Success\r\nActionID: 7\r\nOutput: a\r\nOutput: b: c\r\n\r\n")
    assert msg is not None
    assert msg.get("actionid") == "7"
    assert msg.getall("Output") == ["a", "b: c"]
    assert msg.ok


def test_given_originate_response_event_when_parsed_then_it_is_an_event_not_a_response() -> None:
    msg = parse(
        b"Event: OriginateResponse\r\nActionID: 3\r\nResponse: Failure\r\nReason: 0\r\n\r\n"
    )
    assert msg is not None
    assert not msg.is_response
    assert msg.event == "OriginateResponse"


def test_given_lf_only_and_a_line_without_colon_when_parsed_then_it_is_output() -> None:
    msg = parse(b"\nResponse: Follows\nPrivilege: Command\nfree text line\n--END COMMAND--\n\n")
    assert msg is not None
    assert msg.getall("Output") == ["free text line", "--END COMMAND--"]


def test_given_eof_mid_message_when_parsed_then_none() -> None:
    assert parse(b"Event: Hangup\r\nUniqueid: 1\r\n") is None


# ---- connection ------------------------------------------------------------------------------


async def test_given_good_credentials_when_connect_then_booted_and_ping_answered(
    fake_ami: FakeAmi,
) -> None:
    client = make_client(fake_ami)
    await client.connect()
    try:
        assert client.state is AmiState.BOOTED
        response = await client.action("Ping")
        assert response.get("Ping") == "Pong"
        login = fake_ami.actions_named("Login")[0]
        assert login.get("Events") == "system,call,user"
    finally:
        await client.close()
    assert client.state.value == "closed"  # (mypy narrowed state to BOOTED above)
    assert fake_ami.actions_named("Logoff")


async def test_given_wrong_secret_when_connect_then_auth_error_fast(fake_ami: FakeAmi) -> None:
    client = AmiClient("127.0.0.1", fake_ami.port, "anbu", "wrong", reconnect_initial_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AmiAuthError, match="Authentication failed"):
        await client.connect(timeout_s=5.0)
    assert loop.time() - started < 2.0  # did not sit out the whole timeout
    assert client.state is AmiState.CLOSED


async def test_given_nothing_listening_when_connect_then_connection_error() -> None:
    probe = FakeAmi()
    await probe.start()
    port = probe.port
    await probe.stop()
    client = AmiClient("127.0.0.1", port, "anbu", "secret", reconnect_initial_s=0.05)
    with pytest.raises(AmiConnectionError, match="not ready"):
        await client.connect(timeout_s=0.5)


async def test_given_boot_pending_when_action_sent_then_it_waits_for_fully_booted(
    fake_ami: FakeAmi,
) -> None:
    fake_ami.boot_delay_s = 0.3
    client = make_client(fake_ami)
    client.start()
    try:
        await eventually(lambda: client.state is AmiState.LOGGED_IN)
        pinged = asyncio.create_task(client.action("Ping"))
        await asyncio.sleep(0.1)
        assert not fake_ami.actions_named("Ping"), "sent before FullyBooted"
        assert (await pinged).get("Ping") == "Pong"
        assert client.state is AmiState.BOOTED
    finally:
        await client.close()


async def test_given_server_drops_when_it_comes_back_then_client_reconnects(
    fake_ami: FakeAmi,
) -> None:
    states: list[AmiState] = []
    client = make_client(fake_ami)
    client.on_state(states.append)
    await client.connect()
    try:
        assert client.generation == 1
        fake_ami.drop_all()
        await eventually(lambda: client.generation == 2)
        assert (await client.action("Ping")).get("Ping") == "Pong"
        assert fake_ami.logins == 2
        assert states.count(AmiState.DISCONNECTED) >= 1
        assert states[-1] is AmiState.BOOTED
    finally:
        await client.close()


async def test_given_asterisk_down_for_a_while_when_back_on_same_port_then_reconnects(
    fake_ami: FakeAmi,
) -> None:
    client = make_client(fake_ami)
    await client.connect()
    port = fake_ami.port
    await fake_ami.stop()
    await eventually(lambda: client.state is AmiState.DISCONNECTED)
    await asyncio.sleep(0.3)  # several failed attempts, backoff capped at 0.2 s
    revived = FakeAmi()
    await revived.start(port)
    try:
        await eventually(lambda: client.state is AmiState.BOOTED)
        assert (await client.action("Ping")).get("Ping") == "Pong"
    finally:
        await client.close()
        await revived.stop()


async def test_given_unanswered_pings_when_interval_passes_then_connection_recycled(
    fake_ami: FakeAmi,
) -> None:
    client = make_client(fake_ami, ping_interval_s=0.1)
    await client.connect()
    try:
        fake_ami.answer_pings = False  # half-open: TCP up, nobody answering
        await eventually(lambda: fake_ami.logins >= 2, timeout_s=5.0)
        fake_ami.answer_pings = True
        await eventually(lambda: client.state is AmiState.BOOTED)
    finally:
        await client.close()


# ---- actions ---------------------------------------------------------------------------------


async def test_given_responses_out_of_order_when_concurrent_actions_then_each_gets_its_own(
    fake_ami: FakeAmi,
    client: AmiClient,
) -> None:
    held: list[tuple[FakeAmiConn, AmiMessage]] = []

    async def hold(conn: FakeAmiConn, msg: AmiMessage) -> None:
        held.append((conn, msg))
        if len(held) == 3:
            for c, m in reversed(held):
                c.respond(m, Value=m.get("Tag") or "")

    fake_ami.handlers["Echo"] = hold
    results = await asyncio.gather(
        *(client.action("Echo", {"Tag": tag}) for tag in ("a", "b", "c"))
    )
    assert [r.get("Value") for r in results] == ["a", "b", "c"]


async def test_given_silent_server_when_action_times_out_then_timeout_error_and_client_usable(
    fake_ami: FakeAmi,
    client: AmiClient,
) -> None:
    fake_ami.silent_actions.add("Slow")
    with pytest.raises(AmiTimeoutError):
        await client.action("Slow", timeout_s=0.2)
    assert (await client.action("Ping")).get("Ping") == "Pong"


async def test_given_error_response_when_action_then_action_error(
    fake_ami: FakeAmi, client: AmiClient
) -> None:
    async def refuse(conn: FakeAmiConn, msg: AmiMessage) -> None:
        conn.respond(msg, "Error", Message="Channel not specified")

    fake_ami.handlers["Hangup"] = refuse
    with pytest.raises(AmiActionError, match="Channel not specified"):
        await client.action("Hangup")


async def test_given_connection_drops_when_action_pending_then_connection_error_not_resent(
    fake_ami: FakeAmi,
    client: AmiClient,
) -> None:
    async def drop(conn: FakeAmiConn, msg: AmiMessage) -> None:
        conn.writer.transport.abort()

    fake_ami.handlers["Originate"] = drop
    with pytest.raises(AmiConnectionError):
        await client.action("Originate", {"Channel": "PJSIP/1@trunk"})
    await eventually(lambda: client.generation == 2)
    assert len(fake_ami.actions_named("Originate")) == 1


async def test_given_no_connection_when_action_then_not_connected_error(fake_ami: FakeAmi) -> None:
    client = make_client(fake_ami)
    await fake_ami.stop()
    client.start()
    try:
        with pytest.raises(AmiNotConnectedError):
            await client.action("Ping", timeout_s=0.3)
    finally:
        await client.close()


async def test_given_list_action_when_called_then_events_until_complete(
    fake_ami: FakeAmi, client: AmiClient
) -> None:
    fake_ami.live_channels = {"call-1", "call-2"}
    events = await client.action_list("CoreShowChannels")
    assert sorted(e.get("Uniqueid") or "" for e in events) == ["call-1", "call-2"]
    assert all(e.event == "CoreShowChannel" for e in events)


async def test_given_multiline_variables_when_action_then_repeated_lines_sent(
    fake_ami: FakeAmi,
    client: AmiClient,
) -> None:
    await client.action("Originate", {"Variable": ["A=1", "B=2"]})
    assert fake_ami.actions_named("Originate")[0].getall("Variable") == ["A=1", "B=2"]
    with pytest.raises(AmiError):
        await client.action("Originate", {"Channel": "x\r\nAction: Hangup"})


# ---- events ----------------------------------------------------------------------------------


async def test_given_subscription_when_events_arrive_then_only_named_ones_until_cancelled(
    fake_ami: FakeAmi,
    client: AmiClient,
) -> None:
    got: list[str] = []
    every: list[str] = []
    sub = client.subscribe(lambda m: got.append(m.get("Uniqueid") or ""), "Newstate")
    client.subscribe(lambda m: every.append(m.event or ""))
    fake_ami.event("Newstate", Uniqueid="u1", ChannelState="5")
    fake_ami.event("Hangup", Uniqueid="u1", Cause="16")
    await eventually(lambda: "Hangup" in every)
    assert got == ["u1"]
    sub.cancel()
    sub.cancel()  # idempotent
    fake_ami.event("Newstate", Uniqueid="u2", ChannelState="6")
    fake_ami.event("Hangup", Uniqueid="u2", Cause="16")
    await eventually(lambda: every.count("Hangup") == 2)
    assert got == ["u1"]


async def test_given_a_failing_handler_when_event_then_other_handlers_still_run(
    fake_ami: FakeAmi,
    client: AmiClient,
) -> None:
    got: list[str] = []

    def boom(_: AmiMessage) -> None:
        raise RuntimeError("handler bug")

    client.subscribe(boom, "Hangup")
    client.subscribe(lambda m: got.append(m.event or ""), "Hangup")
    fake_ami.event("Hangup", Uniqueid="u1")
    await eventually(lambda: got == ["Hangup"])
    assert (await client.action("Ping")).ok


async def test_given_client_closed_then_no_task_left_behind(fake_ami: FakeAmi) -> None:
    before = asyncio.all_tasks()
    client = make_client(fake_ami, ping_interval_s=0.05)
    await client.connect()
    fake_ami.drop_all()
    await eventually(lambda: client.generation == 2)
    await client.close()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before - fake_ami._tasks == set()
    with pytest.raises(AmiConnectionError):
        await client.action("Ping")
