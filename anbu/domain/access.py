"""API keys: what a key may do (scopes) and whether it still works (revoked, expired).

Scopes nest: ``admin`` implies ``write``, which implies ``read``. A key that may change data
but not read it back would be useless, and an administrator who cannot write could not fix
what it finds, so a key is stored with the closure of what was asked for.
"""

from __future__ import annotations

import datetime as dt
import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Scope(enum.StrEnum):
    READ = "read"  # GET: residents, check-ins, incidents, risk
    WRITE = "write"  # everything that changes data in the key's districts
    ADMIN = "admin"  # every district, districts, API keys, the audit log


_IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.WRITE: frozenset({Scope.READ, Scope.WRITE}),
    Scope.ADMIN: frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
}

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def close_scopes(scopes: Iterable[Scope | str]) -> frozenset[Scope]:
    """The scopes a key holds when given ``scopes`` (``ValueError`` on an unknown name)."""
    held: set[Scope] = set()
    for s in scopes:
        held |= _IMPLIES[Scope(s)]
    return frozenset(held)


def encode_scopes(scopes: Iterable[Scope]) -> str:
    """Stored form: comma-separated, in a fixed order."""
    return ",".join(s.value for s in Scope if s in set(scopes))


def decode_scopes(stored: str, *, is_admin: bool = False) -> frozenset[Scope]:
    names = [n for n in stored.split(",") if n]
    return close_scopes([*names, *([Scope.ADMIN] if is_admin else [])])


class KeyState(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


def key_state(
    revoked_at: dt.datetime | None, expires_at: dt.datetime | None, now: dt.datetime
) -> KeyState:
    """Revocation is immediate whatever time it carries (a clock skewed between the CLI's
    machine and the API's must not keep a revoked key alive), and wins over expiry."""
    if revoked_at is not None:
        return KeyState.REVOKED
    if expires_at is not None and expires_at <= now:
        return KeyState.EXPIRED
    return KeyState.ACTIVE


def missing_scope(held: frozenset[Scope], method: str) -> Scope | None:
    """The scope a request with this HTTP method needs and the key lacks (None: allowed)."""
    needed = Scope.READ if method.upper() in READ_METHODS else Scope.WRITE
    return None if needed in held else needed


# ``last_used_at`` is written at most this often per key: a write per request would double the
# database work of every read and serialise readers on SQLite.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def last_used_is_stale(last_used_at: dt.datetime | None, now: dt.datetime) -> bool:
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


@dataclass(frozen=True, slots=True)
class VerifiedKey(Generic[T]):
    """A key as read from the database: who it is (``principal``) and what decides its state."""

    principal: T
    key_id: int
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None


class VerifiedKeys(Generic[T]):
    """API keys read from the database in the last ``ttl_s`` seconds, by their hash.

    Without it every request read the key and its districts (two statements) before doing its
    own work: a quarter of a signal batch's or a check-in's CPU in the API. What stays exact:
    expiry (the cached ``expires_at`` is checked on every request), scopes per method, and a
    revocation through this process's API (``forget``). A key revoked by another process (the
    CLI, a second API process) answers 401 within ``ttl_s`` seconds. ``monotonic`` is the
    process's clock of elapsed seconds (not the wall clock: a time jump must not keep a key)."""

    def __init__(
        self,
        ttl_s: float = 5.0,
        max_keys: int = 1024,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._monotonic = monotonic
        self._keys: dict[str, tuple[VerifiedKey[T], float]] = {}

    def get(self, key_hash: str) -> VerifiedKey[T] | None:
        hit = self._keys.get(key_hash)
        if hit is None or self._monotonic() - hit[1] >= self.ttl_s:
            return None
        return hit[0]

    def put(self, key_hash: str, key: VerifiedKey[T]) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._keys) >= self.max_keys:
            self._keys.clear()  # many keys at once: a read each, never unbounded memory
        self._keys[key_hash] = (key, self._monotonic())

    def forget(self, key_id: int) -> None:
        for h in [h for h, (k, _) in self._keys.items() if k.key_id == key_id]:
            del self._keys[h]
