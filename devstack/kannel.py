"""The local Kannel SMS gateway: install, configure, start, stop, and look inside (tests).

One instance is bearerbox + smsbox + fakesmsc (the SMSC stand-in) with its files in
``<var_dir>/<name>/``: ``kannel.conf`` (rendered from ``templates/kannel.conf``), logs,
``spool/``, pid files, and ``fakesmsc.log`` (every message the "network" received; tests
parse it with ``received()``). A second fake SMSC port carries incoming SMS only: tests inject
an official's reply there with ``inject_reply()`` and it reaches anbu through the sms-service
``get-url``.

Processes are plain ``subprocess.Popen`` children in their own session, managed by PID (pid
files let a later run stop an instance a crashed run left behind). The blocking core has
``*_sync`` names; the async methods run it in a thread so the event loop never waits on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes, urlencode
from urllib.request import urlopen

from anbu.domain.phone import mask_phone
from anbu.errors import SmsError
from escalation.dlr import kannel_mo_url, with_callback_key

if TYPE_CHECKING:
    from anbu.settings import Settings

logger = logging.getLogger(__name__)

PACKAGES = ("kannel", "kannel-extras")
SBIN = Path("/usr/sbin")
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
MAIN_SMSC_ID = "fake"
INJECT_SMSC_ID = "inject"


class KannelProvisioningError(SmsError):
    """Kannel could not be installed, configured or started."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


# --- installation ---------------------------------------------------------------------------


def _binary(name: str) -> Path | None:
    found = shutil.which(name) or shutil.which(name, path=str(SBIN))
    return Path(found) if found else None


def kannel_installed() -> bool:
    """bearerbox, smsbox and fakesmsc are all present."""
    return (
        _binary("bearerbox") is not None
        and _binary("smsbox") is not None
        and os.access(FAKESMSC, os.X_OK)
    )


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=120", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )


def ensure_kannel_installed() -> None:
    """Install Debian's ``kannel kannel-extras`` unless present (idempotent; ~0 s when present).

    ``apt-get update`` runs only when the plain install fails (stale or empty package lists).
    """
    if kannel_installed():
        return
    if os.geteuid() != 0:
        raise KannelProvisioningError(
            "Kannel is not installed and we are not root: "
            "apt-get install -y --no-install-recommends " + " ".join(PACKAGES)
        )
    if shutil.which("apt-get") is None:
        raise KannelProvisioningError("Kannel is not installed and there is no apt-get here")
    install = ("install", "-y", "--no-install-recommends", *PACKAGES)
    logger.info("installing %s", " ".join(PACKAGES))
    result = _apt(*install)
    if result.returncode != 0 or not kannel_installed():
        logger.info("apt-get install failed (%s); updating package lists", result.returncode)
        update = _apt("update")
        if update.returncode != 0:
            raise KannelProvisioningError(f"apt-get update failed: {update.stderr[-800:]}")
        result = _apt(*install)
    if result.returncode != 0 or not kannel_installed():
        output = (result.stderr or result.stdout)[-800:]
        raise KannelProvisioningError(f"apt-get install {' '.join(PACKAGES)} failed: {output}")


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KannelPorts:
    admin: int = 14000
    smsbox: int = 14001
    smsc: int = 14002
    inject: int = 14003
    sendsms: int = 14013

    def by_role(self) -> dict[str, int]:
        return {
            "admin": self.admin,
            "smsbox": self.smsbox,
            "smsc": self.smsc,
            "inject": self.inject,
            "sendsms": self.sendsms,
        }


_UNSAFE_IN_CONF = re.compile(r'["\\\r\n]')


