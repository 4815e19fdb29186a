"""The console's HTTP side: thin handlers over :mod:`anbu.console.accounts` (who is logged
in) and :mod:`anbu.console.pages` (what a page shows), HTML from Jinja2 templates.

Every form posts a CSRF token bound to the server-side session (the login form: a
double-submit cookie). The session cookie is HttpOnly, SameSite=Strict, and Secure when the
public URL is https. Every person a page shows is written to the access log, as
``official``; a page that cannot write its log line is not served.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from anbu.api.audit import origin_of
from anbu.console import (
    accounts,
    directory_page,
    enrolment,
    oidc,
    pages,
    resident_edits,
    settings_page,
)
from anbu.container import Container
from anbu.db.models import District, Resident
from anbu.db.models_console import ConsoleAccount, ConsoleSession
from anbu.domain.audit import ActorKind, AuditAction, AuditResource
from anbu.domain.console import ROLE_LABELS, ConsoleRole, may_act
from anbu.domain.enrolment import SheetError
from anbu.domain.escalation import FINDING_LABELS, SEOUL, Finding
from anbu.domain.risk import Level
from anbu.errors import AnbuError, ChainInUseError
from anbu.report import Period, ReportArgumentError, build_report
from anbu.report.render import html_body, render
from anbu.services import audit as audit_service
from anbu.services.audit import Access, Actor, Origin
from anbu.settings import ConsoleSettings

HERE = Path(__file__).parent
COOKIE = "anbu_console"
LOGIN_CSRF = "anbu_console_login"
REFRESH_S = 30  # the today page reloads itself (meta refresh: no script needed)
LIVE_POLL_S = 2.0  # how often the live 오늘 stream looks at the queue's version
LIVE_STREAM_S = 600.0  # a stream ends then; the browser's EventSource reconnects by itself
# Pages load only our own stylesheet and script (the live 오늘 page's); no inline script;
# forms post and scripts connect only to us; no framing.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_CSS = (HERE / "static" / "console.css").read_bytes()
_JS = (HERE / "static" / "live.js").read_bytes()

router = APIRouter(prefix="/console", include_in_schema=False)


class ConsoleRefusedError(Exception):
    """A request the console refuses (bad CSRF token, a read-only account): a Korean page
    with this status, never the API's English JSON (see :func:`refused_page`)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def refused_page(request: Request, exc: Exception) -> Response:
    """Exception handler (mounted by the composition root with the router)."""
    assert isinstance(exc, ConsoleRefusedError)
    return _html("message.html", exc.status, title="요청 거절", text=exc.text)


def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


class Acknowledger(Protocol):
    """The escalation service's console path (escalation.service.EscalationService, set by
    the composition root): acknowledging stops the chain, as the SMS link does."""

    async def acknowledge_official(
        self,
        incident_id: str,
        official_id: str | None,
        finding: Finding,
        note: str = "",
        now: dt.datetime | None = None,
        *,
        by: str = "",
    ) -> object: ...


def _escalation(request: Request) -> Acknowledger:
    service: Acknowledger = request.app.state.console_escalation
    return service


def _set_cookie(
    request: Request,
    resp: Response,
    name: str,
    value: str,
    *,
    samesite: Literal["strict", "lax"] = "strict",
    path: str = "/console",
    max_age: int | None = None,
) -> None:
    """Every console cookie: HttpOnly, and Secure when the public URL is https."""
    secure = _container(request).settings.public_url.lower().startswith("https://")
    resp.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite=samesite, secure=secure, path=path
    )


def _html(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    body = templates.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": CSP})


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        msg = "양식의 글자를 읽을 수 없습니다 (UTF-8이 아닙니다)."
        raise ConsoleRefusedError(400, msg) from exc


@dataclass
class Ctx:
    """The logged-in official of this request, with the database session it runs in."""

    db: AsyncSession
    row: ConsoleSession
    now: dt.datetime
    origin: Origin

    @property
    def account(self) -> ConsoleAccount:
        return self.row.account

    @property
    def scope(self) -> pages.Scope:
        return pages.Scope.of(self.account)

    def base(self, **more: Any) -> dict[str, Any]:
        return {
            "me": self.account,
            "role": ROLE_LABELS[self.account.role],
            "csrf": self.row.csrf,
            "may_act": may_act(self.account.role),
            **more,
        }

    def check_csrf(self, form: dict[str, str]) -> None:
        if not hmac.compare_digest(form.get("csrf", ""), self.row.csrf):
            raise ConsoleRefusedError(403, "보안 토큰이 맞지 않습니다. 페이지를 다시 불러오세요.")

    async def audit(
        self, accesses: list[Access], outcome: str = "", *, commit: bool = True
    ) -> None:
        actor = Actor(ActorKind.OFFICIAL, self.account.id, self.account.name)
        await audit_service.record(
            self.db, actor, accesses, at=self.now, origin=self.origin, outcome=outcome
        )
        if commit:
            await self.db.commit()


class LoginRequiredError(Exception):
    """Not logged in (or the session ended): the browser goes to the login page (see
    :func:`login_redirect`), whichever page asked."""


async def login_redirect(request: Request, exc: Exception) -> Response:
    """Exception handler (mounted by the composition root with the router)."""
    assert isinstance(exc, LoginRequiredError)
    return _to_login()


async def _acting_ctx(request: Request, db: AsyncSession, form: dict[str, str]) -> Ctx:
    """The context of a form that changes something: logged in (else LoginRequiredError), the
    form's CSRF token checked, and an account that may act (a read-only one: a Korean 403)."""
    ctx = await _ctx(request, db)
    ctx.check_csrf(form)
    if not may_act(ctx.account.role):
        raise ConsoleRefusedError(403, "읽기 전용 계정입니다.")
    return ctx


async def _ctx(request: Request, db: AsyncSession) -> Ctx:
    token = request.cookies.get(COOKIE)
    now = _container(request).clock.now()
    row = await accounts.current(db, token, now) if token else None
    if row is None:
        await db.commit()  # an expired session's row is gone
        raise LoginRequiredError
    # A touched last_seen_at is committed with the page's access-log lines (every page logs).
    return Ctx(db, row, now, origin_of(request))


def _to_login() -> RedirectResponse:
    resp = RedirectResponse("/console/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/console")
    return resp


_NOT_FOUND = {
    AuditResource.INCIDENT: ("사건", "사건을 찾을 수 없습니다."),
    AuditResource.RESIDENT: ("대상자", "대상자를 찾을 수 없습니다."),
}


async def _not_found(
    ctx: Ctx, resource: AuditResource, ident: str, action: AuditAction
) -> Response:
    """A 404 page for a record that is not there or in another district; the refusal is
    logged as well (a probe for another district's ids leaves a trace)."""
    await ctx.audit(
        [Access(resource, ident[:64], action)], "refused: not found or another district"
    )
    title, text = _NOT_FOUND[resource]
    return _html("message.html", 404, title=title, text=text, **ctx.base())


def _reads(resource: AuditResource, rows: Sequence[tuple[str, int | None]]) -> list[Access]:
    return [Access(resource, ident, AuditAction.READ, district) for ident, district in rows]


# --- static, login, logout, invitation ------------------------------------------------------


@router.get("/static/console.css")
async def css() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/static/live.js")
async def live_js() -> Response:
    return Response(_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})


