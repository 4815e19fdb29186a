"""설정: a 구 관리자 deletes an escalation chain, over real HTTP on SQLite and PostgreSQL.

The form needs its confirmation box ticked; a chain residents are still alerted along, or an
open incident still escalates along, is kept with the reason in Korean (the API answers 409
for the same rule, escalation.directory.delete_chain); both a deletion and a refusal are in the
access log; another district's admin gets "not found"."""

from __future__ import annotations

import datetime as dt
import html

import httpx
from sqlalchemy import select, update

from anbu.db.models import Resident
from anbu.db.models_escalation import EscalationChain
from anbu.domain.audit import AuditAction, AuditResource
from anbu.domain.console import ConsoleRole
from tests.api_support import api_over, h
from tests.console_support import audit_trail, csrf_of, log_in, make_account, seed_incident


async def _delete(client: httpx.AsyncClient, chain_id: str, **more: str) -> tuple[int, str]:
    page = await client.get("/console/settings")
    assert page.status_code == 200
    r = await client.post(
        "/console/settings/chain/delete",
        data={"csrf": csrf_of(page.text), "chain": chain_id, **more},
    )
    return r.status_code, html.unescape(r.text)


async def test_given_chains_when_admin_deletes_one_then_only_an_unused_one_goes(
    db_url: str,
) -> None:
    async with api_over(db_url) as api:
        sessions = api.container.sessions
        now = api.clock.now()
        # 신림동's chain with an open incident of its resident (the escalation service's own
        # path), and a chain for 봉천동, where nobody lives.
        seeded = await seed_incident(sessions, now - dt.timedelta(minutes=3))
        official = seeded.world.officials["primary"].id
        r = await api.client.put(
            "/v1/escalation-chains",
            headers=h(api.keys["gwanak"]),
            json={"district_code": "11620", "dong": "봉천동", "steps": [{"official_id": official}]},
        )
        assert r.status_code == 200, r.text
        empty_chain = r.json()["id"]
        async with sessions() as s:
            used_chain = await s.scalar(
                select(EscalationChain.id).where(EscalationChain.dong == "신림동")
            )
        assert used_chain is not None
        await make_account(sessions, now, "boss", role=ConsoleRole.DISTRICT_ADMIN)
        await log_in(api.client, "boss")

        # The chain page offers the deletion with its confirmation box.
        page = html.unescape((await api.client.get("/console/settings/chain?dong=봉천동")).text)
        assert 'action="/console/settings/chain/delete"' in page
        assert "봉천동 알림 순서를 지웁니다" in page

        # Without the box ticked: nothing goes.
        status, text = await _delete(api.client, empty_chain)
        assert status == 422
        assert "봉천동 알림 순서를 지우려면 확인란을 고르세요." in text

        # In use by a resident (and their open incident): kept, with the reason.
        status, text = await _delete(api.client, used_chain, confirm="1")
        assert status == 409
        assert (
            "신림동 알림 순서는 지울 수 없습니다: 대상자 1명의 알림이 이 순서로 갑니다,"
            " 확인 대기 중인 사건 1건이 이 순서로 알립니다." in text
        )
        # The resident leaves the programme; the open incident still escalates along it.
        async with sessions() as s:
            await s.execute(update(Resident).values(active=False))
            await s.commit()
        status, text = await _delete(api.client, used_chain, confirm="1")
        assert status == 409
        assert "지울 수 없습니다: 확인 대기 중인 사건 1건이 이 순서로 알립니다." in text
        r = await api.client.delete(
            f"/v1/escalation-chains/{used_chain}", headers=h(api.keys["gwanak"])
        )
        assert r.status_code == 409
        assert "still in use" in r.json()["detail"]

        # Another district's admin: not found, nothing deleted.
        other = httpx.AsyncClient(transport=api.client._transport, base_url="http://anbu")
        async with other:
            await make_account(
                sessions, now, "gangnam-boss", role=ConsoleRole.DISTRICT_ADMIN, district="11680"
            )
            await log_in(other, "gangnam-boss")
            status, text = await _delete(other, empty_chain, confirm="1")
            assert status == 404
            assert "알림 순서를 찾을 수 없습니다." in text

        # Unused and confirmed: deleted.
        status, text = await _delete(api.client, empty_chain, confirm="1")
        assert status == 200, text
        assert "봉천동 알림 순서를 지웠습니다." in text
        async with sessions() as s:
            chains = set((await s.scalars(select(EscalationChain.id))).all())
            assert chains == {used_chain}
            logged = await audit_trail(s, AuditResource.ESCALATION_CHAIN, AuditAction.DELETE)
        assert logged == [
            (used_chain, "refused: in use"),
            (used_chain, "refused: in use"),
            (empty_chain, "deleted"),
        ]
