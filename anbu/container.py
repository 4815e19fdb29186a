"""The composition root: every adapter is built here, once, and passed in.

The API, the CLI and the tests all get their wiring from :func:`build_container`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from anbu.db.session import make_engine, make_sessionmaker
from anbu.ports import Clock, SystemClock
from anbu.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    # Telephony and scheduling parts, present when this process dials (``anbu serve``).
    dispatcher: Any | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # Readiness probes beside the database's (``/health/ready``): name -> is it ready now.
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def wake_dispatcher(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def aclose(self) -> None:
        await self.engine.dispose()


def build_container(settings: Settings, *, clock: Clock | None = None) -> Container:
    engine = make_engine(settings.database_url)
    return Container(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        clock=clock or SystemClock(),
    )
