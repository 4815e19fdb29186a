"""Pacing: how many calls may start now (global cap, per-trunk caps, calls per second).

Pure bookkeeping with the (monotonic) time passed in; the dispatcher owns one per process. The
global cap across processes is enforced in the database when claiming (see
:mod:`scheduler.claims`); this one keeps a single process inside its own share and paces
originates so the carrier never sees a burst above ``calls_per_second``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_TRUNK = "trunk"


@dataclass(slots=True)
class Pacer:
    max_concurrent: int
    trunk_caps: Mapping[str, int] = field(default_factory=dict)
    # None: no rate limit. Tokens refill continuously; ``burst`` is the bucket's size.
    calls_per_second: float | None = None
    burst: int = 1
    _active: dict[str, int] = field(default_factory=dict)
    _tokens: float = 0.0
    _last: float | None = None

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if self.calls_per_second is not None and self.calls_per_second <= 0:
            raise ValueError("calls_per_second must be positive")
        self.burst = max(1, self.burst)
        self._tokens = float(self.burst)

    @property
    def active(self) -> int:
        return sum(self._active.values())

    def _refill(self, now: float) -> None:
        if self.calls_per_second is None:
            return
        if self._last is not None:
            elapsed = max(0.0, now - self._last)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.calls_per_second)
        self._last = now

    def available(self, now: float) -> int:
        """How many calls may start at ``now`` on any trunk (cap and rate both)."""
        free = self.max_concurrent - self.active
        if self.calls_per_second is None:
            return max(0, free)
        self._refill(now)
        return max(0, min(free, math.floor(self._tokens + 1e-9)))

    def trunk_free(self, trunk: str) -> bool:
        cap = self.trunk_caps.get(trunk)
        return cap is None or self._active.get(trunk, 0) < cap

    def started(self, trunk: str, now: float) -> None:
        self._refill(now)
        if self.calls_per_second is not None:
            self._tokens -= 1.0
        self._active[trunk] = self._active.get(trunk, 0) + 1

    def finished(self, trunk: str) -> None:
        left = self._active.get(trunk, 0) - 1
        if left > 0:
            self._active[trunk] = left
        else:
            self._active.pop(trunk, None)

    def next_token_in(self, now: float) -> float:
        """Seconds until one more call may start by rate (0 when one may start now)."""
        if self.calls_per_second is None:
            return 0.0
        self._refill(now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= 0 else missing / self.calls_per_second
