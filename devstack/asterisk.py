"""Asterisk for anbu: install it from Debian sid into the cache, render instance config from
``dialplans/``, and run instances (the engine and the carrier stand-in) by PID.

Debian bookworm has no ``asterisk`` package and sid's needs a newer libc, so the whole sid
closure is unpacked into ``$ANBU_CACHE/asterisk/root`` and run through sid's own dynamic
loader (see ``shared/notes/asterisk.md``). Consequences that shape this module:

- the process name is ``ld-linux-x86-64``: instances are found and stopped by our PID file,
  never by name; ``core restart`` would re-exec without the loader, so restart = stop + start;
- every instance has its own etc/run/log/lib/spool/cache tree, ports and RTP range, so several
  can run side by side (``make run`` and a test session at once).

Everything here is blocking (subprocesses, sleeps); async callers use the ``*_async`` methods,
which run it in a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import fcntl
import fnmatch
import functools
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from anbu.domain.replies import Prompt
from anbu.errors import TelephonyError
from anbu.settings import AsteriskSettings, Settings, TrunkSettings, get_settings
from ivr.handoff import render_hold_music

logger = logging.getLogger(__name__)

DIALPLANS_DIR = Path(__file__).resolve().parent.parent / "dialplans"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The AMI user's permissions: what anbu uses and nothing more. Events read: FullyBooted and
# the trunk's ContactStatus (system), OriginateResponse, Newchannel, Newstate, Hangup (call);
# the call benchmark (bench/calls.py) and the contract tests also watch DTMFEnd (dtmf) and our
# dialplan's UserEvent (user) on the same calls. Read classes only deliver events; they allow
# no action. Actions: Originate (originate), Hangup and Getvar (call; Getvar reads the trunk
# contact's state at connect, ivr/trunk.py), CoreShowChannels (reporting), Ping and Login
# (no class needed); Asterisk allows an action when the user has one of its classes. Without
# command, config or system write, Command, GetConfig/UpdateConfig, module loading and an
# Originate to System/Exec are refused.
AMI_READ = "system,call,dtmf,user"
AMI_WRITE = "originate,call,reporting"
SID_PACKAGES = ("asterisk", "asterisk-modules", "asterisk-config")
# Not needed to run Asterisk: dropping them trims the tree from ~268 MB to ~154 MB (measured).
SKIP_PACKAGES = (
    "perl*",
    "libperl*",
    "gnupg*",
    "gpg*",
    "dirmngr",
    "pinentry-curses",
    "tzdata",
    "passwd",
    "adduser",
    "debconf",
    "libsnmp*",
    "libcodec2*",
    "libc-gconv-modules-extra",
    "pci.ids",
    "libpci3",
)
# Debian packages (of the machine's own release) the carrier stand-in and tests need.
SOUND_TOOLS = {"espeak-ng": "espeak-ng", "sox": "sox"}
# Bump when the unpack layout changes so existing caches are rebuilt.
_LAYOUT_VERSION = 1
_STAMP = "installed.json"
_APT_TIMEOUT_S = 600.0
# Linux's limit for a unix socket path (sun_path) is 108 bytes including the NUL.
_MAX_SOCKET_PATH = 107
_MULTIARCH = {
    "x86_64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
    "aarch64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
}
# The carrier stand-in's spoken replies (numbers 009, 011, 012; 010 is noise).
CARRIER_SPEECH = {
    "ne": "네",
    "yeoboseyo": "여보세요",
    "dowajuseyo": "도와주세요",
    # "say that again" (number 070): through the trunk's u-law its ㅅ is gone
    "dasi": "다시",
    # The network's announcement for a switched-off phone, played as early media before 480.
    "phone_off": "고객님의 전화기가 꺼져 있어 연결할 수 없습니다",
}
# Ringback music (컬러링) the stand-in plays as early media: a short melody, not speech.
CARRIER_MELODY = "colorring"
CARRIER_NOISE = "noise"
# Voicemail and answering machines (numbers 030-032): what the networks and a person's machine
# say on answering. Texts after the carriers' announcements; the voice is espeak-ng's.
CARRIER_MACHINE_SPEECH = {
    "voicemail_skt": "지금 거신 전화는 전원이 꺼져 있어 소리샘으로 연결되오며, "
    "삐 소리 후 통화료가 부과됩니다.",
    "voicemail_lgu": "고객님의 전화기가 꺼져 있어 연결되지 않습니다. 잠시 후 다시 걸어 주십시오.",
    "machine_greeting": "안녕하세요. 지금은 전화를 받을 수 없습니다. "
    "삐 소리가 나면 메시지를 남겨 주세요.",
}
CARRIER_BEEP = "beep"
# A muffled 네 (number 071: the phone held away, a hand over it): low-passed at 600 Hz, the
# model still hears 네 but at confidence 0.48-0.62 in calls, a doubtful yes (the real-call test
# sets the band above any decode: the confidence moves with where the recording starts).
CARRIER_MUFFLED_NE = "ne_muffled"
_CARRIER_SOUNDS_VERSION = 1


class AsteriskInstallError(TelephonyError):
    """Asterisk (or a tool it needs) could not be downloaded, unpacked or verified."""

    def __init__(self, message: str, *, command: Sequence[str] = (), output: str = "") -> None:
        detail = f"\n$ {' '.join(command)}\n{output.strip()[-2000:]}" if command else ""
        super().__init__(message + detail)
        self.command = tuple(command)
        self.output = output


class AsteriskConfigError(TelephonyError):
    """An instance's configuration cannot be rendered (bad template or value)."""


class AsteriskStartError(TelephonyError):
    """An instance did not come up; ``log_tail`` has the end of its console log."""

    def __init__(self, name: str, why: str, log_tail: str = "") -> None:
        tail = f"\n--- end of log ---\n{log_tail}" if log_tail else ""
        super().__init__(f"Asterisk instance {name!r} did not start: {why}{tail}")
        self.name = name
        self.why = why
        self.log_tail = log_tail


class AsteriskStopError(TelephonyError):
    """An instance's process survived SIGKILL (should not happen)."""


