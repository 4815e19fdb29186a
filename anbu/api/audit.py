"""The access log in the API: one dependency writes it for every route, ``GET /v1/audit``
reads it (administrators).

Every route that names a personal record in its path (``{resident_id}``, ``{checkin_id}``,
``{incident_id}``) is logged without the handler doing anything; handlers add what their path
does not say (the residents a list returned, a created record, the transcripts a check-in
carried). Rows are written in the request's own session, after the handler and before the
response leaves: a read whose log line cannot be written is not served (fail closed). A
handler that writes commits through :meth:`Auditor.commit`, so the write and its log rows are
one transaction (not the write's, then a second checkout, BEGIN and COMMIT for the log's). A
refused request (another district's record, a read key writing) is logged as refused.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.api.deps import MAX_ROW_ID, ContainerDep, Principal, PrincipalDep, SessionDep
from anbu.api.strict import IsoDatetime, Timestamp
from anbu.container import Container
from anbu.db.models import Checkin, District, Resident
from anbu.db.models_escalation import Incident
from anbu.domain.audit import PATH_RESOURCES, ActorKind, AuditAction, AuditResource, action_for
from anbu.errors import ValidationError
from anbu.services import audit as audit_service
from anbu.services.audit import Access, Actor, AuditFilter, Origin

log = logging.getLogger(__name__)


class Auditor:
    """What this request touched, beyond what its path says."""

    def __init__(
        self,
        request: Request | None = None,
        session: AsyncSession | None = None,
        container: Container | None = None,
    ) -> None:
        self.accesses: list[Access] = []
        self._request = request
        self._session = session
        self._container = container
        self._paths_written = False  # the path's own accesses are in a committed transaction

    async def commit(self) -> None:
        """Add the log rows of what this request touched so far to the session's transaction,
        then commit it: the handler's write and its log rows commit together, or neither."""
        if self._request is None or self._session is None or self._container is None:
            raise RuntimeError("Auditor.commit needs the request's audit_trail dependency")
        await _write(self._request, self._session, self._container, self)
        await self._session.commit()

    def note(
        self,
        resource: AuditResource,
        ident: str,
        action: AuditAction,
        district_id: int | None = None,
    ) -> None:
        self.accesses.append(Access(resource, ident, action, district_id))

    def note_many(
        self,
        resource: AuditResource,
        items: Iterable[tuple[str, int | None]],
        action: AuditAction = AuditAction.READ,
    ) -> None:
        for ident, district_id in items:
            self.note(resource, ident, action, district_id)


async def _district_of(session: AsyncSession, resource: AuditResource, ident: str) -> int | None:
    # Usually already in the session's identity map (the handler loaded it): no query.
    if resource is AuditResource.RESIDENT:
        resident = await session.get(Resident, ident)
        return resident.district_id if resident is not None else None
    if resource is AuditResource.CHECKIN:
        checkin = await session.get(Checkin, ident)
        return checkin.resident.district_id if checkin is not None else None
    if resource is AuditResource.INCIDENT:
        incident = await session.get(Incident, ident)
        return incident.district_id if incident is not None else None
    return None


async def _path_accesses(request: Request, session: AsyncSession) -> list[Access]:
    route = request.scope.get("route")
    path = str(getattr(route, "path", ""))
    found = []
    for name, value in request.path_params.items():
        resource = PATH_RESOURCES.get(name)
        if resource is None or not isinstance(value, str) or len(value) > 64:
            continue
        action = action_for(request.method, names_the_record=path.endswith("{" + name + "}"))
        try:
            district_id = await _district_of(session, resource, value)
        except Exception:  # a malformed id the database refuses: log it without a district
            await session.rollback()
            district_id = None
        found.append(Access(resource, value, action, district_id))
    return found


def origin_of(request: Request) -> Origin:
    """Where a request came from, for its access-log lines (the API's and the console's)."""
    route = request.scope.get("route")
    return Origin(
        client=request.client.host if request.client else "",
        method=request.method,
        route=str(getattr(route, "path", request.url.path)),
    )


def _actor(principal: Principal) -> Actor:
    return Actor(ActorKind.API_KEY, str(principal.key_id), principal.name)