@dataclass(frozen=True, slots=True)
class KannelConfig:
    """Everything one instance needs; ``render()`` turns it into kannel.conf."""

    name: str
    var_dir: Path
    mo_url: str  # anbu's endpoint for incoming SMS; Kannel's escapes are appended
    sendsms_user: str
    sendsms_password: str
    admin_password: str
    number: str  # our sender number: the receiver of injected replies
    ports: KannelPorts = KannelPorts()
    max_parts: int = 10
    host: str = "127.0.0.1"
    # 2 (warning) by default: at 1 (info) smsbox writes every SMS's numbers and text
    # ("sendsms sender:... to:<010...> msg:<...>", "Starting to service <text> from <010...>"),
    # at 0 (debug) so does bearerbox. Lower it only to debug, on test numbers.
    log_level: int = 2
    # smsbox retries a failed callback to anbu (report or reply) this often, this far apart.
    callback_retries: int = 10
    callback_retry_delay_s: int = 2

    @classmethod
    def from_settings(
        cls, settings: Settings, *, name: str = "kannel", mo_url: str | None = None
    ) -> KannelConfig:
        sms = settings.sms
        return cls(
            name=name,
            var_dir=settings.var_dir,
            mo_url=with_callback_key(
                mo_url
                or sms.kannel_mo_url
                or f"http://{settings.api_host}:{settings.api_port}/v1/sms/kannel/inbound",
                None
                if settings.escalation.callback_token is None
                else settings.escalation.callback_token.get_secret_value(),
            ),
            sendsms_user=sms.kannel_user,
            sendsms_password=sms.kannel_password.get_secret_value(),
            admin_password=sms.kannel_admin_password.get_secret_value(),
            number=sms.sender,
            ports=KannelPorts(
                admin=sms.kannel_admin_port,
                smsbox=sms.kannel_smsbox_port,
                smsc=sms.kannel_smsc_port,
                inject=sms.kannel_inject_port,
                sendsms=sms.kannel_sendsms_port,
            ),
            max_parts=sms.kannel_max_parts,
            callback_retries=sms.kannel_callback_retries,
            callback_retry_delay_s=sms.kannel_callback_retry_delay_s,
        )

    @property
    def dir(self) -> Path:
        return self.var_dir / self.name

    def render(self) -> str:
        values = {
            "name": self.name,
            "dir": str(self.dir.resolve()),
            "host": self.host,
            "admin_port": str(self.ports.admin),
            "smsbox_port": str(self.ports.smsbox),
            "smsc_port": str(self.ports.smsc),
            "inject_port": str(self.ports.inject),
            "sendsms_port": str(self.ports.sendsms),
            "admin_password": self.admin_password,
            "sendsms_user": self.sendsms_user,
            "sendsms_password": self.sendsms_password,
            "max_parts": str(self.max_parts),
            "log_level": str(self.log_level),
            "callback_retries": str(self.callback_retries),
            "callback_retry_delay_s": str(self.callback_retry_delay_s),
            "mo_url": kannel_mo_url(self.mo_url),
        }
        for key, value in values.items():
            # Kannel's config has quoted strings without escapes: refuse what would break out.
            if _UNSAFE_IN_CONF.search(value):
                raise KannelProvisioningError(
                    f"kannel {key} contains a quote, backslash or newline"
                )
        if len(set(self.ports.by_role().values())) != len(self.ports.by_role()):
            raise KannelProvisioningError(f"kannel ports must differ: {self.ports}")
        template = resources.files("devstack").joinpath("templates/kannel.conf").read_text("utf-8")
        return string.Template(template).substitute(values)


# --- what the fake SMSC received ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FakeSmscPart:
    """One line fakesmsc printed: one SMS (or one part of a concatenated one) as sent."""

    sender: str
    receiver: str
    kind: str  # "text", "data", "ucs-2" (the kind after "udh" for a part)
    udh: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class ReceivedSms:
    """A whole message as the handset would show it (parts joined)."""

    sender: str
    receiver: str
    text: str
    parts: int


_GOT_RE = re.compile(rb"DEBUG: Got message \d+: <(.*)>\s*$")


def _url_bytes(value: bytes) -> bytes:
    # Kannel's url-encoding writes a space as "+" (and "+" itself as %2B).
    return unquote_to_bytes(value.replace(b"+", b"%20"))


def parse_fakesmsc_output(output: bytes) -> list[FakeSmscPart]:
    """The messages in fakesmsc's log (``-v 0``), in arrival order.

    Line shapes (Kannel 1.4.5): ``<from> <to> text <text>``, ``... data <url-encoded>``,
    ``... ucs-2 <url-encoded UTF-16BE>``, ``... udh <url-encoded UDH> data <url-encoded>``.
    """
    parts: list[FakeSmscPart] = []
    for line in output.splitlines():
        match = _GOT_RE.search(line)
        if match is None:
            continue
        fields = match.group(1).split(b" ", 3)
        if len(fields) < 4:
            continue
        sender, receiver, kind, rest = fields
        udh = b""
        if kind == b"udh":
            udh_raw, _, rest = rest.partition(b" ")
            udh = _url_bytes(udh_raw)
            kind, _, rest = rest.partition(b" ")
        payload = rest if kind == b"text" else _url_bytes(rest)
        parts.append(FakeSmscPart(sender.decode(), receiver.decode(), kind.decode(), udh, payload))
    return parts


