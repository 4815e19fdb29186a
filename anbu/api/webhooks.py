"""A key's outcome webhook: where its events go (``PUT``/``GET``/``DELETE /v1/webhook``).

The events themselves, their signature and retries: :mod:`anbu.services.webhooks`. The
OpenAPI document carries them as callbacks of ``PUT /v1/webhook``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from anbu.api.deps import ContainerDep, PrincipalDep, SessionDep
from anbu.api.strict import Timestamp
from anbu.db.models import ApiKey
from anbu.errors import ValidationError
from anbu.services import webhooks as service
from anbu.settings import Environment

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"])

EventType = Literal[
    "checkin.closed",
    "incident.opened",
    "incident.step",
    "incident.escalated",
    "incident.exhausted",
    "incident.no_chain",
    "incident.acknowledged",
    "incident.finding",
]
assert set(EventType.__args__) == set(service.EVENT_TYPES)  # type: ignore[attr-defined]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: StrictStr = Field(
        min_length=8, max_length=2000, description="http(s) URL; https in production"
    )
    rotate_secret: StrictBool = Field(
        default=False, description="issue a new signing secret (the old one stops at once)"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value


class WebhookOut(BaseModel):
    url: str | None = Field(description="None: no webhook registered")
    events: list[EventType]
    pending: int = Field(description="events waiting for the receiver (retried with backoff)")


class WebhookRegistered(WebhookOut):
    secret: str = Field(
        description="HMAC-SHA256 key of X-Anbu-Signature; shown when registered or rotated"
    )


class WebhookEvent(BaseModel):
    """The body POSTed to the registered URL."""

    id: str = Field(description="the idempotency id: the same on every retry of this event")
    type: EventType
    occurred_at: Timestamp
    district_code: str
    data: dict[str, Any] = Field(
        description="ids (checkin_id, resident_id, incident_id), the integrator's external_ref,"
        " status, outcome; for incidents step_position, official_id, finding"
    )


callbacks = APIRouter()


@callbacks.post(
    "{$request.body#/url}",
    summary="An outcome event (check-in closed, escalation step, acknowledgement)",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        200: {"description": "received (any 2xx)"},
        204: {"description": "received (any 2xx)"},
        500: {"description": "any non-2xx, or no answer in time: retried with backoff"},
    },
)
def outcome_event(
    body: WebhookEvent,
    x_anbu_event_id: Annotated[str, Header(description="= body.id: drop repeats by it")],
    x_anbu_event_type: Annotated[EventType, Header()],
    x_anbu_timestamp: Annotated[int, Header(description="Unix seconds of this attempt")],
    x_anbu_signature: Annotated[
        str,
        Header(
            description="sha256=<hex HMAC-SHA256(secret, X-Anbu-Timestamp + '.' + raw body)>;"
            " compare in constant time, refuse stale timestamps"
        ),
    ],
) -> None:
    """Documentation only: what anbu sends to the integrator's receiver."""


async def _out(session: SessionDep, row: ApiKey) -> WebhookOut:
    return WebhookOut(
        url=row.webhook_url,
        events=list(service.EVENT_TYPES) if row.webhook_url else [],
        pending=await service.backlog(session, row.id),
    )


@router.put(
    "",
    response_model=WebhookRegistered,
    callbacks=callbacks.routes,
    summary="Register (or move) this key's webhook",
)
async def put_webhook(
    body: WebhookIn, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> WebhookRegistered:
    """Every event about the residents this key may see is POSTed, signed, to ``url``."""
    production = container.settings.environment is Environment.PRODUCTION
    if production and not body.url.startswith("https://"):
        raise ValidationError("url: must be https:// in production")
    row, secret = await service.set_webhook(
        session, principal.key_id, body.url, rotate_secret=body.rotate_secret
    )
    await session.commit()
    out = await _out(session, row)
    return WebhookRegistered(**out.model_dump(), secret=secret)


@router.get("", response_model=WebhookOut, summary="This key's webhook")
async def get_webhook(principal: PrincipalDep, session: SessionDep) -> WebhookOut:
    row = await session.get(ApiKey, principal.key_id)
    assert row is not None
    return await _out(session, row)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, summary="Stop this key's webhook")
async def delete_webhook(principal: PrincipalDep, session: SessionDep) -> Response:
    """Events not yet delivered are cancelled."""
    await service.remove_webhook(session, principal.key_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
