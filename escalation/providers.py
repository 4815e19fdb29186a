"""SMS senders: the ``SmsSender`` port and its adapters (Kannel, Solapi, a generic webhook).

Every adapter turns transport and HTTP failures into ``SmsError`` with ``retryable`` set:
timeouts, connection failures, 408, 429 and 5xx are retryable; other 4xx and refusals in a
2xx body are not (sending the same thing again would fail the same way).

A retry after a timeout may duplicate a message that did go out: our ``reference`` travels with
every message (Kannel dlr-url, Solapi customFields, webhook Idempotency-Key) so that reports
and the webhook receiver can tell.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from anbu.domain.phone import mask_phone
from anbu.domain.sms_text import (
    OutgoingSms,
    SendReceipt,
    SendStatus,
    SmsKind,
    ucs2_parts,
)
from anbu.errors import SmsError, ValidationError
from anbu.ports import Clock, SmsSender, SystemClock
from escalation.dlr import kannel_dlr_url, with_callback_key
from escalation.http11 import GatewayError, KeepAliveClient

if TYPE_CHECKING:
    from anbu.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


# Registered sender numbers (발신번호) include representative numbers such as 1588-xxxx and
# test-range numbers that normalize_phone's subscriber rules refuse: accept national digits.


def _secret(value: SecretStr | str) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _status_error(provider: str, reference: str, status: int, detail: str) -> SmsError:
    # 408/429/5xx are the provider's momentary trouble; any other 4xx is about the request.
    retryable = status in (408, 429) or status >= 500
    return SmsError(
        f"{provider} refused SMS {reference}: HTTP {status} {detail[:200]}".rstrip(),
        retryable=retryable,
    )


class _Sender:
    """What every sender shares: its clock, its timeout, the receipt of an accepted message."""

    name = "sender"

    def __init__(self, *, timeout_s: float, clock: Clock | None) -> None:
        self._timeout_s = timeout_s
        self._clock = clock or SystemClock()

    def _no_answer(self, reference: str) -> SmsError:
        return SmsError(
            f"{self.name}: no answer within {self._timeout_s:g} s for SMS {reference}",
            retryable=True,
        )

    def _unreachable(self, reference: str, exc: Exception) -> SmsError:
        return SmsError(
            f"{self.name}: cannot reach the gateway for SMS {reference} ({type(exc).__name__})",
            retryable=True,
        )

    def _receipt(
        self, message: OutgoingSms, status: SendStatus, provider_message_id: str | None
    ) -> SendReceipt:
        logger.info(
            "sms %s to %s sent via %s as %s: %s",
            message.reference,
            mask_phone(message.to),
            self.name,
            message.kind,
            status,
        )
        return SendReceipt(
            reference=message.reference,
            provider=self.name,
            status=status,
            provider_message_id=provider_message_id,
            accepted_at=self._clock.now(),
        )


class _HttpSender(_Sender):
    """Shared plumbing of the httpx senders: one AsyncClient, a timeout on every call, errors
    translated."""

    name = "http"

    def __init__(
        self,
        *,
        timeout_s: float,
        client: httpx.AsyncClient | None,
        clock: Clock | None,
    ) -> None:
        super().__init__(timeout_s=timeout_s, clock=clock)
        self._timeout = httpx.Timeout(timeout_s)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=self._timeout)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def _request(
        self, reference: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        try:
            return await self._client.request(method, url, timeout=self._timeout, **kwargs)
        except httpx.TimeoutException as exc:
            raise self._no_answer(reference) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(reference, exc) from exc
        except httpx.HTTPError as exc:
            raise SmsError(
                f"{self.name}: bad exchange for SMS {reference} ({type(exc).__name__})",
                retryable=False,
            ) from exc


class KannelSmsSender(_Sender):
    """Kannel's smsbox sendsms interface.

    POST with the text as a UTF-8 body and the parameters in ``X-Kannel-*`` headers, so the
    password and phone numbers never sit in a URL (httpx logs URLs). Kannel recodes to UCS-2
    (``coding=2``) and splits long text into at most ``max_parts`` concatenated parts: it would
    cut the rest silently, so longer text is refused here. A concatenated SMS has no subject;
    ``sms_text.compose`` keeps the key line first in the body for that reason.

    Through :class:`escalation.http11.KeepAliveClient`, not httpx: see there for why (the
    alert burst's CPU per alert).
    """

    name = "kannel"

    def __init__(
        self,
        *,
        sendsms_url: str,
        username: str,
        password: SecretStr | str,
        dlr_url: str | None = None,
        max_parts: int = 10,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(timeout_s=timeout_s, clock=clock)
        parts = urlsplit(sendsms_url)
        self._target = parts.path + (f"?{parts.query}" if parts.query else "") or "/"
        self._client = KeepAliveClient(sendsms_url)
        self._username = username
        self._password = password
        self.dlr_url = dlr_url
        self.max_parts = max_parts

    @classmethod
    def from_settings(cls, settings: Settings) -> KannelSmsSender:
        sms = settings.sms
        return cls(
            sendsms_url=sms.kannel_url,
            username=sms.kannel_user,
            password=sms.kannel_password,
            dlr_url=with_callback_key(
                sms.kannel_dlr_url
                or f"http://{settings.api_host}:{settings.api_port}/v1/sms/kannel/dlr",
                None
                if settings.escalation.callback_token is None
                else settings.escalation.callback_token.get_secret_value(),
            ),
            max_parts=sms.kannel_max_parts,
            timeout_s=sms.timeout_s,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, message: OutgoingSms) -> SendReceipt:
        parts = ucs2_parts(message.text)
        if parts > self.max_parts:
            raise SmsError(
                f"kannel: SMS {message.reference} needs {parts} parts, at most {self.max_parts}",
                retryable=False,
            )
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-Kannel-Username": self._username,
            "X-Kannel-Password": _secret(self._password),
            "X-Kannel-From": message.sender,
            "X-Kannel-To": message.to,
            "X-Kannel-Coding": "2",
        }
        if self.dlr_url:
            headers["X-Kannel-DLR-Mask"] = "31"  # accepted, rejected, buffered, delivered, failed
            headers["X-Kannel-DLR-Url"] = kannel_dlr_url(self.dlr_url, message.reference)
        try:
            answer = await self._client.request(
                "POST", self._target, headers, message.text.encode(), self._timeout_s
            )
        except TimeoutError as exc:
            raise self._no_answer(message.reference) from exc
        except GatewayError as exc:
            raise self._unreachable(message.reference, exc) from exc
        except ValueError as exc:  # a header that would break the request: not sent
            raise SmsError(f"kannel: SMS {message.reference}: {exc}", retryable=False) from exc
        body = answer.body.decode("utf-8", errors="replace").strip()
        if not answer.ok:
            raise _status_error(self.name, message.reference, answer.status, body)
        # "0: Accepted for delivery" / "3: Queued for later delivery" (no SMSC online yet).
        if body.startswith("0:"):
            return self._receipt(message, SendStatus.ACCEPTED, None)
        if body.startswith("3:"):
            return self._receipt(message, SendStatus.QUEUED, None)
        raise SmsError(
            f"kannel: unexpected answer for SMS {message.reference}: {body[:200]!r}",
            retryable=False,
        )


def solapi_authorization(api_key: str, api_secret: str, date: str, salt: str) -> str:
    """Solapi's Authorization header: HMAC-SHA256 over date + salt, keyed by the API secret."""
    signature = hmac.new(api_secret.encode(), (date + salt).encode(), hashlib.sha256).hexdigest()
    return f"HMAC-SHA256 apiKey={api_key}, date={date}, salt={salt}, signature={signature}"


class SolapiSmsSender(_HttpSender):
    """Solapi's REST API (``POST /messages/v4/send``), HMAC-SHA256 signed.

    Each attempt gets a fresh date and salt: Solapi refuses a signature it has seen within
    15 minutes and a date more than 15 minutes off.
    """

    name = "solapi"

    def __init__(
        self,
        *,
        api_key: SecretStr | str,
        api_secret: SecretStr | str,
        base_url: str = "https://api.solapi.com",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(timeout_s=timeout_s, client=client, clock=clock)
        self._key = api_key
        self._secret = api_secret
        self._url = base_url.rstrip("/") + "/messages/v4/send"

    @classmethod
    def from_settings(
        cls, settings: Settings, client: httpx.AsyncClient | None = None
    ) -> SolapiSmsSender:
        sms = settings.sms
        if sms.solapi_key is None or sms.solapi_secret is None:
            raise ValidationError("Solapi needs ANBU_SMS__SOLAPI_KEY and ANBU_SMS__SOLAPI_SECRET")
        return cls(
            api_key=sms.solapi_key,
            api_secret=sms.solapi_secret,
            base_url=sms.solapi_url,
            timeout_s=sms.timeout_s,
            client=client,
        )

    def _authorization(self) -> str:
        date = self._clock.now().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return solapi_authorization(
            _secret(self._key), _secret(self._secret), date, uuid.uuid4().hex
        )

    async def send(self, message: OutgoingSms) -> SendReceipt:
        body: dict[str, Any] = {
            "to": message.to,
            "from": message.sender,
            "text": message.text,
            "type": str(message.kind),
            "customFields": {"ref": message.reference},
        }
        if message.kind is SmsKind.LMS and message.subject:
            body["subject"] = message.subject
        response = await self._request(
            message.reference,
            "POST",
            self._url,
            headers={"Authorization": self._authorization()},
            json={"message": body},
        )
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not response.is_success:
            detail = response.text
            if isinstance(payload, dict):
                detail = f"{payload.get('errorCode', '')} {payload.get('errorMessage', '')}"
            raise _status_error(self.name, message.reference, response.status_code, detail)
        if not isinstance(payload, dict):
            raise SmsError(
                f"solapi: answer for SMS {message.reference} is not JSON", retryable=False
            )
        status_code = str(payload.get("statusCode", ""))
        if status_code != "2000":  # 2000 = 정상 접수 (accepted, handed on to the carrier)
            raise SmsError(
                f"solapi refused SMS {message.reference}: {status_code} "
                f"{payload.get('statusMessage', '')}".rstrip(),
                retryable=False,
            )
        message_id = payload.get("messageId")
        return self._receipt(message, SendStatus.ACCEPTED, str(message_id) if message_id else None)


class WebhookSmsSender(_HttpSender):
    """POST the message as JSON to a URL of the deployment's choosing (its own SMS relay).

    ``Idempotency-Key`` carries our reference so the receiver can drop a retried duplicate.
    """

    name = "webhook"

    def __init__(
        self,
        *,
        url: str,
        token: SecretStr | str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(timeout_s=timeout_s, client=client, clock=clock)
        self._url = url
        self._token = token

    @classmethod
    def from_settings(
        cls, settings: Settings, client: httpx.AsyncClient | None = None
    ) -> WebhookSmsSender:
        sms = settings.sms
        if not sms.webhook_url:
            raise ValidationError("the webhook SMS provider needs ANBU_SMS__WEBHOOK_URL")
        return cls(
            url=sms.webhook_url, token=sms.webhook_token, timeout_s=sms.timeout_s, client=client
        )

    async def send(self, message: OutgoingSms) -> SendReceipt:
        headers = {"Idempotency-Key": message.reference}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {_secret(self._token)}"
        response = await self._request(
            message.reference,
            "POST",
            self._url,
            headers=headers,
            json={
                "reference": message.reference,
                "to": message.to,
                "from": message.sender,
                "kind": str(message.kind),
                "subject": message.subject,
                "text": message.text,
            },
        )
        if not response.is_success:
            raise _status_error(self.name, message.reference, response.status_code, response.text)
        message_id: str | None = None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            found = payload.get("id", payload.get("message_id"))
            message_id = str(found) if found is not None else None
        return self._receipt(message, SendStatus.ACCEPTED, message_id)


def sender_from_settings(
    settings: Settings, provider: str | None = None, client: httpx.AsyncClient | None = None
) -> SmsSender:
    """Build the configured sender (``settings.sms.provider``, or ``provider`` if given)."""
    name = (provider or settings.sms.provider).strip().lower()
    if name == "kannel":
        return KannelSmsSender.from_settings(settings)
    if name == "solapi":
        return SolapiSmsSender.from_settings(settings, client)
    if name == "webhook":
        return WebhookSmsSender.from_settings(settings, client)
    raise ValidationError(f"unknown SMS provider {name!r} (kannel, solapi or webhook)")
