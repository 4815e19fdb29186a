"""The escalation API: officials and chains (admin or district key), incidents and findings,
Kannel's callbacks (delivery reports, replies), and the acknowledgement link.

Handlers validate and translate; the rules live in :mod:`escalation.service` and
:mod:`escalation.directory`.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import Route

from anbu.api.audit import AuditDep
from anbu.api.deps import (
    ContainerDep,
    Principal,
    PrincipalDep,
    SessionDep,
    district_by_code,
    in_scope,
    resident_in_scope,
)
from anbu.container import Container
from anbu.db.models_escalation import EscalationChain, Incident
from anbu.domain.audit import AuditResource
from anbu.domain.escalation import FINDING_LABELS, OUTCOME_WORDS, Finding, Urgency
from anbu.domain.incidents import IncidentStatus
from anbu.errors import ConflictError, NotFoundError, ValidationError
from escalation import directory
from escalation.dlr import parse_delivery_report, parse_inbound_sms
from escalation.schemas import (
    AckIn,
    ChainIn,
    ChainOut,
    IncidentDetail,
    IncidentOut,
    OfficialIn,
    OfficialOut,
    OfficialPatch,
    ResidentFindings,
)
from escalation.service import EscalationService, IncidentView

log = logging.getLogger(__name__)

router = APIRouter()


def get_escalation(request: Request) -> EscalationService:
    """Bound by the composition root (``anbu.app.build_api``) to this process's service, on
    ``app.state``: a ``dependency_overrides`` entry made FastAPI rebuild the override's
    dependency graph (signature inspection) on every request, ~1 ms of CPU per delivery
    report in the alert burst (bench/escalation.py)."""
    service = getattr(request.app.state, "escalation", None)
    if not isinstance(service, EscalationService):
        raise RuntimeError("the escalation routes need anbu.app.build_api to bind their service")
    return service


EscalationDep = Annotated[EscalationService, Depends(get_escalation)]


async def _scope(
    session: AsyncSession, principal: Principal, district_code: str | None
) -> frozenset[int] | None:
    """The districts a list shows: the one asked for (if the key may see it), else all the
    key's (None: every district, for an admin key)."""
    if district_code is not None:
        return frozenset({(await district_by_code(session, principal, district_code)).id})
    return None if principal.is_admin else principal.district_ids


# --- officials ------------------------------------------------------------------------------


