"""Pacing: how many calls may start now, and on which engine node (the process's cap, caps
per trunk and per node, calls per second).

Pure bookkeeping with the (monotonic) time passed in; the dispatcher owns one per process. The
global cap across processes is enforced in the database when claiming (see
:mod:`scheduler.claims`); this one keeps a single process inside its own share and paces
originates so the carrier never sees a burst above ``calls_per_second``.

Engine nodes (several Asterisk instances): each has a channel cap; a call goes to the healthy
node with the most free channels (ties: the first configured), so load spreads evenly and a
node that is down gets nothing. This class is the one place that counts channels in a process.

A transfer (a resident put through to an official, ``ivr.handoff``) opens a second channel on
the call's node: a *leg*. It is not a call (no attempt, no trunk slot of its own), but it is a
channel: it counts against the node's cap and against this process's share of the global cap,
so a dispatcher with every slot taken by calls and their legs starts nothing more.
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
    # Channel cap per engine node, in configuration order; empty: nodes are not counted.
    node_caps: Mapping[str, int] = field(default_factory=dict)
    _active: dict[str, int] = field(default_factory=dict)
    _node_active: dict[str, int] = field(default_factory=dict)
    _legs: int = 0
    _down: set[str] = field(default_factory=set)
    _tokens: float = 0.0
    _last: float | None = None

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if self.calls_per_second is not None and self.calls_per_second <= 0:
            raise ValueError("calls_per_second must be positive")
        if any(cap < 1 for cap in self.node_caps.values()):
            raise ValueError("every node's cap must be at least 1")
        self.burst = max(1, self.burst)
        self._tokens = float(self.burst)

    @property
    def active(self) -> int:
        """Channels open in this process: calls and transfer legs."""
        return sum(self._active.values()) + self._legs

    @property
    def legs(self) -> int:
        return self._legs

    def _refill(self, now: float) -> None:
        if self.calls_per_second is None:
            return
        if self._last is not None:
            elapsed = max(0.0, now - self._last)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.calls_per_second)
        self._last = now

    # ---- engine nodes

    def node_down(self, node: str) -> bool:
        """Take ``node`` out of the choice (AMI lost). True when it was up."""
        if node in self._down:
            return False
        self._down.add(node)
        return True

    def node_up(self, node: str) -> bool:
        """``node`` may get calls again. True when it was down."""
        if node not in self._down:
            return False
        self._down.discard(node)
        return True

    def is_up(self, node: str) -> bool:
        return node not in self._down

    def node_active(self, node: str) -> int:
        return self._node_active.get(node, 0)

    def _node_free(self, node: str) -> int:
        if node in self._down:
            return 0
        return max(0, self.node_caps[node] - self._node_active.get(node, 0))

    def choose_node(self) -> str | None:
        """The healthy node with the most free channels (ties: configuration order); None when
        no node is configured or none has a free channel."""
        best: str | None = None
        best_free = 0
        for node in self.node_caps:
            free = self._node_free(node)
            if free > best_free:
                best, best_free = node, free
        return best

    # ---- starting and ending calls

    def available(self, now: float) -> int:
        """How many calls may start at ``now`` (process cap, free node channels and rate)."""
        free = self.max_concurrent - self.active
        if self.node_caps:
            free = min(free, sum(self._node_free(node) for node in self.node_caps))
        if self.calls_per_second is None:
            return max(0, free)
        self._refill(now)
        return max(0, min(free, math.floor(self._tokens + 1e-9)))

    def trunk_free(self, trunk: str) -> bool:
        cap = self.trunk_caps.get(trunk)
        return cap is None or self._active.get(trunk, 0) < cap

    def started(self, trunk: str, now: float, node: str | None = None) -> None:
        self._refill(now)
        if self.calls_per_second is not None:
            self._tokens -= 1.0
        self._active[trunk] = self._active.get(trunk, 0) + 1
        if node is not None:
            self._node_active[node] = self._node_active.get(node, 0) + 1

    def finished(self, trunk: str, node: str | None = None) -> None:
        _decrement(self._active, trunk)
        if node is not None:
            _decrement(self._node_active, node)

    def leg_started(self, node: str | None = None) -> None:
        """A transfer's second channel opened on ``node``: it takes a channel of the node and
        of the process (global) cap, not a rate token (it is not an originate of a call)."""
        self._legs += 1
        if node is not None:
            self._node_active[node] = self._node_active.get(node, 0) + 1

    def leg_finished(self, node: str | None = None) -> None:
        self._legs = max(0, self._legs - 1)
        if node is not None:
            _decrement(self._node_active, node)

    def next_token_in(self, now: float) -> float:
        """Seconds until one more call may start by rate (0 when one may start now)."""
        if self.calls_per_second is None:
            return 0.0
        self._refill(now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= 0 else missing / self.calls_per_second


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def fair_share(global_cap: int, live_workers: int) -> int:
    """The channels of the global cap one of ``live_workers`` dispatchers may hold at once.

    Bounded in every claim pass, not only at hang-up: the worker that stores a result wakes at
    once and would otherwise take the freed channel before any other worker polls, so the
    first to fill the cap kept it for the whole run and the others never dialled (seen in
    the two-worker crash test). A dead worker's share comes back when its lease expires."""
    return math.ceil(global_cap / max(1, live_workers))


def refill_allowance(global_cap: int, live_workers: int, own_calls: int) -> int:
    """How many channels a worker may fill counting its calls that have hung up, results not
    stored yet, as free (they are still ``dialing`` in the table the global cap is counted on).

    Up to the worker's fair share of the global cap (``own_calls``: its calls still up). Alone,
    that is the whole cap. With other workers, a channel beyond its share is handed back through
    the table (the stored result), where every worker may take it: otherwise the worker that
    filled the cap first would refill its own channels forever and the others never dial.
    """
    return max(0, fair_share(global_cap, live_workers) - own_calls)
