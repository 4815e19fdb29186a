"""``api_workers``: API-only processes on the listening socket of ``anbu serve``.

The test process binds the socket but does not answer on it: every answer comes from the
spawned worker, over its own container, into the same database.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from anbu.app.processes import start_api_workers, stop_api_workers
from anbu.settings import Settings
from tests.api_support import Api, h, new_resident
from tests.fixtures_asterisk import free_port


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


async def test_given_an_api_worker_process_then_it_answers_on_the_shared_socket(
    api: Api, db_url: str
) -> None:
    rid = await new_resident(api)
    sock = _listening()
    port = sock.getsockname()[1]
    workers = start_api_workers(Settings(database_url=db_url), sock, 1)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for _ in range(300):  # the spawned process imports and builds its app first
                try:
                    if (await c.get("/health/live")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            r = await c.post(
                "/v1/checkins",
                headers=h(api.keys["gwanak"]),
                json={"resident_id": rid, "reason": "다른 프로세스"},
            )
            assert r.status_code == 202, r.text
            assert (await c.get("/v1/residents", headers={"X-API-Key": "nope"})).status_code == 401
        # Stored by the worker, read here: one database, one truth.
        got = await api.client.get(f"/v1/checkins/{r.json()['id']}", headers=h(api.keys["gwanak"]))
        assert got.status_code == 200
        assert got.json()["resident_id"] == rid
    finally:
        await stop_api_workers(workers)
        sock.close()
    assert not any(w.is_alive() for w in workers)


def _spawned_children(pid: int) -> set[int]:
    """This process's children that multiprocessing spawned as workers (not its tracker)."""
    out: set[int] = set()
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        children = [int(c) for c in f.read().split()]
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    out.add(child)
        except FileNotFoundError:
            continue
    return out


async def test_given_api_workers_2_when_serve_runs_then_one_more_process_answers_and_ends_with_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ANBU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'anbu.db'}",
        "ANBU_CACHE": str(tmp_path),
        "ANBU_VAR_DIR": str(tmp_path / "var"),
        "ANBU_API_PORT": str(port),
        "ANBU_API_WORKERS": "2",
        "ANBU_BOOTSTRAP_API_KEY": "workers-key",
        "ANBU_MQTT__ENABLED": "false",
    }
    log_path = tmp_path / "serve.log"
    proc = _serve(env, log_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for _ in range(600):
                try:
                    if (await c.get("/health/live")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
                await asyncio.sleep(0.1)
            workers = _spawned_children(proc.pid)
            assert len(workers) == 1, log_path.read_text(errors="replace")[-3000:]
            r = await c.get("/v1/districts", headers={"X-API-Key": "workers-key"})
            assert r.status_code == 200, r.text
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # The API-only process ended with anbu serve: none is left behind.
    for _ in range(100):
        if all(_gone(pid) for pid in workers):
            break
        await asyncio.sleep(0.1)
    assert all(_gone(pid) for pid in workers), workers


def _serve(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "anbu.cli", "serve", "--no-telephony"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
