"""MQTT with credentials and the ACL template, against a private real Mosquitto (password file
and docker/mosquitto/acl on a free port): anonymous clients are refused, a device may publish
only under its own id, and anbu logs in with its user and ingests.

Issue 12: the broker took an anonymous client, anyone who could publish could fake a device's
readings, and anbu's fixed client id let another client take its queued messages."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.risk.mqtt import MqttSignalSubscriber, subscriber_options
from anbu.settings import ROOT, EscalationSettings, MqttSettings, Settings, SettingsError
from tests.fixtures_asterisk import free_ports
from tests.test_risk_mqtt import T0, FixedClock, _count, _resident_with_plug

MOSQUITTO = Path("/usr/sbin/mosquitto")
USERS = {"anbu-signals": "anbu-pw-1", "plug-7": "plug-7-pw", "plug-8": "plug-8-pw"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """A private Mosquitto: no anonymous clients, our password file and ACL template."""
    if not MOSQUITTO.exists():
        raise RuntimeError(f"{MOSQUITTO} missing: apt-get install mosquitto")
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwd), user, password], check=True, timeout=10
        )
    [port] = free_ports(1)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"password_file {passwd}\n"
        f"acl_file {ROOT / 'docker' / 'mosquitto' / 'acl'}\n"
        "persistence false\n"
        "user root\n"  # keep reading the files in tmp_path when started as root
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "mosquitto.log").read_text())
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _reading(n: int) -> str:
    return json.dumps({"id": f"r-{n}", "at": T0.isoformat(), "power_w": 10.0 + n})


async def test_given_anonymous_client_when_connecting_then_refused(broker: int) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"(?i)not authori[sz]ed|bad user"):
        async with aiomqtt.Client("127.0.0.1", broker, identifier="anon") as client:
            await client.publish("anbu/11620/plug/plug-7/reading", _reading(0), qos=1)
    with pytest.raises(aiomqtt.MqttError, match=r"(?i)not authori[sz]ed|bad user"):
        async with aiomqtt.Client(
            "127.0.0.1", broker, identifier="wrong", username="plug-7", password="guess"
        ):
            pass


async def test_given_credentials_and_acl_when_devices_publish_then_only_own_topic_counts(
    broker: int, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _resident_with_plug(sessions)  # plug-7 in district 11620
    settings = MqttSettings(
        port=broker, username="anbu-signals", password=SecretStr(USERS["anbu-signals"])
    )
    sub = MqttSignalSubscriber(
        sessions, FixedClock(), **subscriber_options(settings), batch_wait_s=0.05
    )
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        # plug-8 (a stolen or rogue device) tries to speak for plug-7: the broker drops it.
        # Its next message, on its own topic, reaches anbu (and is refused there: plug-8 is
        # not registered), which shows the first one was not merely late.
        async with aiomqtt.Client(
            "127.0.0.1", broker, identifier="p8", username="plug-8", password=USERS["plug-8"]
        ) as rogue:
            await rogue.publish("anbu/11620/plug/plug-7/reading", _reading(1), qos=1)
            await rogue.publish("anbu/11620/plug/plug-8/reading", _reading(2), qos=1)
        for _ in range(200):
            if sub.dropped >= 1:
                break
            await asyncio.sleep(0.05)
        assert sub.dropped == 1
        assert await _count(sessions) == 0
        async with aiomqtt.Client(
            "127.0.0.1", broker, identifier="p7", username="plug-7", password=USERS["plug-7"]
        ) as plug:
            await plug.publish("anbu/11620/plug/plug-7/reading", _reading(3), qos=1)
        for _ in range(200):
            if await _count(sessions) >= 1:
                break
            await asyncio.sleep(0.05)
        assert await _count(sessions) == 1  # plug-7's own reading
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_given_no_client_id_when_two_subscribers_start_then_ids_differ() -> None:
    a = MqttSignalSubscriber(None, FixedClock())  # type: ignore[arg-type]
    b = MqttSignalSubscriber(None, FixedClock())  # type: ignore[arg-type]
    assert a._client_id != b._client_id
    assert a._client_id.startswith("anbu-signals-")
    configured = MqttSignalSubscriber(
        None,  # type: ignore[arg-type]
        FixedClock(),
        **subscriber_options(MqttSettings(client_id="anbu-signals-1")),
    )
    assert configured._client_id == "anbu-signals-1"


def test_given_production_without_mqtt_credentials_then_refused() -> None:
    base = {
        "environment": "production",
        "engine": {"ami_secret": "a-real-ami-secret"},
        "sms": {"kannel_password": "a-real-kannel-password",
                "kannel_admin_password": "a-real-kannel-admin"},
        "public_url": "https://anbu.example.go.kr",
        "trunk": {"caller_id": "0212345678"},
        "bootstrap_api_key": None,
        "escalation": EscalationSettings(callback_token=SecretStr("x" * 32)),
    }  # fmt: skip
    with pytest.raises(SettingsError) as refused:
        Settings(**base)  # type: ignore[arg-type]
    assert [p.split(":", 1)[0] for p in refused.value.problems] == [
        "ANBU_MQTT__USERNAME",
        "ANBU_MQTT__PASSWORD",
    ]
    Settings(**base, mqtt=MqttSettings(username="anbu", password=SecretStr("pw")))  # type: ignore[arg-type]
    Settings(**base, mqtt=MqttSettings(enabled=False))  # type: ignore[arg-type]
