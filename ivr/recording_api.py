"""Recorded prompts over HTTP: upload a recording for a catalogue prompt (an official's own,
the district's, or the default for every district), and read which source each prompt
plays."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from anbu.api.deps import Principal, PrincipalDep, SessionDep, district_by_code, in_scope
from anbu.db.models_escalation import Official
from anbu.domain.replies import Prompt
from anbu.errors import NotFoundError, ValidationError
from ivr.recording import RecordingRefusedError, RecordingStore, scope_of

router = APIRouter(prefix="/v1", tags=["prompts"])

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a 30 s WAV at 48 kHz stereo is ~5.8 MB


async def get_store(request: Request) -> RecordingStore:
    """Bound by the composition root (``anbu.app.build_api``) on ``app.state``: a
    ``dependency_overrides`` entry made FastAPI rebuild every route's dependency graph
    (signature inspection, annotations evaluated) on every request of the whole API, ~2 ms of
    CPU each (bench/api.py)."""
    store = getattr(request.app.state, "recording_store", None)
    if not isinstance(store, RecordingStore):
        raise RuntimeError("the recording routes need anbu.app.build_api to bind their store")
    return store


StoreDep = Annotated[RecordingStore, Depends(get_store)]


class RecordingOut(BaseModel):
    prompt: str
    scope: str
    duration_s: float
    loudness_lufs: float
    source_loudness_lufs: float
    peak_dbfs: float


class SourcesOut(BaseModel):
    district_code: str | None
    official: str | None = None
    sources: dict[str, str]


def _prompt(name: str) -> Prompt:
    try:
        return Prompt(name)
    except ValueError:
        raise NotFoundError("prompt", name) from None


async def _official(session: SessionDep, principal: Principal, official_id: str) -> Official:
    """The official, if the key may see their district (404 otherwise: another district's
    officials are not revealed)."""
    return await in_scope(session, principal, Official, official_id, "official")


async def _scope(
    session: SessionDep,
    principal: Principal,
    district_code: str | None,
    official_id: str | None,
) -> tuple[str | None, str | None]:
    """(district code, official id) of a request: an official's scope brings their district
    (the fallback of what they have not recorded)."""
    if official_id is not None:
        if district_code is not None:
            raise ValidationError("give district_code or official, not both")
        official = await _official(session, principal, official_id)
        return official.district.code, official.id
    if district_code is not None:
        await district_by_code(session, principal, district_code)
    return district_code, None


@router.put("/prompts/{prompt}/recording", response_model=RecordingOut)
async def put_recording(
    prompt: str,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    district_code: Annotated[str | None, Query(max_length=10)] = None,
    official: Annotated[str | None, Query(max_length=32)] = None,
) -> RecordingOut | JSONResponse:
    """The request body is the audio file (WAV, FLAC, ...). Normalised to the prompts' loudness;
    refused with a reason (422: not_audio, clipped, silent, too_long). With ``official`` it is
    that official's own (the residents they visit hear it): their district's keys only."""
    which = _prompt(prompt)
    if district_code is None and official is None:
        principal.require_admin()  # the default voice of every district
    else:
        district_code, official = await _scope(session, principal, district_code, official)
    body = await request.body()
    if len(body) > MAX_UPLOAD_BYTES:
        raise ValidationError(f"a recording is at most {MAX_UPLOAD_BYTES // 1024 // 1024} MB")

    def run() -> RecordingOut:
        # An official's own recording is stored under the official, whatever the district.
        district = None if official is not None else district_code
        result = store.upload_bytes(which, body, district, official)
        return RecordingOut(
            prompt=which.value,
            scope=scope_of(None if official else district_code, official),
            duration_s=result.duration_s,
            loudness_lufs=result.loudness_lufs,
            source_loudness_lufs=result.source_loudness_lufs,
            peak_dbfs=result.peak_dbfs,
        )

    try:
        return await asyncio.to_thread(run)
    except RecordingRefusedError as exc:
        return JSONResponse(
            status_code=422,
            content={"error": "recording_refused", "reason": exc.reason, "detail": exc.detail},
        )


@router.get("/prompts", response_model=SourcesOut)
async def get_sources(
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    district_code: Annotated[str | None, Query(max_length=10)] = None,
    official: Annotated[str | None, Query(max_length=32)] = None,
) -> SourcesOut:
    """Per prompt, what a call plays: ``recording:<scope>`` or ``tts``; with ``official``,
    for the residents that official visits (their own, else their district's, else the
    default)."""
    district_code, official = await _scope(session, principal, district_code, official)
    sources = await asyncio.to_thread(store.sources, district_code, official)
    return SourcesOut(district_code=district_code, official=official, sources=sources)
