"""Reusable pytest fixtures for the two real Asterisk instances (engine + carrier stand-in).

Use by importing the fixtures into tests/conftest.py (one session pair for the whole run) or
into a test module (then that module gets its own session pair): ``from tests.fixtures_asterisk
import agi_port, asterisk_install, asterisk_pair, bench_prompt, make_asterisk_pair``.

- ``asterisk_install`` (session): the unpacked sid Asterisk (installs into $ANBU_CACHE on first
  use; an install failure is a test ERROR, never a skip).
- ``agi_port`` (session): a free TCP port chosen up front; the engine's ``anbu-checkin`` context
  dials ``agi://127.0.0.1:<agi_port>/checkin``, so a FastAGI server fixture binds to it.
- ``bench_prompt`` (session): a short Korean espeak-ng WAV (8 kHz mono 16-bit) for
  ``bench-bare``; the path ends in ``.wav``.
- ``asterisk_pair`` (session): engine + carrier provisioned on free ports in a tmp var dir and
  started; yields an ``AsteriskPair``; stops both at the end and fails if a process leaked.
- ``make_asterisk_pair`` (function): factory for private pairs that a test may stop, restart
  or break; all are stopped (and checked for leaks) after the test.

``AmiProbe`` is a small raw-protocol AMI client for tests (every event kept, actions matched by
ActionID), so contract tests do not depend on the production AMI adapter they check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from anbu.settings import AsteriskSettings, IvrSettings, NodeSettings, Settings, TrunkSettings
from devstack.asterisk import (
    AsteriskInstall,
    AsteriskInstance,
    install_asterisk,
    provision_carrier,
    provision_engine,
    provision_engines,
    render_korean_wav,
)
from ivr.ami import AmiClient, EventHandler

BENCH_PROMPT_TEXT = "괜찮으시면 1번을 눌러 주세요."
# RTP blocks come from below Linux's ephemeral range (32768-60999), where bind(0) hands out
# the SIP/AMI ports, and above the fixed ports of `make run` (RTP 20000-21999).
_RTP_BLOCKS = range(22000, 32600, 200)
_RTP_BLOCK_SIZE = 200


# --------------------------------------------------------------------------- ports


def worker_slot() -> tuple[int, int]:
    """(this pytest-xdist worker's index, the number of workers); (0, 1) without xdist.

    Workers share the machine's ports: each takes only the ports (and RTP blocks) of its own
    residue class, so two workers never pick the same one (``_slot_of``)."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw")), count


_SLOT, _SLOTS = worker_slot()


