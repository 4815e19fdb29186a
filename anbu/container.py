"""The core's part of a process: settings, database, clock, and what the API asks of the
parts the composition root (:mod:`anbu.app`) adds. Typed throughout: the root fills in
``dispatcher`` and ``readiness`` with what this process runs; the core never imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.domain.access import VerifiedKeys
from anbu.ports import Clock, Wakeable
from anbu.settings import Settings


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    # The dispatcher of this process, when it dials: woken when a check-in is opened.
    dispatcher: Wakeable | None = None
    # Readiness probes beside the database's (``/health/ready``): name -> is it ready now.
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)
    # API keys this process verified lately (anbu.api.deps.get_principal): a key's row and
    # districts are not read again on every request.
    verified_keys: VerifiedKeys[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.verified_keys = VerifiedKeys(self.settings.limits.key_cache_s)

    def wake_dispatcher(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def aclose(self) -> None:
        await self.engine.dispose()
