"""ANBU_MQTT__USERNAME/PASSWORD reach the broker: a private Mosquitto (the system's binary, own
port and password file) that refuses anonymous clients lets the subscriber in with them only."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.ports import SystemClock
from anbu.risk.mqtt import MqttSignalSubscriber


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Mosquitto that knows one user (anbu / the password below) and no anonymous clients."""
    port = _free_port()
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "anbu", "mqtt-secret-123"],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    conf = tmp_path / "mosquitto.conf"
    log = tmp_path / "mosquitto.log"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"persistence false\nlog_dest file {log}\nlog_type all\n"
        # Started as root, mosquitto would switch to its own user, who cannot read tmp_path.
        f"user {getpass.getuser()}\n",
        encoding="utf-8",
    )
    err = tmp_path / "mosquitto.err"
    with err.open("wb") as out:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=out, stderr=out)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {err.read_text(errors='replace')}")
            subprocess.run(["sleep", "0.05"], check=True)
        else:
            raise RuntimeError("mosquitto did not listen")
        yield port, log
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def _subscriber(
    sessions: async_sessionmaker[AsyncSession], port: int, username: str, password: str
) -> AsyncIterator[tuple[MqttSignalSubscriber, str]]:
    client_id = f"t-{uuid.uuid4().hex[:8]}"
    sub = MqttSignalSubscriber(
        sessions,
        SystemClock(),
        port=port,
        client_id=client_id,
        username=username,
        password=password,
    )
    task = asyncio.create_task(sub.run())
    try:
        yield sub, client_id
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_subscriber_logs_in_with_its_credentials(
    sessions: async_sessionmaker[AsyncSession], broker: tuple[int, Path]
) -> None:
    port, _log = broker
    async with _subscriber(sessions, port, username="anbu", password="mqtt-secret-123") as (
        sub,
        _,
    ):
        await asyncio.wait_for(sub.ready.wait(), 10)


async def test_broker_refuses_the_subscriber_without_them(
    sessions: async_sessionmaker[AsyncSession], broker: tuple[int, Path]
) -> None:
    port, log = broker
    async with _subscriber(sessions, port, username="anbu", password="wrong-password") as (
        sub,
        client_id,
    ):
        # Wait for the broker's own word (it is private to this test, and does not name a client
        # it refused), then check the subscriber is not in.
        for _ in range(400):
            text = log.read_text(encoding="utf-8", errors="replace")
            if "not authorised" in text:
                break
            await asyncio.sleep(0.025)
        else:
            pytest.fail(f"the broker never refused {client_id}:\n{text[-2000:]}")
        assert not sub.ready.is_set()