def _slot_of(port: int) -> int:
    # Halved first: Linux's bind() to port 0 hands out even ports (odd ones go to connect()).
    return (port // 2) % _SLOTS


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now (SIP may use either), one of
    this worker's (see ``worker_slot``)."""
    for _ in range(50 * _SLOTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            if _slot_of(port) != _SLOT:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


_handed_out: set[int] = set()


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports, never one this session already handed out."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in _handed_out:
            _handed_out.add(port)
            ports.append(port)
    return ports


# This worker's share of the blocks: one contiguous run, so adjacent blocks stay possible.
_OWN_BLOCKS = _RTP_BLOCKS[
    len(_RTP_BLOCKS) * _SLOT // _SLOTS : len(_RTP_BLOCKS) * (_SLOT + 1) // _SLOTS
]
_rtp_blocks = random.sample(list(_OWN_BLOCKS), len(_OWN_BLOCKS))
_rtp_iter = itertools.cycle(_rtp_blocks)
_rtp_taken: set[int] = set()


def rtp_range(blocks: int = 1) -> tuple[int, int]:
    """A random RTP block of 200 ports, one of this worker's (``worker_slot``), distinct from
    the others of this session; with ``blocks`` > 1 that many adjacent blocks, none handed out
    before."""
    if blocks == 1:
        for _ in range(len(_rtp_blocks)):
            start = next(_rtp_iter)
            if start not in _rtp_taken:
                break
        else:
            _rtp_taken.clear()  # every block was handed out once: the cycle starts over
        _rtp_taken.add(start)
        return start, start + _RTP_BLOCK_SIZE - 1
    size = _RTP_BLOCK_SIZE * blocks
    starts = [b for b in _OWN_BLOCKS if b + size <= _OWN_BLOCKS.stop]
    for start in random.sample(starts, len(starts)):
        span = set(range(start, start + size, _RTP_BLOCK_SIZE))
        if not span & _rtp_taken:
            _rtp_taken.update(span)
            return start, start + size - 1
    if not starts:
        raise RuntimeError(f"no {blocks} adjacent RTP blocks in this worker's share")
    # A worker's share is a quarter of the range: once single blocks are spread over it, the
    # cycle starts over for spans too, as it does for single blocks.
    _rtp_taken.clear()
    start = random.choice(starts)
    _rtp_taken.update(range(start, start + size, _RTP_BLOCK_SIZE))
    return start, start + size - 1


def instance_settings(secret: str = "test-ami-secret") -> AsteriskSettings:
    sip, ami = free_ports(2)
    rtp_start, rtp_end = rtp_range()
    return AsteriskSettings(
        sip_port=sip,
        ami_port=ami,
        rtp_start=rtp_start,
        rtp_end=rtp_end,
        ami_secret=SecretStr(secret),
    )


# --------------------------------------------------------------------------- processes


def asterisk_processes(under: Path) -> list[int]:
    """PIDs of processes whose command line mentions a path under ``under`` (leak check)."""
    needle = os.fsencode(under)
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in argv and state != "Z":
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- AMI probe


class AmiProbeError(Exception):
    pass


class AmiProbe:
    """Raw AMI over asyncio streams: enough for contract tests, nothing clever."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.events: list[dict[str, str]] = []
        self._pending: dict[str, asyncio.Future[dict[str, str]]] = {}
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._closed = False
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(
        cls, host: str, port: int, user: str, secret: str, *, timeout_s: float = 5.0
    ) -> AmiProbe:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        banner = await asyncio.wait_for(reader.readline(), timeout_s)
        if not banner.startswith(b"Asterisk Call Manager"):
            writer.close()
            raise AmiProbeError(f"not an AMI banner: {banner!r}")
        probe = cls(reader, writer)
        try:
            response = await probe.action("Login", Username=user, Secret=secret, Events="on")
        except BaseException:
            await probe.close()
            raise
        if response.get("Response") != "Success":
            await probe.close()
            raise AmiProbeError(f"login refused: {response}")
        return probe

    def user_events(self, name: str, number: str) -> list[dict[str, str]]:
        """The UserEvents ``name`` seen so far about ``number`` (the carrier stand-in's dialplan
        reports what each number's line heard or did this way)."""
        return [e for e in self.events if e.get("UserEvent") == name and e.get("Number") == number]

    def carrier_dials(self) -> Counter[str]:
        """How often the carrier stand-in was dialled with each call (its CarrierCall reports,
        by the engine's channel id): a count above one is a call dialled twice."""
        return Counter(
            e.get("Call", "")
            for e in self.events
            if e.get("Event") == "UserEvent" and e.get("UserEvent") == "CarrierCall"
        )

    async def _read_loop(self) -> None:
        block: dict[str, str] = {}
        while line := await self._reader.readline():
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            if text:
                key, _, value = text.partition(":")
                block[key.strip()] = value.strip()
                continue
            if not block:
                continue
            message, block = block, {}
            pending = self._pending.pop(message.get("ActionID", ""), None)
            if "Response" in message and pending is not None and not pending.done():
                pending.set_result(message)
            elif "Event" in message:
                async with self._changed:
                    self.events.append(message)
                    self._changed.notify_all()

    async def action(
        self,
        name: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float = 10.0,
        **fields: str,
    ) -> dict[str, str]:
        """Send an action (``headers`` and ``fields`` are its headers) and return its Response,
        not the events it may cause."""
        fields = {**(headers or {}), **fields}
        action_id = f"probe-{next(self._ids)}"
        future: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = future
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        lines += [f"{key}: {value}" for key, value in fields.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self._writer.drain()
        return await asyncio.wait_for(future, timeout_s)

    async def wait_event(
        self, match: Callable[[dict[str, str]], bool], *, timeout_s: float = 15.0
    ) -> dict[str, str]:
        """The first event (already received or coming) for which ``match`` is true."""
        async with asyncio.timeout(timeout_s), self._changed:
            while True:
                for event in self.events:
                    if match(event):
                        return event
                if self._task.done():
                    raise AmiProbeError("AMI connection closed")
                await self._changed.wait()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await self._task


# --------------------------------------------------------------------------- pair


@dataclass
class AsteriskPair:
    """A started engine + carrier stand-in on free ports."""

    settings: Settings
    engine: AsteriskInstance
    carrier: AsteriskInstance
    agi_port: int
    bench_prompt: Path
    var_dir: Path
    extra: list[AsteriskInstance] = field(default_factory=list)

    @property
    def ami_host(self) -> str:
        return self.engine.ami_host

    @property
    def ami_port(self) -> int:
        return self.engine.ami_port

    @property
    def ami_user(self) -> str:
        return self.engine.ami_user

    @property
    def ami_secret(self) -> str:
        return self.engine.ami_secret

    @contextlib.asynccontextmanager
    async def ami(self, instance: AsteriskInstance | None = None) -> AsyncIterator[AmiProbe]:
        """A logged-in AmiProbe on the engine (or ``instance``), closed afterwards."""
        target = instance if instance is not None else self.engine
        probe = await AmiProbe.connect(
            "127.0.0.1", target.ami_port, target.ami_user, target.ami_secret
        )
        try:
            yield probe
        finally:
            await probe.close()

    @contextlib.asynccontextmanager
    async def engine_events(self, handler: EventHandler, *events: str) -> AsyncIterator[None]:
        """While inside, the engine's AMI ``events`` go to ``handler``, through anbu's own
        client (as the dispatcher watches channels)."""
        ami = AmiClient(self.ami_host, self.ami_port, self.ami_user, self.ami_secret)
        await ami.connect()
        sub = ami.subscribe(handler, *events)
        try:
            yield
        finally:
            sub.cancel()
            await ami.close()

    def stop(self) -> None:
        for instance in (*self.extra, self.engine, self.carrier):
            instance.stop()
        leaked = asterisk_processes(self.var_dir)
        assert not leaked, f"Asterisk processes left running under {self.var_dir}: {leaked}"


def build_pair(
    install: AsteriskInstall,
    var_dir: Path,
    *,
    agi_port: int,
    bench_prompt: Path,
    trunk: TrunkSettings | None = None,
) -> AsteriskPair:
    """Provision and start an engine + carrier on free ports under ``var_dir``."""
    engine = instance_settings()
    carrier = instance_settings()
    trunk = trunk if trunk is not None else TrunkSettings()
    settings = Settings(
        var_dir=var_dir,
        engine=engine,
        carrier=carrier,
        trunk=trunk.model_copy(update={"host": "127.0.0.1", "port": carrier.sip_port}),
        agi_host="127.0.0.1",
        agi_port=agi_port,
    )
    pair = AsteriskPair(
        settings=settings,
        engine=provision_engine(settings, install=install, bench_prompt=bench_prompt),
        carrier=provision_carrier(settings, install=install),
        agi_port=agi_port,
        bench_prompt=bench_prompt,
        var_dir=var_dir,
    )
    try:
        pair.carrier.start()
        pair.engine.start()
    except BaseException:
        pair.stop()
        raise
    return pair


def build_nodes(
    install: AsteriskInstall,
    var_dir: Path,
    *,
    agi_port: int,
    bench_prompt: Path,
    count: int = 2,
    max_calls: int = 20,
    trunk: TrunkSettings | None = None,
) -> AsteriskPair:
    """Provision and start ``count`` engine nodes (``engine-a``, ``engine-b``, ...) and one
    carrier stand-in on free ports. ``settings.nodes`` lists the nodes (each capped at
    ``max_calls``, the global cap their sum); ``pair.engine`` is the first, ``pair.extra`` the
    others. The dialers send ``X-Anbu-Call`` so the carrier reports each call's id. ``trunk``:
    the nodes' trunk settings (pointed at the carrier stand-in)."""
    ports = [instance_settings() for _ in range(count)]
    # The carrier takes every node's calls, and keeps a killed node's calls up until its
    # script ends (nothing tells it the far end died): two RTP blocks per node.
    rtp_start, rtp_end = rtp_range(2 * count)
    carrier = instance_settings().model_copy(update={"rtp_start": rtp_start, "rtp_end": rtp_end})
    nodes = [
        NodeSettings(
            name=f"engine-{chr(ord('a') + i)}",
            ami_port=own.ami_port,
            ami_secret=own.ami_secret,
            max_calls=max_calls,
        )
        for i, own in enumerate(ports)
    ]
    settings = Settings(
        var_dir=var_dir,
        engine=ports[0],
        carrier=carrier,
        trunk=(trunk or TrunkSettings()).model_copy(
            update={"host": "127.0.0.1", "port": carrier.sip_port}
        ),
        agi_host="127.0.0.1",
        agi_port=agi_port,
        nodes=nodes,
        max_concurrent_calls=max_calls * count,
        ivr=IvrSettings(call_id_header="X-Anbu-Call"),
    )
    engines = provision_engines(settings, install=install, bench_prompt=bench_prompt, ports=ports)
    pair = AsteriskPair(
        settings=settings,
        engine=engines[0],
        carrier=provision_carrier(settings, install=install),
        agi_port=agi_port,
        bench_prompt=bench_prompt,
        var_dir=var_dir,
        extra=engines[1:],
    )
    try:
        pair.carrier.start()
        for engine in engines:
            engine.start()
    except BaseException:
        pair.stop()
        raise
    return pair


@contextlib.contextmanager
def running_nodes(
    install: AsteriskInstall,
    var_dir: Path,
    *,
    bench_prompt: Path,
    max_calls: int,
    trunk: TrunkSettings | None = None,
) -> Iterator[AsteriskPair]:
    """:func:`build_nodes` (two nodes, their own AGI port) for a test's block, stopped after
    it; the stop fails the test if an Asterisk process was left behind."""
    pair = build_nodes(
        install,
        var_dir,
        agi_port=free_ports(1)[0],
        bench_prompt=bench_prompt,
        max_calls=max_calls,
        trunk=trunk,
    )
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture(scope="session")
def asterisk_install() -> AsteriskInstall:
    return install_asterisk()


@pytest.fixture(scope="session")
def agi_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="session")
def bench_prompt(
    tmp_path_factory: pytest.TempPathFactory, asterisk_install: AsteriskInstall
) -> Path:
    # asterisk_install also ensures espeak-ng and sox.
    return render_korean_wav(BENCH_PROMPT_TEXT, tmp_path_factory.mktemp("prompt") / "question.wav")


@pytest.fixture(scope="session")
def asterisk_pair(
    tmp_path_factory: pytest.TempPathFactory,
    asterisk_install: AsteriskInstall,
    agi_port: int,
    bench_prompt: Path,
) -> Iterator[AsteriskPair]:
    pair = build_pair(
        asterisk_install,
        tmp_path_factory.mktemp("ast"),
        agi_port=agi_port,
        bench_prompt=bench_prompt,
    )
    yield pair
    pair.stop()


@pytest.fixture
def make_asterisk_pair(
    tmp_path_factory: pytest.TempPathFactory,
    asterisk_install: AsteriskInstall,
    bench_prompt: Path,
) -> Iterator[Callable[..., AsteriskPair]]:
    made: list[AsteriskPair] = []

    def make(*, trunk: TrunkSettings | None = None, agi_port: int | None = None) -> AsteriskPair:
        pair = build_pair(
            asterisk_install,
            tmp_path_factory.mktemp("ast"),
            agi_port=agi_port if agi_port is not None else free_ports(1)[0],
            bench_prompt=bench_prompt,
            trunk=trunk,
        )
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.stop()


@pytest.fixture
async def engine_ami(asterisk_pair: AsteriskPair) -> AsyncIterator[AmiClient]:
    """An AMI client connected to the pair's engine (for tests that dial through it)."""
    ami = AmiClient(
        "127.0.0.1", asterisk_pair.ami_port, asterisk_pair.ami_user, asterisk_pair.ami_secret
    )
    await ami.connect()
    yield ami
    await ami.close()
