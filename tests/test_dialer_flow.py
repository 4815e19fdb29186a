"""The check-in flow against a scripted Asterisk-side AGI peer, and AmiDialer against a fake AMI
that plays the event sequences measured on real Asterisk 22 (shared/notes/asterisk.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from anbu.domain.calls import CallResult
from anbu.domain.replies import Prompt, Reply
from anbu.errors import ValidationError
from anbu.ports import CallRecord, CallRequest, IvrOutcome
from anbu.settings import Settings
from ivr.agi import AgiServer
from ivr.ami import AmiClient, AmiMessage
from ivr.dialer import AmiDialer, CallRegistry
from ivr.flow import CheckinFlow
from ivr.prompts import PromptLibrary
from tests.ivr_fakes import (
    ActionHandler,
    FakeAgiPeer,
    FakeAmi,
    FakeAmiConn,
    FakeChannel,
    agi_env,
    eventually,
)

AUDIO = Path("/srv/anbu/audio")


class RecordingSink:
    def __init__(self) -> None:
        self.outcomes: list[IvrOutcome] = []

    def report(self, outcome: IvrOutcome) -> None:
        self.outcomes.append(outcome)


# ---- prompts ---------------------------------------------------------------------------------


def test_given_audio_dir_when_path_then_absolute_without_extension(tmp_path: Path) -> None:
    library = PromptLibrary(tmp_path)
    assert library.path(Prompt.GREETING) == str(tmp_path / "rendered" / "greeting")
    assert not library.exists(Prompt.GREETING)
    (tmp_path / "rendered").mkdir()
    (tmp_path / "rendered" / "greeting.wav").write_bytes(b"RIFF")
    assert library.exists(Prompt.GREETING)
    assert Prompt.GREETING not in library.missing()
    assert Prompt.QUESTION in library.missing()


# ---- the flow --------------------------------------------------------------------------------


async def run_flow(
    channel: FakeChannel, reply_timeout_s: float = 0.5
) -> tuple[IvrOutcome, list[str]]:
    sink = RecordingSink()
    flow = CheckinFlow(PromptLibrary(AUDIO), sink, reply_timeout_s=reply_timeout_s)
    server = AgiServer({"/checkin": flow}, host="127.0.0.1", port=0)
    await server.start()
    try:
        peer = FakeAgiPeer(server.port, channel, agi_env("chan-1"))
        await asyncio.wait_for(peer.run(), 5.0)
    finally:
        await server.stop()
    assert len(sink.outcomes) == 1, sink.outcomes
    return sink.outcomes[0], peer.commands


async def test_given_1_pressed_during_question_when_flow_runs_then_ok_and_thanks() -> None:
    channel = FakeChannel(press=[("question", "1")])
    outcome, commands = await run_flow(channel)
    assert (outcome.reply, outcome.keys, outcome.asks) == (Reply.OK, "1", 1)
    assert outcome.channel_id == "chan-1"
    assert channel.played == ["greeting", "question", "thanks", "goodbye"]
    assert commands[0] == "ANSWER"
    assert commands[1] == f'STREAM FILE "{AUDIO}/rendered/greeting" "1209"'
    assert commands[2] == f'GET DATA "{AUDIO}/rendered/question" 500 1'
    assert commands[-1] == "EXEC Hangup 16"
    assert outcome.replied_at is not None
    assert outcome.started_at <= outcome.replied_at <= outcome.ended_at


async def test_given_2_pressed_when_flow_runs_then_help_and_help_ack() -> None:
    channel = FakeChannel(press=[("question", "2")])
    outcome, _ = await run_flow(channel)
    assert (outcome.reply, outcome.keys) == (Reply.HELP, "2")
    assert channel.played == ["greeting", "question", "help_ack", "goodbye"]


async def test_given_1_pressed_during_greeting_when_flow_runs_then_question_skipped() -> None:
    channel = FakeChannel(press=[("greeting", "1")])
    outcome, _ = await run_flow(channel)
    assert (outcome.reply, outcome.keys) == (Reply.OK, "1")
    assert channel.played == ["greeting", "thanks", "goodbye"]


async def test_given_1_pressed_after_question_when_waiting_then_ok() -> None:
    channel = FakeChannel(press_after=[("question", "1")])
    outcome, _ = await run_flow(channel)
    assert outcome.reply is Reply.OK


async def test_given_silence_when_flow_runs_then_repeat_once_then_no_response() -> None:
    channel = FakeChannel()
    outcome, commands = await run_flow(channel)
    assert (outcome.reply, outcome.keys, outcome.asks) == (Reply.NO_RESPONSE, "", 2)
    assert channel.played == ["greeting", "question", "repeat", "question", "goodbye"]
    assert outcome.replied_at is None
    assert commands[-1] == "EXEC Hangup 16"


async def test_given_other_key_then_1_when_flow_runs_then_repeat_and_ok() -> None:
    channel = FakeChannel(press=[("question", "3"), ("question", "1")])
    outcome, _ = await run_flow(channel)
    assert (outcome.reply, outcome.keys, outcome.asks) == (Reply.OK, "31", 2)
    assert channel.played == ["greeting", "question", "repeat", "question", "thanks", "goodbye"]


async def test_given_other_key_twice_when_flow_runs_then_no_response() -> None:
    channel = FakeChannel(press=[("question", "9"), ("question", "#")])
    outcome, _ = await run_flow(channel)
    assert (outcome.reply, outcome.keys) == (Reply.NO_RESPONSE, "9#")


async def test_given_hangup_during_greeting_when_flow_runs_then_hung_up_and_no_more_commands() -> (
    None
):
    channel = FakeChannel(hangup_during="greeting")
    outcome, commands = await run_flow(channel)
    assert (outcome.reply, outcome.keys, outcome.error) == (Reply.HUNG_UP, "", None)
    assert channel.played == ["greeting"]
    # After the hangup only the cause is read (allowed on a dead channel); no media commands.
    assert commands[-1] == 'GET VARIABLE "HANGUPCAUSE"'


async def test_given_asterisk_tears_channel_down_when_flow_runs_then_error_not_hung_up() -> None:
    # Cause 0: Asterisk itself hung the channel up (e.g. shutting down), not the resident.
    channel = FakeChannel(hangup_during="question", hangup_cause="0")
    outcome, _ = await run_flow(channel)
    assert outcome.reply is None
    assert outcome.error is not None
    assert "torn down" in outcome.error


async def test_given_hangup_during_thanks_when_flow_runs_then_reply_kept() -> None:
    channel = FakeChannel(press=[("question", "1")], hangup_during="thanks")
    outcome, _ = await run_flow(channel)
    assert (outcome.reply, outcome.keys) == (Reply.OK, "1")


async def test_given_missing_prompt_file_when_flow_runs_then_error_reported_not_a_reply() -> None:
    def broken(command: str) -> list[str]:
        if command.startswith("STREAM FILE"):
            return ["200 result=-1 endpos=0"]
        return FakeChannel()(command)

    sink = RecordingSink()
    server = AgiServer(
        {"/checkin": CheckinFlow(PromptLibrary(AUDIO), sink, reply_timeout_s=0.2)},
        host="127.0.0.1",
        port=0,
    )
    await server.start()
    try:
        await FakeAgiPeer(server.port, broken, agi_env("chan-2")).run()
    finally:
        await server.stop()
    (outcome,) = sink.outcomes
    assert outcome.reply is None
    assert outcome.error is not None
    assert "missing sound file" in outcome.error


# ---- the dialer against a fake AMI -------------------------------------------------------------

Step = tuple[float, str, dict[str, str]]


def events(*steps: Step) -> ActionHandler:
    """An Originate handler: acknowledge, then send ``steps`` (delay, event, fields) where
    ``{uid}`` and ``{aid}`` are the ChannelId and ActionID."""

    async def handle(conn: FakeAmiConn, msg: AmiMessage) -> None:
        conn.respond(msg, Message="Originate successfully queued")
        uid, aid = msg.get("ChannelId") or "", msg.action_id or ""
        conn.server.live_channels.add(uid)
        conn.server.spawn(play(conn, uid, aid, steps))

    return handle


async def play(conn: FakeAmiConn, uid: str, aid: str, steps: tuple[Step, ...]) -> None:
    for delay, name, fields in steps:
        await asyncio.sleep(delay)
        if name == "Hangup":
            conn.server.live_channels.discard(uid)
        filled = {k: v.format(uid=uid, aid=aid) for k, v in fields.items()}
        conn.send(Event=name, **filled)


def newchannel() -> Step:
    return (
        0.0,
        "Newchannel",
        {"Uniqueid": "{uid}", "Channel": "PJSIP/trunk-0001", "ChannelState": "0"},
    )


def newstate(state: str, delay: float = 0.01) -> Step:
    desc = {"5": "Ringing", "6": "Up"}[state]
    return (
        delay,
        "Newstate",
        {
            "Uniqueid": "{uid}",
            "Channel": "PJSIP/trunk-0001",
            "ChannelState": state,
            "ChannelStateDesc": desc,
        },
    )


def hangup(cause: str, state: str = "0", delay: float = 0.01) -> Step:
    return (
        delay,
        "Hangup",
        {"Uniqueid": "{uid}", "Channel": "PJSIP/trunk-0001", "ChannelState": state, "Cause": cause},
    )


def sip(status_line: str, delay: float = 0.01) -> Step:
    """The engine's anbu-hangup handler: the far end's last SIP status line."""
    line = f"SIP {status_line}" if status_line else ""
    return (delay, "UserEvent", {"Uniqueid": "{uid}", "UserEvent": "AnbuHangup", "Sip": line})


def dialstate(status: str, delay: float = 0.01) -> Step:
    return (delay, "DialState", {"DestUniqueid": "{uid}", "DialStatus": status})


def hangup_request(delay: float = 0.01) -> Step:
    """The channel driver hung up: the far end's BYE (not Asterisk)."""
    return (delay, "HangupRequest", {"Uniqueid": "{uid}", "Channel": "PJSIP/trunk-0001"})