class AsteriskCommandError(TelephonyError):
    """A CLI command (``asterisk -rx``) could not reach the instance or timed out."""

    def __init__(self, name: str, command: str, why: str) -> None:
        super().__init__(f"Asterisk instance {name!r}: {command!r} failed: {why}")
        self.name = name
        self.command = command
        self.why = why


class AsteriskRole(enum.StrEnum):
    ENGINE = "engine"
    CARRIER = "carrier"


class InstanceStatus(enum.StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"
    # A live process of ours that does not answer on its control socket.
    UNRESPONSIVE = "unresponsive"


# --------------------------------------------------------------------------- installation


@dataclass(frozen=True, slots=True)
class AsteriskInstall:
    """An unpacked sid tree and how to run its Asterisk."""

    root: Path
    version: str

    @property
    def _multiarch(self) -> tuple[str, str]:
        machine = platform.machine()
        try:
            return _MULTIARCH[machine]
        except KeyError:
            raise AsteriskInstallError(f"unsupported architecture {machine!r}") from None

    @property
    def lib_dir(self) -> Path:
        return self.root / "usr" / "lib" / self._multiarch[0]

    @property
    def loader(self) -> Path:
        return self.lib_dir / self._multiarch[1]

    @property
    def binary(self) -> Path:
        return self.root / "usr" / "sbin" / "asterisk"

    @property
    def mod_dir(self) -> Path:
        return self.lib_dir / "asterisk" / "modules"

    @property
    def data_dir(self) -> Path:
        return self.root / "usr" / "share" / "asterisk"

    @property
    def sbin_dir(self) -> Path:
        return self.root / "usr" / "sbin"

    def command(self, config: Path, *args: str) -> list[str]:
        """The argv that runs sid's ``asterisk -C config ARGS`` through sid's loader."""
        return [
            str(self.loader),
            "--library-path",
            str(self.lib_dir),
            str(self.binary),
            "-C",
            str(config),
            *args,
        ]


def _stamp_key(mirror: str) -> dict[str, object]:
    return {
        "layout": _LAYOUT_VERSION,
        "mirror": mirror,
        "packages": list(SID_PACKAGES),
        "skip": list(SKIP_PACKAGES),
        "machine": platform.machine(),
    }


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock across processes (a test session and ``make run`` may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(
    command: Sequence[str], what: str, *, timeout: float = _APT_TIMEOUT_S, env: Mapping[str, str]
) -> str:
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env),
            check=False,
        )
    except FileNotFoundError as exc:
        raise AsteriskInstallError(f"{what}: {exc.filename} not found", command=command) from exc
    except subprocess.TimeoutExpired as exc:
        raise AsteriskInstallError(
            f"{what}: timed out after {timeout:.0f} s", command=command
        ) from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AsteriskInstallError(
            f"{what} failed (exit {done.returncode})", command=command, output=output
        )
    return output


def _apt_options(work: Path, retries: int) -> list[str]:
    options = {
        "Dir::Etc::SourceList": str(work / "sources.list"),
        "Dir::Etc::SourceParts": "/dev/null",
        "Dir::State::Lists": str(work / "lists"),
        "Dir::Cache": str(work / "cache"),
        "Dir::Cache::Archives": str(work.parent / "debs"),
        # Empty status: apt must believe nothing is installed and fetch the whole closure.
        "Dir::State::status": str(work / "status"),
        "APT::Install-Recommends": "false",
        # The mirror is a frozen snapshot; sid's Release file looks expired.
        "Acquire::Check-Valid-Until": "false",
        "APT::Sandbox::User": "root",
        "Debug::NoLocking": "1",
        "Acquire::Retries": str(retries),
    }
    return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]


_INST = re.compile(r"^Inst (\S+) \((\S+) .*\[(\S+)\]\)", re.MULTILINE)


def _deb_filename(package: str, version: str, arch: str) -> str:
    # apt's archive names escape the epoch colon (1:22.10 -> 1%3a22.10).
    return f"{package}_{version.replace(':', '%3a')}_{arch}.deb"


def _download_debs(
    prefix: Path, mirror: str, retries: int, env: Mapping[str, str]
) -> list[tuple[str, Path]]:
    """Download the sid closure; return (package, .deb) for exactly what apt selected."""
    work = prefix / "apt"
    for sub in (work / "lists" / "partial", work / "cache", prefix / "debs" / "partial"):
        sub.mkdir(parents=True, exist_ok=True)
    (work / "sources.list").write_text(
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} sid main\n",
        encoding="utf-8",
    )
    (work / "status").write_text("", encoding="utf-8")
    apt = ["apt-get", *_apt_options(work, retries)]
    # --error-on=any: otherwise an unreachable mirror is only a warning and install then
    # fails with a misleading "Unable to locate package".
    _run([*apt, "-q", "--error-on=any", "update"], "apt-get update (Debian sid)", env=env)
    plan = _run([*apt, "-q", "-s", "install", *SID_PACKAGES], "apt-get -s install", env=env)
    selected = [(m[1], m[2], m[3]) for m in _INST.finditer(plan)]
    if not selected:
        raise AsteriskInstallError("apt selected no packages", output=plan)
    _run(
        [*apt, "-q", "-y", "--download-only", "install", *SID_PACKAGES],
        "apt-get --download-only install (Debian sid)",
        env=env,
    )
    debs: list[tuple[str, Path]] = []
    for package, version, arch in selected:
        deb = prefix / "debs" / _deb_filename(package, version, arch)
        if not deb.is_file():
            raise AsteriskInstallError(f"apt did not leave {deb.name} in {deb.parent}")
        debs.append((package, deb))
    wanted = {deb.name for _, deb in debs}
    # Older versions from earlier runs would otherwise pile up in the cache.
    for stale in (prefix / "debs").glob("*.deb"):
        if stale.name not in wanted:
            stale.unlink()
    return debs


def _skipped(package: str) -> bool:
    return any(fnmatch.fnmatchcase(package, pattern) for pattern in SKIP_PACKAGES)


def _probe_version(install: AsteriskInstall) -> str:
    output = _run(
        [str(install.loader), "--library-path", str(install.lib_dir), str(install.binary), "-V"],
        "asterisk -V (unpacked tree)",
        timeout=30,
        env=os.environ,
    )
    return output.strip()