@router.post(
    "/v1/officials",
    status_code=status.HTTP_201_CREATED,
    response_model=OfficialOut,
    tags=["escalation"],
)
async def create_official(
    body: OfficialIn, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> OfficialOut:
    district = await district_by_code(session, principal, body.district_code)
    official = await directory.create_official(session, district, body, container.clock.now())
    await session.commit()
    return OfficialOut.of(official)


@router.get("/v1/officials", response_model=list[OfficialOut], tags=["escalation"])
async def list_officials(
    principal: PrincipalDep, session: SessionDep, district_code: str | None = None
) -> list[OfficialOut]:
    scope = await _scope(session, principal, district_code)
    return [OfficialOut.of(o) for o in await directory.list_officials(session, scope)]


@router.patch("/v1/officials/{official_id}", response_model=OfficialOut, tags=["escalation"])
async def update_official(
    official_id: str, body: OfficialPatch, principal: PrincipalDep, session: SessionDep
) -> OfficialOut:
    official = await directory.get_official(session, official_id)
    principal.require_district(official.district_id, "official", official_id)
    directory.update_official(official, body)
    await session.commit()
    return OfficialOut.of(official)


# --- chains ---------------------------------------------------------------------------------


@router.put("/v1/escalation-chains", response_model=ChainOut, tags=["escalation"])
async def put_chain(
    body: ChainIn, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> ChainOut:
    """Create or replace the chain of a district's dong (``dong`` "" = the district default).
    Steps are told in the order given."""
    district = await district_by_code(session, principal, body.district_code)
    chain = await directory.put_chain(
        session,
        district,
        body,
        container.settings.escalation.default_ack_timeout_s,
        container.clock.now(),
    )
    try:
        await session.commit()
    except IntegrityError as exc:
        raise ConflictError("the chain was changed at the same time; try again") from exc
    return directory.chain_out(chain, district.code)


@router.get("/v1/escalation-chains", response_model=list[ChainOut], tags=["escalation"])
async def list_chains(
    principal: PrincipalDep, session: SessionDep, district_code: str | None = None
) -> list[ChainOut]:
    scope = await _scope(session, principal, district_code)
    return [directory.chain_out(c, code) for c, code in await directory.list_chains(session, scope)]


@router.delete(
    "/v1/escalation-chains/{chain_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["escalation"],
)
async def delete_chain(chain_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    chain = await in_scope(session, principal, EscalationChain, chain_id, "escalation chain")
    # Refused (409) while residents or open incidents are still alerted along it.
    await directory.delete_chain(session, chain)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- incidents and findings -----------------------------------------------------------------


@router.get("/v1/incidents", response_model=list[IncidentOut], tags=["escalation"])
async def list_incidents(
    principal: PrincipalDep,
    session: SessionDep,
    audit: AuditDep,
    district_code: str | None = None,
    status_: Annotated[IncidentStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Incident]:
    scope = await _scope(session, principal, district_code)
    rows = await directory.list_incidents(session, scope, status_, limit)
    audit.note_many(AuditResource.INCIDENT, ((i.id, i.district_id) for i in rows))
    return rows


@router.get("/v1/incidents/{incident_id}", response_model=IncidentDetail, tags=["escalation"])
async def get_incident(
    incident_id: str, principal: PrincipalDep, session: SessionDep
) -> IncidentDetail:
    """The incident with its log (every step, timed) and its messages."""
    incident = await in_scope(session, principal, Incident, incident_id, "incident")
    return await directory.incident_detail(session, incident)


@router.get(
    "/v1/residents/{resident_id}/findings",
    response_model=ResidentFindings,
    tags=["escalation"],
)
async def resident_findings(
    resident_id: str, principal: PrincipalDep, session: SessionDep, audit: AuditDep
) -> ResidentFindings:
    """What officials found on their visits, newest first; ``last_finding`` is the current."""
    resident = await resident_in_scope(session, principal, resident_id)
    found = await directory.resident_findings(session, resident_id)
    # A finding is one incident's: it is logged under the incident's id.
    audit.note_many(
        AuditResource.FINDING, ((f.incident_id, resident.district_id) for f in found.items)
    )
    return found


# --- Kannel callbacks -----------------------------------------------------------------------


def _check_callback_key(container: Container, request: Request, query: str) -> None:
    """Only Kannel's smsbox may call: from an allowed address (when a list is set), with the
    secret anbu put in the URLs it gave Kannel (compared in constant time). Refused callers
    get 404, the same as a wrong path (production refuses to start without a secret)."""
    esc = container.settings.escalation
    allowed = esc.callback_allow_ips
    host = request.client.host if request.client else ""
    if allowed and host not in allowed:
        log.warning("SMS callback from %s refused: not in callback_allow_ips", host)
        raise NotFoundError("callback", "for this address")
    token = esc.callback_token
    if token is None:
        return
    given = dict(parse_qsl(query)).get("key", "")
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        log.warning("SMS callback from %s refused: wrong key", host)
        raise NotFoundError("callback", "for this key")


async def _raw_query(request: Request) -> str:
    query = request.url.query
    if not query and request.method == "POST":
        # A post-url callback carries the same parameters as a form body.
        query = (await request.body()).decode("latin-1")
    return query


async def kannel_dlr(request: Request) -> Response:
    """A delivery report (``dlr-url``): stored against its message, never moved backwards.

    A plain Starlette route (mounted below), on purpose: two reports come per alert, and
    FastAPI ran the app's dependencies (the access log's, which opens a session and logs
    nothing for an unauthenticated caller like Kannel) for each, rebuilding them per request
    while the app holds any ``dependency_overrides`` entry (signature inspection, ~8 per
    report). In the 1,000-alert burst (bench/escalation.py) that was about a sixth of this
    process's CPU. The middlewares (headers, limits, input gate, outage) and the app's error
    handlers still apply; only Kannel calls here, with the callback key. Mounted first, ahead
    of every router (:data:`DLR_ROUTE`, ``anbu.app.parts.build_api``)."""
    container: Container = request.app.state.container
    service = get_escalation(request)
    query = await _raw_query(request)
    _check_callback_key(container, request, query)
    report = parse_delivery_report(query)
    await service.record_delivery(report)
    return Response(content=b"", media_type="text/plain")


# Not on ``router``: the app matches it before any router. FastAPI walks its routers in turn
# (~70 routes, nested), and matching a report to its route cost more than the rest of the
# app's handling of it: ~360 -> ~130 us of CPU per report through the app when first (two
# reports per alert in the burst, bench/escalation.py).
DLR_ROUTE = Route(
    "/v1/sms/kannel/dlr", kannel_dlr, methods=["GET", "POST"], include_in_schema=False
)


@router.api_route(
    "/v1/sms/kannel/inbound", methods=["GET", "POST"], include_in_schema=False, tags=["sms"]
)
async def kannel_inbound(
    request: Request, container: ContainerDep, service: EscalationDep
) -> Response:
    """An incoming SMS (sms-service ``get-url``): a reply with a code acknowledges. Answered
    with an empty 200 once stored; the body is never sent back as an SMS (max-messages 0)."""
    query = await _raw_query(request)
    _check_callback_key(container, request, query)
    sms = parse_inbound_sms(query)
    result = await service.handle_reply(sms)
    return Response(content=b"", media_type="text/plain", headers={"X-Anbu-Reply": result.outcome})


# --- the acknowledgement link ---------------------------------------------------------------

_STATUS_WORDS = {
    IncidentStatus.OPEN: "확인 대기",
    IncidentStatus.ACKNOWLEDGED: "확인됨",
    IncidentStatus.EXHAUSTED: "확인 대기 (모든 담당자에게 알림)",
}


def _page(view: IncidentView, message: str = "") -> str:
    inc = view.incident
    what = OUTCOME_WORDS.get(inc.outcome, str(inc.outcome))
    where = f" ({html.escape(view.dong)})" if view.dong else ""
    # No choice is preselected: the official must pick one (an empty form is refused).
    options = "".join(
        f'<label><input type="radio" name="finding" value="{f.value}" required> {label}</label><br>'
        for f, label in FINDING_LABELS.items()
    )
    urgent = "긴급 " if inc.urgency is Urgency.URGENT else ""
    note = f"<p><b>{html.escape(message)}</b></p>" if message else ""
    if inc.finding is not None:
        recorded = FINDING_LABELS.get(inc.finding, str(inc.finding))
        current = (
            f"<p>기록된 결과: {html.escape(recorded)}"
            f"{' · ' + html.escape(inc.finding_note) if inc.finding_note else ''}</p>"
            "<p>아래에서 고르면 결과가 <b>정정</b>으로 기록됩니다 (이전 결과도 남습니다).</p>"
        )
        amend = '<input type="hidden" name="amend" value="1">'
        button = "정정"
    else:
        current, amend, button = "", "", "확인"
    return f"""<!doctype html>
<html lang="ko"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>안부 확인</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:1em auto;padding:0 1em">
<h1>{urgent}{html.escape(view.resident_masked)}{where}</h1>
<p>{html.escape(what)} · 상태: {_STATUS_WORDS[inc.status]}</p>
{note}{current}
<form method="post">{amend}
<fieldset><legend>확인 결과</legend>{options}</fieldset>
<p><label>메모<br><textarea name="note" rows="3" cols="30"></textarea></label></p>
<p><button type="submit">{button}</button></p>
</form></body></html>"""


@router.get("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
async def ack_page(token: str, service: EscalationDep) -> HTMLResponse:
    return HTMLResponse(_page(await service.view(token)))


@router.post("/ack/{token}", include_in_schema=False)
async def ack(token: str, request: Request, service: EscalationDep) -> Response:
    """Acknowledge and record the finding (form fields or JSON ``finding``/``note``/``amend``).
    A finding must be chosen; a second submission must say ``amend``."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            data = AckIn.model_validate(json.loads(body or b"{}"))
        else:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            raw = fields.get("finding") or None
            data = AckIn(
                finding=Finding(raw) if raw else None,
                note=fields.get("note", ""),
                amend=fields.get("amend", "") in ("1", "true", "yes"),
            )
    except ValueError as exc:
        raise ValidationError(f"bad acknowledgement: {exc}") from exc
    if data.finding is None:
        raise ValidationError("choose what you found (finding): " + ", ".join(Finding))
    incident = await service.acknowledge_link(token, data.finding, data.note, amend=data.amend)
    if content_type.startswith("application/json"):
        return Response(
            content=IncidentOut.model_validate(incident).model_dump_json(),
            media_type="application/json",
        )
    view = await service.view(token)
    return HTMLResponse(_page(view, "확인되었습니다. 감사합니다."))