def response(ok: bool, reason: str, delay: float = 0.01) -> Step:
    return (
        delay,
        "OriginateResponse",
        {
            "ActionID": "{aid}",
            "Response": "Success" if ok else "Failure",
            "Reason": reason,
            "Uniqueid": "{uid}" if ok else "<null>",
            "Channel": "PJSIP/01099990001@trunk",
        },
    )


@pytest.fixture
async def ami(fake_ami: FakeAmi) -> AsyncIterator[AmiClient]:
    client = AmiClient(
        "127.0.0.1",
        fake_ami.port,
        "anbu",
        "secret",
        reconnect_initial_s=0.05,
        reconnect_max_s=0.1,
        action_timeout_s=2.0,
    )
    await client.connect()
    yield client
    await client.close()


def make_dialer(ami: AmiClient, **kwargs: float) -> AmiDialer:
    options = {"event_grace_s": 0.3, "agi_result_grace_s": 0.3, "ami_lost_grace_s": 2.0, **kwargs}
    return AmiDialer(ami, CallRegistry(), **options)  # type: ignore[arg-type]


def request(
    cid: str = "call-1", number: str = "01099990001", ring: float = 5.0, **variables: str
) -> CallRequest:
    return CallRequest(channel_id=cid, number=number, ring_timeout_s=ring, variables=variables)