def install_asterisk(
    cache_dir: Path | None = None,
    *,
    mirror: str = DEFAULT_MIRROR,
    sound_tools: bool = True,
    retries: int = 3,
) -> AsteriskInstall:
    """Make sid's Asterisk runnable from ``<cache_dir>/asterisk/root``; idempotent.

    The first run downloads the closure (~80 MB) with a private apt state into
    ``<cache_dir>/asterisk/debs`` and unpacks it; later runs only read the stamp file.
    With ``sound_tools``, also ensures the machine's ``espeak-ng`` and ``sox`` (apt-get).
    ``retries`` is apt's per-file retry count (with back-off: 3 retries cost ~7 s when the
    mirror is down).
    Raises AsteriskInstallError with apt's output when anything fails.
    """
    cache = cache_dir if cache_dir is not None else get_settings().cache_dir
    prefix = cache / "asterisk"
    root = prefix / "root"
    stamp = prefix / _STAMP
    key = _stamp_key(mirror)
    if sound_tools:
        ensure_sound_tools()
    installed = _read_stamp(stamp, key, root)
    if installed is not None:
        return installed
    try:
        with _file_lock(prefix / ".install.lock"):
            installed = _read_stamp(stamp, key, root)  # another process may have finished
            if installed is not None:
                return installed
            return _install_locked(prefix, mirror, retries, key)
    except OSError as exc:
        raise AsteriskInstallError(f"cannot install into {prefix}: {exc}") from exc


def _install_locked(
    prefix: Path, mirror: str, retries: int, key: Mapping[str, object]
) -> AsteriskInstall:
    root = prefix / "root"
    stamp = prefix / _STAMP
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    debs = _download_debs(prefix, mirror, retries, env)
    downloaded = time.monotonic()
    # Unpack beside the final place and rename: a crash never leaves a half tree in use.
    staging = Path(tempfile.mkdtemp(prefix="root.", dir=prefix))
    try:
        for package, deb in debs:
            if not _skipped(package):
                _run(["dpkg", "-x", str(deb), str(staging)], f"dpkg -x {deb.name}", env=env)
        probe = AsteriskInstall(root=staging, version="")
        for needed in (probe.loader, probe.binary, probe.mod_dir):
            if not needed.exists():
                raise AsteriskInstallError(f"unpacked tree lacks {needed}")
        stamp.unlink(missing_ok=True)
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    version = _probe_version(AsteriskInstall(root=root, version=""))
    stamp.write_text(
        json.dumps({**key, "version": version, "debs": len(debs)}, indent=2), encoding="utf-8"
    )
    logger.info(
        "installed %s into %s (download %.1f s, unpack %.1f s)",
        version,
        root,
        downloaded - started,
        time.monotonic() - downloaded,
    )
    return AsteriskInstall(root=root, version=version)


def _read_stamp(stamp: Path, key: Mapping[str, object], root: Path) -> AsteriskInstall | None:
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or any(recorded.get(k) != v for k, v in key.items()):
        return None
    install = AsteriskInstall(root=root, version=str(recorded.get("version", "")))
    if not (install.binary.is_file() and install.loader.is_file()):
        return None
    return install


def ensure_sound_tools() -> None:
    """Install the machine's ``espeak-ng`` and ``sox`` with apt-get when missing; idempotent."""
    missing = [package for tool, package in SOUND_TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [
        "apt-get",
        "-q",
        "-y",
        "-o",
        "DPkg::Lock::Timeout=120",
        "install",
        "--no-install-recommends",
        *missing,
    ]
    logger.info("installing %s with apt-get", ", ".join(missing))
    try:
        _run(install, f"apt-get install {' '.join(missing)}", env=env)
    except AsteriskInstallError:
        # A fresh machine has no package lists yet.
        _run(["apt-get", "-q", "update"], "apt-get update", env=env)
        _run(install, f"apt-get install {' '.join(missing)}", env=env)
    still = [tool for tool in SOUND_TOOLS if shutil.which(tool) is None]
    if still:
        raise AsteriskInstallError(f"{', '.join(still)} still missing after apt-get install")


# --------------------------------------------------------------------------- sounds


def render_korean_wav(text: str, dest: Path, *, voice: str = "ko") -> Path:
    """Speak ``text`` with espeak-ng into ``dest`` as 8 kHz mono 16-bit WAV (Asterisk's wav)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="anbu-tts.") as tmp:
        raw = Path(tmp) / "raw.wav"
        _run(
            ["espeak-ng", "-v", voice, "-w", str(raw), text],
            "espeak-ng",
            timeout=60,
            env=os.environ,
        )
        partial = Path(tmp) / "out.wav"
        _run(
            ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(partial)],
            "sox (resample)",
            timeout=60,
            env=os.environ,
        )
        shutil.move(str(partial), dest)
    return dest


def _render_synth_wav(dest: Path, what: str, *synth: str) -> Path:
    """sox's ``synth`` effect into ``dest``: 8 kHz mono 16-bit WAV, written whole or not at all."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial.wav")
    _run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(partial), "synth", *synth],
        f"sox ({what})",
        timeout=60,
        env=os.environ,
    )
    partial.replace(dest)
    return dest


def render_muffled_wav(dest: Path, *, text: str = "네", lowpass_hz: int = 600) -> Path:
    """``text`` spoken as by ``render_korean_wav``, then low-passed: a muffled voice."""
    with tempfile.TemporaryDirectory(prefix="anbu-tts.") as tmp:
        clear = render_korean_wav(text, Path(tmp) / "clear.wav")
        partial = Path(tmp) / "out.wav"
        _run(
            ["sox", str(clear), str(partial), "lowpass", str(lowpass_hz)],
            "sox (lowpass)",
            timeout=60,
            env=os.environ,
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(partial), dest)
    return dest


def render_noise_wav(dest: Path, *, seconds: float = 2.0, volume: float = 0.3) -> Path:
    """Pink noise at a moderate level, 8 kHz mono 16-bit WAV."""
    return _render_synth_wav(dest, "noise", f"{seconds}", "pinknoise", "vol", f"{volume}")


