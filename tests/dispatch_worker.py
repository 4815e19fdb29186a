"""A ``python -m scheduler.worker`` process for the tests that run the dispatcher as it is
deployed (crash recovery, several workers, AGI routing): started, killed or stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.fixtures_asterisk import AsteriskPair

ROOT = Path(__file__).resolve().parent.parent


class DispatchWorker:
    """The worker against ``pair``'s engine and the database at ``url``, polling every 0.2 s,
    with ``options`` (more command-line options) and ``env`` on top of this environment; its
    stderr goes to ``log_path``."""

    def __init__(
        self,
        pair: AsteriskPair,
        url: str,
        log_path: Path,
        *options: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        self._args = [
            *(sys.executable, "-m", "scheduler.worker", "--database-url", url, "--poll", "0.2"),
            *("--ami-port", str(pair.ami_port), "--ami-secret", pair.ami_secret),
            *options,
        ]
        self._env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None

    def log_tail(self) -> str:
        return self.log_path.read_text()[-3000:]

    async def start(self) -> None:
        """Start it and wait for its "ready" line."""
        with self.log_path.open("ab") as log_file:
            self.proc = await asyncio.create_subprocess_exec(
                *self._args,
                cwd=ROOT,
                env=self._env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
            )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert b"ready" in line, (line, self.log_tail())

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 15 s); its exit code, None if it was not running."""
        if self.proc is None or self.proc.returncode is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        return self.proc.returncode
