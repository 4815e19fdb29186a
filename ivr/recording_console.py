"""The console's 녹음 page: an official uploads their own greeting, a 구 관리자 a district
recording for any catalogue prompt, and both see which source each prompt plays for their
residents. It lives here, not in ``anbu.console``, because it needs :class:`RecordingStore`
(``anbu/`` never imports ``ivr/``); it reuses the console's session, CSRF and templates, and
the composition root (``anbu.app.parts.build_api``) mounts it next to the console's router.

A plain multipart form (works without JavaScript), the bulk enrolment page's pattern; the
size limit is the API's; a refused file is a Korean sentence with the store's reason
(not_audio, clipped, silent, too_long) and nothing is stored."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile

from anbu.console.routes import Ctx, _container, _ctx, _html, with_upload
from anbu.db.models_console import ConsoleAccount
from anbu.domain.audit import AuditAction, AuditResource
from anbu.domain.console import ConsoleRole, may_act
from anbu.domain.replies import Prompt
from anbu.services.audit import Access
from ivr.recording import Ingested, RecordingRefusedError, RecordingStore, Refusal, scope_of
from ivr.recording_api import MAX_UPLOAD_BYTES, get_store

router = APIRouter(prefix="/console", include_in_schema=False)

TITLE = "녹음"
OWN = "own"  # the form's target: the account's own greeting
DISTRICT = "district"  # the form's target: the district's recording of a prompt

PROMPT_LABELS: dict[Prompt, str] = {
    Prompt.GREETING: "첫인사",
    Prompt.QUESTION: "안부 질문",
    Prompt.REPEAT: "다시 묻기",
    Prompt.THANKS: "감사 인사",
    Prompt.HELP_ACK: "도움 요청 확인",
    Prompt.CALLBACK: "다시 전화 안내",
    Prompt.GOODBYE: "끝인사",
    Prompt.GENERIC: "일반 안내",
}

REFUSALS: dict[Refusal, str] = {
    Refusal.NOT_AUDIO: "소리 파일로 읽을 수 없습니다. WAV, FLAC 같은 녹음 파일을 올리세요.",
    Refusal.CLIPPED: (
        "소리가 너무 커서 찌그러졌습니다(클리핑). 마이크에서 조금 떨어져 다시 녹음하세요."
    ),
    Refusal.SILENT: "목소리가 들리지 않습니다(무음). 다시 녹음하세요.",
    Refusal.TOO_LONG: "녹음이 너무 깁니다. 더 짧게 다시 녹음하세요.",
}

NOT_LINKED = "이 계정은 알림 명단의 담당자와 연결되어 있지 않아 내 첫인사를 올릴 수 없습니다."


@dataclass(frozen=True, slots=True)
class SourceRow:
    prompt: str
    label: str
    source: str  # in Korean: whose recording, or the TTS voice
    recorded: bool


def _source_label(source: str, own_scope: str | None) -> str:
    if source == "tts":
        return "합성 음성(TTS)"
    scope = source.removeprefix("recording:")
    if scope == own_scope:
        return "내 녹음"
    if scope.startswith("district-"):
        return "구 녹음"
    return "기본 녹음"


def _district_code(account: ConsoleAccount) -> str | None:
    return account.district.code if account.district is not None else None


async def _rows(store: RecordingStore, account: ConsoleAccount) -> list[SourceRow]:
    official = account.official_id
    sources = await asyncio.to_thread(store.sources, _district_code(account), official)
    own = scope_of(None, official) if official else None
    return [
        SourceRow(p.value, PROMPT_LABELS[p], _source_label(sources[p.value], own), s != "tts")
        for p in Prompt
        for s in [sources[p.value]]
    ]


def _may_record(account: ConsoleAccount) -> bool:
    """Any role that may act, in a district (analysts read figures and change nothing)."""
    return may_act(account.role) and account.district_id is not None


async def _page(
    ctx: Ctx,
    store: RecordingStore,
    limit: int,
    status: int = 200,
    *,
    error: str = "",
    done: Ingested | None = None,
    done_what: str = "",
) -> Response:
    account = ctx.account
    return _html(
        "recordings.html",
        status,
        **ctx.base(
            nav="recordings",
            rows=await _rows(store, account),
            prompts=[(p.value, PROMPT_LABELS[p]) for p in Prompt],
            own=account.official_id is not None,
            district_admin=account.role is ConsoleRole.DISTRICT_ADMIN,
            max_mb=limit // 1024 // 1024,
            error=error,
            done=done,
            done_what=done_what,
        ),
    )


def max_bytes(request: Request) -> int:
    """The API's limit: its own, or the input gate's body limit when lower (the gate answers
    a larger body before any route reads it)."""
    return min(MAX_UPLOAD_BYTES, _container(request).settings.limits.max_body_bytes)


def _refused(ctx: Ctx) -> Response:
    return _html(
        "message.html", 403, title=TITLE, text="녹음을 올릴 권한이 없습니다.", **ctx.base()
    )


@router.get("/recordings")
async def recordings_page(request: Request) -> Response:
    store, limit = await get_store(request), max_bytes(request)
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        await db.commit()  # the session's last_seen_at; the page shows no person
        if not _may_record(ctx.account):
            return _refused(ctx)
        return await _page(ctx, store, limit)


@router.post("/recordings")
async def upload_recording(request: Request) -> Response:
    return await with_upload(request, _upload)


async def _upload(request: Request, parsed: FormData | None) -> Response:
    store, limit = await get_store(request), max_bytes(request)
    async with _container(request).sessions() as db:
        ctx = await _ctx(request, db)
        if parsed is None:
            await db.commit()
            return await _page(ctx, store, limit, 400, error="올린 양식을 읽을 수 없습니다.")
        form = {k: v for k, v in parsed.items() if isinstance(v, str)}
        ctx.check_csrf(form)
        account = ctx.account
        if not _may_record(account):
            await db.commit()
            return _refused(ctx)
        district_id, code = account.district_id, _district_code(account)
        assert district_id is not None  # _may_record
        assert code is not None
        # The scope comes from the account, never from the form: an official records only
        # their own greeting, an admin only their own district's prompts.
        official: str | None = None
        if form.get("target") == DISTRICT:
            if account.role is not ConsoleRole.DISTRICT_ADMIN:
                await db.commit()
                return _refused(ctx)
            try:
                prompt = Prompt(form.get("prompt", ""))
            except ValueError:
                await db.commit()
                return await _page(ctx, store, limit, 422, error="없는 안내 문구입니다.")
            access = Access(AuditResource.RECORDING, prompt.value, AuditAction.UPDATE, district_id)
            what = f"우리 구의 {PROMPT_LABELS[prompt]}"
        else:
            official = account.official_id
            if official is None:
                await db.commit()
                return await _page(ctx, store, limit, 422, error=NOT_LINKED)
            prompt = Prompt.GREETING
            access = Access(AuditResource.OFFICIAL, official, AuditAction.UPDATE, district_id)
            what = "내 첫인사"

        upload = parsed.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            await db.commit()
            return await _page(ctx, store, limit, 422, error="녹음 파일을 고르세요.")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            await db.commit()
            error = f"녹음 파일은 {limit // 1024 // 1024}MB까지 올릴 수 있습니다."
            return await _page(ctx, store, limit, 422, error=error)

        # An official's own greeting is stored under the official, whatever the district.
        district = None if official is not None else code
        try:
            result = await asyncio.to_thread(store.upload_bytes, prompt, data, district, official)
        except RecordingRefusedError as exc:
            await db.commit()
            error = f"{REFUSALS[exc.reason]} (이유: {exc.reason.value})"
            return await _page(ctx, store, limit, 422, error=error)
        await ctx.audit([access], f"recording {prompt.value}")
        return await _page(ctx, store, limit, done=result, done_what=what)
