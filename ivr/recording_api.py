"""Recorded prompts over HTTP: upload a recording for a catalogue prompt (the district's, or
the default for every district), and read which source each prompt plays."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from anbu.api.deps import PrincipalDep, SessionDep, district_by_code
from anbu.domain.replies import Prompt
from anbu.errors import NotFoundError, ValidationError
from ivr.recording import RecordingRefusedError, RecordingStore

router = APIRouter(prefix="/v1", tags=["prompts"])

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a 30 s WAV at 48 kHz stereo is ~5.8 MB


def get_store() -> RecordingStore:
    raise RuntimeError("the recording store is wired by anbu.app.parts.build_api")


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
    sources: dict[str, str]


def _prompt(name: str) -> Prompt:
    try:
        return Prompt(name)
    except ValueError:
        raise NotFoundError("prompt", name) from None


@router.put("/prompts/{prompt}/recording", response_model=RecordingOut)
async def put_recording(
    prompt: str,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    store: StoreDep,
    district_code: Annotated[str | None, Query(max_length=10)] = None,
) -> RecordingOut | JSONResponse:
    """The request body is the audio file (WAV, FLAC, ...). Normalised to the prompts' loudness;
    refused with a reason (422: not_audio, clipped, silent, too_long)."""
    which = _prompt(prompt)
    if district_code is None:
        principal.require_admin()  # the default voice of every district
    else:
        await district_by_code(session, principal, district_code)
    body = await request.body()
    if len(body) > MAX_UPLOAD_BYTES:
        raise ValidationError(f"a recording is at most {MAX_UPLOAD_BYTES // 1024 // 1024} MB")

    def run() -> RecordingOut:
        with tempfile.TemporaryDirectory(prefix="anbu-upload-") as tmp:
            src = Path(tmp) / "upload"
            src.write_bytes(body)
            result = store.upload(which, src, district_code)
        return RecordingOut(
            prompt=which.value,
            scope=f"district-{district_code}" if district_code else "default",
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
) -> SourcesOut:
    """Per prompt, what a call plays: ``recording:<scope>`` or ``tts``."""
    if district_code is not None:
        await district_by_code(session, principal, district_code)
    sources = await asyncio.to_thread(store.sources, district_code)
    return SourcesOut(district_code=district_code, sources=sources)