def _concat_info(udh: bytes) -> tuple[int, int, int] | None:
    """(reference, total, sequence) from a concatenation UDH (IEI 0x00 or 0x08)."""
    i, end = 1, min(len(udh), 1 + (udh[0] if udh else 0))
    while i + 1 < end:
        iei, length = udh[i], udh[i + 1]
        data = udh[i + 2 : i + 2 + length]
        if iei == 0x00 and length == 3:
            return data[0], data[1], data[2]
        if iei == 0x08 and length == 4:
            return (data[0] << 8) | data[1], data[2], data[3]
        i += 2 + length
    return None


def _decode(kind: str, payload: bytes, udh_coding: str) -> str:
    if kind == "ucs-2" or (kind == "data" and udh_coding == "ucs-2"):
        return payload.decode("utf-16-be", errors="replace")
    return payload.decode("utf-8", errors="replace")


def reassemble(parts: Iterable[FakeSmscPart], udh_coding: str = "ucs-2") -> list[ReceivedSms]:
    """Join concatenated parts into whole messages; incomplete ones are left out.

    fakesmsc does not say the coding of a part that has a UDH; ``udh_coding`` supplies it
    ("ucs-2": anbu always sends ``coding=2``; "text" for 7-bit/8-bit).
    """
    out: list[tuple[int, ReceivedSms]] = []
    groups: dict[tuple[str, str, int, int], dict[int, FakeSmscPart]] = {}
    first_seen: dict[tuple[str, str, int, int], int] = {}
    for index, part in enumerate(parts):
        info = _concat_info(part.udh) if part.udh else None
        if info is None:
            text = _decode(part.kind, part.payload, udh_coding)
            out.append((index, ReceivedSms(part.sender, part.receiver, text, 1)))
            continue
        ref, total, seq = info
        key = (part.sender, part.receiver, ref, total)
        group = groups.setdefault(key, {})
        first_seen.setdefault(key, index)
        group[seq] = part
        if len(group) == total and set(group) == set(range(1, total + 1)):
            payload = b"".join(group[n].payload for n in range(1, total + 1))
            text = _decode(group[1].kind, payload, udh_coding)
            out.append((first_seen.pop(key), ReceivedSms(part.sender, part.receiver, text, total)))
            del groups[key]  # the reference byte is reused later
    return [sms for _, sms in sorted(out, key=lambda item: item[0])]


def fakesmsc_line(sender: str, receiver: str, text: str) -> str:
    """One MO line in fakesmsc's syntax: plain ``text`` for printable ASCII, else ``ucs2``."""
    for number in (sender, receiver):
        if not re.fullmatch(r"\+?\d{1,20}", number):
            raise ValueError(f"fakesmsc numbers are digits only, got {number!r}")
    if text and all(32 <= ord(ch) < 127 for ch in text):
        return f"{sender} {receiver} text {text}"
    encoded = "".join(f"%{byte:02X}" for byte in text.encode("utf-16-be"))
    return f"{sender} {receiver} ucs2 {encoded}"