def assert_times(record: CallRecord) -> None:
    for stamp in (record.originated_at, record.answered_at, record.ended_at):
        if stamp is not None:
            assert stamp.tzinfo is not None
            assert stamp.utcoffset() == dt.timedelta(0)
            assert stamp.microsecond % 1000 == 0
    assert record.originated_at <= record.ended_at


@pytest.mark.parametrize(
    ("name", "steps", "result", "cause"),
    [
        ("busy", (newchannel(), hangup("17"), response(False, "0")), CallResult.BUSY, 17),
        (
            "congestion",
            (newchannel(), hangup("34"), response(False, "0")),
            CallResult.CONGESTION,
            34,
        ),
        ("rejected", (newchannel(), hangup("21"), response(False, "0")), CallResult.REJECTED, 21),
        (
            "unallocated",
            (newchannel(), hangup("1"), response(False, "0")),
            CallResult.INVALID_NUMBER,
            1,
        ),
        (
            "480 phone off (Asterisk reports 19 with or without Reason)",
            (newchannel(), sip("480 Temporarily Unavailable"), hangup("19"), response(False, "0")),
            CallResult.UNREACHABLE,
            19,
        ),
        (
            "183 early media, never answered",
            (
                newchannel(),
                dialstate("PROGRESS"),
                sip("183 Session Progress"),
                response(False, "3"),
                hangup("19"),
            ),
            CallResult.NO_ANSWER,
            19,
        ),
        (
            "183 seen only by the hangup handler",
            (newchannel(), sip("183 Session Progress"), response(False, "3"), hangup("19")),
            CallResult.NO_ANSWER,
            19,
        ),
        (
            "404 with a ring first",
            (
                newchannel(),
                newstate("5"),
                sip("404 Not Found"),
                hangup("1", "5"),
                response(False, "0"),
            ),
            CallResult.INVALID_NUMBER,
            1,
        ),
        (
            "ring-out",
            (newchannel(), newstate("5"), response(False, "3"), hangup("19", "5")),
            CallResult.NO_ANSWER,
            19,
        ),
        (
            "nothing listening (no answer to the INVITE)",
            (newchannel(), sip(""), hangup("19"), response(False, "3")),
            CallResult.NETWORK_FAILURE,
            19,
        ),
        (
            "response before hangup",
            (newchannel(), response(False, "0"), hangup("17", delay=0.1)),
            CallResult.BUSY,
            17,
        ),
        ("no channel at all", (response(False, "0"),), CallResult.FAILED, None),
        ("hangup, response never", (newchannel(), hangup("17")), CallResult.BUSY, 17),
    ],
)
async def test_given_unanswered_originate_when_called_then_classified_by_cause(
    fake_ami: FakeAmi,
    ami: AmiClient,
    name: str,
    steps: tuple[Step, ...],
    result: object,
    cause: int | None,
) -> None:
    fake_ami.handlers["Originate"] = events(*steps)
    dialer = make_dialer(ami)
    record = await asyncio.wait_for(dialer.call(request()), 5.0)
    assert (record.result, record.hangup_cause, record.reply) == (result, cause, None), name
    assert record.answered_at is None
    assert_times(record)
    assert dialer.active_calls == 0
    await dialer.close()


