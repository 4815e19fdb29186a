"""Outcome webhooks: the integrating system hears every outcome instead of polling.

**What is sent.** ``checkin.closed`` (a check-in's outcome), ``incident.opened``,
``incident.step`` (an official of the chain was told), ``incident.escalated`` (the ack clock
ran out), ``incident.exhausted``, ``incident.no_chain``, ``incident.acknowledged`` and
``incident.finding``: to every key with a webhook that may see the resident's district. The
body is JSON: ``{"id", "type", "occurred_at", "district_code", "data"}``; ``data`` holds ids,
statuses and the integrator's own ``external_ref``, never names or phone numbers.

**How it is signed.** Headers ``X-Anbu-Event-Id`` (the idempotency id: the same on every
retry, also the body's ``id``), ``X-Anbu-Event-Type``, ``X-Anbu-Timestamp`` (Unix seconds of
this attempt) and ``X-Anbu-Signature: sha256=<hex>``, the HMAC-SHA256 with the key's webhook
secret over ``<timestamp>.<body bytes>``. The receiver recomputes it, compares in constant
time, refuses stale timestamps (replays) and drops an event id it has already processed.

**How it is delivered.** Rows are stored in ``webhook_outbox`` in the same transaction as the
change they report, claimed by compare-and-set, POSTed, and retried with a doubling backoff
(``ANBU_WEBHOOKS__*``) until a 2xx or ``give_up_h``: a receiver down for an hour loses nothing.
At-least-once: a crash between the receiver's 2xx and our commit sends the event again, with
the same event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.db.models import ApiKey, Checkin, District, Resident, api_key_districts
from anbu.db.models_escalation import Incident
from anbu.db.models_webhooks import DeliveryState, WebhookDelivery
from anbu.db.outage import report_failure
from anbu.db.session import transaction_cache
from anbu.domain.access import KeyState, key_state
from anbu.domain.incidents import IncidentEventKind
from anbu.domain.retry import doubling_backoff
from anbu.ports import Clock, SystemClock

if TYPE_CHECKING:
    from anbu.settings import Settings

log = logging.getLogger(__name__)

INCIDENT_EVENTS: dict[IncidentEventKind, str] = {
    IncidentEventKind.OPENED: "incident.opened",
    IncidentEventKind.QUEUED: "incident.step",
    IncidentEventKind.ESCALATED: "incident.escalated",
    IncidentEventKind.EXHAUSTED: "incident.exhausted",
    IncidentEventKind.NO_CHAIN: "incident.no_chain",
    IncidentEventKind.ACKNOWLEDGED: "incident.acknowledged",
    IncidentEventKind.FINDING: "incident.finding",
}
EVENT_TYPES = ("checkin.closed", *INCIDENT_EVENTS.values())

SIGNATURE_HEADER = "X-Anbu-Signature"
TIMESTAMP_HEADER = "X-Anbu-Timestamp"
EVENT_ID_HEADER = "X-Anbu-Event-Id"
EVENT_TYPE_HEADER = "X-Anbu-Event-Type"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``<timestamp>.<body>``)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """The receiver's check (tests and integrators' reference): constant-time compare."""
    try:
        timestamp = int(headers[TIMESTAMP_HEADER])
    except (KeyError, ValueError):
        return False
    given = headers.get(SIGNATURE_HEADER, "")
    return hmac.compare_digest(given, sign(secret, timestamp, body))


# --- enqueueing (in the caller's transaction) --------------------------------------------------


async def _subscribers(session: AsyncSession, district_id: int) -> list[int]:
    """Keys with a webhook that may see this district (revoked ones never; expired ones are
    cancelled at send time)."""
    in_district = exists().where(
        api_key_districts.c.api_key_id == ApiKey.id,
        api_key_districts.c.district_id == district_id,
    )
    rows = await session.execute(
        select(ApiKey.id).where(
            ApiKey.webhook_url.is_not(None),
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.is_admin.is_(True), in_district),
        )
    )
    return [int(r) for r in rows.scalars()]


async def _any_subscriber(session: AsyncSession) -> bool:
    # Asked for every incident event; kept for the transaction (a batch of incident openings
    # shares one: escalation.service.open_incident), so a burst asks once.
    cache = transaction_cache(session, "webhooks")
    if "any_subscriber" in cache:
        return bool(cache["any_subscriber"])
    found = await session.execute(
        select(ApiKey.id)
        .where(ApiKey.webhook_url.is_not(None), ApiKey.revoked_at.is_(None))
        .limit(1)
    )
    any_found = found.first() is not None
    cache["any_subscriber"] = any_found
    return any_found


async def any_subscriber(session: AsyncSession) -> bool:
    """Whether any key has a webhook (kept for the transaction): escalation's batched incident
    openings skip the per-event look-ups when nobody listens."""
    return await _any_subscriber(session)


async def _enqueue(
    session: AsyncSession,
    event_type: str,
    district_id: int,
    district_code: str,
    at: dt.datetime,
    data: dict[str, Any],
) -> None:
    keys = await _subscribers(session, district_id)
    if not keys:
        return
    event_id = uuid.uuid4().hex
    body = json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "occurred_at": at.astimezone(dt.UTC).isoformat(),
            "district_code": district_code,
            "data": data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    await session.execute(
        insert(WebhookDelivery),
        [
            {
                "id": uuid.uuid4().hex,
                "event_id": event_id,
                "api_key_id": key_id,
                "event_type": event_type,
                "body": body,
                "status": DeliveryState.PENDING,
                "attempts": 0,
                "next_attempt_at": at,
                "created_at": at,
            }
            for key_id in keys
        ],
    )


async def checkin_closed(session: AsyncSession, checkin: Checkin, at: dt.datetime) -> None:
    """A case reached its final status (called where it is closed, same transaction)."""
    if not await _any_subscriber(session):
        return
    resident = checkin.resident
    await _enqueue(
        session,
        "checkin.closed",
        resident.district_id,
        resident.district.code,
        at,
        {
            "checkin_id": checkin.id,
            "resident_id": resident.id,
            "external_ref": resident.external_ref,
            "status": str(checkin.status),
            "outcome": None if checkin.outcome is None else str(checkin.outcome),
            "closed_at": at.astimezone(dt.UTC).isoformat(),
        },
    )


async def incident_event(
    session: AsyncSession,
    incident_id: str,
    kind: IncidentEventKind,
    at: dt.datetime,
    *,
    official_id: str | None,
    detail: str,
) -> None:
    """A line of an incident's log that the integrator hears about (same transaction)."""
    event_type = INCIDENT_EVENTS.get(kind)
    if event_type is None or not await _any_subscriber(session):
        return
    row = (
        await session.execute(
            select(Incident, Resident.external_ref, District.code)
            .join(Resident, Resident.id == Incident.resident_id)
            .join(District, District.id == Incident.district_id)
            .where(Incident.id == incident_id)
        )
    ).first()
    if row is None:
        return
    incident, external_ref, code = row
    data: dict[str, Any] = {
        "incident_id": incident.id,
        "checkin_id": incident.checkin_id,
        "resident_id": incident.resident_id,
        "external_ref": external_ref,
        "outcome": str(incident.outcome),
        "urgency": str(incident.urgency),
        "status": str(incident.status),
        "step_position": incident.step_position,
        "step_count": incident.step_count,
        "official_id": official_id,
        "detail": detail[:500],
    }
    if kind in (IncidentEventKind.ACKNOWLEDGED, IncidentEventKind.FINDING):
        data["ack_channel"] = None if incident.ack_channel is None else str(incident.ack_channel)
        data["acknowledged_by"] = incident.acknowledged_by
        data["finding"] = None if incident.finding is None else str(incident.finding)
    await _enqueue(session, event_type, incident.district_id, code, at, data)


