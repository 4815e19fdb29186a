"""The acknowledgement link: stored hashed, expires, acknowledges once, asks for an explicit
choice, and a later change of the finding is an amendment (who, when, before, after).

Issue 12 found: safe, then died, then false_alarm all 200, each overwriting the last; an empty
POST acknowledged; the token in plain text in the database."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from sqlalchemy import column, insert, select, table

from anbu.db.base import UtcDateTime
from anbu.db.migrate import upgrade
from anbu.db.models_escalation import AckLink, FindingAmendment, Incident, IncidentEvent
from anbu.db.session import make_sessionmaker
from anbu.domain.escalation import Finding
from anbu.domain.incidents import IncidentStatus
from escalation.service import EscalationConfig, EscalationService
from tests.db_fixtures import unmigrated_engine
from tests.test_escalation_api import Api, _incident, api  # noqa: F401
from tests.test_escalation_service import FakeClock

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _incident_row(api: Api) -> Incident:  # noqa: F811
    async with api.container.sessions() as s:
        return (await s.execute(select(Incident))).scalar_one()


async def test_given_an_alert_when_stored_then_only_the_token_hash_is_kept(
    api: Api,  # noqa: F811
) -> None:
    _, token = await _incident(api)
    async with api.container.sessions() as s:
        [link] = (await s.execute(select(AckLink))).scalars()
        incident_columns = (await s.execute(select(Incident))).mappings().one()
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(incident_columns)
    assert link.official_id is not None
    assert link.expires_at - link.created_at == dt.timedelta(hours=72)


async def test_given_an_empty_post_when_submitted_then_refused_and_nothing_acknowledged(
    api: Api,  # noqa: F811
) -> None:
    _, token = await _incident(api)
    r = await api.client.post(f"/ack/{token}", content=b"", headers=FORM)
    assert r.status_code == 422
    assert "choose what you found" in r.json()["detail"]
    assert (await api.client.post(f"/ack/{token}", json={})).status_code == 422
    assert (await _incident_row(api)).status is IncidentStatus.OPEN
    page = await api.client.get(f"/ack/{token}")
    assert " checked" not in page.text
    assert "required" in page.text


async def test_given_a_used_link_when_replayed_then_409_and_changes_only_as_amendment(
    api: Api,  # noqa: F811
) -> None:
    _, token = await _incident(api)
    r = await api.client.post(f"/ack/{token}", json={"finding": "safe"})
    assert r.status_code == 200
    clock = api.container.clock
    assert isinstance(clock, FakeClock)
    clock.advance(60)
    for finding in ("died", "false_alarm", "safe"):
        r = await api.client.post(f"/ack/{token}", json={"finding": finding})
        assert r.status_code == 409, r.text
        assert "amendment" in r.json()["detail"]
    assert (await _incident_row(api)).finding is Finding.SAFE

    clock.advance(60)
    r = await api.client.post(
        f"/ack/{token}", content="finding=hospitalised&note=x&amend=1", headers=FORM
    )
    assert r.status_code == 200
    assert (
        await api.client.post(
            f"/ack/{token}", json={"finding": "hospitalised", "note": "x", "amend": True}
        )
    ).status_code == 409
    incident = await _incident_row(api)
    assert incident.finding is Finding.HOSPITALISED
    async with api.container.sessions() as s:
        [amendment] = (await s.execute(select(FindingAmendment))).scalars()
        [link] = (await s.execute(select(AckLink))).scalars()
    assert (amendment.finding_before, amendment.finding_after) == (
        Finding.SAFE,
        Finding.HOSPITALISED,
    )
    assert (amendment.note_before, amendment.note_after) == ("", "x")
    assert amendment.official_id == link.official_id == incident.acknowledged_by
    assert amendment.at == clock.now()
    assert link.used_at == clock.now() - dt.timedelta(seconds=120)
    page = await api.client.get(f"/ack/{token}")
    assert 'name="amend"' in page.text


async def test_given_an_expired_link_when_opened_then_410(api: Api) -> None:  # noqa: F811
    _, token = await _incident(api)
    clock = api.container.clock
    assert isinstance(clock, FakeClock)
    clock.advance(72 * 3600)
    assert (await api.client.get(f"/ack/{token}")).status_code == 410
    r = await api.client.post(f"/ack/{token}", json={"finding": "safe"})
    assert r.status_code == 410
    assert (await _incident_row(api)).status is IncidentStatus.OPEN


async def test_given_plain_tokens_when_migrating_then_hashed_and_the_old_link_works(
    tmp_path: Path,
) -> None:
    """0006 moves existing incidents' plain tokens into ack_links as SHA-256 (both backends)."""
    for backend in ("sqlite", "postgresql"):
        async with unmigrated_engine(backend, tmp_path, "old.db") as engine:
            await upgrade(engine, "0005_status_due")
            t = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)
            districts = table(
                "districts",
                column("id"),
                column("code"),
                column("name"),
                column("created_at", UtcDateTime()),
            )
            residents = table(
                "residents",
                *(column(c) for c in ("id", "district_id", "name", "phone", "dong", "active")),
                column("created_at", UtcDateTime()),
                column("updated_at", UtcDateTime()),
            )
            checkins = table(
                "checkins",
                *(
                    column(c)
                    for c in ("id", "resident_id", "source", "reason", "status", "priority")
                ),
                column("created_at", UtcDateTime()),
                column("updated_at", UtcDateTime()),
            )
            incidents = table(
                "incidents",
                *(
                    column(c)
                    for c in (
                        "id",
                        "checkin_id",
                        "resident_id",
                        "district_id",
                        "outcome",
                        "urgency",
                        "status",
                        "code",
                        "token",
                        "step_count",
                    )
                ),
                column("case_closed_at", UtcDateTime()),
                column("opened_at", UtcDateTime()),
            )
            async with engine.begin() as conn:
                await conn.execute(
                    insert(districts).values(id=1, code="11620", name="관악구", created_at=t)
                )
                await conn.execute(
                    insert(residents).values(
                        id="r1",
                        district_id=1,
                        name="김",
                        phone="01012345678",
                        dong="",
                        active=True,
                        created_at=t,
                        updated_at=t,
                    )
                )
                await conn.execute(
                    insert(checkins).values(
                        id="c1",
                        resident_id="r1",
                        source="signal",
                        reason="",
                        status="closed",
                        priority=0,
                        created_at=t,
                        updated_at=t,
                    )
                )
                await conn.execute(
                    insert(incidents).values(
                        id="i1",
                        checkin_id="c1",
                        resident_id="r1",
                        district_id=1,
                        outcome="unreachable",
                        urgency="normal",
                        status="open",
                        code="1234",
                        token="plain-old-token",
                        step_count=1,
                        case_closed_at=t,
                        opened_at=t,
                    )
                )
                await conn.execute(
                    insert(
                        table(
                            "incident_events",
                            column("incident_id"),
                            column("at", UtcDateTime()),
                            column("kind"),
                            column("detail"),
                        )
                    ).values(incident_id="i1", at=t, kind="opened", detail="")
                )
            await upgrade(engine)
            sessions = make_sessionmaker(engine)
            async with sessions() as s:
                [link] = (await s.execute(select(AckLink))).scalars()
                # SQLite's table copy must not cascade-delete the incident's log.
                assert len((await s.execute(select(IncidentEvent))).all()) == 1
            assert link.token_hash == hashlib.sha256(b"plain-old-token").hexdigest()
            assert link.expires_at == t + dt.timedelta(hours=72)
            service = EscalationService(
                sessions,
                EscalationConfig("http://anbu.test", "0212345678"),
                clock=FakeClock(t + dt.timedelta(hours=1)),
            )
            view = await service.view("plain-old-token")
            assert view.incident.id == "i1"
