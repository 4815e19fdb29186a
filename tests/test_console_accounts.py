"""The console's accounts over real HTTP (the app in-process) on SQLite and PostgreSQL: the
first account from the CLI, login with its cookie's flags, CSRF on every form, idle timeout,
the lockout after five wrong passwords, invitations for the directory's officials, and each
role's scope."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest
from sqlalchemy import select

from anbu.app.parts import build_api
from anbu.cli import build_parser
from anbu.console import accounts
from anbu.db.models import District
from anbu.db.models_audit import AuditEntry
from anbu.db.models_console import ConsoleAccount
from anbu.db.models_escalation import Official
from anbu.domain.audit import ActorKind
from anbu.domain.console import ConsoleRole
from anbu.domain.incidents import OfficialRole
from anbu.settings import Settings
from tests.api_support import Api, api_over

PASSWORD = "안부-test-password-1"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, html
    return match.group(1)


async def make_account(api: Api, login: str = "kim", district: str = "11620", **kw: str) -> None:
    async with api.container.sessions() as s:
        await accounts.create_account(
            s,
            login=login,
            name=kw.get("name", "김주무관"),
            role=ConsoleRole(kw.get("role", "official")),
            password=PASSWORD,
            district_code=district if kw.get("role") != "analyst" else None,
            now=api.clock.now(),
        )
        await s.commit()


async def log_in(
    client: httpx.AsyncClient, login: str = "kim", password: str = PASSWORD
) -> httpx.Response:
    page = await client.get("/console/login")
    assert page.status_code == 200
    return await client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "login": login, "password": password},
    )


async def test_given_cli_created_account_when_logging_in_then_session_cookie_is_strict(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=db_url, public_url="https://anbu.example.kr")
    async with api_over(db_url, settings) as api:
        monkeypatch.setenv("ANBU_CONSOLE_PASSWORD", PASSWORD)
        args = build_parser().parse_args(
            ["official-account", "create", "--login", "kim", "--name", "김구청",
             "--district", "11620"]
        )  # fmt: skip
        assert await args.fn(settings, args) == 0
        assert "account kim (district_admin) created" in capsys.readouterr().out

        # A Secure cookie comes back only over https.
        transport = httpx.ASGITransport(app=build_api(api.container))
        async with httpx.AsyncClient(transport=transport, base_url="https://anbu") as client:
            r = await log_in(client)
            assert r.status_code == 303
            assert r.headers["location"] == "/console"
            cookie = r.headers["set-cookie"]
            assert "anbu_console=" in cookie
            assert "HttpOnly" in cookie
            assert "SameSite=strict" in cookie
            assert "Secure" in cookie
            today = await client.get("/console")
            assert today.status_code == 200
            assert "오늘" in today.text
            assert "김구청" in today.text
            assert "default-src 'none'" in today.headers["content-security-policy"]


async def test_given_plain_http_public_url_then_cookie_is_not_secure(api: Api) -> None:
    await make_account(api)
    r = await log_in(api.client)
    assert r.status_code == 303
    assert "Secure" not in r.headers["set-cookie"]


async def test_given_forms_when_posted_without_the_csrf_token_then_refused(api: Api) -> None:
    await make_account(api)
    await api.client.get("/console/login")
    r = await api.client.post(
        "/console/login", data={"csrf": "forged", "login": "kim", "password": PASSWORD}
    )
    assert r.status_code == 403
    assert (await log_in(api.client)).status_code == 303
    r = await api.client.post("/console/logout", data={"csrf": "forged"})
    assert r.status_code == 403
    assert (await api.client.get("/console")).status_code == 200  # still logged in
    page = await api.client.get("/console")
    r = await api.client.post("/console/logout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    assert (await api.client.get("/console")).headers["location"] == "/console/login"


async def test_given_idle_session_when_the_timeout_passes_then_login_again(api: Api) -> None:
    await make_account(api)
    await log_in(api.client)
    api.clock.advance(dt.timedelta(minutes=29))
    assert (await api.client.get("/console")).status_code == 200  # use restarts the clock
    api.clock.advance(dt.timedelta(minutes=29))
    assert (await api.client.get("/console")).status_code == 200
    api.clock.advance(dt.timedelta(minutes=30))
    r = await api.client.get("/console")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login"


async def test_given_five_wrong_passwords_then_locked_even_for_the_right_one(
    api: Api,
) -> None:
    await make_account(api)
    for _ in range(4):
        r = await log_in(api.client, password="wrong-password-x")
        assert r.status_code == 401
        assert "틀립니다" in r.text
    r = await log_in(api.client, password="wrong-password-x")
    assert r.status_code == 403
    assert "잠겼습니다" in r.text
    r = await log_in(api.client)
    assert r.status_code == 403, "a locked account must refuse the right password too"
    async with api.container.sessions() as s:
        account = (
            await s.execute(select(ConsoleAccount).where(ConsoleAccount.login == "kim"))
        ).scalar_one()
        assert account.locked_at is not None
        assert account.failed_logins == 5
        await accounts.unlock(s, "kim")
        await s.commit()
    assert (await log_in(api.client)).status_code == 303


async def test_given_wrong_then_right_password_then_the_count_starts_over(api: Api) -> None:
    await make_account(api)
    for _ in range(4):
        await log_in(api.client, password="wrong-password-x")
    assert (await log_in(api.client)).status_code == 303
    for _ in range(4):
        assert (await log_in(api.client, password="wrong-password-x")).status_code == 401


async def test_given_directory_official_when_invited_then_link_sets_password_once(
    api: Api,
) -> None:
    async with api.container.sessions() as s:
        district_id = (await s.execute(select(District.id))).scalars().first()
        assert district_id is not None
        official = Official(
            district_id=district_id, dong="신림동", name="박주무관", phone="01055550001",
            role=OfficialRole.DONG,
        )  # fmt: skip
        s.add(official)
        await s.flush()
        token = await accounts.invite_official(s, official.id, login="park", now=api.clock.now())
        await s.commit()
    page = await api.client.get(f"/console/invite/{token}")
    assert page.status_code == 200
    assert "박주무관" in page.text
    r = await api.client.post(
        f"/console/invite/{token}", data={"password": "short", "password2": "short"}
    )
    assert r.status_code == 422
    r = await api.client.post(
        f"/console/invite/{token}", data={"password": PASSWORD, "password2": PASSWORD}
    )
    assert r.status_code == 200
    assert (await api.client.get(f"/console/invite/{token}")).status_code == 404
    assert (await log_in(api.client, "park")).status_code == 303
    async with api.container.sessions() as s:
        account = (
            await s.execute(select(ConsoleAccount).where(ConsoleAccount.login == "park"))
        ).scalar_one()
        assert account.official_id == official.id
        assert account.dong == "신림동"
        assert account.password_hash is not None
        assert PASSWORD not in account.password_hash
        assert account.password_hash.startswith("$argon2id$")


async def test_given_no_session_when_opening_any_page_then_login(api: Api) -> None:
    for path in ("/console", "/console/residents", "/console/incidents/x",
                 "/console/residents/x"):  # fmt: skip
        r = await api.client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"] == "/console/login", path
    async with api.container.sessions() as s:
        rows = (await s.execute(select(AuditEntry))).scalars().all()
        assert not [r for r in rows if r.actor_kind is ActorKind.OFFICIAL]