# --- registering a key's webhook --------------------------------------------------------------


async def set_webhook(
    session: AsyncSession, key_id: int, url: str, *, rotate_secret: bool
) -> tuple[ApiKey, str]:
    """Point a key's events at ``url``; returns the row and the signing secret (a new one on
    first registration or when asked). The caller commits."""
    row = await session.get(ApiKey, key_id)
    assert row is not None  # the caller's own key
    if row.webhook_secret is None or rotate_secret:
        row.webhook_secret = new_secret()
    row.webhook_url = url
    return row, row.webhook_secret


async def remove_webhook(session: AsyncSession, key_id: int) -> None:
    """Stop sending; events not yet delivered are cancelled. The caller commits."""
    row = await session.get(ApiKey, key_id)
    assert row is not None
    row.webhook_url = None
    row.webhook_secret = None
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.api_key_id == key_id,
            WebhookDelivery.status == DeliveryState.PENDING,
        )
        .values(status=DeliveryState.CANCELLED, last_error="webhook removed")
        .execution_options(synchronize_session=False)
    )


async def backlog(session: AsyncSession, key_id: int) -> int:
    """Events waiting for this key's receiver."""
    rows = await session.execute(
        select(WebhookDelivery.id).where(
            WebhookDelivery.api_key_id == key_id,
            WebhookDelivery.status.in_([DeliveryState.PENDING, DeliveryState.SENDING]),
        )
    )
    return len(rows.all())


