"""A private PostgreSQL server from the system's binaries (own data directory, own port), for
tests that stop and start the database under a running anbu. The shared server at 5432 must
never be stopped, so these tests make their own.

PostgreSQL refuses to run as root: when the tests run as root the cluster belongs to the
``postgres`` system user (``runuser``). Missing binaries fail loudly.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_asterisk import free_port

PG_BIN = Path(os.environ.get("ANBU_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.log = root / "postgres.log"
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database (trust authentication, loopback)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        cmd = [str(PG_BIN / argv[0]), *argv[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")

    def init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL binaries missing at {PG_BIN} (postgresql-15)")
        if self._user is not None:
            pw = pwd.getpwnam(self._user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """An initialised, NOT yet started cluster; stopped and deleted afterwards."""
    # Not pytest's tmp_path: its parents are root-only, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="anbu-pg-"))
    root.chmod(0o755)
    pg = PrivatePostgres(root, free_port())
    try:
        pg.init()
        yield pg
    finally:
        if pg.running():
            with contextlib.suppress(RuntimeError):
                pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
