"""Kannel, for real: configuration, Korean text end to end, delivery reports, officials'
replies, outages. Plus the pure parsers of Kannel's callbacks and of fakesmsc's output."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from anbu.domain.incidents import DeliveryStatus
from anbu.domain.sms_text import OutgoingSms, SendStatus, SmsKind
from anbu.errors import SmsError, ValidationError
from devstack.kannel import (
    KannelConfig,
    KannelInstance,
    KannelPorts,
    ReceivedSms,
    ensure_kannel_installed,
    fakesmsc_line,
    kannel_installed,
    parse_fakesmsc_output,
    reassemble,
)
from escalation.dlr import (
    kannel_dlr_url,
    kannel_mo_url,
    parse_delivery_report,
    parse_inbound_sms,
)
from escalation.providers import KannelSmsSender
from tests.fixtures_kannel import (
    DLR_PATH,
    MO_PATH,
    OUR_NUMBER,
    Hit,
    RecordingServer,
    kannel_sender_for,
)

pytestmark = pytest.mark.kannel

_numbers = itertools.count(1)


def unique_number() -> str:
    """A fresh mobile number per message, so tests sharing one Kannel never see each other."""
    return f"0107{os.getpid() % 1000:03d}{next(_numbers):04d}"


def unique_ref(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_numbers)}"


def to(number: str) -> Callable[[ReceivedSms], bool]:
    return lambda sms: sms.receiver == number


def dlr_for(reference: str) -> Callable[[Hit], bool]:
    return lambda hit: parse_delivery_report(hit.query).reference == reference


# --- pure: configuration, callback URLs and their parsers, fakesmsc output -------------------


def test_given_config_when_rendered_then_ports_user_limits_and_get_url_are_set(
    tmp_path: Path,
) -> None:
    config = KannelConfig(
        name="k",
        var_dir=tmp_path,
        mo_url="http://127.0.0.1:8080/v1/sms/kannel/inbound",
        sendsms_user="anbu",
        sendsms_password="s3cret",
        admin_password="adm",
        number=OUR_NUMBER,
        ports=KannelPorts(admin=14000, smsbox=14001, smsc=14002, inject=14003, sendsms=14013),
    )
    conf = config.render()
    for line in (
        "admin-port = 14000",
        "smsbox-port = 14001",
        "port = 14002",
        "port = 14003",
        "sendsms-port = 14013",
        'username = "anbu"',
        'password = "s3cret"',
        "concatenation = true",
        "max-messages = 10",
        "max-messages = 0",
        "dlr-storage = internal",
        "mo-recode = true",
        "http-request-retry = 10",
        "http-queue-delay = 2",
        "allowed-smsc-id = inject",
        f'store-location = "{tmp_path.resolve()}/k/spool"',
        'get-url = "http://127.0.0.1:8080/v1/sms/kannel/inbound?from=%p&to=%P&text=%b'
        '&coding=%c&charset=%C&ts=%T&id=%I&smsc=%i"',
    ):
        assert line in conf.splitlines(), line
    assert "$" not in conf  # every placeholder filled


@pytest.mark.parametrize("bad", ['pa"ss', "pa\\ss", "pa\nss"])
def test_given_password_that_breaks_kannel_quoting_when_rendering_then_refused(
    tmp_path: Path, bad: str
) -> None:
    config = KannelConfig("k", tmp_path, "http://x/in", "anbu", bad, "adm", OUR_NUMBER)
    with pytest.raises(SmsError, match="sendsms_password"):
        config.render()


def test_given_reference_when_building_dlr_url_then_ours_rides_along_with_kannel_escapes() -> None:
    assert kannel_dlr_url("http://h/dlr", "esc-1") == (
        "http://h/dlr?ref=esc-1&status=%d&ts=%T&smsc=%i&fid=%F&answer=%A"
    )
    assert kannel_dlr_url("http://h/dlr?tenant=3", "a.b_c").startswith(
        "http://h/dlr?tenant=3&ref=a.b_c&"
    )
    assert kannel_mo_url("http://h/in?x=1").startswith("http://h/in?x=1&from=%p&")
    with pytest.raises(ValidationError):
        kannel_dlr_url("http://h/dlr", "has space")
    with pytest.raises(ValidationError):
        kannel_dlr_url("http://h/dlr", "50%")


@pytest.mark.parametrize(
    ("query", "status", "final"),
    [
        (
            "ref=r1&status=8&ts=1795610054&smsc=fake&fid=&answer=ACK%2F",
            DeliveryStatus.ACCEPTED,
            False,
        ),
        ("ref=r1&status=1&ts=1795610054&smsc=fake&fid=f-9&answer=", DeliveryStatus.DELIVERED, True),
        (
            "ref=r1&status=2&ts=1795610054&smsc=fake&fid=&answer=",
            DeliveryStatus.UNDELIVERABLE,
            True,
        ),
        ("ref=r1&status=4&ts=&smsc=&fid=&answer=", DeliveryStatus.BUFFERED, False),
        ("ref=r1&status=16&ts=1&smsc=fake&fid=&answer=NACK", DeliveryStatus.REJECTED, True),
    ],
)
def test_given_kannel_report_query_when_parsed_then_typed_status_with_our_reference(
    query: str, status: DeliveryStatus, final: bool
) -> None:
    report = parse_delivery_report(query)
    assert report.reference == "r1"
    assert report.status is status
    assert report.status.final is final


def test_given_report_fields_when_parsed_then_time_smsc_and_provider_id_are_kept() -> None:
    report = parse_delivery_report(
        b"ref=r2&status=1&ts=1795610054&smsc=fake&fid=4fdbca20&answer=id%3A1+stat%3ADELIVRD"
    )
    assert report.at is not None
    assert report.at.timestamp() == 1795610054
    assert report.smsc_id == "fake"
    assert report.provider_message_id == "4fdbca20"
    assert report.detail == "id:1 stat:DELIVRD"


@pytest.mark.parametrize(
    "query", ["status=1", "ref=r1&status=3", "ref=r1&status=x", "ref=bad%20ref&status=1"]
)
def test_given_malformed_report_when_parsed_then_validation_error(query: str) -> None:
    with pytest.raises(ValidationError):
        parse_delivery_report(query)


@pytest.mark.parametrize(
    ("text_param", "coding", "charset", "expected"),
    [
        # What Kannel sends with mo-recode: UTF-8 bytes, coding 0.
        ("%ED%99%95%EC%9D%B8+%EB%B0%A9%EB%AC%B8", "0", "UTF-8", "확인 방문"),
        # Without recoding: raw UCS-2 (UTF-16BE) bytes.
        ("%D6U%C7x%00+%BC%29%BB8", "2", "UTF-16BE", "확인 방문"),
        ("%D6U%C7x", "2", "", "확인"),
        ("OK+visited%2C+all+fine", "0", "UTF-8", "OK visited, all fine"),
        # euc-kr from some SMSC: decoded as cp949 (its superset).
        ("%C8%AE%C0%CE", "0", "EUC-KR", "확인"),
        ("line1%0Aline2", "0", "nonsense-charset", "line1\nline2"),
    ],
)
def test_given_incoming_sms_query_when_parsed_then_text_decoded_by_coding_and_charset(
    text_param: str, coding: str, charset: str, expected: str
) -> None:
    sms = parse_inbound_sms(
        f"from=%2B821055556666&to=0212345678&text={text_param}&coding={coding}"
        f"&charset={charset}&ts=1795610067&id=460ffab7&smsc=inject"
    )
    assert sms.text == expected
    assert sms.sender == "01055556666"  # +82 normalised to national digits
    assert sms.receiver == OUR_NUMBER
    assert sms.message_id == "460ffab7"
    assert sms.smsc_id == "inject"
    assert sms.received_at is not None


def test_given_short_code_sender_when_parsed_then_kept_as_given() -> None:
    assert parse_inbound_sms("from=1588&text=hi").sender == "1588"


@pytest.mark.parametrize("query", ["text=hi", "from=&text=hi", "from=010&text=hi&ts=soon"])
def test_given_malformed_incoming_sms_when_parsed_then_validation_error(query: str) -> None:
    with pytest.raises(ValidationError):
        parse_inbound_sms(query)


# Lines exactly as Kannel 1.4.5's fakesmsc printed them here.
_PREFIX = b"2026-11-25 12:34:14 [10505] [0] DEBUG: Got message "
_FAKESMSC_LOG = b"\n".join(
    [
        b"2026-11-25 12:34:09 [10505] [0] INFO: fakesmsc starting",
        _PREFIX + b"1: <0212345678 01012345678 ucs-2 "
        b"%C5H%B1U%D5X%C18%C6%94%00+%AE%40%CC%A0%C2%18%B2%D8>",
        _PREFIX + b"2: <0212345678 01012345678 udh %05%00%03%01%02%01 data %AC%00%B0%98>",
        _PREFIX + b"3: <0212345678 01099990000 text hello world>",
        _PREFIX + b"4: <0212345678 01012345678 udh %05%00%03%01%02%02 data %B2%E4%00%2B>",
        _PREFIX + b"5: <0212345678 01012345678 udh %05%00%03%07%02%01 data %AC%00>",
    ]
)


def test_given_fakesmsc_output_when_parsed_then_parts_rejoin_into_identical_text() -> None:
    parts = parse_fakesmsc_output(_FAKESMSC_LOG)
    assert [p.kind for p in parts] == ["ucs-2", "data", "text", "data", "data"]
    messages = reassemble(parts)
    assert messages == [
        ReceivedSms("0212345678", "01012345678", "안녕하세요 김철수님", 1),
        ReceivedSms("0212345678", "01012345678", "가나다+", 2),  # "+" came as %00%2B
        ReceivedSms("0212345678", "01099990000", "hello world", 1),
    ]  # the half of reference 7 is left out until its second part arrives


def test_given_reply_text_when_building_fakesmsc_line_then_ascii_plain_and_korean_ucs2() -> None:
    assert fakesmsc_line("01055556666", OUR_NUMBER, "1") == f"01055556666 {OUR_NUMBER} text 1"
    assert fakesmsc_line("01055556666", OUR_NUMBER, "확인 1") == (
        f"01055556666 {OUR_NUMBER} ucs2 %D6%55%C7%78%00%20%00%31"
    )
    with pytest.raises(ValueError, match="digits"):
        fakesmsc_line("010 5555", OUR_NUMBER, "x")


# --- real Kannel ----------------------------------------------------------------------------


def test_given_kannel_installed_when_ensuring_again_then_nothing_to_do() -> None:
    ensure_kannel_installed()
    assert kannel_installed()


async def test_given_korean_sms_when_sent_through_kannel_then_fake_smsc_receives_identical_text(
    kannel: KannelInstance, kannel_sender: KannelSmsSender
) -> None:
    number = unique_number()
    text = "[안부확인] 김철수님(종로구) 전화 2회 미응답. 똠방각하 쀍 ♥ 회신 1"
    receipt = await kannel_sender.send(
        OutgoingSms(unique_ref("ko"), number, OUR_NUMBER, text, SmsKind.SMS)
    )
    assert receipt.status is SendStatus.ACCEPTED
    assert receipt.provider == "kannel"
    received = await kannel.wait_received(to(number))
    assert received == ReceivedSms(OUR_NUMBER, number, text, 1)


async def test_given_text_with_newlines_and_symbols_when_sent_then_arrives_unchanged(
    kannel: KannelInstance, kannel_sender: KannelSmsSender
) -> None:
    number = unique_number()
    text = "1줄: a&b=c+d%20\n2줄: 'q' \"dq\" <tag> 100%"
    await kannel_sender.send(OutgoingSms(unique_ref("sym"), number, OUR_NUMBER, text, SmsKind.LMS))
    assert (await kannel.wait_received(to(number))).text == text


async def test_given_long_korean_text_when_sent_then_concatenated_parts_rejoin_identical(
    kannel: KannelInstance, kannel_sender: KannelSmsSender
) -> None:
    number = unique_number()
    text = ("가나다라마바사아자차카타파하 " * 11)[:158]
    await kannel_sender.send(
        OutgoingSms(unique_ref("long"), number, OUR_NUMBER, text, SmsKind.LMS, "안부 확인")
    )
    received = await kannel.wait_received(to(number))
    assert received.text == text
    assert received.parts == 3


async def test_given_dlr_url_when_sms_delivered_then_reports_arrive_with_our_reference(
    kannel_sender: KannelSmsSender, callback_server: RecordingServer
) -> None:
    reference = unique_ref("dlr")
    await kannel_sender.send(OutgoingSms(reference, unique_number(), OUR_NUMBER, "보고 확인"))
    hits = await callback_server.wait_for(DLR_PATH, dlr_for(reference), count=2)
    reports = [parse_delivery_report(hit.query) for hit in hits]
    # Callbacks are concurrent: "delivered" may come before "accepted".
    assert {r.status for r in reports} == {DeliveryStatus.ACCEPTED, DeliveryStatus.DELIVERED}
    assert all(r.smsc_id == "fake" for r in reports)


async def test_given_official_reply_in_korean_when_injected_then_get_url_gets_identical_text(
    kannel: KannelInstance, callback_server: RecordingServer
) -> None:
    official = unique_number()
    text = "확인했습니다. 내일 오전 10시 방문 예정!"
    await kannel.inject_reply(official, text)
    hits = await callback_server.wait_for(
        MO_PATH, lambda hit: parse_inbound_sms(hit.query).sender == official
    )
    reply = parse_inbound_sms(hits[0].query)
    assert reply.text == text
    assert reply.receiver == OUR_NUMBER
    assert reply.smsc_id == "inject"
    assert reply.message_id


async def test_given_anbu_failing_twice_when_official_replies_then_kannel_retries_until_2xx(
    kannel: KannelInstance, callback_server: RecordingServer
) -> None:
    official = unique_number()
    callback_server.answer(MO_PATH, 503)
    callback_server.answer(MO_PATH, 500)
    await kannel.inject_reply(official, "재시도 확인")
    hits = await callback_server.wait_for(
        MO_PATH, lambda hit: parse_inbound_sms(hit.query).sender == official, count=3
    )
    replies = {parse_inbound_sms(hit.query) for hit in hits}
    assert len(replies) == 1  # the same message, same Kannel id: anbu can drop repeats by id
    assert replies.pop().text == "재시도 확인"


async def test_given_official_replies_one_when_injected_then_plain_text_reaches_anbu(
    kannel: KannelInstance, callback_server: RecordingServer
) -> None:
    official = unique_number()
    await kannel.inject_reply(official, "1")
    hits = await callback_server.wait_for(
        MO_PATH, lambda hit: parse_inbound_sms(hit.query).sender == official
    )
    assert parse_inbound_sms(hits[0].query).text == "1"


async def test_given_reply_when_anbu_answers_then_no_sms_goes_back_to_the_official(
    kannel: KannelInstance, callback_server: RecordingServer
) -> None:
    official = unique_number()
    callback_server.answer(MO_PATH, 200, "이 응답은 문자로 가면 안 됩니다".encode())
    await kannel.inject_reply(official, "확인")
    await callback_server.wait_for(
        MO_PATH, lambda hit: parse_inbound_sms(hit.query).sender == official
    )
    await asyncio.sleep(0.5)  # a reply SMS, if any, would have reached the fake SMSC by now
    assert [sms for sms in kannel.received() if sms.receiver == official] == []


async def test_given_concurrent_sends_when_all_accepted_then_every_report_comes_back(
    kannel: KannelInstance, kannel_sender: KannelSmsSender, callback_server: RecordingServer
) -> None:
    prefix = unique_ref("burst")
    total, senders = 200, 8
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await kannel_sender.send(
                OutgoingSms(f"{prefix}-{i}", unique_number(), OUR_NUMBER, f"대량 {i}")
            )

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(senders)))
    accepted_s = time.monotonic() - started
    hits = await callback_server.wait_for(
        DLR_PATH,
        lambda hit: (
            parse_delivery_report(hit.query).reference.startswith(prefix + "-")
            and parse_delivery_report(hit.query).status is DeliveryStatus.DELIVERED
        ),
        count=total,
        timeout_s=60,
    )
    delivered_s = time.monotonic() - started
    assert len({parse_delivery_report(h.query).reference for h in hits}) == total
    print(
        f"\n{total} SMS, {senders} senders: accepted {total / accepted_s:.0f}/s, "
        f"all delivered reports in {delivered_s:.2f} s"
    )


async def test_given_text_beyond_max_parts_when_sending_then_refused_before_kannel_cuts_it(
    kannel_sender: KannelSmsSender,
) -> None:
    message = OutgoingSms(unique_ref("cut"), unique_number(), OUR_NUMBER, "가" * 671, SmsKind.LMS)
    with pytest.raises(SmsError, match="11 parts") as caught:
        await kannel_sender.send(message)
    assert caught.value.retryable is False


async def test_given_wrong_password_when_sending_then_non_retryable_error(
    kannel: KannelInstance,
) -> None:
    sender = KannelSmsSender(sendsms_url=kannel.sendsms_url, username="anbu-test", password="no")
    try:
        with pytest.raises(SmsError, match="403") as caught:
            await sender.send(OutgoingSms(unique_ref("pw"), unique_number(), OUR_NUMBER, "x"))
        assert caught.value.retryable is False
    finally:
        await sender.aclose()


async def test_given_smsc_link_down_when_sending_then_queued_and_delivered_after_reconnect(
    kannel_factory: Callable[[], KannelInstance], callback_server: RecordingServer
) -> None:
    instance = await asyncio.to_thread(kannel_factory)
    sender = kannel_sender_for(instance, callback_server)
    try:
        await instance.smsc_down()
        number = unique_number()
        receipt = await sender.send(
            OutgoingSms(unique_ref("q"), number, OUR_NUMBER, "대기 후 전송")
        )
        assert receipt.status is SendStatus.QUEUED
        assert [sms for sms in instance.received() if sms.receiver == number] == []
        await instance.smsc_up()
        assert (await instance.wait_received(to(number))).text == "대기 후 전송"
    finally:
        await sender.aclose()


async def test_given_kannel_stopped_when_sending_then_retryable_error_and_restart_recovers(
    kannel_factory: Callable[[], KannelInstance], callback_server: RecordingServer
) -> None:
    instance = await asyncio.to_thread(kannel_factory)
    sender = kannel_sender_for(instance, callback_server, timeout_s=2.0)
    try:
        await instance.stop()
        assert not instance.is_running()
        assert list(instance.spool_dir.iterdir()) == []
        with pytest.raises(SmsError) as caught:
            await sender.send(OutgoingSms(unique_ref("down"), unique_number(), OUR_NUMBER, "x"))
        assert caught.value.retryable is True

        await instance.start()
        number = unique_number()
        receipt = await sender.send(OutgoingSms(unique_ref("up"), number, OUR_NUMBER, "재시작 후"))
        assert receipt.status is SendStatus.ACCEPTED
        assert (await instance.wait_received(to(number))).text == "재시작 후"
    finally:
        await sender.aclose()


def test_given_instance_left_running_when_starting_same_config_again_then_it_is_kept(
    kannel_factory: Callable[[], KannelInstance],
) -> None:
    first = kannel_factory()
    old = first.pids()
    assert set(old) == set(first.ROLES)
    # A new process (new object, same config and directory) finds the pid files.
    second = KannelInstance(first.config)
    second.start_sync()
    assert second.startup_s == 0.0
    assert second.pids() == old
    assert all(proc.poll() is None for proc in first._procs.values())


def test_given_instance_left_running_with_other_config_when_starting_then_replaced(
    kannel_factory: Callable[[], KannelInstance],
) -> None:
    first = kannel_factory()
    old = first.pids()
    second = KannelInstance(dataclasses.replace(first.config, sendsms_password="rotated"))
    second.start_sync()
    try:
        # The old processes are our children here, so they wait for us to reap them.
        for role, pid in old.items():
            assert first._procs[role].pid == pid
            assert first._procs[role].wait(timeout=1) is not None
        new = second.pids()
        assert set(new.values()).isdisjoint(old.values())
        assert 'password = "rotated"' in second.conf_path.read_text()
        assert "online" in second.status_text()
    finally:
        second.stop_sync()


def test_given_boxes_that_ignore_sigint_when_stopping_then_killed_after_grace(
    kannel_factory: Callable[[], KannelInstance],
) -> None:
    instance = kannel_factory()
    pid = instance.pids()["bearerbox"]
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGINT
    instance.stop_sync(grace_s=0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not instance.is_running()
