"""Kannel's callbacks are Kannel's alone, and an SMS reply acknowledges only with the code.

The reproduced attack (issue 12): one POST to the reply callback, "from" the official's
number, whose text listed all 10,000 four-digit codes, acknowledged the incident and stopped
the escalation. These tests run over the real API and a real database (both backends)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.app.parts import build_api
from anbu.db.models_escalation import InboundSms, Incident, IncidentEvent
from anbu.domain.calls import CallResult
from anbu.domain.escalation import CODE_DIGITS, Finding, parse_reply
from anbu.domain.incidents import IncidentStatus
from anbu.install_secrets import with_local_callback_token
from anbu.settings import EscalationSettings, Settings, SettingsError
from devstack.kannel import KannelConfig
from escalation.dlr import InboundSms as Sms
from escalation.providers import KannelSmsSender
from escalation.service import EscalationService, ReplyOutcome
from tests.test_escalation_api import Api, _incident, api  # noqa: F401
from tests.test_escalation_service import (
    OUR_NUMBER,
    T0,
    FakeClock,
    close_case,
    config,
    incident_of,
    link_token,
    make_world,
)
from tests.test_security_headers import PRODUCTION

PRIMARY = "01055550001"  # the first step's official in _setup_chain


async def _waiting(api: Api) -> Incident:  # noqa: F811
    await _incident(api)
    async with api.container.sessions() as s:
        return (await s.execute(select(Incident))).scalar_one()


async def _reload(api: Api, incident_id: str) -> Incident:  # noqa: F811
    async with api.container.sessions() as s:
        incident = await s.get(Incident, incident_id)
        assert incident is not None
        return incident


async def _reply(
    api: Api,  # noqa: F811
    text: str,
    sender: str = PRIMARY,
    msg_id: str = "m",
    key: str = "cb-secret",
) -> httpx.Response:
    body = (
        f"key={key}&from={sender}&to={OUR_NUMBER}&text={quote(text)}"
        f"&coding=0&charset=UTF-8&ts=1795610054&id={msg_id}&smsc=inject"
    )
    return await api.client.post(
        "/v1/sms/kannel/inbound",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


async def test_given_official_number_when_one_post_lists_every_code_then_nothing_acknowledged(
    api: Api,  # noqa: F811
) -> None:
    incident = await _waiting(api)
    every_code = " ".join(f"{n:04d}" for n in range(10_000))
    r = await _reply(api, every_code, msg_id="all-4")
    assert r.status_code == 200
    assert r.headers["X-Anbu-Reply"] == "no_code"
    # Even the real code among a few others is not a reply.
    r = await _reply(api, f"000000 {incident.code} 999999", msg_id="some-6")
    assert r.headers["X-Anbu-Reply"] == "no_code"
    after = await _reload(api, incident.id)
    assert after.status is IncidentStatus.OPEN
    assert after.acknowledged_at is None
    assert after.sms_failures == 2


async def test_given_wrong_codes_when_limit_reached_then_right_code_is_locked_out(
    api: Api,  # noqa: F811
) -> None:
    incident = await _waiting(api)
    wrong = f"{(int(incident.code) + 1) % 10**CODE_DIGITS:0{CODE_DIGITS}d}"
    for n in range(5):
        r = await _reply(api, wrong, msg_id=f"w{n}")
        assert r.headers["X-Anbu-Reply"] == "wrong_code"
    r = await _reply(api, incident.code, msg_id="right")
    assert r.headers["X-Anbu-Reply"] == "locked"
    assert (await _reload(api, incident.id)).status is IncidentStatus.OPEN
    async with api.container.sessions() as s:
        details = [
            e.detail
            for e in (
                await s.execute(
                    select(IncidentEvent)
                    .where(IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "reply")
                    .order_by(IncidentEvent.id)
                )
            ).scalars()
        ]
        outcomes = [
            r.outcome
            for r in (await s.execute(select(InboundSms).order_by(InboundSms.id))).scalars()
        ]
    # Every try is on the incident's own record (number masked), and every SMS is stored.
    assert len(details) == 6
    assert all("*******0001" in d and PRIMARY not in d for d in details)
    assert "더 이상 문자 코드로 확인할 수 없습니다" in details[4]
    # Officials read these lines in the Korean console: no English log phrases.
    assert not any(re.search(r"[A-Za-z]{3,}", d) for d in details), details
    assert outcomes == ["wrong_code"] * 5 + ["locked"]
    # The link still acknowledges.
    assert (await _reload(api, incident.id)).sms_failures == 6


async def test_given_code_from_another_number_when_replied_then_nothing_acknowledged(
    api: Api,  # noqa: F811
) -> None:
    incident = await _waiting(api)
    r = await _reply(api, incident.code, sender="01077770000", msg_id="x")
    assert r.headers["X-Anbu-Reply"] == "no_match"
    assert (await _reload(api, incident.id)).status is IncidentStatus.OPEN


async def test_given_code_and_finding_word_when_replied_then_acknowledged_with_finding(
    api: Api,  # noqa: F811
) -> None:
    incident = await _waiting(api)
    r = await _reply(api, f"{incident.code} 안전", msg_id="ok")
    assert r.headers["X-Anbu-Reply"] == "acknowledged"
    after = await _reload(api, incident.id)
    assert after.status is IncidentStatus.ACKNOWLEDGED
    assert after.finding is Finding.SAFE
    assert after.acknowledged_by is not None
    r = await _reply(api, incident.code, msg_id="again")
    assert r.headers["X-Anbu-Reply"] == "already_acknowledged"


async def test_given_no_or_wrong_key_or_address_when_calling_back_then_refused(
    api: Api,  # noqa: F811
) -> None:
    incident = await _waiting(api)
    assert (await _reply(api, incident.code, key="wrong", msg_id="k1")).status_code == 404
    assert (await _reply(api, incident.code, key="", msg_id="k2")).status_code == 404
    dlr = "/v1/sms/kannel/dlr?ref=x&status=1"
    assert (await api.client.get(dlr)).status_code == 404
    # Only smsbox's address, when an allow-list is set (the test client is 127.0.0.1).
    api.container.settings.escalation.callback_allow_ips = ["10.1.2.3"]
    assert (await _reply(api, incident.code, msg_id="k3")).status_code == 404
    assert (await _reload(api, incident.id)).status is IncidentStatus.OPEN
    app = build_api(api.container)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://anbu") as client:
        r = await client.get(
            f"/v1/sms/kannel/inbound?key=cb-secret&from={PRIMARY}&text={incident.code}&id=k4"
        )
    assert r.headers["X-Anbu-Reply"] == "acknowledged"


def test_given_production_without_callback_token_then_settings_refused() -> None:
    # Every other production setting as it should be: the token is what is refused.
    secrets = {k: v for k, v in PRODUCTION.items() if k not in ("environment", "escalation")}
    with pytest.raises(SettingsError, match="ANBU_ESCALATION__CALLBACK_TOKEN"):
        Settings(environment="production", **secrets)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="ANBU_ESCALATION__CALLBACK_TOKEN"):
        Settings(
            environment="production",
            escalation=EscalationSettings(callback_token=SecretStr("short")),
            **secrets,  # type: ignore[arg-type]
        )


def test_given_callback_token_when_rendering_kannel_urls_then_both_carry_it() -> None:
    settings = Settings(escalation=EscalationSettings(callback_token=SecretStr("tok_en-1")))
    assert "inbound?key=tok_en-1&from=%p" in KannelConfig.from_settings(settings).render()
    sender = KannelSmsSender.from_settings(settings)
    assert sender.dlr_url is not None
    assert sender.dlr_url.endswith("/dlr?key=tok_en-1")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("123456", ("123456", None)),
        (" 123456 확인 ", ("123456", None)),
        ("123456 사망", ("123456", Finding.DIED)),
        ("123456 안전 확인", ("123456", Finding.SAFE)),
        ("1234", None),
        ("1234567", None),
        ("123456 654321", None),
        ("확인 123456", None),
        ("１２３４５６", None),  # full-width digits
        ("123456 아무말", None),
    ],
)
def test_given_reply_text_when_parsed_then_only_code_and_one_word(
    text: str, parsed: tuple[str, Finding | None] | None
) -> None:
    got = parse_reply(text)
    assert (None if got is None else (got.code, got.finding)) == parsed


def test_given_install_when_generating_secrets_then_production_settings_accept_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from anbu.cli import main

    assert main(["secrets"]) == 0
    first = capsys.readouterr().out
    assert main(["secrets"]) == 0
    assert capsys.readouterr().out != first  # fresh every time
    values = dict(
        line.split("=", 1) for line in first.splitlines() if line and not line.startswith("#")
    )
    assert len(values["ANBU_ESCALATION__CALLBACK_TOKEN"]) >= 40
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANBU_ENVIRONMENT", "production")
    monkeypatch.setenv("ANBU_MQTT__USERNAME", "anbu-signals")
    monkeypatch.setenv("ANBU_PUBLIC_URL", "https://anbu.example.go.kr")
    monkeypatch.setenv("ANBU_TRUNK__CALLER_ID", "0212345678")
    # A nested env value replaces the engine's default object: its ports must come too.
    for name, port in (("SIP_PORT", 15060), ("AMI_PORT", 15038), ("RTP_START", 20000)):
        monkeypatch.setenv(f"ANBU_ENGINE__{name}", str(port))
    monkeypatch.setenv("ANBU_ENGINE__RTP_END", "20999")
    settings = Settings(bootstrap_api_key=None)
    token = settings.escalation.callback_token
    assert token is not None
    assert token.get_secret_value() == values["ANBU_ESCALATION__CALLBACK_TOKEN"]


async def test_given_wrong_codes_from_a_number_when_its_next_incident_comes_then_locked_for_a_while(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The lockout per number: five wrong tries lock the number for the window, even for a
    new incident with a fresh code; after the window its code works again."""
    world = await make_world(sessions)
    primary = world.officials["primary"].phone
    first = await close_case(sessions, world.resident_id, [CallResult.NO_ANSWER], T0)
    clock = FakeClock(first.at)
    service = EscalationService(sessions, config(), clock=clock)
    await service.on_checkin_closed(first)
    a = await incident_of(sessions, first.checkin_id)
    for n in range(5):
        sms = Sms(primary, OUR_NUMBER, "000000" if a.code != "000000" else "1" * 6,
                         None, f"w{n}", "inject")  # fmt: skip
        assert (await service.handle_reply(sms)).outcome is ReplyOutcome.WRONG_CODE
    await service.acknowledge_link(await link_token(sessions, a.id), Finding.SAFE)
    clock.advance(60)
    second = await close_case(sessions, world.resident_id, [CallResult.NO_ANSWER], clock.now())
    clock.t = second.at
    await service.on_checkin_closed(second)
    b = await incident_of(sessions, second.checkin_id)
    right = Sms(primary, OUR_NUMBER, b.code, None, "r1", "inject")
    assert (await service.handle_reply(right)).outcome is ReplyOutcome.LOCKED
    clock.advance(3601)
    again = Sms(primary, OUR_NUMBER, b.code, None, "r2", "inject")
    assert (await service.handle_reply(again)).outcome is ReplyOutcome.ACKNOWLEDGED


def test_given_make_run_without_token_when_starting_then_one_is_generated_once(
    tmp_path: Path,
) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    first = with_local_callback_token(settings)
    token = first.escalation.callback_token
    assert token is not None
    assert len(token.get_secret_value()) >= 40
    path = tmp_path / "var" / "callback-token"
    assert path.stat().st_mode & 0o777 == 0o600
    again = with_local_callback_token(settings).escalation.callback_token
    assert again is not None
    assert again.get_secret_value() == token.get_secret_value()
    assert f"key={token.get_secret_value()}" in KannelConfig.from_settings(first).render()
    configured = Settings(escalation=EscalationSettings(callback_token=SecretStr("mine-123")))
    assert with_local_callback_token(configured) is configured
