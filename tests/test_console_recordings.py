"""The console's 녹음 page over the real app (SQLite and PostgreSQL; the store is files): an
official uploads their own greeting through the plain multipart form and the page shows it
plays for their residents; a clipped or non-audio file is a Korean refusal with its reason
and stores nothing; a 구 관리자 records any prompt for their own district only, never
another's; a 재단 분석가 is refused; every stored upload is in the access log."""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from anbu.db.models import District
from anbu.db.models_audit import AuditEntry
from anbu.domain.audit import ActorKind, AuditAction, AuditResource
from anbu.domain.console import ConsoleRole
from anbu.domain.replies import Prompt
from anbu.settings import Settings
from ivr.recording import RecordingStore
from tests.api_support import Api, api_over
from tests.console_support import csrf_of, new_official, sign_in

WAV = "audio/wav"


@pytest.fixture(scope="module")
def clipped(voice: Path) -> Path:
    out = voice.with_name("clipped.wav")
    subprocess.run(["sox", "-q", str(voice), str(out), "gain", "18"], check=True)  # sox clips
    return out


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with api_over(db_url, Settings(database_url=db_url, var_dir=tmp_path)) as made:
        yield made


def store_of(api: Api) -> RecordingStore:
    return RecordingStore(api.container.settings.var_dir / "recordings")


async def upload(
    api: Api, data: bytes, *, target: str = "own", prompt: str = "", name: str = "인사.wav"
) -> tuple[int, str]:
    page = await api.client.get("/console/recordings")
    assert page.status_code == 200, page.text
    form = {"csrf": csrf_of(page.text), "target": target}
    if prompt:
        form["prompt"] = prompt
    r = await api.client.post("/console/recordings", data=form, files={"file": (name, data, WAV)})
    return r.status_code, html.unescape(r.text)


def sources_of(text: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-prompt="(\w+)"><td>[^<]*</td><td>([^<]*)</td></tr>', text))


async def audit_rows(api: Api) -> list[AuditEntry]:
    async with api.container.sessions() as s:
        rows = await s.execute(
            select(AuditEntry).where(
                AuditEntry.action == AuditAction.UPDATE,
                AuditEntry.actor_kind == ActorKind.OFFICIAL,
            )
        )
        return list(rows.scalars())


async def test_given_official_when_own_greeting_uploaded_then_stored_and_sources_show_it(
    api: Api, voice: Path
) -> None:
    official = await new_official(api.container.sessions)
    assert (await sign_in(api, "kim", official_id=official)).status_code == 303
    page = await api.client.get("/console")
    assert 'href="/console/recordings"' in page.text  # the nav link
    before = await api.client.get("/console/recordings")
    assert sources_of(before.text)["greeting"] == "합성 음성(TTS)"

    status, text = await upload(api, voice.read_bytes())  # noqa: ASYNC240 (a fixture's file)

    assert status == 200, text
    assert "내 첫인사 녹음을 저장했습니다" in text
    measured = re.search(r"길이 ([\d.]+)초 · 음량 (-[\d.]+) LUFS", text)
    assert measured is not None, text
    assert float(measured.group(1)) > 1.0
    assert abs(float(measured.group(2)) - -20.0) <= 1.0
    shown = sources_of(text)
    assert shown["greeting"] == "내 녹음"
    assert shown["question"] == "합성 음성(TTS)"
    store = store_of(api)
    assert store.sources("11620", official)["greeting"] == f"recording:official-{official}"
    assert store.sources("11620")["greeting"] == "tts"  # the district's other officials: TTS
    [row] = await audit_rows(api)
    assert (row.resource_type, row.resource_id) == (AuditResource.OFFICIAL, official)
    assert row.route == "/console/recordings"


@pytest.mark.parametrize(
    ("fixture", "reason", "korean"),
    [("clipped", "clipped", "찌그러졌습니다"), ("", "not_audio", "소리 파일로 읽을 수 없습니다")],
)
async def test_given_bad_file_when_uploaded_then_korean_refusal_and_nothing_stored(
    api: Api, request: pytest.FixtureRequest, fixture: str, reason: str, korean: str
) -> None:
    data = request.getfixturevalue(fixture).read_bytes() if fixture else b"not audio at all"
    official = await new_official(api.container.sessions)
    await sign_in(api, "kim", official_id=official)

    status, text = await upload(api, data)

    assert status == 422
    assert korean in text
    assert f"(이유: {reason})" in text
    assert "저장했습니다" not in text
    assert sources_of(text)["greeting"] == "합성 음성(TTS)"
    store = store_of(api)
    assert store.sources("11620", official)["greeting"] == "tts"
    assert not store.file(Prompt.GREETING, official_id=official).exists()
    assert store.manifest() == {}
    assert await audit_rows(api) == []


async def test_given_district_admins_when_uploading_then_only_their_own_districts_prompts(
    api: Api, voice: Path
) -> None:
    audio = voice.read_bytes()  # noqa: ASYNC240 (a fixture's file)
    store = store_of(api)
    # 강남구's admin records a question: it is 강남구's, 관악구's residents still hear TTS.
    await sign_in(api, "gangnam", role=ConsoleRole.DISTRICT_ADMIN, district="11680")
    status, text = await upload(api, audio, target="district", prompt="question")
    assert status == 200, text
    assert "우리 구의 안부 질문 녹음을 저장했습니다" in text
    assert sources_of(text)["question"] == "구 녹음"
    assert store.sources("11680")["question"] == "recording:district-11680"
    assert store.sources("11620")["question"] == "tts"
    [row] = await audit_rows(api)
    assert (row.resource_type, row.resource_id) == (AuditResource.RECORDING, "question")
    async with api.container.sessions() as s:
        gangnam = (await s.execute(select(District).where(District.code == "11680"))).scalar_one()
    assert row.district_id == gangnam.id

    # 관악구's admin: any prompt of 관악구.
    await sign_in(api, "gwanak", role=ConsoleRole.DISTRICT_ADMIN, district="11620")
    status, text = await upload(api, audio, target="district", prompt="thanks")
    assert status == 200, text
    assert store.sources("11620")["thanks"] == "recording:district-11620"
    status, text = await upload(api, audio, target="district", prompt="nope")
    assert status == 422
    assert "없는 안내 문구입니다" in text

    # A plain official cannot record the district's voice.
    official = await new_official(api.container.sessions)
    await sign_in(api, "kim", official_id=official)
    status, text = await upload(api, audio, target="district", prompt="goodbye")
    assert status == 403
    assert "권한이 없습니다" in text
    assert store.sources("11620")["goodbye"] == "tts"
    assert len(await audit_rows(api)) == 2


async def test_given_analyst_when_recordings_page_or_upload_then_refused(
    api: Api, voice: Path
) -> None:
    await sign_in(api, "analyst", role=ConsoleRole.ANALYST, district=None)
    page = await api.client.get("/console")
    assert 'href="/console/recordings"' not in page.text
    r = await api.client.get("/console/recordings")
    assert r.status_code == 403
    assert "녹음을 올릴 권한이 없습니다" in html.unescape(r.text)
    r = await api.client.post(
        "/console/recordings",
        data={"csrf": csrf_of(page.text), "target": "district", "prompt": "greeting"},
        files={"file": ("인사.wav", voice.read_bytes(), WAV)},  # noqa: ASYNC240
    )
    assert r.status_code == 403
    assert store_of(api).manifest() == {}
    assert await audit_rows(api) == []
