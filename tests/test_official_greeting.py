"""Greetings per official: "the resident hears the person who will visit". An official's own
recorded greeting plays to the residents whose escalation chain they head (their dong's chain,
else the district's), falling back to the district's recording, then the default one, then
the TTS voice. Upload scoped to the key's district (SQLite and PostgreSQL); real calls
through the engine and the carrier stand-in show which file the call streamed."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.app.parts import Telephony, build_container, recording_store, voice_profiles
from anbu.app.processes import prompts_upload
from anbu.db.models import District, Resident
from anbu.db.models_escalation import EscalationChain, EscalationStep, Official
from anbu.domain.incidents import OfficialRole
from anbu.domain.replies import Prompt, Reply
from anbu.ports import IvrOutcome
from anbu.settings import Settings
from ivr.recording import RecordingStore
from tests.api_support import api_over, h
from tests.console_support import new_official
from tests.fixtures_asterisk import AsteriskPair
from tests.test_repeat_calls import KeepingRegistry, dial

PRESSES_1 = "01099990001"


def test_given_recordings_in_every_scope_when_resolved_then_official_district_default_tts(
    voice: Path, tmp_path: Path
) -> None:
    store = RecordingStore(tmp_path / "recordings")
    store.upload(Prompt.GREETING, voice, official_id="kim")
    store.upload(Prompt.GREETING, voice, "11620")
    store.upload(Prompt.QUESTION, voice, "11620")
    store.upload(Prompt.THANKS, voice)

    heard = store.sources("11620", "kim")
    assert heard["greeting"] == "recording:official-kim"
    assert heard["question"] == "recording:district-11620"
    assert heard["thanks"] == "recording:default"
    assert heard["goodbye"] == "tts"
    # Another official of the district (no recording of their own): the district's.
    assert store.sources("11620", "lee")["greeting"] == "recording:district-11620"
    assert store.path(Prompt.GREETING, "11620", "kim") == store.file(
        Prompt.GREETING, official_id="kim"
    )
    assert store.path(Prompt.GREETING, "11680", None) is None  # 강남구: the TTS voice
    assert "official-kim" in store.manifest()["recordings"]


async def test_given_api_when_official_greeting_uploaded_then_only_their_districts_keys(
    voice: Path, tmp_path: Path, db_url: str
) -> None:
    audio = voice.read_bytes()  # noqa: ASYNC240 (a test fixture's file)
    wav = {"content-type": "audio/wav"}
    async with api_over(db_url, Settings(database_url=db_url, var_dir=tmp_path)) as api:
        kim = await new_official(api.container.sessions)
        gwanak, gangnam = h(api.keys["gwanak"]), h(api.keys["gangnam"])
        url = "/v1/prompts/greeting/recording"

        r = await api.client.put(url, params={"official": kim}, content=audio, headers=gwanak | wav)
        assert r.status_code == 200, r.text
        assert r.json()["scope"] == f"official-{kim}"
        # Another district's key: the official is not theirs, and not revealed (404).
        r = await api.client.put(
            url, params={"official": kim}, content=audio, headers=gangnam | wav
        )
        assert r.status_code == 404
        r = await api.client.put(
            url, params={"official": "nobody"}, content=audio, headers=gwanak | wav
        )
        assert r.status_code == 404
        r = await api.client.put(
            url,
            params={"official": kim, "district_code": "11620"},
            content=audio,
            headers=gwanak | wav,
        )
        assert r.status_code == 422
        r = await api.client.get("/v1/prompts", params={"official": kim}, headers=gangnam)
        assert r.status_code == 404

        r = await api.client.get("/v1/prompts", params={"official": kim}, headers=gwanak)
        assert r.status_code == 200
        body = r.json()
        assert body["district_code"] == "11620"
        assert body["sources"]["greeting"] == f"recording:official-{kim}"
        assert body["sources"]["question"] == "tts"
        # The district's own view is unchanged: an official's greeting is theirs only.
        r = await api.client.get("/v1/prompts", params={"district_code": "11620"}, headers=gwanak)
        assert r.json()["sources"]["greeting"] == "tts"


async def test_given_cli_when_official_greeting_uploaded_then_stored_and_unknown_refused(
    voice: Path, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=db_url, var_dir=tmp_path)
    container = build_container(settings)
    try:
        async with container.sessions() as s:
            s.add(District(code="11620", name="관악구"))
            await s.commit()
        kim = await new_official(container.sessions)
    finally:
        await container.aclose()

    def args(official: str) -> argparse.Namespace:
        return argparse.Namespace(
            prompt="greeting", file=str(voice), district=None, official=official
        )

    assert await prompts_upload(settings, args(kim)) == 0
    assert f"official {kim}" in capsys.readouterr().out
    assert recording_store(settings).file(Prompt.GREETING, official_id=kim).is_file()
    # A recording nobody would ever hear is refused.
    assert await prompts_upload(settings, args("nobody")) == 2
    assert "no official" in capsys.readouterr().out


# ---- real calls ------------------------------------------------------------------------------


@dataclass
class Rig:
    tel: Telephony
    registry: KeepingRegistry
    sessions: async_sessionmaker[AsyncSession]
    store: RecordingStore

    async def world(self) -> dict[str, str]:
        """관악구, 신림동's chain headed by 김복지 (then a centre), and 봉천동 with no chain of
        its own (the district's default chain, headed by 이복지)."""
        async with self.sessions() as s:
            district = District(code="11620", name="관악구")
            s.add(district)
            await s.flush()
            people = {
                name: Official(
                    district_id=district.id, dong=dong, name=name, phone=phone, role=role
                )
                for name, dong, phone, role in [
                    ("김복지", "신림동", "0201", OfficialRole.DONG),
                    ("센터", "", "0202", OfficialRole.CENTRE),
                    ("이복지", "", "0203", OfficialRole.DONG),
                ]
            }
            s.add_all(people.values())
            await s.flush()
            for dong, names in [("신림동", ["김복지", "센터"]), ("", ["이복지", "센터"])]:
                s.add(
                    EscalationChain(
                        district_id=district.id,
                        dong=dong,
                        steps=[
                            EscalationStep(position=i, official_id=people[n].id, ack_timeout_s=600)
                            for i, n in enumerate(names, start=1)
                        ],
                    )
                )
            await s.commit()
            return {name: o.id for name, o in people.items()} | {"district": str(district.id)}

    async def call(self, district_id: str, dong: str) -> IvrOutcome:
        async with self.sessions() as s:
            resident = Resident(
                district_id=int(district_id), name="김안부", phone=PRESSES_1, dong=dong
            )
            s.add(resident)
            await s.flush()
            resident_id = resident.id
            await s.commit()
        return await dial(self.tel, self.registry, self.sessions, resident_id, PRESSES_1)


@contextlib.asynccontextmanager
async def open_rig(pair: AsteriskPair, db_url: str, var_dir: Path) -> AsyncIterator[Rig]:
    # Its own var dir: the engine pair is shared by the session, and recordings left in its
    # store would be played in other tests' calls.
    settings = pair.settings.model_copy(
        update={"database_url": db_url, "reply_timeout_s": 4.0, "var_dir": var_dir}
    )
    container = build_container(settings)
    registry = KeepingRegistry()
    tel = Telephony.build(
        settings, container.clock, registry=registry, voice_profiles=voice_profiles(container)
    )
    await tel.start()
    try:
        yield Rig(tel, registry, container.sessions, recording_store(settings))
    finally:
        await tel.stop()
        await container.aclose()


@pytest.mark.asterisk
async def test_given_official_greeting_when_resident_called_then_visitor_heard_then_fallbacks(
    asterisk_pair: AsteriskPair, db_url: str, db_engine: object, voice: Path, tmp_path: Path
) -> None:
    async with open_rig(asterisk_pair, db_url, tmp_path / "var") as rig:
        ids = await rig.world()
        rig.store.upload(Prompt.GREETING, voice, official_id=ids["김복지"])
        rig.store.upload(Prompt.GREETING, voice, "11620")
        rig.store.upload(Prompt.QUESTION, voice)

        # 신림동: 김복지 heads the chain, the resident hears 김복지's own greeting.
        sillim = await rig.call(ids["district"], "신림동")
        # 봉천동: the district's chain, headed by 이복지, who recorded nothing: the district's.
        bongcheon = await rig.call(ids["district"], "봉천동")

    kim = str(rig.store.file(Prompt.GREETING, official_id=ids["김복지"]).with_suffix(""))
    district = str(rig.store.file(Prompt.GREETING, "11620").with_suffix(""))
    default = str(rig.store.file(Prompt.QUESTION).with_suffix(""))
    for outcome in (sillim, bongcheon):
        assert outcome.reply is Reply.OK, outcome
        # The question: neither the official nor the district recorded it -> the default;
        # the closing "thanks": nobody recorded it -> the TTS voice.
        assert outcome.played[1] == default
        assert outcome.played[-1].endswith("/rendered/" + Prompt.GOODBYE.value)
    assert sillim.played[0] == kim
    assert bongcheon.played[0] == district