def _merge(first: list[Access], then: list[Access]) -> list[Access]:
    seen: dict[tuple[AuditResource, str, AuditAction], Access] = {}
    for a in [*then, *first]:  # a handler's note (with its district) wins over the path's
        seen.setdefault((a.resource_type, a.resource_id, a.action), a)
    return list(seen.values())


async def _record_refused(
    request: Request,
    session: AsyncSession,
    container: Container,
    principal: Principal,
    exc: Exception,
) -> None:
    await session.rollback()
    accesses = await _path_accesses(request, session)
    if accesses:
        why = str(exc).split("\n", 1)[0] or type(exc).__name__
        await audit_service.record(
            session,
            _actor(principal),
            accesses,
            at=container.clock.now(),
            origin=origin_of(request),
            outcome=f"refused: {why}",
        )
        await session.commit()


async def _write(
    request: Request, session: AsyncSession, container: Container, auditor: Auditor
) -> bool:
    """Add the rows of what the request touched and was not logged yet; True if any."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        return False  # an unauthenticated route (health, the ack link: logged by its service)
    paths = [] if auditor._paths_written else await _path_accesses(request, session)
    accesses = _merge(paths, auditor.accesses)
    auditor._paths_written = True
    auditor.accesses = []
    if not accesses:
        return False
    await audit_service.record(
        session, _actor(principal), accesses, at=container.clock.now(), origin=origin_of(request)
    )
    return True


async def audit_trail(
    request: Request, session: SessionDep, container: ContainerDep
) -> AsyncIterator[Auditor]:
    auditor = Auditor(request, session, container)
    try:
        yield auditor
    except Exception as exc:
        principal = getattr(request.state, "principal", None)
        if isinstance(principal, Principal):
            try:
                await _record_refused(request, session, container, principal, exc)
            except Exception:
                # The request fails anyway; its own error, not the log's, is the answer.
                log.exception("access log: could not record a refused request")
        raise
    if await _write(request, session, container, auditor):
        await session.commit()


# One instance per request, closed when the handler returns (before the response is sent).
AuditDep = Annotated[Auditor, Depends(audit_trail, scope="function")]
AUDIT_TRAIL = Depends(audit_trail, scope="function")


# --- reading the log ------------------------------------------------------------------------

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditOut(BaseModel):
    id: int
    at: Timestamp
    actor_kind: ActorKind
    actor_id: str
    actor_name: str
    client: str
    method: str
    route: str
    resource_type: AuditResource
    resource_id: str
    action: AuditAction
    district_code: str | None
    outcome: str


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: int | None


@router.get("", response_model=AuditPage, summary="Who read or changed which personal record")
async def read_audit(
    principal: PrincipalDep,
    session: SessionDep,
    actor_kind: ActorKind | None = None,
    actor_id: Annotated[str | None, Query(max_length=64)] = None,
    resource_type: AuditResource | None = None,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    action: AuditAction | None = None,
    district_code: Annotated[str | None, Query(max_length=16)] = None,
    since: IsoDatetime | None = None,
    until: IsoDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> AuditPage:
    """Newest first. ``next_cursor`` pages to older entries."""
    principal.require_admin()
    codes = {d.id: d.code for d in (await session.execute(District.__table__.select())).all()}
    district_id = None
    if district_code is not None:
        district_id = next((i for i, c in codes.items() if c == district_code), None)
        if district_id is None:
            raise ValidationError(f"unknown district {district_code!r}")
    where = AuditFilter(
        actor_kind, actor_id, resource_type, resource_id, action, district_id, since, until
    )
    rows, next_cursor = await audit_service.entries(session, where, limit=limit, before_id=cursor)
    return AuditPage(
        items=[
            AuditOut(
                id=r.id,
                at=r.at,
                actor_kind=r.actor_kind,
                actor_id=r.actor_id,
                actor_name=r.actor_name,
                client=r.client,
                method=r.method,
                route=r.route,
                resource_type=r.resource_type,
                resource_id=r.resource_id,
                action=r.action,
                district_code=codes.get(r.district_id) if r.district_id is not None else None,
                outcome=r.outcome,
            )
            for r in rows
        ],
        next_cursor=next_cursor,
    )