# --- the instance ---------------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _port_listening(port: int) -> bool:
    """Something listens on TCP ``port`` (read from /proc, not by connecting: a test
    connection to bearerbox's smsbox port would register as a box)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 3
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _tail(path: Path, size: int = 1500) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-size:].decode(errors="replace")


class KannelInstance:
    """One local Kannel (bearerbox + smsbox + fakesmsc) with its files in ``config.dir``."""

    ROLES = ("smsbox", "fakesmsc", "bearerbox")

    def __init__(self, config: KannelConfig) -> None:
        self.config = config
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._inject_lock = threading.Lock()
        self.startup_s: float | None = None
        self.stop_s: float | None = None

    # paths and URLs
    @property
    def dir(self) -> Path:
        return self.config.dir

    @property
    def conf_path(self) -> Path:
        return self.dir / "kannel.conf"

    @property
    def spool_dir(self) -> Path:
        return self.dir / "spool"

    @property
    def fakesmsc_log(self) -> Path:
        return self.dir / "fakesmsc.log"

    @property
    def sendsms_url(self) -> str:
        return f"http://{self.config.host}:{self.config.ports.sendsms}/cgi-bin/sendsms"

    @property
    def status_url(self) -> str:
        return f"http://{self.config.host}:{self.config.ports.admin}/status.txt"

    def _pid_file(self, role: str) -> Path:
        return self.dir / f"{role}.pid"

    # lifecycle (blocking core)
    def start_sync(self, timeout_s: float = 20.0) -> None:
        """Install if needed, render the config, start the boxes, wait until all is online.

        Idempotent: an instance already running from this directory with the same config and
        online (e.g. left by an earlier ``make run``) is kept; a different or broken one is
        stopped first.
        """
        with self._lock:
            if self._procs and all(p.poll() is None for p in self._procs.values()):
                return
            ensure_kannel_installed()
            rendered = self.config.render()
            recorded = self._recorded_pids()
            if self._adoptable(recorded, rendered):
                logger.info("kannel %s already running with this config", self.config.name)
                self.startup_s = 0.0
                return
            self._stop_pids(recorded, grace_s=10.0)
            self._procs.clear()
            busy = [
                f"{role} {port}"
                for role, port in self.config.ports.by_role().items()
                if not _port_free(self.config.host, port)
            ]
            if busy:
                raise KannelProvisioningError(f"kannel {self.config.name}: ports in use: {busy}")
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self.conf_path.write_text(rendered, encoding="utf-8")
            started = time.monotonic()
            try:
                self._start_processes(started + timeout_s)
            except BaseException:
                self._stop_pids(self._recorded_pids(), grace_s=2.0)
                self._procs.clear()
                raise
            self.startup_s = time.monotonic() - started
            logger.info(
                "kannel %s online in %.2f s (sendsms %s)",
                self.config.name,
                self.startup_s,
                self.config.ports.sendsms,
            )

    def _adoptable(self, recorded: dict[str, int], rendered: str) -> bool:
        if set(recorded) != set(self.ROLES):
            return False
        try:
            same = self.conf_path.read_text(encoding="utf-8") == rendered
        except OSError:
            return False
        return same and self._online()

    def _spawn(self, role: str, argv: list[str], output: Path, append: bool = False) -> None:
        with output.open("ab" if append else "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # a Ctrl-C in our terminal is ours to pass on, in order
            )
        self._procs[role] = proc
        self._pid_file(role).write_text(str(proc.pid))

    def _check_alive(self, role: str) -> None:
        proc = self._procs[role]
        if proc.poll() is not None:
            log = self.dir / ("fakesmsc.log" if role == "fakesmsc" else f"{role}.log")
            raise KannelProvisioningError(
                f"kannel {self.config.name}: {role} exited with {proc.returncode}:\n"
                f"{_tail(self.dir / f'{role}.out')}\n{_tail(log)}"
            )

    def _wait(
        self, what: str, deadline: float, ready: Callable[[], bool], roles: Iterable[str]
    ) -> None:
        while not ready():
            for role in roles:
                self._check_alive(role)
            if time.monotonic() > deadline:
                raise KannelProvisioningError(
                    f"kannel {self.config.name}: timed out waiting for {what}:\n"
                    f"{_tail(self.dir / 'bearerbox.log')}"
                )
            time.sleep(0.01)

    def _start_processes(self, deadline: float) -> None:
        ports = self.config.ports
        bearerbox, smsbox = _binary("bearerbox"), _binary("smsbox")
        if bearerbox is None or smsbox is None:
            raise KannelProvisioningError("bearerbox/smsbox vanished after installation")
        conf = str(self.conf_path)
        self._spawn("bearerbox", [str(bearerbox), conf], self.dir / "bearerbox.out")
        self._wait(
            "bearerbox's smsbox port",
            deadline,
            lambda: _port_listening(ports.smsbox),
            ["bearerbox"],
        )
        self._spawn_fakesmsc()
        self._spawn("smsbox", [str(smsbox), conf], self.dir / "smsbox.out")
        self._wait("the fake SMSC and smsbox", deadline, self._online, self.ROLES)
        self._wait(
            "smsbox's sendsms port", deadline, lambda: _port_listening(ports.sendsms), self.ROLES
        )

    def _spawn_fakesmsc(self, append: bool = False) -> None:
        # Receive-only (-m 0): fakesmsc logs each message it gets at debug level (-v 0).
        host, port = self.config.host, self.config.ports.smsc
        argv = [str(FAKESMSC), "-H", host, "-r", str(port), "-m", "0", "-v", "0", "0 0 text x"]
        self._spawn("fakesmsc", argv, self.fakesmsc_log, append=append)

    def smsc_down_sync(self) -> None:
        """Cut the link to the (fake) SMSC: sends are then queued ("3: Queued ...")."""
        with self._lock:
            pid = self._recorded_pids().get("fakesmsc")
            if pid is not None:
                self._stop_pids({"fakesmsc": pid}, grace_s=5.0)
            deadline = time.monotonic() + 10.0
            while self._smsc_online():
                if time.monotonic() > deadline:
                    raise KannelProvisioningError("the fake SMSC still shows online")
                time.sleep(0.01)

    def smsc_up_sync(self, timeout_s: float = 10.0) -> None:
        """Reconnect the fake SMSC (its log is appended to); queued messages then go out."""
        with self._lock:
            if "fakesmsc" in self._recorded_pids():
                return
            self._spawn_fakesmsc(append=True)
            self._wait("the fake SMSC", time.monotonic() + timeout_s, self._online, self.ROLES)

    async def smsc_down(self) -> None:
        await asyncio.to_thread(self.smsc_down_sync)

    async def smsc_up(self) -> None:
        await asyncio.to_thread(self.smsc_up_sync)

    def status_text(self, timeout_s: float = 2.0) -> str:
        """bearerbox's status page; OSError when bearerbox is down.

        urllib, not httpx: httpx logs every URL at INFO, and Kannel wants the admin password
        in the query string.
        """
        query = urlencode({"password": self.config.admin_password})
        with urlopen(f"{self.status_url}?{query}", timeout=timeout_s) as response:
            body: bytes = response.read()
        return body.decode("utf-8", errors="replace")

    def _status_or_empty(self) -> str:
        try:
            return self.status_text(timeout_s=1.0)
        except OSError:
            return ""

    def _smsc_online(self, status: str | None = None) -> bool:
        text = self._status_or_empty() if status is None else status
        pattern = rf"^\s*{MAIN_SMSC_ID}\[{MAIN_SMSC_ID}\]\s+\S+\s+\(online"
        return re.search(pattern, text, re.M) is not None

    def _online(self) -> bool:
        """The main fake SMSC is online and smsbox is connected to bearerbox."""
        status = self._status_or_empty()
        return self._smsc_online(status) and re.search(r"^\s*smsbox:", status, re.M) is not None

    def _recorded_pids(self) -> dict[str, int]:
        """PIDs from our pid files that still run our command (a reused PID is left alone)."""
        pids: dict[str, int] = {}
        for role in self.ROLES:
            try:
                pid = int(self._pid_file(role).read_text().strip())
            except (OSError, ValueError):
                continue
            cmd = _cmdline(pid)
            ours = (
                str(self.conf_path) in cmd
                if role != "fakesmsc"
                else "fakesmsc" in cmd and str(self.config.ports.smsc) in cmd.split()
            )
            if _alive(pid) and ours:
                pids[role] = pid
            else:
                self._pid_file(role).unlink(missing_ok=True)
        return pids

    def _gone(self, role: str, pid: int) -> bool:
        proc = self._procs.get(role)
        if proc is not None and proc.pid == pid:
            return proc.poll() is not None  # our child: poll() also reaps it
        return not _alive(pid)

    def _wait_gone(self, pids: dict[str, int], timeout_s: float) -> dict[str, int]:
        """Wait until the processes exit; return those still running after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        remaining = dict(pids)
        while remaining:
            remaining = {r: p for r, p in remaining.items() if not self._gone(r, p)}
            if not remaining or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return remaining

    def _stop_pids(self, pids: dict[str, int], grace_s: float) -> None:
        """SIGINT all at once (bearerbox then tells smsbox), SIGKILL whatever outlives grace."""
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        stuck = self._wait_gone(pids, grace_s)
        for role, pid in stuck.items():
            logger.warning(
                "kannel %s: %s did not stop in %.0f s, killing", self.config.name, role, grace_s
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._wait_gone(stuck, 5.0):
            raise KannelProvisioningError(f"kannel {self.config.name}: cannot kill {sorted(stuck)}")
        for role in pids:
            self._pid_file(role).unlink(missing_ok=True)

    def stop_sync(self, grace_s: float = 10.0, clear_spool: bool = True) -> None:
        """Stop by PID (SIGINT, then SIGKILL after ``grace_s``); clear the spool by default."""
        with self._lock:
            started = time.monotonic()
            pids = self._recorded_pids()
            for role, proc in self._procs.items():
                if proc.poll() is None:
                    pids.setdefault(role, proc.pid)
            self._stop_pids(pids, grace_s)
            for proc in self._procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1)
            self._procs.clear()
            if clear_spool and self.spool_dir.exists():
                shutil.rmtree(self.spool_dir)
                self.spool_dir.mkdir()
            self.stop_s = time.monotonic() - started
            if pids:
                logger.info("kannel %s stopped in %.2f s", self.config.name, self.stop_s)

    def is_running(self) -> bool:
        return bool(self._recorded_pids())

    def pids(self) -> dict[str, int]:
        """Running processes of this instance by role (bearerbox, smsbox, fakesmsc)."""
        return self._recorded_pids()

    # lifecycle (async)
    async def start(self, timeout_s: float = 20.0) -> None:
        await asyncio.to_thread(self.start_sync, timeout_s)

    async def stop(self, grace_s: float = 10.0, clear_spool: bool = True) -> None:
        await asyncio.to_thread(self.stop_sync, grace_s, clear_spool)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    # looking inside (tests)
    def received(self, udh_coding: str = "ucs-2") -> list[ReceivedSms]:
        """Whole messages the fake SMSC got since this start (concatenated parts joined)."""
        try:
            output = self.fakesmsc_log.read_bytes()
        except FileNotFoundError:
            return []
        return reassemble(parse_fakesmsc_output(output), udh_coding)

    async def wait_received(
        self, match: Callable[[ReceivedSms], bool], timeout_s: float = 10.0
    ) -> ReceivedSms:
        """The first received message for which ``match`` is true; TimeoutError if none comes."""
        deadline = time.monotonic() + timeout_s
        while True:
            for sms in await asyncio.to_thread(self.received):
                if match(sms):
                    return sms
            if time.monotonic() > deadline:
                raise TimeoutError(f"kannel {self.config.name}: no matching SMS in {timeout_s} s")
            await asyncio.sleep(0.02)

    def _injected_count(self) -> int:
        status = self.status_text()
        match = re.search(
            rf"^\s*{INJECT_SMSC_ID}\[{INJECT_SMSC_ID}\].*?rcvd: sms (\d+)", status, re.M
        )
        if match is None:
            raise KannelProvisioningError(f"kannel {self.config.name}: no inject SMSC in status")
        return int(match.group(1))

    def inject_reply_sync(
        self, sender: str, text: str, receiver: str | None = None, timeout_s: float = 10.0
    ) -> None:
        """Deliver an incoming SMS (``sender`` -> our number) as the network would.

        A short-lived fakesmsc sends one line to the inject SMSC port; we return once
        bearerbox has counted it. It then goes to smsbox and anbu's get-url like any reply.
        One injection at a time: the fake SMSC serves one client connection at a time.
        """
        line = fakesmsc_line(sender, receiver or self.config.number, text)
        with self._inject_lock:
            before = self._injected_count()
            proc = subprocess.Popen(
                [
                    str(FAKESMSC),
                    "-H",
                    self.config.host,
                    "-r",
                    str(self.config.ports.inject),
                    "-m",
                    "1",
                    "-i",
                    "0",
                    line,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + timeout_s
                # fakesmsc never exits by itself after -m 1: it waits for replies. We stop it
                # once bearerbox has the message (closing earlier is fine too: bearerbox reads
                # what was written before it sees the end of the connection).
                while self._injected_count() <= before:
                    if proc.poll() is not None:
                        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                        raise KannelProvisioningError(
                            f"fakesmsc (inject) exited early:\n{output[-800:]}"
                        )
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"injected SMS not received by bearerbox in {timeout_s} s"
                        )
                    time.sleep(0.01)
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                try:
                    proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
        logger.info("kannel %s: injected reply from %s", self.config.name, mask_phone(sender))

    async def inject_reply(self, sender: str, text: str, receiver: str | None = None) -> None:
        await asyncio.to_thread(self.inject_reply_sync, sender, text, receiver)


# --- command line (make run / make stop) ----------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.kannel start|stop|status``: the instance of anbu's settings."""
    from anbu.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m devstack.kannel")
    parser.add_argument("command", choices=["start", "stop", "status", "config"])
    parser.add_argument("--name", default="kannel")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    instance = KannelInstance(KannelConfig.from_settings(get_settings(), name=args.name))
    if args.command == "start":
        instance.start_sync()
        print(f"kannel up in {instance.startup_s:.2f} s: sendsms {instance.sendsms_url}")
    elif args.command == "stop":
        instance.stop_sync()
    elif args.command == "config":
        print(instance.config.render(), end="")
    else:
        running = instance.is_running()
        print("running" if running else "stopped")
        if running:
            print(instance.status_text())
        return 0 if running else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