async def test_given_originate_when_sent_then_fields_name_our_channel_and_trunk(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    fake_ami.handlers["Originate"] = events(newchannel(), hangup("17"), response(False, "0"))
    dialer = AmiDialer(ami, CallRegistry(), caller_id="0212345678", event_grace_s=0.2)
    await dialer.call(request("cid-7", ring=3.5, DISTRICT="gwanak", RESIDENT="42"))
    (originate,) = fake_ami.actions_named("Originate")
    assert originate.get("Channel") == "PJSIP/01099990001@trunk"
    assert originate.get("ChannelId") == "cid-7"
    assert (originate.get("Context"), originate.get("Exten"), originate.get("Priority")) == (
        "anbu-checkin",
        "s",
        "1",
    )
    assert originate.get("Timeout") == "3500"
    assert originate.get("Async") == "true"
    assert originate.get("CallerID") == "0212345678"
    assert originate.getall("Variable") == [
        r"CHANNEL(hangup_handler_push)=anbu-hangup\,s\,1",
        "DISTRICT=gwanak",
        "RESIDENT=42",
    ]
    await dialer.close()


async def test_given_answered_call_when_ivr_reports_then_record_carries_reply(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    dialer = make_dialer(ami)

    async def answered(conn: FakeAmiConn, msg: AmiMessage) -> None:
        await events(newchannel(), newstate("5"), newstate("6"), response(True, "4"))(conn, msg)
        uid = msg.get("ChannelId") or ""
        await asyncio.sleep(0.1)
        now = dt.datetime.now(dt.UTC)
        dialer.registry.report(IvrOutcome(uid, Reply.HELP, "2", now, now, replied_at=now))
        await play(conn, uid, "", (hangup("16", "6", delay=0.02),))

    fake_ami.handlers["Originate"] = answered
    record = await asyncio.wait_for(dialer.call(request()), 5.0)
    assert (record.result, record.reply, record.keys, record.hangup_cause) == (
        CallResult.ANSWERED,
        Reply.HELP,
        "2",
        16,
    )
    assert record.answered_at is not None
    assert_times(record)
    await dialer.close()


async def test_given_answered_call_when_ivr_failed_before_a_reply_then_failed(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    dialer = make_dialer(ami)

    async def answered(conn: FakeAmiConn, msg: AmiMessage) -> None:
        await events(newchannel(), newstate("6"), response(True, "4"))(conn, msg)
        uid = msg.get("ChannelId") or ""
        await asyncio.sleep(0.05)
        now = dt.datetime.now(dt.UTC)
        dialer.registry.report(IvrOutcome(uid, None, "", now, now, error="torn down"))
        await play(conn, uid, "", (hangup("0", "6"),))

    fake_ami.handlers["Originate"] = answered
    record = await asyncio.wait_for(dialer.call(request()), 5.0)
    assert (record.result, record.reply, record.hangup_cause) == (CallResult.FAILED, None, 0)
    assert record.answered_at is not None
    await dialer.close()


ANSWERED = (newchannel(), newstate("6"), response(True, "4"))


@pytest.mark.parametrize(
    ("steps", "result", "reply", "cause"),
    [
        # The far end hung up (normal clearing) before the IVR reported anything.
        ((*ANSWERED, hangup("16", "6")), CallResult.ANSWERED, Reply.HUNG_UP, 16),
        # Most phones send BYE without a Reason header: cause 0, but the channel driver's
        # HangupRequest says the far end hung up.
        ((*ANSWERED, hangup_request(), hangup("0", "6")), CallResult.ANSWERED, Reply.HUNG_UP, 0),
        # Cause 0 and nobody asked for the hangup: the call failed.
        ((*ANSWERED, hangup("0", "6")), CallResult.FAILED, None, 0),
    ],
    ids=["ivr-never-reports", "bye-without-reason", "cause-0"],
)
async def test_given_answered_call_without_ivr_outcome_when_it_ends_then_hangup_decides(
    fake_ami: FakeAmi,
    ami: AmiClient,
    steps: tuple[Step, ...],
    result: CallResult,
    reply: Reply | None,
    cause: int,
) -> None:
    fake_ami.handlers["Originate"] = events(*steps)
    dialer = make_dialer(ami)
    record = await asyncio.wait_for(dialer.call(request()), 5.0)
    assert (record.result, record.reply, record.hangup_cause) == (result, reply, cause)
    await dialer.close()


async def test_given_originate_unanswered_when_events_still_come_then_call_followed(
    fake_ami: FakeAmi,
) -> None:
    async def queued_silently(conn: FakeAmiConn, msg: AmiMessage) -> None:
        uid, aid = msg.get("ChannelId") or "", msg.action_id or ""
        steps = (newchannel(), hangup("17", delay=0.4), response(False, "0"))
        conn.server.spawn(play(conn, uid, aid, steps))  # events, but no action response

    fake_ami.handlers["Originate"] = queued_silently
    client = AmiClient("127.0.0.1", fake_ami.port, "anbu", "secret", action_timeout_s=0.2)
    await client.connect()
    try:
        dialer = make_dialer(client)
        record = await asyncio.wait_for(dialer.call(request()), 5.0)
        assert (record.result, record.hangup_cause) == (CallResult.BUSY, 17)
        assert not fake_ami.actions_named("CoreShowChannels")
        await dialer.close()
    finally:
        await client.close()


async def test_given_refused_originate_when_called_then_failed_at_once(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    async def refuse(conn: FakeAmiConn, msg: AmiMessage) -> None:
        conn.respond(msg, "Error", Message="Originate failed")

    fake_ami.handlers["Originate"] = refuse
    dialer = make_dialer(ami)
    record = await dialer.call(request())
    assert (record.result, record.hangup_cause) == (CallResult.FAILED, None)
    await dialer.close()


async def test_given_bad_number_or_id_when_called_then_validation_error(ami: AmiClient) -> None:
    dialer = make_dialer(ami)
    with pytest.raises(ValidationError):
        await dialer.call(request(number="0109999&PJSIP/2"))
    with pytest.raises(ValidationError):
        await dialer.call(request(cid="has space"))
    with pytest.raises(ValidationError):
        await dialer.call(request(BAD="a,b"))
    await dialer.close()


async def test_given_cap_of_2_when_6_calls_then_never_more_than_2_in_flight(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    in_flight = 0
    peak = 0

    async def slow_busy(conn: FakeAmiConn, msg: AmiMessage) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        conn.respond(msg, Message="Originate successfully queued")

        async def finish() -> None:
            nonlocal in_flight
            await asyncio.sleep(0.05)
            await play(
                conn,
                msg.get("ChannelId") or "",
                msg.action_id or "",
                (newchannel(), hangup("17"), response(False, "0")),
            )
            in_flight -= 1

        conn.server.spawn(finish())

    fake_ami.handlers["Originate"] = slow_busy
    dialer = make_dialer(ami, max_concurrent_calls=2)
    records = await asyncio.wait_for(
        asyncio.gather(*(dialer.call(request(f"c{i}")) for i in range(6))), 10.0
    )
    assert [r.result for r in records] == [CallResult.BUSY] * 6
    assert peak == 2
    await dialer.close()


async def test_given_60_concurrent_calls_when_events_interleave_then_each_call_gets_its_own(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    causes = {
        "17": CallResult.BUSY,
        "34": CallResult.CONGESTION,
        "21": CallResult.REJECTED,
        "1": CallResult.INVALID_NUMBER,
    }
    plan = {f"c{i:02d}": list(causes)[i % 4] for i in range(60)}

    async def by_plan(conn: FakeAmiConn, msg: AmiMessage) -> None:
        cause = plan[msg.get("ChannelId") or ""]
        await events(newchannel(), hangup(cause, delay=0.05), response(False, "0"))(conn, msg)

    fake_ami.handlers["Originate"] = by_plan
    dialer = make_dialer(ami, max_concurrent_calls=60)
    calls = [asyncio.create_task(dialer.call(request(cid))) for cid in plan]
    await asyncio.sleep(0.02)
    # One dispatcher for all calls, not one handler per call.
    assert len(ami._handlers["hangup"]) == 1
    records = await asyncio.wait_for(asyncio.gather(*calls), 10.0)
    assert {r.channel_id: r.result for r in records} == {c: causes[k] for c, k in plan.items()}
    await dialer.close()


async def test_given_ami_drops_mid_call_when_channel_still_up_then_followed_to_its_end(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    dialer = make_dialer(ami)

    async def answered_then_drop(conn: FakeAmiConn, msg: AmiMessage) -> None:
        await events(newchannel(), newstate("6"), response(True, "4"))(conn, msg)
        uid = msg.get("ChannelId") or ""

        async def later() -> None:
            await asyncio.sleep(0.1)
            conn.server.drop_all()  # AMI gone; the channel lives on in "Asterisk"
            await asyncio.sleep(0.4)
            for c in list(conn.server.conns):  # the client's new connection
                now = dt.datetime.now(dt.UTC)
                dialer.registry.report(IvrOutcome(uid, Reply.OK, "1", now, now))
                await play(c, uid, "", (hangup("16", "6"),))

        conn.server.spawn(later())

    fake_ami.handlers["Originate"] = answered_then_drop
    record = await asyncio.wait_for(dialer.call(request()), 5.0)
    assert (record.result, record.reply) == (CallResult.ANSWERED, Reply.OK)
    assert ami.generation == 2
    await dialer.close()


async def test_given_ami_drops_when_channel_gone_after_reconnect_then_failed(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    async def ringing_then_drop(conn: FakeAmiConn, msg: AmiMessage) -> None:
        await events(newchannel(), newstate("5"))(conn, msg)
        uid = msg.get("ChannelId") or ""

        async def later() -> None:
            await asyncio.sleep(0.1)
            conn.server.live_channels.discard(uid)  # hung up while nobody listened
            conn.server.drop_all()

        conn.server.spawn(later())

    fake_ami.handlers["Originate"] = ringing_then_drop
    dialer = make_dialer(ami)
    record = await asyncio.wait_for(dialer.call(request()), 5.0)
    assert (record.result, record.reply) == (CallResult.FAILED, None)
    assert fake_ami.actions_named("CoreShowChannels")
    await dialer.close()


async def test_given_ami_drops_when_ivr_reports_then_answered_without_ami(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    dialer = make_dialer(ami, ami_lost_grace_s=5.0)
    background: list[asyncio.Task[None]] = []

    async def answered_then_gone(conn: FakeAmiConn, msg: AmiMessage) -> None:
        await events(newchannel(), response(True, "4"))(conn, msg)
        uid = msg.get("ChannelId") or ""

        async def later() -> None:
            await asyncio.sleep(0.1)
            await conn.server.stop()  # Asterisk's AMI is gone for good
            now = dt.datetime.now(dt.UTC)
            dialer.registry.report(IvrOutcome(uid, Reply.OK, "1", now, now))

        # Not a task of the fake server: stopping it cancels those.
        background.append(asyncio.create_task(later()))

    fake_ami.handlers["Originate"] = answered_then_gone
    record = await asyncio.wait_for(dialer.call(request()), 3.0)
    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, Reply.OK, "1")
    await dialer.close()


async def test_given_ami_never_returns_when_grace_passes_then_failed(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    background: list[asyncio.Task[None]] = []

    async def ringing_then_gone(conn: FakeAmiConn, msg: AmiMessage) -> None:
        await events(newchannel(), newstate("5"))(conn, msg)

        async def later() -> None:
            await asyncio.sleep(0.1)
            await conn.server.stop()

        background.append(asyncio.create_task(later()))

    fake_ami.handlers["Originate"] = ringing_then_gone
    dialer = make_dialer(ami, ami_lost_grace_s=0.5)
    record = await asyncio.wait_for(dialer.call(request()), 3.0)
    assert record.result is CallResult.FAILED
    await dialer.close()


async def test_given_call_cancelled_when_ringing_then_channel_hung_up(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    fake_ami.handlers["Originate"] = events(newchannel(), newstate("5"))
    dialer = make_dialer(ami)
    task = asyncio.create_task(dialer.call(request("cid-9")))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: fake_ami.actions_named("Hangup"))
    assert fake_ami.actions_named("Hangup")[0].get("Channel") == "PJSIP/trunk-0001"
    assert dialer.active_calls == 0
    await dialer.close()


# ---- dialer + AGI + flow end to end (fakes on both sockets) ------------------------------------


async def test_given_answered_call_when_flow_runs_on_agi_then_record_has_flow_reply(
    fake_ami: FakeAmi, ami: AmiClient
) -> None:
    registry = CallRegistry()
    dialer = AmiDialer(ami, registry, event_grace_s=0.3, agi_result_grace_s=1.0)
    flow = CheckinFlow(PromptLibrary(AUDIO), registry, reply_timeout_s=0.3)
    agi = AgiServer({"/checkin": flow}, host="127.0.0.1", port=0)
    await agi.start()

    async def answered(conn: FakeAmiConn, msg: AmiMessage) -> None:
        await events(newchannel(), newstate("5"), newstate("6"), response(True, "4"))(conn, msg)
        uid = msg.get("ChannelId") or ""

        async def run_ivr() -> None:
            # Asterisk runs AGI(agi://.../checkin) on the answered channel.
            channel = FakeChannel(press=[("question", "1")])
            await FakeAgiPeer(agi.port, channel, agi_env(uid)).run()
            await play(conn, uid, "", (hangup("16", "6"),))

        conn.server.spawn(run_ivr())

    fake_ami.handlers["Originate"] = answered
    try:
        record = await asyncio.wait_for(dialer.call(request("e2e-1")), 5.0)
    finally:
        await agi.stop()
        await dialer.close()
    assert (record.result, record.reply, record.keys) == (CallResult.ANSWERED, Reply.OK, "1")
    assert len(registry) == 0


def test_given_settings_when_dialer_built_then_tuning_comes_from_ivr_settings() -> None:
    settings = Settings(max_concurrent_calls=7)
    ami = AmiClient("127.0.0.1", 1, "u", "s")
    dialer = AmiDialer.from_settings(settings, ami, CallRegistry())
    assert dialer._slots._value == 7
    assert dialer._endpoint == settings.ivr.trunk_endpoint


def test_given_settings_when_agi_server_and_flow_built_then_ports_and_timeouts_come_from_them(
    tmp_path: Path,
) -> None:
    settings = Settings(agi_port=14999, audio_dir=tmp_path, reply_timeout_s=2.5)
    server = AgiServer.from_settings(settings, {"/checkin": _noop})
    assert (server.host, server.port) == ("127.0.0.1", 14999)
    flow = CheckinFlow.from_settings(settings, RecordingSink())
    assert flow._reply_timeout_s == 2.5
    assert flow._prompts.path(Prompt.GREETING) == str(tmp_path / "rendered" / "greeting")


async def _noop(session: object) -> None:
    return None


async def test_given_a_bug_in_the_listener_when_flow_runs_then_error_outcome_reported() -> None:
    class Broken:
        async def listen(self, session: object, prompts: object, timeout_s: float) -> object:
            raise RuntimeError("listener bug")

    sink = RecordingSink()
    flow = CheckinFlow(PromptLibrary(AUDIO), sink, reply_timeout_s=0.2, listener=Broken())  # type: ignore[arg-type]
    server = AgiServer({"/checkin": flow}, host="127.0.0.1", port=0)
    await server.start()
    try:
        await FakeAgiPeer(server.port, FakeChannel(), agi_env("chan-3")).run()
    finally:
        await server.stop()
    (outcome,) = sink.outcomes
    assert outcome.reply is None
    assert "listener bug" in (outcome.error or "")


async def test_given_a_transfer_leg_when_its_slot_is_held_then_the_watchers_count_it(
    ami: AmiClient,
) -> None:
    # The dispatcher's Pacer listens here: a leg counts against the global cap too.
    dialer = make_dialer(ami, max_concurrent_calls=1)
    seen: list[int] = []
    dialer.leg_watchers.append(seen.append)
    async with dialer.leg_slot():
        assert seen == [1]
        # the leg holds the node's only slot: nothing else opens a channel meanwhile
        with pytest.raises(TimeoutError):
            async with dialer.channel_slot(wait_s=0.05):
                pass
    assert seen == [1, -1]
    async with dialer.channel_slot(wait_s=0.05):
        pass
