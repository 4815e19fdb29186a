"""Contract tests of devstack/asterisk.py against real Asterisk (sid tree, two on loopback).

Needs the fixtures of tests/fixtures_asterisk.py. Installing Asterisk is part of the session
setup: if it fails, these tests fail (error), they never skip.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from anbu.errors import TelephonyError
from anbu.settings import AsteriskSettings, TrunkSettings
from devstack import asterisk as asterisk_module
from devstack.asterisk import (
    AsteriskConfigError,
    AsteriskInstall,
    AsteriskInstallError,
    AsteriskInstance,
    AsteriskRole,
    AsteriskStartError,
    InstanceStatus,
    install_asterisk,
    render_template,
)
from tests.fixtures_asterisk import (
    AmiProbe,
    AsteriskPair,
    asterisk_processes,
    free_ports,
    instance_settings,
)

pytestmark = pytest.mark.asterisk

RING_TIMEOUT_MS = 1500


# --------------------------------------------------------------------------- installation


def test_given_installed_tree_when_install_again_then_nothing_is_run(
    asterisk_install: AsteriskInstall, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"second install ran a command: {args}")

    monkeypatch.setattr(asterisk_module, "_run", no_subprocess)
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)

    again = install_asterisk(asterisk_install.root.parent.parent)

    assert again == asterisk_install
    assert again.version.startswith("Asterisk 22")


def test_given_unreachable_mirror_when_install_then_typed_error_and_no_tree(
    tmp_path: Path,
) -> None:
    (closed_port,) = free_ports(1)  # nothing listens there

    with pytest.raises(AsteriskInstallError) as caught:
        install_asterisk(
            tmp_path,
            mirror=f"http://127.0.0.1:{closed_port}/debian",
            sound_tools=False,
            retries=0,
        )

    assert isinstance(caught.value, TelephonyError)
    assert "apt-get update" in str(caught.value)
    assert not (tmp_path / "asterisk" / "root").exists()
    assert not (tmp_path / "asterisk" / "installed.json").exists()


def test_given_install_when_reading_modules_conf_then_every_module_exists_in_tree(
    asterisk_install: AsteriskInstall,
) -> None:
    modules_conf = asterisk_module.DIALPLANS_DIR / "common" / "modules.conf"
    wanted = re.findall(r"^load\s*=>\s*(\S+)", modules_conf.read_text(), re.MULTILINE)

    missing = [name for name in wanted if not (asterisk_install.mod_dir / name).is_file()]

    assert wanted
    assert missing == []


# --------------------------------------------------------------------------- rendering


def _engine(tmp_path: Path, trunk: TrunkSettings, secret: str = "s3cret") -> AsteriskInstance:
    # Rendering runs nothing: a fake tree root is enough.
    return AsteriskInstance(
        "engine",
        AsteriskRole.ENGINE,
        tmp_path,
        AsteriskSettings(
            sip_port=5060,
            ami_port=5038,
            rtp_start=30000,
            rtp_end=30099,
            ami_secret=SecretStr(secret),
        ),
        install=AsteriskInstall(root=tmp_path / "tree", version="test"),
        trunk=trunk,
        agi_port=4573,
        bench_prompt=tmp_path / "audio" / "question.wav",
    )


def test_given_trunk_credentials_when_render_then_outbound_auth_section(tmp_path: Path) -> None:
    trunk = TrunkSettings(host="10.1.2.3", port=5070, username="anbu01", password=SecretStr("pw-1"))

    _engine(tmp_path, trunk).render()

    pjsip = (tmp_path / "engine" / "etc" / "pjsip_endpoints.conf").read_text()
    assert "outbound_auth = trunk-auth" in pjsip
    auth = pjsip[pjsip.index("[trunk-auth]") :]
    assert "type = auth" in auth
    assert "username = anbu01" in auth
    assert "password = pw-1" in auth
    assert "contact = sip:10.1.2.3:5070;transport=udp" in pjsip


def test_given_no_trunk_credentials_when_render_then_no_auth_and_no_placeholders(
    tmp_path: Path,
) -> None:
    written = _engine(tmp_path, TrunkSettings()).render()

    pjsip = (tmp_path / "engine" / "etc" / "pjsip_endpoints.conf").read_text()
    assert "outbound_auth" not in pjsip
    assert "trunk-auth" not in pjsip
    assert {path.name for path in written} >= {"asterisk.conf", "pjsip.conf", "extensions.conf"}
    assert not any("{{" in path.read_text() for path in written)
    assert not any(path.name.startswith("_") for path in written)
    extensions = (tmp_path / "engine" / "etc" / "extensions.conf").read_text()
    # Asterisk plays by path without the extension.
    assert f"BENCH_PROMPT = {tmp_path / 'audio' / 'question'}\n" in extensions
    assert "AGI_PORT = 4573\n" in extensions


def test_given_secret_with_semicolon_when_render_then_config_error(tmp_path: Path) -> None:
    with pytest.raises(AsteriskConfigError, match="ami_secret"):
        _engine(tmp_path, TrunkSettings(), secret="abc;def").render()


def test_given_placeholder_without_value_when_render_then_config_error() -> None:
    with pytest.raises(AsteriskConfigError, match="missing_one"):
        render_template("a={{missing_one}} b=${ASTERISK_VAR}", {}, source="t.conf")
    assert render_template("a={{ x }} b=${X}", {"x": "1"}) == "a=1 b=${X}"


# --------------------------------------------------------------------------- calls


@dataclass(frozen=True)
class Outcome:
    response: str  # OriginateResponse Response
    reason: str  # OriginateResponse Reason
    cause: str  # engine channel's Hangup Cause


async def _originate(
    ami: AmiProbe, number: str, *, wait_s: int = 1, **fields: str
) -> tuple[str, Outcome]:
    channel_id = str(uuid.uuid4())
    target = fields or {"Application": "Wait", "Data": str(wait_s)}
    response = await ami.action(
        "Originate",
        {
            "Channel": f"PJSIP/{number}@trunk",
            "Async": "true",
            "ChannelId": channel_id,
            "Timeout": str(RING_TIMEOUT_MS),
            **target,
        },
    )
    assert response["Response"] == "Success", response

    def ours(name: str) -> Callable[[dict[str, str]], bool]:
        return lambda event: event.get("Event") == name and event.get("Uniqueid") == channel_id

    originated = await ami.wait_event(ours("OriginateResponse"))
    hangup = await ami.wait_event(ours("Hangup"))
    return channel_id, Outcome(originated["Response"], originated["Reason"], hangup["Cause"])


# Answered calls the engine ends itself (its Wait application finishes) report Cause 0; calls
# the far end ends report the far end's cause (shared/notes/asterisk.md for the AMI table).
EXPECTED = {
    "01099990001": Outcome("Success", "4", "0"),  # presses 1
    "01099990002": Outcome("Success", "4", "0"),  # presses 2
    "01099990003": Outcome("Success", "4", "0"),  # silent
    "01099990004": Outcome("Failure", "3", "19"),  # rings out at our timeout
    "01099990005": Outcome("Failure", "0", "17"),  # busy
    "01099990006": Outcome("Failure", "0", "34"),  # congestion
    "01099990007": Outcome("Failure", "0", "21"),  # rejected
    "01099990008": Outcome("Success", "4", "16"),  # answers and hangs up at once
    "01099990009": Outcome("Success", "4", "0"),  # says 네
    "01099990010": Outcome("Success", "4", "0"),  # noise
    "01099990011": Outcome("Success", "4", "0"),  # says 여보세요
    "01099990012": Outcome("Success", "4", "0"),  # says 도와주세요
    "01099990099": Outcome("Failure", "0", "1"),  # not a stand-in number: unallocated
}
PRESSES = {"01099990001": "1", "01099990002": "2"}
SPEAKS = {
    "01099990009": "ne",
    "01099990010": "noise",
    "01099990011": "yeoboseyo",
    "01099990012": "dowajuseyo",
}
BARE_NUMBERS = ("01099990001", "01099990002", "01099990003")
_WAIT_S = {**dict.fromkeys(PRESSES, 5), **dict.fromkeys(SPEAKS, 7)}


@dataclass(frozen=True)
class CallsMade:
    outcomes: dict[str, Outcome]
    digits_received: dict[str, str]  # number -> digit the engine got over RTP (DTMFEnd)
    carrier_spoke: dict[str, tuple[str, str]]  # number -> (sound, PLAYBACKSTATUS)
    bare_digits: dict[str, str]  # number -> bench-bare's BareResult Digit


async def _bench_bare(ami: AmiProbe, number: str) -> str:
    channel_id = str(uuid.uuid4())
    await ami.action(
        "Originate",
        Channel=f"PJSIP/{number}@trunk",
        Context="bench-bare",
        Exten="s",
        Priority="1",
        Async="true",
        ChannelId=channel_id,
        Timeout=str(RING_TIMEOUT_MS),
    )
    event = await ami.wait_event(
        lambda e: e.get("UserEvent") == "BareResult" and e.get("Uniqueid") == channel_id
    )
    return event["Digit"]


async def _call_everything(pair: AsteriskPair) -> CallsMade:
    async with pair.ami() as engine, pair.ami(pair.carrier) as carrier:
        # Answered calls last long enough for the carrier's key (sent at 1.5 s) or its speech
        # (1.5 s + up to 2 s) to arrive with margin on a loaded machine; the silent bench-bare
        # call takes ~8 s anyway.
        table = asyncio.gather(
            *(_originate(engine, number, wait_s=_WAIT_S.get(number, 1)) for number in EXPECTED)
        )
        bare = asyncio.gather(*(_bench_bare(engine, number) for number in BARE_NUMBERS))
        calls, digits = await asyncio.gather(table, bare)
    channel_of = {
        number: channel_id for number, (channel_id, _) in zip(EXPECTED, calls, strict=True)
    }
    number_of = {channel_id: number for number, channel_id in channel_of.items()}
    return CallsMade(
        outcomes={number: outcome for number, (_, outcome) in zip(EXPECTED, calls, strict=True)},
        digits_received={
            number_of[event["Uniqueid"]]: event["Digit"]
            for event in engine.events
            if event.get("Event") == "DTMFEnd"
            and event.get("Direction") == "Received"
            and event["Uniqueid"] in number_of
        },
        carrier_spoke={
            event["Number"]: (event["Sound"], event["Status"])
            for event in carrier.events
            if event.get("UserEvent") == "CarrierSpoke"
        },
        bare_digits=dict(zip(BARE_NUMBERS, digits, strict=True)),
    )


@pytest.fixture(scope="module")
def calls_made(asterisk_pair: AsteriskPair) -> CallsMade:
    """Every stand-in number called once, all at the same time (one wait for the slowest)."""
    return asyncio.run(_call_everything(asterisk_pair))


def test_given_pair_when_calling_every_stand_in_number_then_result_and_cause_match_table(
    calls_made: CallsMade,
) -> None:
    assert calls_made.outcomes == EXPECTED


def test_given_numbers_that_press_when_answered_then_engine_receives_the_digit_over_rtp(
    calls_made: CallsMade,
) -> None:
    assert calls_made.digits_received == PRESSES


def test_given_numbers_that_speak_when_answered_then_carrier_played_their_sound(
    calls_made: CallsMade,
) -> None:
    assert calls_made.carrier_spoke == {
        number: (sound, "SUCCESS") for number, sound in SPEAKS.items()
    }


def test_given_bench_bare_when_digit_pressed_during_prompt_then_reported_and_silence_is_empty(
    calls_made: CallsMade,
) -> None:
    assert calls_made.bare_digits == {"01099990001": "1", "01099990002": "2", "01099990003": ""}


async def test_given_checkin_call_when_answered_then_engine_dials_agi_port_set_at_run_time(
    make_asterisk_pair: Callable[..., AsteriskPair],
) -> None:
    pair = make_asterisk_pair()
    (new_port,) = free_ports(1)
    requests: asyncio.Queue[str] = asyncio.Queue()

    async def fake_agi(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readuntil(b"\n\n")
        await requests.put(header.decode())
        writer.close()  # the engine then runs Hangup()

    server = await asyncio.start_server(fake_agi, "127.0.0.1", new_port, reuse_address=True)
    try:
        await asyncio.to_thread(pair.engine.set_agi, "127.0.0.1", new_port)
        async with pair.ami() as engine:
            _, outcome = await _originate(
                engine, "01099990003", Context="anbu-checkin", Exten="s", Priority="1"
            )
            header = await asyncio.wait_for(requests.get(), 5)
    finally:
        server.close()
        await server.wait_closed()

    assert f"agi_request: agi://127.0.0.1:{new_port}/checkin" in header
    assert outcome.response == "Success"


# --------------------------------------------------------------------------- lifecycle


async def test_given_idle_engine_when_restarted_then_a_call_still_works(
    make_asterisk_pair: Callable[..., AsteriskPair],
) -> None:
    pair = make_asterisk_pair()
    old_pid = pair.engine.pid

    await pair.engine.restart_async()

    assert pair.engine.pid not in (None, old_pid)
    assert await pair.engine.status_async() is InstanceStatus.RUNNING
    async with pair.ami() as engine:
        _, outcome = await _originate(engine, "01099990001")
    assert outcome == EXPECTED["01099990001"]


def test_given_running_instance_when_stopped_then_no_process_and_no_pid_file(
    make_asterisk_pair: Callable[..., AsteriskPair],
) -> None:
    pair = make_asterisk_pair()
    carrier = pair.carrier
    pid = carrier.pid
    assert pid is not None
    carrier.start()  # already running: a no-op
    assert carrier.pid == pid

    carrier.stop()

    assert carrier.pid is None
    assert not carrier.pid_file.exists()
    assert carrier.status() is InstanceStatus.STOPPED
    assert not carrier.is_running()
    assert asterisk_processes(carrier.dir) == []
    assert not Path(f"/proc/{pid}").exists()
    carrier.stop()  # stopping a stopped instance is a no-op


def test_given_pid_file_of_unrelated_process_when_stop_then_that_process_survives(
    tmp_path: Path, asterisk_install: AsteriskInstall
) -> None:
    instance = AsteriskInstance(
        "stale", AsteriskRole.CARRIER, tmp_path, instance_settings(), install=asterisk_install
    )
    instance.render()
    with subprocess.Popen(["sleep", "30"]) as bystander:
        try:
            instance.pid_file.write_text(f"{bystander.pid}\n")

            assert instance.status() is InstanceStatus.STOPPED
            instance.stop()

            assert bystander.poll() is None
        finally:
            bystander.kill()


async def test_given_second_engine_with_trunk_auth_when_both_call_the_carrier_then_both_answered(
    asterisk_pair: AsteriskPair, tmp_path: Path, asterisk_install: AsteriskInstall
) -> None:
    trunk = asterisk_pair.settings.trunk.model_copy(
        update={"username": "second", "password": SecretStr("pw-2")}
    )
    second = AsteriskInstance(
        "engine2",
        AsteriskRole.ENGINE,
        tmp_path,
        instance_settings(),
        install=asterisk_install,
        trunk=trunk,
        agi_port=asterisk_pair.agi_port,
        bench_prompt=asterisk_pair.bench_prompt,
    )
    second.render()
    await second.start_async()
    try:
        auth = second.rx("pjsip show auth trunk-auth")
        async with asterisk_pair.ami() as first_ami, asterisk_pair.ami(second) as second_ami:
            outcomes = await asyncio.gather(
                _originate(first_ami, "01099990001"), _originate(second_ami, "01099990001")
            )
    finally:
        await second.stop_async()

    assert "second" in auth
    assert [outcome for _, outcome in outcomes] == [EXPECTED["01099990001"]] * 2
    assert asterisk_processes(tmp_path) == []


@pytest.mark.parametrize("taken", ["ami", "sip"])
def test_given_port_taken_when_start_then_start_error_and_no_process_left(
    tmp_path: Path, asterisk_install: AsteriskInstall, taken: str
) -> None:
    settings = instance_settings()
    instance = AsteriskInstance(
        "blocked", AsteriskRole.CARRIER, tmp_path, settings, install=asterisk_install
    )
    instance.render()
    if taken == "ami":
        squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        squatter.bind(("127.0.0.1", settings.ami_port))
        squatter.listen()
        why = "AMI not listening"
    else:
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        squatter.bind(("127.0.0.1", settings.sip_port))
        why = "SIP transport udp"
    with squatter, pytest.raises(AsteriskStartError, match=why) as caught:
        instance.start()

    assert caught.value.log_tail
    assert instance.pid is None
    assert asterisk_processes(tmp_path) == []