def render_tone_wav(
    dest: Path, *, hz: float = 1000.0, seconds: float = 0.5, volume: float = 0.5
) -> Path:
    """A voicemail beep: a sine tone, 8 kHz mono 16-bit WAV."""
    return _render_synth_wav(dest, "tone", f"{seconds}", "sine", f"{hz}", "vol", f"{volume}")


def carrier_sounds(cache_dir: Path) -> dict[str, Path]:
    """The carrier's sound files (name -> wav), generated once into the cache."""
    folder = cache_dir / "asterisk" / "carrier-sounds" / f"v{_CARRIER_SOUNDS_VERSION}"
    sounds: dict[str, Path] = {}

    def cached(name: str, render: Callable[[Path], object]) -> None:
        wav = folder / f"{name}.wav"
        if not wav.is_file():
            render(wav)
        sounds[name] = wav

    with _file_lock(folder.parent / ".lock"):
        for name, text in {**CARRIER_SPEECH, **CARRIER_MACHINE_SPEECH}.items():
            cached(name, functools.partial(render_korean_wav, text))
        cached(CARRIER_MUFFLED_NE, render_muffled_wav)
        cached(CARRIER_NOISE, render_noise_wav)
        cached(CARRIER_BEEP, render_tone_wav)
        cached(CARRIER_MELODY, render_melody_wav)
    return sounds


def render_melody_wav(dest: Path, *, note_s: float = 0.25) -> Path:
    """A few bars of a simple tune, 8 kHz mono 16-bit WAV (the stand-in's 컬러링)."""
    notes = (523.25, 587.33, 659.25, 523.25, 659.25, 783.99, 659.25, 587.33) * 2
    frames = bytearray()
    per_note = int(8000 * note_s)
    for freq in notes:
        for i in range(per_note):
            fade = min(1.0, i / 200, (per_note - i) / 200)
            sample = int(6000 * fade * math.sin(2 * math.pi * freq * i / 8000))
            frames += struct.pack("<h", sample)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial.wav")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(frames))
    partial.replace(dest)
    return dest


# --------------------------------------------------------------------------- rendering

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# ';' starts an Asterisk config comment and a newline would start a new option.
_UNSAFE = re.compile(r"[;\r\n]")


