"""SMS senders against servers that speak the real protocols: a local Solapi (HMAC-checked)
and a local webhook receiver. Kannel's sender runs against real Kannel in test_kannel.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from anbu.domain.sms_text import OutgoingSms, SendStatus, SmsKind
from anbu.errors import InvalidPhoneNumberError, SmsError, ValidationError
from anbu.ports import SmsSender
from anbu.settings import Settings
from escalation.providers import (
    KannelSmsSender,
    SolapiSmsSender,
    WebhookSmsSender,
    sender_from_settings,
    solapi_authorization,
)
from tests.fakes.solapi_server import FakeSolapiServer
from tests.fixtures_kannel import OUR_NUMBER, RecordingServer


class FixedClock:
    def __init__(self, now: dt.datetime) -> None:
        self._now = now

    def now(self) -> dt.datetime:
        return self._now


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def refused(sender: SmsSender, reference: str, match: str | None = None) -> SmsError:
    """Send a short SMS that must fail with SmsError (matching ``match``); closes the sender."""
    try:
        with pytest.raises(SmsError, match=match) as caught:
            await sender.send(OutgoingSms(reference, "01012345678", OUR_NUMBER, "x"))
    finally:
        await sender.aclose()
    return caught.value


@pytest.fixture
async def solapi(solapi_server: FakeSolapiServer) -> AsyncIterator[SolapiSmsSender]:
    sender = SolapiSmsSender(
        api_key=solapi_server.api_key,
        api_secret=solapi_server.api_secret,
        base_url=solapi_server.url,
        timeout_s=2.0,
    )
    yield sender
    await sender.aclose()


@pytest.fixture
def webhook_server() -> Iterator[RecordingServer]:
    server = RecordingServer().start()
    yield server
    server.stop()


# --- the message itself (pure) --------------------------------------------------------------


def test_given_separators_when_building_message_then_numbers_are_national_digits() -> None:
    sms = OutgoingSms("r-1", "010-1234-5678", "+82 2-1234-5678", "안녕")
    assert (sms.to, sms.sender) == ("01012345678", "0212345678")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"reference": "a b"}, ValidationError),
        ({"reference": ""}, ValidationError),
        ({"reference": "x" * 65}, ValidationError),
        ({"to": "12345"}, InvalidPhoneNumberError),
        ({"text": "  "}, ValidationError),
        ({"text": "가" * 46}, ValidationError),  # 92 bytes as SMS
        ({"subject": "제목"}, ValidationError),  # subject on an SMS
        ({"kind": SmsKind.LMS, "text": "가" * 1001}, ValidationError),
        ({"kind": SmsKind.LMS, "subject": "가" * 21}, ValidationError),  # 42-byte subject
    ],
)
def test_given_invalid_field_when_building_message_then_refused(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    fields: dict[str, object] = {
        "reference": "r-1",
        "to": "01012345678",
        "sender": OUR_NUMBER,
        "text": "안녕",
        "kind": SmsKind.SMS,
        "subject": None,
    }
    fields.update(kwargs)
    with pytest.raises(error):
        OutgoingSms(**fields)  # type: ignore[arg-type]


def test_given_text_length_when_building_automatically_then_kind_follows_cp949_bytes() -> None:
    short = OutgoingSms.build("r-1", "01012345678", OUR_NUMBER, "가" * 45, subject="제목")
    assert (short.kind, short.subject) == (SmsKind.SMS, None)
    long = OutgoingSms.build("r-2", "01012345678", OUR_NUMBER, "가" * 46, subject="제목")
    assert (long.kind, long.subject) == (SmsKind.LMS, "제목")


# --- Solapi ---------------------------------------------------------------------------------


def test_given_docs_example_when_signing_then_header_has_solapi_shape() -> None:
    header = solapi_authorization("KEY", "SECRET", "2019-07-01T00:41:48Z", "jqsba2jxjnrjor")
    expected = hmac.new(b"SECRET", b"2019-07-01T00:41:48Zjqsba2jxjnrjor", hashlib.sha256)
    assert header == (
        "HMAC-SHA256 apiKey=KEY, date=2019-07-01T00:41:48Z, salt=jqsba2jxjnrjor, "
        f"signature={expected.hexdigest()}"
    )


async def test_given_valid_key_when_sending_sms_then_solapi_accepts_with_message_id(
    solapi: SolapiSmsSender, solapi_server: FakeSolapiServer
) -> None:
    receipt = await solapi.send(OutgoingSms("esc-1", "01012345678", OUR_NUMBER, "안부 확인 요청"))
    assert receipt.status is SendStatus.ACCEPTED
    assert receipt.provider == "solapi"
    assert receipt.provider_message_id is not None
    assert receipt.provider_message_id.startswith("M4V")
    assert solapi_server.accepted == [
        {
            "to": "01012345678",
            "from": OUR_NUMBER,
            "text": "안부 확인 요청",
            "type": "SMS",
            "customFields": {"ref": "esc-1"},
        }
    ]
    auth = solapi_server.requests[0].headers["Authorization"]
    assert re.fullmatch(
        r"HMAC-SHA256 apiKey=\S+, date=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, salt=[0-9a-f]{32}, "
        r"signature=[0-9a-f]{64}",
        auth,
    )


async def test_given_long_text_when_sending_lms_then_type_and_subject_reach_solapi(
    solapi: SolapiSmsSender, solapi_server: FakeSolapiServer
) -> None:
    text = "[안부확인] 김철수님 방문 요청\n" + "전력 사용 변화 없음. " * 30
    await solapi.send(OutgoingSms.build("esc-2", "01012345678", OUR_NUMBER, text, "방문 요청"))
    (message,) = solapi_server.accepted
    assert (message["type"], message["subject"], message["text"]) == ("LMS", "방문 요청", text)


async def test_given_two_sends_when_signing_then_each_attempt_has_fresh_salt_and_signature(
    solapi: SolapiSmsSender, solapi_server: FakeSolapiServer
) -> None:
    await solapi.send(OutgoingSms("esc-3", "01012345678", OUR_NUMBER, "하나"))
    await solapi.send(OutgoingSms("esc-3", "01012345678", OUR_NUMBER, "하나"))  # a retry
    first, second = (r.headers["Authorization"] for r in solapi_server.requests)
    assert first != second
    assert len(solapi_server.accepted) == 2


async def test_given_wrong_secret_when_sending_then_401_is_not_retryable(
    solapi_server: FakeSolapiServer,
) -> None:
    sender = SolapiSmsSender(
        api_key=solapi_server.api_key, api_secret="wrong", base_url=solapi_server.url
    )
    try:
        with pytest.raises(SmsError, match="401 SignatureDoesNotMatch") as caught:
            await sender.send(OutgoingSms("esc-4", "01012345678", OUR_NUMBER, "x"))
        assert caught.value.retryable is False
        assert solapi_server.accepted == []
    finally:
        await sender.aclose()


async def test_given_clock_off_by_an_hour_when_sending_then_too_skewed_and_not_retryable(
    solapi_server: FakeSolapiServer,
) -> None:
    late = FixedClock(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    sender = SolapiSmsSender(
        api_key=solapi_server.api_key,
        api_secret=solapi_server.api_secret,
        base_url=solapi_server.url,
        clock=late,
    )
    assert (await refused(sender, "esc-5", "RequestTimeTooSkewed")).retryable is False


async def test_given_replayed_signature_when_posted_then_fake_refuses_it(
    solapi_server: FakeSolapiServer,
) -> None:
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = solapi_authorization(
        solapi_server.api_key, solapi_server.api_secret, date, "0123456789abcdef"
    )
    body = {"message": {"to": "01012345678", "from": OUR_NUMBER, "text": "x", "type": "SMS"}}
    async with httpx.AsyncClient(base_url=solapi_server.url) as client:
        first = await client.post("/messages/v4/send", json=body, headers={"Authorization": header})
        again = await client.post("/messages/v4/send", json=body, headers={"Authorization": header})
    assert first.status_code == 200
    assert (again.status_code, again.json()["errorCode"]) == (401, "DuplicatedSignature")


async def test_given_unregistered_sender_when_sending_then_400_is_not_retryable(
    solapi: SolapiSmsSender,
) -> None:
    with pytest.raises(SmsError, match="400 ValidationError 발신번호 미등록") as caught:
        await solapi.send(OutgoingSms("esc-6", "01012345678", "0311234567", "x"))
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (500, True), (503, True), (403, False)]
)
async def test_given_solapi_error_status_when_sending_then_retryable_follows_status(
    solapi: SolapiSmsSender, solapi_server: FakeSolapiServer, status: int, retryable: bool
) -> None:
    solapi_server.fail_next(status, "TooManyRequests" if status == 429 else "Failure")
    with pytest.raises(SmsError, match=str(status)) as caught:
        await solapi.send(OutgoingSms("esc-7", "01012345678", OUR_NUMBER, "x"))
    assert caught.value.retryable is retryable


async def test_given_slow_solapi_when_sending_then_timeout_is_retryable(
    solapi_server: FakeSolapiServer,
) -> None:
    solapi_server.fail_next(200, delay_s=1.0)
    sender = SolapiSmsSender(
        api_key=solapi_server.api_key,
        api_secret=solapi_server.api_secret,
        base_url=solapi_server.url,
        timeout_s=0.2,
    )
    assert (await refused(sender, "esc-8", r"no answer within 0\.2 s")).retryable is True


async def test_given_solapi_unreachable_when_sending_then_retryable() -> None:
    sender = SolapiSmsSender(
        api_key="k", api_secret="s", base_url=f"http://127.0.0.1:{closed_port()}"
    )
    assert (await refused(sender, "esc-9", "cannot reach")).retryable is True


# --- webhook --------------------------------------------------------------------------------


async def test_given_webhook_when_sending_then_json_and_idempotency_key_are_posted(
    webhook_server: RecordingServer,
) -> None:
    webhook_server.answer("/sms", 202, b'{"id": "relay-77"}')
    sender = WebhookSmsSender(url=webhook_server.url + "/sms", token="tok")
    try:
        receipt = await sender.send(
            OutgoingSms.build("esc-10", "01012345678", OUR_NUMBER, "안부 " * 40, "방문")
        )
    finally:
        await sender.aclose()
    assert (receipt.provider, receipt.provider_message_id) == ("webhook", "relay-77")
    (hit,) = webhook_server.requests_to("/sms")
    assert hit.headers["Idempotency-Key"] == "esc-10"
    assert hit.headers["Authorization"] == "Bearer tok"
    assert json.loads(hit.body) == {
        "reference": "esc-10",
        "to": "01012345678",
        "from": OUR_NUMBER,
        "kind": "LMS",
        "subject": "방문",
        "text": "안부 " * 40,
    }


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (401, False), (408, True), (429, True), (502, True)]
)
async def test_given_webhook_error_status_when_sending_then_retryable_follows_status(
    webhook_server: RecordingServer, status: int, retryable: bool
) -> None:
    webhook_server.answer("/sms", status, b"nope")
    sender = WebhookSmsSender(url=webhook_server.url + "/sms")
    assert (await refused(sender, "esc-11", f"HTTP {status}")).retryable is retryable


async def test_given_slow_webhook_when_sending_then_timeout_is_retryable(
    webhook_server: RecordingServer,
) -> None:
    webhook_server.answer("/sms", 200, delay_s=1.0)
    sender = WebhookSmsSender(url=webhook_server.url + "/sms", timeout_s=0.2)
    assert (await refused(sender, "esc-12")).retryable is True


# --- wiring ---------------------------------------------------------------------------------


async def test_given_settings_when_building_sender_then_provider_and_callbacks_follow() -> None:
    settings = Settings(
        sms={"provider": "kannel", "kannel_url": "http://127.0.0.1:1/cgi-bin/sendsms"},
        api_port=8181,
    )
    sender = sender_from_settings(settings)
    assert isinstance(sender, KannelSmsSender)
    assert sender.dlr_url == "http://127.0.0.1:8181/v1/sms/kannel/dlr"
    await sender.aclose()
    with pytest.raises(ValidationError, match="SOLAPI_KEY"):
        sender_from_settings(settings, provider="solapi")
    with pytest.raises(ValidationError, match="unknown SMS provider"):
        sender_from_settings(settings, provider="carrier-pigeon")


def test_given_invalid_sender_setting_when_loading_then_start_up_fails() -> None:
    with pytest.raises(ValueError, match="ANBU_SMS__SENDER"):
        Settings(sms={"sender": "1234"})
