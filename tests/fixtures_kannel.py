"""Fixtures for the SMS side: a real Kannel on free ports, a callback receiver, fake Solapi.

Kannel is installed (apt) and started for real; if that fails the fixture raises and every
test using it fails (never skips).

* ``callback_server`` (session): ``RecordingServer`` - a threaded HTTP server with a deep
  listen backlog (smsbox fires callbacks concurrently; a backlog of 5 lost reports) that
  records every request; ``kannel_dlr_base`` / ``kannel_mo_base`` are URLs on it.
* ``kannel`` (session): a started ``KannelInstance`` whose get-url points at
  ``callback_server``; stopped (spool cleared) at the end of the session.
* ``kannel_factory`` (function): ``make() -> KannelInstance`` (started, own ports and dir) for
  tests that stop or restart Kannel; all stopped at teardown.
* ``kannel_sender`` (function): a ``KannelSmsSender`` for ``kannel`` with dlr-url on
  ``callback_server``.
* ``solapi_server`` (function): a started ``FakeSolapiServer``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.kannel import KannelConfig, KannelInstance, KannelPorts
from escalation.providers import KannelSmsSender
from tests.fakes.solapi_server import FakeSolapiServer
from tests.fixtures_asterisk import free_ports

SENDSMS_USER = "anbu-test"
SENDSMS_PASSWORD = "test-sms-password"
ADMIN_PASSWORD = "test-admin-password"
OUR_NUMBER = "0212345678"


@dataclass(frozen=True, slots=True)
class Hit:
    method: str
    path: str
    query: str  # raw, still percent-encoded: what the parsers in escalation.dlr take
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


class _Handler(BaseHTTPRequestHandler):
    server: RecordingServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        hit = Hit(self.command, parts.path, parts.query, dict(self.headers.items()), body)
        status, payload = self.server.answer_for(parts.path)
        with self.server.lock:
            self.server.hits.append(hit)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _handle
    do_POST = _handle


class RecordingServer(ThreadingHTTPServer):
    """Records every request; answers 200 ``{}`` unless told otherwise per path."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self._answers: dict[str, list[tuple[int, bytes, float]]] = {}
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out on purpose (slow-answer tests) leaves a broken pipe behind.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def answer(self, path: str, status: int, body: bytes = b"{}", delay_s: float = 0.0) -> None:
        """Answer the next request to ``path`` with ``status`` (queued, one use each)."""
        with self.lock:
            self._answers.setdefault(path, []).append((status, body, delay_s))

    def answer_for(self, path: str) -> tuple[int, bytes]:
        with self.lock:
            queued = self._answers.get(path)
            status, body, delay = queued.pop(0) if queued else (200, b"{}", 0.0)
        if delay:
            time.sleep(delay)
        return status, body

    def requests_to(self, path: str) -> list[Hit]:
        with self.lock:
            return [hit for hit in self.hits if hit.path == path]

    async def wait_for(
        self, path: str, match: Callable[[Hit], bool], count: int = 1, timeout_s: float = 10.0
    ) -> list[Hit]:
        """Wait until ``count`` requests to ``path`` satisfy ``match``; return them."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [hit for hit in self.requests_to(path) if match(hit)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(found)}/{count} matching requests to {path} within {timeout_s} s"
                )
            await asyncio.sleep(0.02)

    def start(self) -> RecordingServer:
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.02,), name="recorder", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


DLR_PATH = "/v1/sms/kannel/dlr"
MO_PATH = "/v1/sms/kannel/inbound"


def make_kannel(var_dir: Path, callbacks: RecordingServer, name: str = "kannel") -> KannelInstance:
    admin, smsbox, smsc, inject, sendsms = free_ports(5)
    config = KannelConfig(
        name=name,
        var_dir=var_dir,
        mo_url=callbacks.url + MO_PATH,
        sendsms_user=SENDSMS_USER,
        sendsms_password=SENDSMS_PASSWORD,
        admin_password=ADMIN_PASSWORD,
        number=OUR_NUMBER,
        ports=KannelPorts(admin=admin, smsbox=smsbox, smsc=smsc, inject=inject, sendsms=sendsms),
        callback_retry_delay_s=1,  # keeps the "anbu was down" tests short
    )
    return KannelInstance(config)


def kannel_sender_for(
    instance: KannelInstance, callbacks: RecordingServer, timeout_s: float = 5.0
) -> KannelSmsSender:
    return KannelSmsSender(
        sendsms_url=instance.sendsms_url,
        username=SENDSMS_USER,
        password=SENDSMS_PASSWORD,
        dlr_url=callbacks.url + DLR_PATH,
        max_parts=instance.config.max_parts,
        timeout_s=timeout_s,
    )


@pytest.fixture(scope="session")
def callback_server() -> Iterator[RecordingServer]:
    server = RecordingServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kannel(
    tmp_path_factory: pytest.TempPathFactory, callback_server: RecordingServer
) -> Iterator[KannelInstance]:
    instance = make_kannel(tmp_path_factory.mktemp("kannel"), callback_server)
    instance.start_sync()  # raises (test errors, never skips) if Kannel cannot run here
    yield instance
    instance.stop_sync()


@pytest.fixture
def kannel_factory(
    tmp_path: Path, callback_server: RecordingServer
) -> Iterator[Callable[[], KannelInstance]]:
    made: list[KannelInstance] = []

    def make() -> KannelInstance:
        instance = make_kannel(tmp_path, callback_server, name=f"kannel{len(made)}")
        made.append(instance)
        instance.start_sync()
        return instance

    yield make
    for instance in made:
        instance.stop_sync(grace_s=5.0)


@pytest.fixture
async def kannel_sender(
    kannel: KannelInstance, callback_server: RecordingServer
) -> AsyncIterator[KannelSmsSender]:
    sender = kannel_sender_for(kannel, callback_server)
    yield sender
    await sender.aclose()


@pytest.fixture
def solapi_server() -> Iterator[FakeSolapiServer]:
    with FakeSolapiServer(senders={OUR_NUMBER}) as server:
        yield server
