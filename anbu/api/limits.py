"""Rate limits: a token bucket per API key, and per client address on the routes anyone can
reach (the ack link, Kannel's callbacks, health and docs); and a bound on the integrators'
requests one process works on at once (:class:`InflightLimit`).

The buckets live in this process. Several API replicas behind a balancer each allow the full
rate: they would need a shared store (Redis, the database) to limit together. Keys are kept
as a SHA-256 prefix, never in clear.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from anbu.api.gate import send_json
from anbu.settings import LimitSettings

MAX_BUCKETS = 100_000  # oldest idle buckets are dropped beyond this (bounded memory)


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """``allow(key)`` takes one token from ``key``'s bucket, refilled at ``rate`` per second up
    to ``burst``; False (and the seconds to wait) when empty."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def allow(self, key: str) -> tuple[bool, float]:
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True, 0.0
        return False, (1.0 - bucket.tokens) / self.rate


class RateLimits:
    """ASGI middleware: 429 with Retry-After when a bucket is empty."""

    def __init__(self, app: ASGIApp, settings: LimitSettings) -> None:
        self.app = app
        self.per_key = TokenBuckets(settings.per_key_rate, settings.per_key_burst)
        self.ack = TokenBuckets(settings.ack_rate, settings.ack_burst)
        self.callback = TokenBuckets(settings.callback_rate, settings.callback_burst)
        self.other = TokenBuckets(settings.other_rate, settings.other_burst)

    def _bucket(self, scope: Scope) -> tuple[TokenBuckets, str]:
        for name, value in scope.get("headers", []):
            if name == b"x-api-key":
                # Before authentication, so a flood of wrong keys is throttled too.
                return self.per_key, "key:" + hashlib.sha256(value).hexdigest()[:32]
        client = scope.get("client")
        host = client[0] if client else "?"
        path: str = scope["path"]
        if path.startswith("/ack/"):
            return self.ack, "ack:" + host
        if path.startswith("/v1/sms/"):
            return self.callback, "sms:" + host
        return self.other, "anon:" + host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        buckets, key = self._bucket(scope)
        ok, wait = buckets.allow(key)
        if ok:
            await self.app(scope, receive, send)
            return
        retry = max(1, int(wait + 0.999))
        await send_json(
            send,
            429,
            b'{"error":"rate_limited","detail":"too many requests; retry after %d s"}' % retry,
            [(b"retry-after", str(retry).encode())],
        )


# Bounded by InflightLimit: the integrators' API. Kannel's delivery reports are not refused
# (smsbox would drop them), nor health probes, the ack page or the console's live stream.
INFLIGHT_PREFIX = "/v1/"
INFLIGHT_EXEMPT = ("/v1/sms/",)
BUSY_RETRY_S = 1


class InflightLimit:
    """ASGI middleware: at most ``limit`` requests under ``/v1/`` in this process at once; one
    more is answered 503 with ``Retry-After`` before any work is done (nothing stored), so
    what is admitted is served while its client still waits, instead of everything queueing
    past the client's timeout while the process works on answers nobody reads."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith(INFLIGHT_PREFIX)
            or path.startswith(INFLIGHT_EXEMPT)
        ):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            await send_json(
                send,
                503,
                b'{"error":"busy","detail":"this API process has %d requests in flight;'
                b' retry after %d s"}' % (self.limit, BUSY_RETRY_S),
                [(b"retry-after", str(BUSY_RETRY_S).encode())],
            )
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