def render_template(text: str, variables: Mapping[str, str], *, source: str = "<template>") -> str:
    """Replace ``{{name}}`` placeholders; a name without a value is an AsteriskConfigError."""
    missing = sorted({m[1] for m in _PLACEHOLDER.finditer(text)} - variables.keys())
    if missing:
        raise AsteriskConfigError(f"{source}: no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: variables[m[1]], text)


def _conf_value(name: str, value: object) -> str:
    text = str(value)
    if _UNSAFE.search(text):
        raise AsteriskConfigError(f"{name} must not contain ';' or line breaks")
    return text


def template_files(role: AsteriskRole, templates_dir: Path = DIALPLANS_DIR) -> dict[str, Path]:
    """File name -> template for a role: common/ first, the role's folder overrides."""
    files: dict[str, Path] = {}
    for folder in (templates_dir / "common", templates_dir / role.value):
        if not folder.is_dir():
            raise AsteriskConfigError(f"template folder {folder} missing")
        for path in sorted(folder.iterdir()):
            if path.is_file():
                files[path.name] = path
    return files


# --------------------------------------------------------------------------- instances

_SIP_TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class _Proc:
    pid: int
    state: str  # /proc/<pid>/stat state letter


def _proc_of(pid: int, config: Path) -> _Proc | None:
    """The process ``pid`` if it is an Asterisk running ``config`` (guards against PID reuse)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if os.fsencode(config) not in argv:
        return None
    return _Proc(pid, stat.rsplit(")", 1)[1].split()[0])


class AsteriskInstance:
    """One Asterisk process with its own config tree, ports and PID file.

    Layout under ``base_dir/name``: ``etc`` (rendered, rewritten by ``render()``), ``run``
    (control socket, PID files), ``log`` (``console.log`` = the process's stdout/stderr,
    ``messages.log`` = Asterisk's logger), ``lib``, ``spool``, ``cache``, ``sounds``.
    """

    def __init__(
        self,
        name: str,
        role: AsteriskRole,
        base_dir: Path,
        settings: AsteriskSettings,
        *,
        install: AsteriskInstall,
        trunk: TrunkSettings | None = None,
        agi_host: str = "127.0.0.1",
        agi_port: int = 14573,
        bench_prompt: Path | None = None,
        engine_host: str = "127.0.0.1",
        sip_transport: str | None = None,
        hold_text: str | None = None,
        hold_class: str | None = None,
        templates_dir: Path = DIALPLANS_DIR,
        boot_timeout_s: float = 15.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise AsteriskConfigError(f"instance name {name!r}: letters, digits, _ . - only")
        self.name = name
        self.role = role
        # Absolute: the config path in the process's argv is how we recognise our process.
        self.base_dir = base_dir.absolute()
        self.settings = settings
        self.install = install
        self.trunk = trunk if trunk is not None else TrunkSettings()
        self.agi_host = agi_host
        self.agi_port = agi_port
        self.bench_prompt = bench_prompt
        self.engine_host = engine_host
        # The transfer's holding message as a music-on-hold class (engine only, ivr.handoff).
        self.hold_text = hold_text
        self.hold_class = hold_class
        transport = sip_transport if sip_transport is not None else self.trunk.transport
        if transport not in _SIP_TRANSPORTS:
            raise AsteriskConfigError(
                f"SIP transport {transport!r} not supported (one of {', '.join(_SIP_TRANSPORTS)})"
            )
        self.sip_transport = transport
        self.templates_dir = templates_dir
        self.boot_timeout_s = boot_timeout_s
        self.stop_grace_s = stop_grace_s
        self._popen: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None

    def __repr__(self) -> str:
        return (
            f"AsteriskInstance({self.name!r}, {self.role.value}, "
            f"sip={self.sip_port}, ami={self.ami_port})"
        )

    # ---- paths and ports

    @property
    def dir(self) -> Path:
        return self.base_dir / self.name

    @property
    def etc_dir(self) -> Path:
        return self.dir / "etc"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.dir / "log"

    @property
    def lib_dir(self) -> Path:
        return self.dir / "lib"

    @property
    def spool_dir(self) -> Path:
        return self.dir / "spool"

    @property
    def cache_dir(self) -> Path:
        return self.dir / "cache"

    @property
    def sounds_dir(self) -> Path:
        return self.dir / "sounds"

    @property
    def config_path(self) -> Path:
        return self.etc_dir / "asterisk.conf"

    @property
    def pid_file(self) -> Path:
        # Not run/asterisk.pid: Asterisk writes and deletes that one itself.
        return self.run_dir / "anbu-asterisk.pid"

    @property
    def log_path(self) -> Path:
        """The process's stdout/stderr (startup errors land here)."""
        return self.log_dir / "console.log"

    @property
    def messages_log(self) -> Path:
        """Asterisk's own logger output (notice, warning, error)."""
        return self.log_dir / "messages.log"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "asterisk.ctl"

    @property
    def sip_port(self) -> int:
        return self.settings.sip_port

    @property
    def ami_port(self) -> int:
        return self.settings.ami_port

    @property
    def ami_host(self) -> str:
        return self.settings.ami_host

    @property
    def ami_user(self) -> str:
        return self.settings.ami_user

    @property
    def ami_secret(self) -> str:
        return self.settings.ami_secret.get_secret_value()

    # ---- configuration

    def variables(self) -> dict[str, str]:
        """Template values for this instance (secrets included: do not log)."""
        s = self.settings
        values: dict[str, object] = {
            "name": self.name,
            "role": self.role.value,
            "etc_dir": self.etc_dir,
            "run_dir": self.run_dir,
            "log_dir": self.log_dir,
            "lib_dir": self.lib_dir,
            "spool_dir": self.spool_dir,
            "cache_dir": self.cache_dir,
            "sounds_dir": self.sounds_dir,
            "mod_dir": self.install.mod_dir,
            "data_dir": self.install.data_dir,
            "sbin_dir": self.install.sbin_dir,
            "bind_host": s.bind_host,
            "sip_port": s.sip_port,
            "sip_transport": self.sip_transport,
            "ami_host": s.ami_host,
            "ami_port": s.ami_port,
            "ami_user": s.ami_user,
            "ami_secret": s.ami_secret.get_secret_value(),
            "ami_read": AMI_READ,
            "ami_write": AMI_WRITE,
            "rtp_start": s.rtp_start,
            "rtp_end": s.rtp_end,
            "engine_host": self.engine_host,
        }
        if self.role is AsteriskRole.ENGINE:
            trunk = self.trunk
            bench = self.bench_prompt
            values |= {
                "agi_host": self.agi_host,
                "agi_port": self.agi_port,
                # Asterisk plays by path without the extension and picks the format itself.
                "bench_prompt": bench.with_suffix("") if bench is not None else "",
                # bench-bare-flow plays the whole catalogue dialogue from this directory.
                "bench_dir": bench.parent if bench is not None else "",
                "trunk_host": trunk.host,
                "trunk_port": trunk.port,
                "codecs": trunk.codecs,
                "dtmf_mode": trunk.dtmf_mode,
                "trunk_qualify_s": trunk.qualify_s,
            }
            if trunk.username:
                password = trunk.password.get_secret_value() if trunk.password else ""
                values |= {
                    "trunk_username": trunk.username,
                    "trunk_password": password,
                    "trunk_realm_line": f"realm = {trunk.realm}" if trunk.realm else "",
                    "outbound_auth_line": "outbound_auth = trunk-auth",
                }
            else:
                values |= {"outbound_auth_line": "", "outbound_auth_section": ""}
            values |= {k: v for k, v in self._trunk_lines().items() if not k.endswith("_lines")}
        checked = {key: _conf_value(key, value) for key, value in values.items()}
        # Multi-line values: built from checked pieces (see _trunk_lines, _tls_lines).
        checked["transport_tls_lines"] = self._tls_lines()
        if self.role is AsteriskRole.ENGINE:
            checked |= {k: v for k, v in self._trunk_lines().items() if k.endswith("_lines")}
        checked["hold_class_section"] = ""
        if self._holds_music():
            assert self.hold_class is not None
            name = _conf_value("hold_class", self.hold_class)
            checked["hold_class_section"] = (
                f"[{name}]\nmode = files\ndirectory = {checked['sounds_dir']}/hold\nsort = alpha"
            )
        for key in ("bench_prompt", "bench_dir", "sounds_dir"):
            # Dialplan application arguments are split on commas.
            if "," in checked.get(key, ""):
                raise AsteriskConfigError(f"{key} must not contain ',': {checked[key]}")
        if self.role is AsteriskRole.ENGINE and self.trunk.username:
            fragment = self.templates_dir / "engine" / "_trunk_auth.conf"
            checked["outbound_auth_section"] = render_template(
                fragment.read_text(encoding="utf-8"), checked, source=str(fragment)
            )
        if self.role is AsteriskRole.ENGINE and self.trunk.registration:
            fragment = self.templates_dir / "engine" / "_trunk_registration.conf"
            checked["registration_section"] = render_template(
                fragment.read_text(encoding="utf-8"), checked, source=str(fragment)
            )
        elif self.role is AsteriskRole.ENGINE:
            checked["registration_section"] = ""
        return checked

    def _trunk_lines(self) -> dict[str, str]:
        """The optional trunk settings of a real carrier, as pjsip.conf lines."""
        update = {
            name: _conf_value(f"trunk.{name}", getattr(self.trunk, name))
            for name in ("from_user", "from_domain", "caller_name", "registrar")
            if getattr(self.trunk, name) is not None
        }
        if self.trunk.outbound_proxy is not None:
            # URI parameters (";lr") belong here, but ';' starts a comment unless escaped.
            proxy = self.trunk.outbound_proxy
            _conf_value("trunk.outbound_proxy", proxy.replace(";", ""))
            update["outbound_proxy"] = proxy.replace(";", "\\;")
        trunk = self.trunk.model_copy(update=update)
        if '"' in trunk.caller_name or "<" in trunk.caller_name:
            raise AsteriskConfigError("trunk.caller_name must not contain '\"' or '<'")
        if trunk.registration and not trunk.username:
            raise AsteriskConfigError("trunk registration needs a username and password")
        endpoint: list[str] = []
        from_user = trunk.from_user or trunk.caller_id
        if from_user:
            endpoint.append(f"from_user = {from_user}")
        if trunk.from_domain:
            endpoint.append(f"from_domain = {trunk.from_domain}")
        if trunk.outbound_proxy:
            endpoint.append(f"outbound_proxy = {trunk.outbound_proxy}")
        if trunk.caller_id:
            # The channel's caller id when the Originate names none: never anonymous.
            endpoint.append(f'callerid = "{trunk.caller_name}" <{trunk.caller_id}>')
        if trunk.send_pai:
            endpoint.append("send_pai = yes")
        registrar = trunk.registrar or f"{trunk.host}:{trunk.port}"
        user = trunk.username or ""
        return {
            "trunk_endpoint_lines": "\n".join(endpoint),
            "trunk_aor_lines": (
                f"outbound_proxy = {trunk.outbound_proxy}" if trunk.outbound_proxy else ""
            ),
            "registrar": registrar,
            "registration_user": user,
            "registration_domain": trunk.from_domain or registrar.split(":")[0],
            "registration_expiry_s": str(trunk.registration_expiry_s),
            "registration_retry_s": str(trunk.registration_retry_s),
            "registration_proxy_lines": (
                f"outbound_proxy = {trunk.outbound_proxy}" if trunk.outbound_proxy else ""
            ),
        }

    def _tls_lines(self) -> str:
        """Certificate settings of a TLS transport (empty for udp/tcp)."""
        if self.sip_transport != "tls":
            return ""
        trunk = self.trunk
        for name in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
            if getattr(trunk, name) is not None:
                _conf_value(f"trunk.{name}", getattr(trunk, name))
        lines = ["method = tlsv1_2"]
        if trunk.tls_cert_file is not None:
            lines.append(f"cert_file = {trunk.tls_cert_file}")
        if trunk.tls_key_file is not None:
            lines.append(f"priv_key_file = {trunk.tls_key_file}")
        if trunk.tls_ca_file is not None:
            lines.append(f"ca_list_file = {trunk.tls_ca_file}")
        if self.role is AsteriskRole.ENGINE:
            lines.append(f"verify_server = {'yes' if trunk.tls_verify_server else 'no'}")
        else:
            # The carrier stand-in serves TLS with the same certificate and asks for none.
            lines.append("verify_client = no")
            lines.append("require_client_cert = no")
        return "\n".join(lines)

    def render(self) -> list[Path]:
        """(Re)write ``etc/`` from the templates and create the instance's directories."""
        if self.sip_port == self.ami_port:
            raise AsteriskConfigError(f"{self.name}: SIP and AMI ports are both {self.sip_port}")
        if not 0 < self.settings.rtp_start <= self.settings.rtp_end < 65536:
            raise AsteriskConfigError(f"{self.name}: bad RTP range")
        if len(os.fsencode(self.control_socket)) > _MAX_SOCKET_PATH:
            raise AsteriskConfigError(
                f"{self.name}: control socket path {self.control_socket} is longer than "
                f"{_MAX_SOCKET_PATH} bytes; use a shorter var dir"
            )
        for folder in (
            self.etc_dir,
            self.run_dir,
            self.log_dir,
            self.lib_dir,
            self.spool_dir,
            self.cache_dir,
            self.sounds_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        if self._holds_music():
            assert self.hold_text is not None
            render_hold_music(self.hold_text, self.sounds_dir / "hold")
        variables = self.variables()
        written: list[Path] = []
        templates = template_files(self.role, self.templates_dir)
        for file_name, template in templates.items():
            if file_name.startswith("_"):
                continue
            text = render_template(
                template.read_text(encoding="utf-8"), variables, source=str(template)
            )
            target = self.etc_dir / file_name
            partial = target.with_name(f".{file_name}.partial")
            partial.write_text(text, encoding="utf-8")
            partial.chmod(0o600)  # manager.conf and pjsip.conf hold secrets
            partial.replace(target)
            written.append(target)
        keep = {path.name for path in written}
        for stale in self.etc_dir.iterdir():
            if stale.name not in keep:
                stale.unlink()
        return written

    def _holds_music(self) -> bool:
        return self.role is AsteriskRole.ENGINE and bool(self.hold_text and self.hold_class)

    def install_sounds(self, sounds: Mapping[str, Path]) -> None:
        """Copy sound files (name -> wav) into this instance's sounds dir."""
        self.sounds_dir.mkdir(parents=True, exist_ok=True)
        for name, source in sounds.items():
            target = self.sounds_dir / f"{name}.wav"
            if not target.is_file() or target.read_bytes() != source.read_bytes():
                shutil.copyfile(source, target)

    def set_agi(self, host: str, port: int) -> None:
        """Point ``anbu-checkin`` at another FastAGI server; reloads the dialplan if running."""
        self.agi_host, self.agi_port = host, port
        self.render()
        if self.pid is not None:
            self.rx("dialplan reload")

    def reload(self) -> None:
        """Re-render and make a running instance re-read all its configuration."""
        self.render()
        if self.pid is not None:
            self.rx("core reload")

    # ---- process

    @property
    def pid(self) -> int | None:
        """PID of this instance's live Asterisk process, from our PID file."""
        try:
            pid = int(self.pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None
        proc = _proc_of(pid, self.config_path)
        if proc is None:
            return None
        if proc.state == "Z":
            self._reap(pid)
            return None
        return pid

    def is_running(self) -> bool:
        return self.status() is InstanceStatus.RUNNING

    def status(self) -> InstanceStatus:
        if self.pid is None:
            return InstanceStatus.STOPPED
        try:
            self.rx("core show uptime seconds", timeout=3.0)
        except AsteriskCommandError:
            return InstanceStatus.UNRESPONSIVE
        return InstanceStatus.RUNNING

    def rx(self, command: str, *, timeout: float = 10.0) -> str:
        """Run one CLI command in the instance (``asterisk -rx``); return its output."""
        argv = self.install.command(self.config_path, "-rx", command)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AsteriskCommandError(self.name, command, f"no answer in {timeout:.1f} s") from exc
        output = (done.stdout + done.stderr).decode("utf-8", errors="replace")
        if done.returncode != 0 or output.startswith(
            ("Unable to connect to remote asterisk", "No such command")
        ):
            raise AsteriskCommandError(
                self.name, command, output.strip() or f"exit {done.returncode}"
            )
        return output

    def start(self, *, boot_timeout_s: float | None = None) -> None:
        """Start the instance and wait until it is fully booted with AMI listening.

        Idempotent: a running instance is left alone. Renders ``etc/`` first if it is missing.
        Raises AsteriskStartError (with the console log's tail) and leaves no process behind.
        """
        timeout = self.boot_timeout_s if boot_timeout_s is None else boot_timeout_s
        with _file_lock(self.dir / ".lock"):
            if self.pid is not None:
                if self.status() is InstanceStatus.RUNNING:
                    return
                logger.warning("asterisk %s: unresponsive process, restarting it", self.name)
                self._stop_locked(self.stop_grace_s)
            if not self.config_path.is_file():
                self.render()
            self.pid_file.unlink(missing_ok=True)
            self._spawn()
            try:
                self._wait_ready(timeout)
            except BaseException:
                self._stop_locked(0.5)
                raise

    def _spawn(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._close_console()
        console = self.log_path.open("ab")
        console.write(f"--- anbu: starting {self.name} at {time.strftime('%F %T')}\n".encode())
        console.flush()
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "LD_LIBRARY_PATH")}
        # -f: stay in the foreground so the PID we hold is Asterisk's own; -n: no colours.
        # Its own session, so a Ctrl-C meant for a test runner or `make run` does not hit it.
        self._popen = subprocess.Popen(
            self.install.command(self.config_path, "-f", "-n"),
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env=env,
            start_new_session=True,
        )
        self._console = console
        self.pid_file.write_text(f"{self._popen.pid}\n", encoding="ascii")
        logger.info("asterisk %s: started pid %d", self.name, self._popen.pid)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        last_error = "no answer on the control socket"
        while True:
            popen = self._popen
            if popen is not None and popen.poll() is not None:
                raise AsteriskStartError(
                    self.name, f"process exited with {popen.returncode}", self._log_tail()
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AsteriskStartError(
                    self.name, f"not ready after {timeout:.1f} s: {last_error}", self._log_tail()
                )
            try:
                self.rx("core waitfullybooted", timeout=max(0.5, remaining))
                break
            except AsteriskCommandError as exc:
                last_error = exc.why
                time.sleep(0.05)
        # Fully booted does not mean every listener is up: a taken port is only a log line.
        ami_host = "127.0.0.1" if self.ami_host in ("0.0.0.0", "") else self.ami_host
        # Read the banner: something else may be listening on our AMI port.
        try:
            with socket.create_connection((ami_host, self.ami_port), timeout=1.0) as ami:
                banner = ami.recv(200)
        except OSError as exc:
            banner = f"({exc})".encode()
        if not banner.startswith(b"Asterisk Call Manager"):
            raise AsteriskStartError(
                self.name,
                f"AMI not listening on {ami_host}:{self.ami_port}: {banner[:80]!r}",
                self._log_tail(),
            )
        transports = self.rx(f"pjsip show transport transport-{self.sip_transport}")
        if "Unable to find object" in transports:
            raise AsteriskStartError(
                self.name,
                f"SIP transport {self.sip_transport} on port {self.sip_port} did not come up",
                self._log_tail(),
            )
        logger.info("asterisk %s: ready in %.2f s", self.name, time.monotonic() - started)

    def _log_tail(self, lines: int = 30) -> str:
        chunks = []
        for path in (self.log_path, self.messages_log):
            with contextlib.suppress(OSError):
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                chunks.append(f"[{path.name}]\n" + "\n".join(text))
        return "\n".join(chunks)

    def stop(self, *, grace: float | None = None) -> None:
        """Stop by PID: ``core stop now``, then SIGTERM, then SIGKILL, each after ``grace`` s."""
        grace = self.stop_grace_s if grace is None else grace
        with _file_lock(self.dir / ".lock"):
            self._stop_locked(grace)

    def _stop_locked(self, grace: float) -> None:
        pid = self.pid
        if pid is None:
            self._forget()
            return
        started = time.monotonic()
        with contextlib.suppress(AsteriskCommandError):
            self.rx("core stop now", timeout=max(grace, 0.5))
        stopped = self._wait_gone(pid, grace)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if stopped:
                break
            logger.warning("asterisk %s: pid %d still up, sending %s", self.name, pid, sig.name)
            with contextlib.suppress(ProcessLookupError):
                # Its own process group (start_new_session): take any helper it forked too.
                os.killpg(pid, sig)
            stopped = self._wait_gone(pid, grace if sig is signal.SIGTERM else 5.0)
        if not stopped:
            raise AsteriskStopError(f"asterisk {self.name}: pid {pid} survived SIGKILL")
        self._forget()
        logger.info(
            "asterisk %s: stopped pid %d in %.2f s", self.name, pid, time.monotonic() - started
        )

    def kill(self) -> None:
        """SIGKILL, no shutdown at all (a node dying, for failure tests and benchmarks); the
        process is reaped and its PID file removed, so ``start()`` starts it afresh."""
        with _file_lock(self.dir / ".lock"):
            pid = self.pid
            if pid is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 5.0):
                raise AsteriskStopError(f"asterisk {self.name}: pid {pid} survived SIGKILL")
            self._forget()
            logger.info("asterisk %s: killed pid %d", self.name, pid)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._popen is not None and self._popen.pid == pid:
                try:
                    self._popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                    return True
                except subprocess.TimeoutExpired:
                    return False
            proc = _proc_of(pid, self.config_path)
            if proc is None or proc.state == "Z":
                self._reap(pid)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _reap(self, pid: int) -> None:
        if self._popen is not None and self._popen.pid == pid:
            self._popen.poll()
            return
        # Our child from another AsteriskInstance object of this process: collect the zombie.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)

    def _forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        if self._popen is not None and self._popen.poll() is not None:
            self._popen = None
        self._close_console()

    def _close_console(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None

    def restart(self, *, boot_timeout_s: float | None = None) -> None:
        """Stop then start (never ``core restart``: it re-executes without sid's loader)."""
        self.stop()
        self.start(boot_timeout_s=boot_timeout_s)

    # ---- async wrappers (the work is blocking: run it in a thread)

    async def start_async(self, *, boot_timeout_s: float | None = None) -> None:
        await asyncio.to_thread(lambda: self.start(boot_timeout_s=boot_timeout_s))

    async def stop_async(self, *, grace: float | None = None) -> None:
        await asyncio.to_thread(lambda: self.stop(grace=grace))

    async def restart_async(self, *, boot_timeout_s: float | None = None) -> None:
        await asyncio.to_thread(lambda: self.restart(boot_timeout_s=boot_timeout_s))

    async def status_async(self) -> InstanceStatus:
        return await asyncio.to_thread(self.status)


# --------------------------------------------------------------------------- provisioning


def default_bench_prompt(settings: Settings) -> Path:
    """Where the rendered question prompt lives (``audio/rendered/question``, no extension)."""
    return settings.audio_dir / "rendered" / Prompt.QUESTION.value


def provision_engine(
    settings: Settings,
    *,
    install: AsteriskInstall | None = None,
    name: str = "engine",
    bench_prompt: Path | None = None,
    ports: AsteriskSettings | None = None,
    agi_address: str | None = None,
) -> AsteriskInstance:
    """Install if needed and render the engine instance (trunk, AGI and bench contexts):
    ``settings.engine``'s ports unless ``ports`` are given, the AGI server of ``settings``
    unless an ``agi_address`` (``host:port``, a node's) is."""
    install = install if install is not None else install_asterisk(settings.cache_dir)
    agi_host, agi_port = settings.agi_host, settings.agi_port
    if agi_address:
        host, _, port = agi_address.rpartition(":")
        agi_host, agi_port = host.strip("[]"), int(port)
    instance = AsteriskInstance(
        name,
        AsteriskRole.ENGINE,
        settings.var_dir / "asterisk",
        ports if ports is not None else settings.engine,
        install=install,
        trunk=settings.trunk,
        agi_host=agi_host,
        agi_port=agi_port,
        bench_prompt=bench_prompt if bench_prompt is not None else default_bench_prompt(settings),
        hold_text=settings.handoff.hold_text,
        hold_class=settings.handoff.hold_class,
    )
    instance.render()
    return instance


def node_instance_settings(settings: Settings) -> list[AsteriskSettings]:
    """Each engine node's ports in the local stack: the node's AMI port; SIP and RTP derived
    from ``settings.engine`` (node i: SIP port + 100 i, its own slice of the RTP range), so
    every node has distinct ports and the carrier stand-in takes calls from all of them."""
    nodes = settings.nodes
    if not nodes:
        return [settings.engine]
    e = settings.engine
    block = (e.rtp_end - e.rtp_start + 1) // len(nodes)
    if block < 20:
        raise AsteriskConfigError(f"RTP range {e.rtp_start}-{e.rtp_end} too small for the nodes")
    return [
        e.model_copy(
            update={
                "sip_port": e.sip_port + 100 * i,
                "ami_port": node.ami_port,
                "ami_user": node.ami_user,
                "ami_secret": node.ami_secret,
                "ami_host": node.ami_host,
                "rtp_start": e.rtp_start + block * i,
                "rtp_end": e.rtp_start + block * (i + 1) - 1,
            }
        )
        for i, node in enumerate(nodes)
    ]


def provision_engines(
    settings: Settings,
    *,
    install: AsteriskInstall | None = None,
    bench_prompt: Path | None = None,
    ports: Sequence[AsteriskSettings] | None = None,
) -> list[AsteriskInstance]:
    """One engine instance per configured node (``settings.nodes``; none: the one engine), all
    trunked to the one carrier stand-in. ``ports`` overrides each node's instance ports (tests
    take free ports). A node's ``agi_address`` becomes that instance's AGI globals."""
    if not settings.nodes:
        return [provision_engine(settings, install=install, bench_prompt=bench_prompt)]
    install = install if install is not None else install_asterisk(settings.cache_dir)
    ports = list(ports) if ports is not None else node_instance_settings(settings)
    prompt = bench_prompt if bench_prompt is not None else default_bench_prompt(settings)
    return [
        provision_engine(
            settings,
            install=install,
            name=node.name if node.name.startswith("engine") else f"engine-{node.name}",
            bench_prompt=prompt,
            ports=own,
            agi_address=node.agi_address,
        )
        for node, own in zip(settings.nodes, ports, strict=True)
    ]


def provision_carrier(
    settings: Settings, *, install: AsteriskInstall | None = None, name: str = "carrier"
) -> AsteriskInstance:
    """Install if needed, render the carrier stand-in and put its spoken replies in place."""
    install = install if install is not None else install_asterisk(settings.cache_dir)
    instance = AsteriskInstance(
        name,
        AsteriskRole.CARRIER,
        settings.var_dir / "asterisk",
        settings.carrier,
        install=install,
        trunk=settings.trunk,
        engine_host=settings.engine.bind_host,
    )
    instance.render()
    instance.install_sounds(carrier_sounds(settings.cache_dir))
    return instance


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devstack.asterisk install|start|stop|restart|status [engine|carrier|both]``."""
    parser = argparse.ArgumentParser(prog="python -m devstack.asterisk", description=__doc__)
    parser.add_argument(
        "action", choices=["install", "provision", "start", "stop", "restart", "status"]
    )
    parser.add_argument("which", nargs="?", default="both", choices=["engine", "carrier", "both"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    try:
        install = install_asterisk(settings.cache_dir)
        if args.action == "install":
            print(f"{install.version} in {install.root}")
            return 0
        instances: list[AsteriskInstance] = []
        # Carrier first: the engine's trunk points at it.
        if args.which in ("carrier", "both"):
            instances.append(provision_carrier(settings, install=install))
        if args.which in ("engine", "both"):
            instances += provision_engines(settings, install=install)
        if args.action in ("stop", "restart"):
            for instance in reversed(instances):
                instance.stop()
        if args.action in ("start", "restart"):
            for instance in instances:
                instance.start()
        for instance in instances:
            print(
                f"{instance.name}: {instance.status().value} pid={instance.pid} "
                f"sip={instance.sip_port} ami={instance.ami_port} log={instance.log_path}"
            )
    except TelephonyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
