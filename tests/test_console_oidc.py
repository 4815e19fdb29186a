"""Single sign-on for the console (OpenID Connect, configured by settings) against a small
local provider (tests/fakes/oidc_provider.py, no external network): in a real browser an
official signs in at the provider and lands on 오늘; a provider user without a console
account, a forged state, a token signed with the wrong secret and an expired or replayed
token are refused with a Korean message, never a 500. Pure checks of the ID token first."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from anbu.app.parts import build_api
from anbu.console.oidc import OidcError, check_claims, read_id_token
from anbu.settings import ConsoleSettings, Settings
from tests.api_support import Api, api_over
from tests.console_support import log_in, make_account
from tests.fakes.oidc_provider import FakeOidcProvider, hs256_token
from tests.test_console_browser import chromium, save_shot, serving

CLIENT, SECRET = "anbu-console", "provider-shared-secret-1"
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def config(issuer: str = "http://idp") -> ConsoleSettings:
    return ConsoleSettings(
        oidc_issuer=issuer,
        oidc_authorize_url=f"{issuer}/authorize",
        oidc_token_url=f"{issuer}/token",
        oidc_client_id=CLIENT,
        oidc_client_secret=SecretStr(SECRET),
        oidc_label="관악구 통합 로그인",
    )


def claims(**more: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": "http://idp",
        "aud": CLIENT,
        "preferred_username": "kim",
        "nonce": "n1",
        "exp": int(NOW.timestamp()) + 60,
    }
    return {**base, **more}


def test_given_good_token_when_checked_then_login_named() -> None:
    token = hs256_token(claims(), SECRET)
    assert check_claims(read_id_token(token, SECRET), config(), "n1", NOW) == "kim"
    assert check_claims(claims(aud=["x", CLIENT]), config(), "n1", NOW) == "kim"


@pytest.mark.parametrize(
    ("token_claims", "nonce", "message"),
    [
        (claims(iss="http://evil"), "n1", "다른 곳에서 발급된"),
        (claims(aud="other"), "n1", "다른 곳에서 발급된"),
        (claims(exp=int(NOW.timestamp()) - 1), "n1", "만료"),
        (claims(), "n2", "요청과 응답이 맞지 않습니다"),
        (claims(), "", "요청과 응답이 맞지 않습니다"),
        (claims(preferred_username=""), "n1", "계정 이름이 없습니다"),
    ],
)
def test_given_bad_claims_when_checked_then_korean_refusal(
    token_claims: dict[str, object], nonce: str, message: str
) -> None:
    with pytest.raises(OidcError, match=message):
        check_claims(token_claims, config(), nonce, NOW)


def test_given_forged_or_unsigned_token_when_read_then_refused() -> None:
    with pytest.raises(OidcError, match="서명이 맞지 않습니다"):
        read_id_token(hs256_token(claims(), "another-secret"), SECRET)
    unsigned = hs256_token(claims(), SECRET).split(".")
    unsigned[0] = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    with pytest.raises(OidcError, match="서명 없는"):
        read_id_token(".".join(unsigned), SECRET)
    with pytest.raises(OidcError, match="읽을 수 없습니다"):
        read_id_token("not-a-token", SECRET)


@pytest.fixture
def provider() -> Iterator[FakeOidcProvider]:
    p = FakeOidcProvider(CLIENT, SECRET)
    p.start()
    yield p
    p.stop()


async def test_given_oidc_configured_when_official_signs_in_at_provider_then_today(
    db_url: str, provider: FakeOidcProvider
) -> None:
    settings = Settings(database_url=db_url, console=config(provider.issuer))
    async with api_over(db_url, settings) as api:
        await make_account(api.container.sessions, api.clock.now(), "kim", name="김주무관")
        app = build_api(api.container)
        async with serving(app) as base, chromium() as browser:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{base}/console/login")
            await page.get_by_role("link", name="관악구 통합 로그인").click()
            await page.wait_for_load_state()
            assert page.url.startswith(provider.issuer)
            await page.get_by_label("사용자").fill("kim")
            await page.get_by_role("button", name="승인").click()
            await page.wait_for_url(f"{base}/console")
            assert await page.get_by_role("heading", name="오늘", exact=True).count() == 1
            assert "김주무관" in await page.locator("header").inner_text()

            # A provider user with no console account: refused on the login page.
            stranger = await (await browser.new_context()).new_page()
            await stranger.goto(f"{base}/console/oidc/start")
            await stranger.get_by_label("사용자").fill("nobody")
            await stranger.get_by_role("button", name="승인").click()
            await stranger.wait_for_load_state()
            assert await stranger.get_by_role("alert").inner_text() == (
                "이 통합 로그인 계정으로 들어올 수 있는 관제 계정이 없습니다."
            )
            await save_shot(stranger, db_url, "login-sso-refused", full_page=False)

        # A callback nobody started (no state cookie), and a replayed code.
        r = await api.client.get("/console/oidc/callback", params={"code": "x", "state": "y"})
        assert r.status_code == 401
        assert "로그인 요청과 응답이 맞지 않습니다" in html.unescape(r.text)
        # A wrong password keeps the sign-on button on the page.
        wrong = await log_in(api.client, "kim", "wrong-password-1")
        assert wrong.status_code == 401
        assert 'href="/console/oidc/start"' in wrong.text


async def test_given_provider_signs_with_wrong_secret_when_callback_then_refused(
    db_url: str,
) -> None:
    forged = FakeOidcProvider(CLIENT, SECRET, signing_secret="not-the-client-secret")
    forged.start()
    try:
        settings = Settings(database_url=db_url, console=config(forged.issuer))
        async with api_over(db_url, settings) as api:
            await make_account(api.container.sessions, api.clock.now(), "kim")
            start = await api.client.get("/console/oidc/start")
            assert start.status_code == 303
            # The provider's form, posted as the browser would.
            async with httpx.AsyncClient() as idp:
                page = await idp.get(start.headers["location"])
                fields = {
                    m.group(1): html.unescape(m.group(2))
                    for m in re.finditer(r'name="([^"]+)" value="([^"]*)"', page.text)
                }
                back = await idp.post(f"{forged.issuer}/authorize", data={**fields, "user": "kim"})
            callback = back.headers["location"].replace("http://anbu", "")
            r = await api.client.get(callback)
            assert r.status_code == 401
            assert "로그인 응답의 서명이 맞지 않습니다." in html.unescape(r.text)
            assert "anbu_console=" not in r.headers.get("set-cookie", "")
    finally:
        forged.stop()


async def test_given_oidc_not_configured_when_start_then_korean_404(api: Api) -> None:
    r = await api.client.get("/console/oidc/start")
    assert r.status_code == 404
    assert "통합 로그인이 설정되지 않았습니다." in r.text
    login = await api.client.get("/console/login")
    assert "/console/oidc/start" not in login.text