def _sso(request: Request) -> str:
    """The single sign-on button's text, or "" when SSO is off."""
    cfg = _oidc(request)
    return cfg.oidc_label if cfg.oidc_enabled else ""


def _login_page(request: Request, status: int = 200, error: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    resp = _html(
        "login.html",
        status,
        csrf=token,
        error=error,
        sso=_sso(request),
    )
    _set_cookie(request, resp, LOGIN_CSRF, token)
    return resp


@router.get("/login")
async def login_page(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    cookie = request.cookies.get(LOGIN_CSRF, "")
    if not cookie or not hmac.compare_digest(form.get("csrf", ""), cookie):
        return _html(
            "login.html",
            403,
            csrf=cookie,
            error="보안 토큰이 맞지 않습니다. 다시 시도하세요.",
            sso=_sso(request),
        )
    container = _container(request)
    client = request.client.host if request.client else ""
    async with container.sessions() as db:
        try:
            new = await accounts.login(
                db, form.get("login", ""), form.get("password", ""), container.clock.now(), client
            )
        except accounts.AccountLockedError:
            await db.commit()  # the count and the lock stick
            msg = "비밀번호를 5번 틀려 계정이 잠겼습니다. 구 관리자에게 잠금 해제를 요청하세요."
            return _html("login.html", 403, csrf=cookie, error=msg, sso=_sso(request))
        except accounts.LoginRefusedError:
            await db.commit()
            msg = "아이디 또는 비밀번호가 틀립니다."
            return _html("login.html", 401, csrf=cookie, error=msg, sso=_sso(request))
        await db.commit()
    resp = RedirectResponse("/console", status_code=303)
    _set_cookie(request, resp, COOKIE, new.token)
    resp.delete_cookie(LOGIN_CSRF, path="/console")
    return resp


# --- single sign-on (OIDC) -----------------------------------------------------------------

OIDC_COOKIE = "anbu_console_oidc"


def _oidc(request: Request) -> ConsoleSettings:
    return _container(request).settings.console


@router.get("/oidc/start")
async def oidc_start(request: Request) -> Response:
    cfg = _oidc(request)
    if not cfg.oidc_enabled:
        return _html(
            "message.html",
            404,
            title="로그인",
            text="통합 로그인이 설정되지 않았습니다.",
            login=True,
        )
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    redirect_uri = str(request.url_for("oidc_callback"))
    resp = RedirectResponse(oidc.authorize_url(cfg, redirect_uri, state, nonce), status_code=303)
    # Lax, not Strict: the provider sends the browser back here from another site.
    _set_cookie(
        request,
        resp,
        OIDC_COOKIE,
        f"{state}.{nonce}",
        samesite="lax",
        path="/console/oidc",
        max_age=600,
    )
    return resp


@router.get("/oidc/callback", name="oidc_callback")
async def oidc_callback(request: Request, code: str = "", state: str = "") -> Response:
    cfg = _oidc(request)
    container = _container(request)
    expected_state, _, nonce = request.cookies.get(OIDC_COOKIE, "").partition(".")
    try:
        if not cfg.oidc_enabled:
            raise oidc.OidcError("통합 로그인이 설정되지 않았습니다.")
        if not code or not state or not hmac.compare_digest(state, expected_state):
            raise oidc.OidcError("로그인 요청과 응답이 맞지 않습니다. 다시 시도하세요.")
        redirect_uri = str(request.url_for("oidc_callback"))
        claims = await oidc.exchange(cfg, code, redirect_uri)
        login_name = oidc.check_claims(claims, cfg, nonce, container.clock.now())
    except oidc.OidcError as exc:
        return _login_page(request, 401, str(exc))
    client = request.client.host if request.client else ""
    async with container.sessions() as db:
        account = await db.scalar(select(ConsoleAccount).where(ConsoleAccount.login == login_name))
        if account is None or not account.active or account.locked_at is not None:
            return _login_page(
                request, 403, "이 통합 로그인 계정으로 들어올 수 있는 관제 계정이 없습니다."
            )
        new = await accounts.open_session(db, account, container.clock.now(), client)
        await db.commit()
    # A page of our own that moves on to /console: a redirect here would still belong to the
    # provider's cross-site navigation, and the browser would hold back the Strict cookie.
    resp = _html("message.html", title="로그인", text="로그인되었습니다.", next_url="/console")
    _set_cookie(request, resp, COOKIE, new.token)
    resp.delete_cookie(OIDC_COOKIE, path="/console/oidc")
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        ctx.check_csrf(await _form(request))
        await accounts.logout(db, request.cookies.get(COOKIE, ""))
        await db.commit()
    return _to_login()


@router.get("/invite/{token}")
async def invite_page(token: str, request: Request) -> HTMLResponse:
    return await _invite(request, token, None)


@router.post("/invite/{token}")
async def accept_invite(token: str, request: Request) -> HTMLResponse:
    # The token itself is the CSRF defence here: a forger cannot know it.
    return await _invite(request, token, await _form(request))


async def _invite(request: Request, token: str, form: dict[str, str] | None) -> HTMLResponse:
    """The invitation's page (``form`` None), or the password its form posted."""
    container = _container(request)
    async with container.sessions() as db:
        try:
            account = await accounts.invited(db, token, container.clock.now())
        except AnbuError:
            return _html(
                "message.html", 404, title="초대", text="유효하지 않거나 만료된 초대입니다."
            )
        if form is None:
            return _html("invite.html", login=account.login, name=account.name, error="")
        password = form.get("password", "")
        error = ""
        if password != form.get("password2", ""):
            error = "두 비밀번호가 다릅니다."
        elif len(password) < accounts.MIN_PASSWORD:
            error = f"비밀번호는 {accounts.MIN_PASSWORD}자 이상이어야 합니다."
        if error:
            return _html("invite.html", 422, login=account.login, name=account.name, error=error)
        await accounts.accept_invitation(db, token, password, container.clock.now())
        await db.commit()
        return _html(
            "message.html", title="초대", text="비밀번호가 정해졌습니다. 로그인하세요.", login=True
        )


# --- 오늘 -----------------------------------------------------------------------------------


@router.get("")
async def today(request: Request) -> Response:
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        page = await pages.today(db, ctx.scope, ctx.now)
        people = {(i.resident_id, i.district_id) for i in page.incidents}
        people |= {(c.resident_id, c.district_id) for c in page.checkins}
        people |= {(t.resident_id, t.district_id) for t in page.tasks}
        await ctx.audit(_reads(AuditResource.RESIDENT, sorted(people)))
        return _html("today.html", **ctx.base(page=page, refresh=REFRESH_S, live=True, nav="today"))


@router.get("/events")
async def events(request: Request) -> Response:
    """The live 오늘 page's server-sent events: ``queue`` when the official's queue moved
    (the page then fetches itself), ``logout`` when the session ended. Looking does not
    touch the session: an open page alone does not keep an idle session alive."""
    container = _container(request)
    token = request.cookies.get(COOKIE, "")
    async with container.sessions() as db:
        row = await accounts.current(db, token, container.clock.now()) if token else None
        if row is None:
            await db.rollback()
            return Response("로그인이 필요합니다.", 401, media_type="text/plain")
        scope = pages.Scope.of(row.account)
        await db.rollback()

    async def stream() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        last: tuple[int, int] | None = None
        loop = asyncio.get_running_loop()
        ends = loop.time() + LIVE_STREAM_S
        while loop.time() < ends:
            async with container.sessions() as db:
                alive = await accounts.current(db, token, container.clock.now())
                version = await pages.queue_version(db, scope) if alive else None
                await db.rollback()  # neither the touch nor an expiry's delete: only a look
            if version is None:
                yield "event: logout\ndata: \n\n"
                return
            if last is not None and version != last:
                yield f"event: queue\ndata: {version[0]}-{version[1]}\n\n"
            else:
                yield ": -\n\n"  # a comment: keeps proxies from closing an idle stream
            last = version
            await asyncio.sleep(LIVE_POLL_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# --- 사건 -----------------------------------------------------------------------------------


async def _incident(
    request: Request, ctx: Ctx, incident_id: str, message: str = "", status: int = 200
) -> Response:
    page = await pages.incident_page(ctx.db, ctx.scope, incident_id, ctx.now)
    if page is None:
        return await _not_found(ctx, AuditResource.INCIDENT, incident_id, AuditAction.READ)
    await ctx.audit(
        [
            Access(
                AuditResource.INCIDENT,
                page.incident.id,
                AuditAction.READ,
                page.incident.district_id,
            ),
            Access(
                AuditResource.RESIDENT,
                page.resident.id,
                AuditAction.READ,
                page.resident.district_id,
            ),
        ]
    )
    colleagues = await pages.colleagues(ctx.db, ctx.account)
    return _html(
        "incident.html",
        status,
        **ctx.base(
            p=page, findings=FINDING_LABELS, message=message, colleagues=colleagues, nav="today"
        ),
    )


@router.get("/incidents/{incident_id}")
async def incident(incident_id: str, request: Request) -> Response:
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        return await _incident(request, ctx, incident_id)


@router.post("/incidents/{incident_id}/ack")
async def acknowledge(incident_id: str, request: Request) -> Response:
    form = await _form(request)
    async with _container(request).sessions() as db:
        ctx = await _acting_ctx(request, db, form)
        page = await pages.incident_page(db, ctx.scope, incident_id, ctx.now)
        if page is None:
            return await _incident(request, ctx, incident_id)
        raw = form.get("finding", "")
        try:
            finding = Finding(raw)
        except ValueError:
            return await _incident(request, ctx, incident_id, "확인 결과를 고르세요.")
        account, district = ctx.account, page.incident.district_id
        await db.commit()  # the service runs its own transaction
        try:
            await _escalation(request).acknowledge_official(
                incident_id,
                account.official_id,
                finding,
                form.get("note", ""),
                ctx.now,
                by=account.login,
            )
        except AnbuError as exc:
            return await _incident(request, ctx, incident_id, f"기록하지 못했습니다: {exc}")
        await ctx.audit(
            [
                Access(AuditResource.INCIDENT, incident_id, AuditAction.UPDATE, district),
                Access(AuditResource.FINDING, incident_id, AuditAction.CREATE, district),
            ]
        )
    return RedirectResponse(f"/console/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/handover")
async def hand_over(incident_id: str, request: Request) -> Response:
    form = await _form(request)
    async with _container(request).sessions() as db:
        ctx = await _acting_ctx(request, db, form)
        try:
            incident = await pages.hand_over(
                db,
                ctx.scope,
                ctx.account,
                incident_id,
                form.get("to", ""),
                form.get("note", ""),
                ctx.now,
            )
        except pages.HandOverError as exc:  # raised before anything was added
            return await _incident(request, ctx, incident_id, str(exc), 422)
        await ctx.audit(
            [Access(AuditResource.INCIDENT, incident.id, AuditAction.UPDATE, incident.district_id)],
            "handed over",
        )
    return RedirectResponse(f"/console/incidents/{incident_id}", status_code=303)


# --- 설정 -----------------------------------------------------------------------------------


async def _settings(ctx: Ctx, status: int = 200, error: str = "", notice: str = "") -> Response:
    phone = await settings_page.my_phone(ctx.db, ctx.account)
    district = _admin_district(ctx)
    # The programmes as the admin's district applies them (shared ones it has no version of).
    programs = await settings_page.programs(ctx.db, district.id) if district else None
    officials: list[directory_page.OfficialRow] | None = None
    chains: list[directory_page.ChainRow] | None = None
    if district is not None:
        officials = await directory_page.officials(ctx.db, district.id)
        chains = await directory_page.chains(ctx.db, district.id)
        # The directory names people (masked numbers): every view of it is logged.
        await ctx.audit(
            _reads(AuditResource.OFFICIAL, [(o.id, district.id) for o in officials]),
            commit=False,
        )
    await ctx.db.commit()
    return _html(
        "settings.html",
        status,
        **ctx.base(
            programs=programs,
            phone=phone,
            officials=officials,
            chains=chains,
            role_labels=directory_page.OFFICIAL_ROLE_LABELS,
            error=error,
            notice=notice,
            min_password=accounts.MIN_PASSWORD,
            nav="settings",
        ),
    )


@router.get("/settings")
async def settings(request: Request) -> Response:
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        return await _settings(ctx)


def _admin_district(ctx: Ctx) -> District | None:
    """The district a 구 관리자 manages; None for every other account."""
    account = ctx.account
    if account.role is not ConsoleRole.DISTRICT_ADMIN or account.district is None:
        return None
    return account.district


def _directory(request: Request) -> directory_page.Directory:
    port: directory_page.Directory = request.app.state.console_directory
    return port


async def _admin_form(request: Request, db: AsyncSession) -> tuple[Ctx, District, dict[str, str]]:
    """The logged-in district admin, their district and the posted form (CSRF checked)."""
    form = await _form(request)
    ctx = await _ctx(request, db)
    ctx.check_csrf(form)
    district = _admin_district(ctx)
    if district is None:
        raise ConsoleRefusedError(403, "담당자와 알림 순서는 구 관리자만 바꿀 수 있습니다.")
    return ctx, district, form


def _refused_by_directory(exc: Exception) -> str:
    """The directory's own checks (the API's) after ours passed: still a Korean answer."""
    return f"저장하지 못했습니다: {exc}"


@router.post("/settings/officials")
@router.post("/settings/officials/{official_id}")
async def save_official(request: Request, official_id: str = "") -> Response:
    async with _container(request).sessions() as db:
        ctx, district, form = await _admin_form(request, db)
        port = _directory(request)
        try:
            # Another district's official is "not found" whatever the form says.
            found = (
                await directory_page.official_in(db, district.id, official_id)
                if official_id
                else None
            )
            checked = directory_page.official_form(form)
            if found is not None:
                official = found
                await port.edit_official(official, checked)
                action, notice = AuditAction.UPDATE, f"{official.name}님의 정보를 저장했습니다."
            else:
                official = await port.add_official(db, district, checked, ctx.now)
                action, notice = AuditAction.CREATE, f"{official.name}님을 추가했습니다."
            await db.flush()
        # Raised before any change (the form, then the API's own bodies, are checked first).
        except settings_page.SettingsRefusedError as exc:
            return await _settings(ctx, 422, error=str(exc))
        except (AnbuError, ValueError) as exc:
            return await _settings(ctx, 422, error=_refused_by_directory(exc))
        await ctx.audit([Access(AuditResource.OFFICIAL, official.id, action, district.id)])
        return await _settings(ctx, notice=notice)


def _chain_html(
    ctx: Ctx,
    dong: str,
    rows: list[directory_page.StepRow],
    officials: list[directory_page.OfficialRow],
    status: int = 200,
    error: str = "",
    notice: str = "",
    chain_id: str = "",
) -> Response:
    return _html(
        "chain.html",
        status,
        **ctx.base(
            dong=dong,
            chain_id=chain_id,
            rows=rows,
            officials=[o for o in officials if o.active],
            weekdays=directory_page.WEEKDAYS,
            error=error,
            notice=notice,
            nav="settings",
        ),
    )


@router.get("/settings/chain")
async def chain_page(request: Request, dong: str = "") -> Response:
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        district = _admin_district(ctx)
        if district is None:
            raise ConsoleRefusedError(403, "알림 순서는 구 관리자만 볼 수 있습니다.")
        dong = dong.strip()[:50]
        chain = await directory_page.chain_of(db, district.id, dong)
        officials = await directory_page.officials(db, district.id)
        reads = [(chain.id, district.id)] if chain else []
        await ctx.audit(_reads(AuditResource.ESCALATION_CHAIN, reads))
        return _chain_html(
            ctx,
            dong,
            directory_page.form_rows(chain),
            officials,
            chain_id=chain.id if chain else "",
        )


_RACED_PROGRAM = "다른 관리자가 같은 전화 규칙을 동시에 바꿨습니다. 다시 불러와서 저장하세요."
_RACED = "다른 관리자가 같은 알림 순서를 동시에 바꿨습니다. 다시 불러와서 저장하세요."


@router.post("/settings/chain")
async def save_chain(request: Request) -> Response:
    async with _container(request).sessions() as db:
        ctx, district, form = await _admin_form(request, db)
        dong = form.get("dong", "").strip()[:50]
        officials = await directory_page.officials(db, district.id)
        try:
            dong = directory_page.chain_dong(form)
            steps = await directory_page.step_forms(db, district.id, form)
            chain = await _directory(request).put_chain(db, district, dong, steps, ctx.now)
            await db.flush()
        except settings_page.SettingsRefusedError as exc:
            error = str(exc)
        except (AnbuError, ValueError) as exc:
            error = _refused_by_directory(exc)
        except IntegrityError as exc:
            # Two admins saving the same dong's first chain at once (the API answers 409).
            await db.rollback()
            raise ConsoleRefusedError(409, _RACED) from exc
        else:
            try:
                await ctx.audit(
                    [
                        Access(
                            AuditResource.ESCALATION_CHAIN,
                            chain.id,
                            AuditAction.UPDATE,
                            district.id,
                        )
                    ]
                )
            except IntegrityError as exc:
                await db.rollback()
                raise ConsoleRefusedError(409, _RACED) from exc
            saved = await directory_page.chain_of(db, district.id, dong)
            where = dong or "구 기본"
            return _chain_html(
                ctx,
                dong,
                directory_page.form_rows(saved),
                officials,
                notice=f"{where} 알림 순서를 저장했습니다.",
                chain_id=saved.id if saved else "",
            )
        await db.commit()  # nothing was changed (the checks come first): the session touch only
        # The form comes back as it was posted, so nothing typed is lost.
        posted = _posted_rows(form)
        return _chain_html(ctx, dong, posted, officials, 422, error=error)


@router.post("/settings/chain/delete")
async def delete_chain(request: Request) -> Response:
    """Delete one of the district's chains: the form's confirmation box must be ticked (no
    script needed), and a chain residents or open incidents are still alerted along is kept
    with the reason. Both the deletion and a refusal are written to the access log."""
    async with _container(request).sessions() as db:
        ctx, district, form = await _admin_form(request, db)
        officials = await directory_page.officials(db, district.id)
        try:
            chain = await directory_page.chain_in(db, district.id, form.get("chain", ""))
        except settings_page.SettingsRefusedError as exc:
            await db.commit()
            return await _settings(ctx, 404, error=str(exc))
        dong, chain_id = chain.dong, chain.id
        where = dong or "구 기본"
        rows = directory_page.form_rows(await directory_page.chain_of(db, district.id, dong))
        access = [Access(AuditResource.ESCALATION_CHAIN, chain_id, AuditAction.DELETE, district.id)]
        if form.get("confirm", "") != "1":
            await db.commit()
            error = f"{where} 알림 순서를 지우려면 확인란을 고르세요."
            return _chain_html(ctx, dong, rows, officials, 422, error=error, chain_id=chain_id)
        try:
            await _directory(request).delete_chain(db, chain)
        except ChainInUseError as exc:  # raised before anything was deleted
            await ctx.audit(access, "refused: in use")
            error = directory_page.in_use_reason(where, exc.residents, exc.open_incidents)
            return _chain_html(ctx, dong, rows, officials, 409, error=error, chain_id=chain_id)
        await ctx.audit(access, "deleted")
        return await _settings(ctx, notice=f"{where} 알림 순서를 지웠습니다.")


def _posted_rows(form: dict[str, str]) -> list[directory_page.StepRow]:
    rows = []
    for n in range(1, directory_page.MAX_STEPS + 1):
        if f"start-{n}" not in form and f"official-{n}" not in form:
            continue
        rows.append(
            directory_page.StepRow(
                official_id=form.get(f"official-{n}", ""),
                timeout_min=form.get(f"timeout-{n}", ""),
                days=[d for d in range(7) if form.get(f"day-{n}-{d}") == "1"],
                start=form.get(f"start-{n}", ""),
                end=form.get(f"end-{n}", ""),
                on_holidays=form.get(f"holidays-{n}", "") == "1",
            )
        )
    return rows


@router.post("/settings/{what}")
@router.post("/settings/programs/{program_id}")
async def change_settings(request: Request, what: str = "", program_id: str = "") -> Response:
    form = await _form(request)
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        ctx.check_csrf(form)
        account = ctx.account
        try:
            if program_id:
                district = _admin_district(ctx)
                if district is None:
                    raise ConsoleRefusedError(403, "전화 규칙은 구 관리자만 바꿀 수 있습니다.")
                try:
                    program = await settings_page.update_program(db, district, program_id, form)
                except IntegrityError as exc:
                    # Two admins making the district's version of one programme at once.
                    await db.rollback()
                    raise ConsoleRefusedError(409, _RACED_PROGRAM) from exc
                await ctx.audit(
                    [
                        Access(
                            AuditResource.PROGRAM, str(program.id), AuditAction.UPDATE, district.id
                        )
                    ],
                    "calling hours and retries",
                    commit=False,
                )
                notice = f"{program.name}의 전화 규칙을 저장했습니다 (우리 구에만 적용)."
            elif what == "password":
                await settings_page.change_password(db, account, form)
                # Every other session of this account ends (a stolen one among them).
                await db.execute(
                    delete(ConsoleSession).where(
                        ConsoleSession.account_id == account.id, ConsoleSession.id != ctx.row.id
                    )
                )
                notice = "비밀번호를 바꿨습니다."
            elif what == "phone":
                await settings_page.change_phone(db, account, form.get("phone", ""))
                notice = "알림 번호를 바꿨습니다."
            else:
                return _html(
                    "message.html", 404, title="설정", text="없는 설정입니다.", **ctx.base()
                )
        except settings_page.SettingsRefusedError as exc:  # raised before any change
            return await _settings(ctx, 422, error=str(exc))
        return await _settings(ctx, notice=notice)


# --- 보고서 (the effectiveness report, anbu.report) ---------------------------------------


def _may_report(account: ConsoleAccount) -> bool:
    """The foundation's analysts (every district) and a district's admins (theirs)."""
    return account.role in (ConsoleRole.ANALYST, ConsoleRole.DISTRICT_ADMIN)


async def _report_args(
    db: AsyncSession, account: ConsoleAccount, params: dict[str, str], today: dt.date
) -> tuple[list[tuple[str, str]], dict[str, str], Period | None, str]:
    """The districts this account may report on, the form's values, and the period (None with
    a Korean reason when the form is wrong)."""
    query = select(District.code, District.name).order_by(District.code)
    if account.district_id is not None:
        query = query.where(District.id == account.district_id)
    districts = [(str(c), str(n)) for c, n in await db.execute(query)]
    values = {
        "district": params.get("district", "") or (districts[0][0] if districts else ""),
        "dong": params.get("dong", "").strip()[:50],
        "from": params.get("from", "") or today.replace(day=1).isoformat(),
        "to": params.get("to", "") or today.isoformat(),
    }
    if values["district"] not in {c for c, _ in districts}:
        return districts, values, None, "볼 수 없는 구입니다."
    try:
        first = dt.date.fromisoformat(values["from"])
        last = dt.date.fromisoformat(values["to"])
    except ValueError:
        return districts, values, None, "날짜는 YYYY-MM-DD 형식으로 쓰세요."
    if last < first:
        return districts, values, None, "종료일이 시작일보다 앞섭니다."
    if (last - first).days > 3 * 366:
        return districts, values, None, "보고서는 3년까지 볼 수 있습니다."
    return districts, values, Period(first, last), ""


async def _report(request: Request, export: str = "") -> Response:
    container = _container(request)
    async with container.sessions() as db:
        ctx = await _ctx(request, db)
        await db.commit()
        if not _may_report(ctx.account):
            return _html(
                "message.html",
                403,
                title="보고서",
                text="보고서는 구 관리자와 재단 분석가만 볼 수 있습니다.",
                **ctx.base(),
            )
        params = dict(request.query_params)
        today = ctx.now.astimezone(SEOUL).date()
        districts, values, period, error = await _report_args(db, ctx.account, params, today)
        base = ctx.base(
            districts=districts,
            district=values["district"],
            dong=values["dong"],
            first=values["from"],
            last=values["to"],
            nav="report",
        )
    fig = None
    if period is not None:
        try:
            fig = await build_report(
                container.sessions, values["district"], period, values["dong"] or None
            )
        except ReportArgumentError:
            error = f"{values['dong']}에 등록된 대상자가 없습니다."
    if fig is None:
        if export:
            return _html("report.html", 422, error=error, body="", **base)
        return _html("report.html", 200 if not params else 422, error=error, body="", **base)
    name = f"anbu-report-{values['district']}-{values['from']}-{values['to']}"
    if export == "csv":
        return Response(
            await render(fig, "csv"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if export == "xlsx":
        return Response(
            await render(fig, "xlsx"),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    query = urlencode({k: values[k] for k in ("district", "dong", "from", "to")})
    return _html("report.html", error="", body=html_body(fig), query=query, **base)


@router.get("/report")
async def report(request: Request) -> Response:
    return await _report(request)


@router.get("/report/export")
async def report_export(request: Request, format: str = "csv") -> Response:
    if format not in ("csv", "xlsx"):
        format = "csv"
    return await _report(request, format)


# --- 대상자 ---------------------------------------------------------------------------------


@router.get("/residents")
async def residents(
    request: Request,
    q: str = "",
    level: str = "",
    page: str = "1",
    dong: str = "",
    case: str = "",
    device: str = "",
    contact: str = "",
) -> Response:
    # A page number that is not one shows the first page (FastAPI's int would answer 422
    # in English JSON).
    number = int(page) if page.isdecimal() and len(page) < 6 else 1
    q, page_no = q.strip()[:50], max(1, min(number, 10_000))
    # The filters, passed on as they are to the list, the template and the page links.
    filters = {"dong": dong.strip()[:50], "case": case, "device": device, "contact": contact}
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        found = await pages.residents(db, ctx.scope, q, level, page_no, **filters, now=ctx.now)
        await ctx.audit(_reads(AuditResource.RESIDENT, [(r.id, r.district_id) for r in found.rows]))
        levels = [(lv.value, lv.label) for lv in Level]
        # Every filter again in the previous/next page links.
        query = urlencode({"q": q, "level": level, **filters})
        return _html(
            "residents.html",
            **ctx.base(
                found=found,
                q=q,
                level=level,
                levels=levels,
                **filters,
                query=query,
                nav="residents",
            ),
        )


# --- 일괄 등록 (bulk enrolment) --------------------------------------------------------------


def _enrol_refused(ctx: Ctx, title: str) -> Response | None:
    """The 403 page when the account may not enrol (read-only, or in no district), else None."""
    account = ctx.account
    if may_act(account.role) and account.district_id is not None:
        return None
    return _html("message.html", 403, title=title, text="등록 권한이 없습니다.", **ctx.base())


async def _enrol_form(request: Request, title: str, show: Callable[[Ctx], Response]) -> Response:
    """An enrolment form (GET): the session's touch committed, then the form, or the 403 page
    for an account that may not enrol."""
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        await db.commit()
        refused = _enrol_refused(ctx, title)
        return refused if refused is not None else show(ctx)


@router.get("/residents/import")
async def import_page(request: Request) -> Response:
    return await _enrol_form(
        request,
        "일괄 등록",
        lambda ctx: _html("import.html", **ctx.base(result=None, error="", nav="residents")),
    )


async def with_upload(
    request: Request, handle: Callable[[Request, FormData | None], Awaitable[Response]]
) -> Response:
    """A one-file form (multipart): ``handle`` gets it parsed, or None when the body is broken
    (its page says so); the upload's spooled temporary file is closed whatever happens."""
    try:
        parsed = await request.form(max_files=1, max_fields=10)
    except (StarletteHTTPException, MultiPartException):
        parsed = None
    try:
        return await handle(request, parsed)
    finally:
        if parsed is not None:
            await parsed.close()


@router.post("/residents/import")
async def import_sheet(request: Request) -> Response:
    return await with_upload(request, _import)


async def _import(request: Request, parsed: FormData | None) -> Response:
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        if parsed is None:
            await db.commit()
            return _html(
                "import.html",
                400,
                **ctx.base(result=None, error="올린 양식을 읽을 수 없습니다.", nav="residents"),
            )
        form = {k: v for k, v in parsed.items() if isinstance(v, str)}
        ctx.check_csrf(form)
        if (refused := _enrol_refused(ctx, "일괄 등록")) is not None:
            await db.commit()
            return refused
        upload = parsed.get("file")
        dry_run = form.get("mode", "dry") != "apply"
        error, filename = "", ""
        if upload is None or isinstance(upload, str) or not upload.filename:
            error = "파일을 고르세요."
        else:
            filename = upload.filename
            data = await upload.read(enrolment.MAX_FILE_BYTES + 1)
            try:
                sheet = await asyncio.to_thread(
                    enrolment.read_sheet, filename, data, dong_scope=ctx.account.dong
                )
            except SheetError as exc:
                error = str(exc)
        if error:
            await db.commit()
            return _html("import.html", 422, **ctx.base(result=None, error=error, nav="residents"))
        district_id = ctx.account.district_id
        assert district_id is not None  # _enrol_refused
        result = await enrolment.enrol(db, district_id, sheet, dry_run=dry_run)
        if dry_run:
            await db.commit()
        else:
            await ctx.audit(
                [
                    Access(AuditResource.RESIDENT, rid, AuditAction.CREATE, district_id)
                    for rid in result.ids
                ],
                "bulk enrolment",
            )
        return _html(
            "import.html",
            **ctx.base(result=result, error="", filename=filename, nav="residents"),
        )


# --- 한 명 등록 (enrol one) ---------------------------------------------------------------


def _enrol_page(ctx: Ctx, status: int = 200, error: str = "", **values: str) -> Response:
    return _html("enrol.html", status, **ctx.base(error=error, v=values, nav="residents"))


@router.get("/residents/new")
async def enrol_one_page(request: Request) -> Response:
    return await _enrol_form(
        request, "대상자 등록", lambda ctx: _enrol_page(ctx, dong=ctx.account.dong)
    )


@router.post("/residents/new")
async def enrol_one(request: Request) -> Response:
    form = await _form(request)
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        ctx.check_csrf(form)
        if (refused := _enrol_refused(ctx, "대상자 등록")) is not None:
            await db.commit()
            return refused
        district_id = ctx.account.district_id
        assert district_id is not None  # _enrol_refused
        values = {k: form.get(k, "")[:200] for k in enrolment.ONE_COLUMNS}
        # The bulk enrolment's own row checks; a one-person form never updates silently.
        sheet = enrolment.one_row(form, dong_scope=ctx.account.dong)
        error = "; ".join(p.reason for p in sheet.problems)
        if not error:
            ref = sheet.rows[0].external_ref
            if await enrolment.existing_ref(db, district_id, ref) is not None:
                error = f"관리번호 {ref}는 이미 등록된 대상자입니다"
        if error:
            await db.commit()
            return _enrol_page(ctx, 422, error=error + ".", **values)
        result = await enrolment.enrol(db, district_id, sheet, dry_run=False)
        [resident_id] = result.ids
        await ctx.audit(
            [Access(AuditResource.RESIDENT, resident_id, AuditAction.CREATE, district_id)],
            "enrolled one",
        )
        return RedirectResponse(f"/console/residents/{resident_id}?enrolled=1", status_code=303)


async def _resident(
    request: Request, resident_id: str, *, reveal: bool, notice: str = ""
) -> Response:
    form = await _form(request) if reveal else {}
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        if reveal:
            ctx.check_csrf(form)
            if not may_act(ctx.account.role):
                raise ConsoleRefusedError(403, "읽기 전용 계정입니다.")
        return await _resident_view(ctx, resident_id, reveal=reveal, notice=notice)


async def _resident_view(
    ctx: Ctx,
    resident_id: str,
    *,
    reveal: bool = False,
    notice: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    """The resident's page in ``ctx``'s session (its read logged), with a notice or an error."""
    db = ctx.db
    page = await pages.resident_page(db, ctx.scope, resident_id, reveal=reveal, now=ctx.now)
    if page is None:
        return await _not_found(ctx, AuditResource.RESIDENT, resident_id, AuditAction.READ)
    r = page.resident
    await ctx.audit(
        [Access(AuditResource.RESIDENT, r.id, AuditAction.READ, r.district_id)],
        "phone revealed" if reveal else "",
    )
    return _html(
        "resident.html",
        status,
        **ctx.base(
            p=page,
            revealed=reveal,
            notice=notice,
            error=error,
            hold_words=pages.HOLD_WORDS,
            device_words=pages.DEVICE_KIND_WORDS,
            today=ctx.now.astimezone(SEOUL).date().isoformat(),
            nav="residents",
        ),
    )


@router.get("/residents/{resident_id}")
async def resident(
    resident_id: str, request: Request, enrolled: str = "", done: str = ""
) -> Response:
    notice = "대상자를 등록했습니다." if enrolled == "1" else resident_edits.NOTICES.get(done, "")
    return await _resident(request, resident_id, reveal=False, notice=notice)


# A change to a resident's holds or devices: (session, resident, form, ctx) -> what was done.
_Edit = Callable[[AsyncSession, Resident, dict[str, str], Ctx], Awaitable[resident_edits.Changed]]


async def _edit_resident(request: Request, resident_id: str, edit: _Edit) -> Response:
    """One form of the resident page that changes something: logged in, CSRF, may act, the
    resident in the official's scope (else "not found", the refusal logged); a Korean 422 with
    the page when the form is wrong; the change in the access log; then back to the page."""
    form = await _form(request)
    async with _container(request).sessions() as db:
        ctx = await _acting_ctx(request, db, form)
        resident = await db.get(Resident, resident_id[:32])
        if resident is None or not ctx.scope.allows(resident):
            return await _not_found(ctx, AuditResource.RESIDENT, resident_id, AuditAction.UPDATE)
        try:
            changed = await edit(db, resident, form, ctx)
        except resident_edits.ResidentEditRefusedError as exc:
            # A refused device may have reached the database (a race on its id): start over.
            await db.rollback()
            ctx = await _ctx(request, db)
            return await _resident_view(ctx, resident_id, error=str(exc), status=422)
        await ctx.audit(
            [Access(AuditResource.RESIDENT, resident.id, AuditAction.UPDATE, resident.district_id)],
            changed.outcome,
        )
    return RedirectResponse(
        f"/console/residents/{resident_id}?done={changed.done}", status_code=303
    )


@router.post("/residents/{resident_id}/holds")
async def add_hold(resident_id: str, request: Request) -> Response:
    return await _edit_resident(
        request,
        resident_id,
        lambda db, resident, form, ctx: resident_edits.add_hold(db, resident, form, ctx.now),
    )


@router.post("/residents/{resident_id}/holds/{kind}/{hold_id}/end")
async def end_hold(resident_id: str, kind: str, hold_id: str, request: Request) -> Response:
    return await _edit_resident(
        request,
        resident_id,
        lambda db, resident, _, ctx: resident_edits.end_hold(db, resident, kind, hold_id, ctx.now),
    )


@router.post("/residents/{resident_id}/devices")
async def add_device(resident_id: str, request: Request) -> Response:
    rules = _container(request).settings.risk.rules

    return await _edit_resident(
        request,
        resident_id,
        lambda db, resident, form, ctx: resident_edits.add_device(
            db, resident, form, ctx.now, rules
        ),
    )


@router.post("/residents/{resident_id}/devices/{device_id}/retire")
async def retire_device(resident_id: str, device_id: str, request: Request) -> Response:
    return await _edit_resident(
        request,
        resident_id,
        lambda db, resident, _, ctx: resident_edits.retire_device(db, resident, device_id, ctx.now),
    )


@router.post("/residents/{resident_id}/reveal")
async def reveal(resident_id: str, request: Request) -> Response:
    return await _resident(request, resident_id, reveal=True)


@router.post("/residents/{resident_id}/feedback/{step_id}/revert")
async def revert_widening(resident_id: str, step_id: str, request: Request) -> Response:
    """Undo how a finding widened this person's thresholds (outcome feedback is reversible)."""
    form = await _form(request)
    async with _container(request).sessions() as db:
        ctx = await _acting_ctx(request, db, form)
        try:
            resident = await pages.revert_widening(
                db, ctx.scope, resident_id, step_id, ctx.now, ctx.account.login
            )
        except pages.FeedbackRevertError as exc:  # raised before anything changed
            page = _html("message.html", 404, title="대상자", text=str(exc), **ctx.base())
            await db.commit()
            return page
        await ctx.audit(
            [Access(AuditResource.RESIDENT, resident.id, AuditAction.UPDATE, resident.district_id)],
            "feedback widening reverted",
        )
    return RedirectResponse(f"/console/residents/{resident_id}", status_code=303)