# --- delivering ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    timeout_s: float = 10.0
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    give_up_h: float = 72.0
    batch: int = 50
    concurrency: int = 8
    poll_interval_s: float = 1.0
    sending_lease_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        w = settings.webhooks
        return cls(
            timeout_s=w.timeout_s,
            retry_initial_s=w.retry_initial_s,
            retry_max_s=w.retry_max_s,
            give_up_h=w.give_up_h,
            batch=w.batch,
            concurrency=w.concurrency,
            poll_interval_s=w.poll_interval_s,
            sending_lease_s=max(w.sending_lease_s, w.timeout_s + 1),
        )

    def backoff(self, attempts: int) -> dt.timedelta:
        return doubling_backoff(self.retry_initial_s, self.retry_max_s, attempts)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: str
    event_id: str
    event_type: str
    body: str
    attempts: int
    created_at: dt.datetime
    url: str | None
    secret: str | None
    key_state: KeyState


class WebhookWorker:
    """POSTs what ``webhook_outbox`` holds: ``run()`` forever, or ``run_once()`` (tests)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        config: WebhookConfig | None = None,
        clock: Clock | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._sessions = sessions
        self.config = config or WebhookConfig()
        self._clock = clock or SystemClock()
        self._client = client or httpx.AsyncClient(timeout=self.config.timeout_s)
        self._own_client = client is None
        self._token = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def _claim(self, now: dt.datetime) -> list[_Claimed]:
        due = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DeliveryState.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.created_at)
            .limit(self.config.batch)
            .with_for_update(skip_locked=True)
        )
        async with self._sessions() as session:
            ids = list((await session.execute(due)).scalars())
            if not ids:
                await session.commit()
                return []
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id.in_(ids),
                    WebhookDelivery.status == DeliveryState.PENDING,
                )
                .values(
                    status=DeliveryState.SENDING,
                    claim_token=self._token,
                    claimed_at=now,
                    attempts=WebhookDelivery.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
            rows = (
                await session.execute(
                    select(
                        WebhookDelivery.id,
                        WebhookDelivery.event_id,
                        WebhookDelivery.event_type,
                        WebhookDelivery.body,
                        WebhookDelivery.attempts,
                        WebhookDelivery.created_at,
                        ApiKey.webhook_url,
                        ApiKey.webhook_secret,
                        ApiKey.revoked_at,
                        ApiKey.expires_at,
                    )
                    .join(ApiKey, ApiKey.id == WebhookDelivery.api_key_id)
                    .where(
                        and_(
                            WebhookDelivery.id.in_(ids),
                            WebhookDelivery.claim_token == self._token,
                            WebhookDelivery.status == DeliveryState.SENDING,
                        )
                    )
                    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.created_at)
                )
            ).all()
            await session.commit()
        return [
            _Claimed(
                r.id,
                r.event_id,
                r.event_type,
                r.body,
                r.attempts,
                r.created_at,
                r.webhook_url,
                r.webhook_secret,
                key_state(r.revoked_at, r.expires_at, now),
            )
            for r in rows
        ]

    async def _settle(self, item: _Claimed, values: dict[str, Any]) -> None:
        async with self._sessions() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == item.id,
                    WebhookDelivery.status == DeliveryState.SENDING,
                    WebhookDelivery.claim_token == self._token,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    async def _deliver(self, item: _Claimed) -> None:
        if item.url is None or item.secret is None or item.key_state is not KeyState.ACTIVE:
            why = "webhook removed" if item.url is None else f"key {item.key_state}"
            await self._settle(item, {"status": DeliveryState.CANCELLED, "last_error": why})
            return
        now = self._clock.now()
        timestamp = int(now.timestamp())
        body = item.body.encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            EVENT_ID_HEADER: item.event_id,
            EVENT_TYPE_HEADER: item.event_type,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(item.secret, timestamp, body),
            "User-Agent": "anbu-webhooks/1",
        }
        status: int | None = None
        try:
            response = await self._client.post(item.url, content=body, headers=headers)
            status = response.status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if error is None:
            await self._settle(
                item,
                {
                    "status": DeliveryState.DELIVERED,
                    "delivered_at": self._clock.now(),
                    "last_status": status,
                    "last_error": None,
                },
            )
            return
        age = now - item.created_at
        if age >= dt.timedelta(hours=self.config.give_up_h):
            log.error(
                "webhook %s (%s) given up after %d attempts: %s",
                item.event_id,
                item.event_type,
                item.attempts,
                error,
            )
            await self._settle(
                item, {"status": DeliveryState.FAILED, "last_status": status, "last_error": error}
            )
            return
        delay = self.config.backoff(item.attempts)
        log.warning(
            "webhook %s attempt %d failed (%s); next in %.0f s",
            item.event_id,
            item.attempts,
            error,
            delay.total_seconds(),
        )
        await self._settle(
            item,
            {
                "status": DeliveryState.PENDING,
                "next_attempt_at": now + delay,
                "last_status": status,
                "last_error": error,
            },
        )

    async def recover(self, now: dt.datetime | None = None) -> int:
        """Rows a crashed worker left ``sending`` past the lease go back to pending."""
        now = now or self._clock.now()
        cutoff = now - dt.timedelta(seconds=self.config.sending_lease_s)
        async with self._sessions() as session:
            result = await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.status == DeliveryState.SENDING,
                    WebhookDelivery.claimed_at < cutoff,
                )
                .values(status=DeliveryState.PENDING, next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def run_once(self) -> int:
        """Claim what is due and POST it all (waits for the answers). Returns how many."""
        claimed = await self._claim(self._clock.now())
        sem = asyncio.Semaphore(self.config.concurrency)

        async def one(item: _Claimed) -> None:
            async with sem:
                await self._deliver(item)

        await asyncio.gather(*(one(item) for item in claimed))
        return len(claimed)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_recover = 0.0
        while not self._stopping:
            try:
                if loop.time() >= next_recover:
                    await self.recover()
                    next_recover = loop.time() + self.config.sending_lease_s / 4
                self._wake.clear()
                if await self.run_once():
                    continue
            except Exception as error:
                # One line per database outage (not a traceback per pass); anything else
                # keeps its traceback.
                report_failure(log, self._sessions, "webhook pass", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval_s)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
