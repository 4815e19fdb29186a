"""Request dependencies: database session, API-key principal, the application container."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.container import Container
from anbu.db.models import ApiKey, District, Resident
from anbu.domain.access import (
    KeyState,
    Scope,
    VerifiedKey,
    decode_scopes,
    key_state,
    last_used_is_stale,
    missing_scope,
)
from anbu.errors import ForbiddenError, NotFoundError, ValidationError
from anbu.services.admin import hash_key

# Integer row ids fit PostgreSQL's INTEGER: a larger number in a path or body is a 422, not a
# driver overflow (a 500).
MAX_ROW_ID = 2**31 - 1

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="anbu API key")


class UnauthenticatedError(Exception):
    """No key, a key we do not know, or one that was revoked or has expired."""


# ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
# request for a attribute read.
async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_session(container: ContainerDep) -> AsyncIterator[AsyncSession]:
    async with container.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key, what it may do, and the districts it may see."""

    key_id: int
    name: str
    scopes: frozenset[Scope]
    district_ids: frozenset[int]

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def can_see(self, district_id: int) -> bool:
        return self.is_admin or district_id in self.district_ids

    def require_district(self, district_id: int, kind: str, ident: object) -> None:
        # Another district's record answers 404, not 403: a key must not learn that it exists.
        if not self.can_see(district_id):
            raise NotFoundError(kind, ident)

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ForbiddenError("this action needs a key with the admin scope")


async def _verify(session: AsyncSession, key_hash: str, now: dt.datetime) -> VerifiedKey[Principal]:
    row = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))
    ).scalar_one_or_none()
    if row is None:
        raise UnauthenticatedError("unknown API key")
    entry = VerifiedKey(
        Principal(
            row.id,
            row.name,
            decode_scopes(row.scopes, is_admin=row.is_admin),
            frozenset(d.id for d in row.districts),
        ),
        row.id,
        row.revoked_at,
        row.expires_at,
    )
    active = key_state(row.revoked_at, row.expires_at, now) is KeyState.ACTIVE
    if active and last_used_is_stale(row.last_used_at, now):
        # Compare-and-set on the old value: concurrent requests write it once, not each.
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id, ApiKey.last_used_at.is_not_distinct_from(row.last_used_at))
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return entry


async def get_principal(
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    key: Annotated[str | None, Security(API_KEY_HEADER)],
) -> Principal:
    if not key:
        raise UnauthenticatedError("missing X-API-Key header")
    cache = container.verified_keys
    key_hash = hash_key(key)
    now = container.clock.now()
    entry = cache.get(key_hash)
    if entry is None:
        entry = await _verify(session, key_hash, now)
        cache.put(key_hash, entry)
    state = key_state(entry.revoked_at, entry.expires_at, now)
    if state is KeyState.REVOKED:
        raise UnauthenticatedError("this API key was revoked")
    if state is KeyState.EXPIRED:
        raise UnauthenticatedError("this API key has expired")
    principal = entry.principal
    request.state.principal = principal
    lacking = missing_scope(principal.scopes, request.method)
    if lacking is not None:
        raise ForbiddenError(f"this API key lacks the {lacking} scope ({request.method})")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


# -- lookups every router shares: scoped to the caller's districts -------------------------------


async def district_by_code(session: AsyncSession, principal: Principal, code: str) -> District:
    """The district with this code, if the key may see it; a 422 names the code otherwise."""
    district = (
        await session.execute(select(District).where(District.code == code))
    ).scalar_one_or_none()
    if district is None or not principal.can_see(district.id):
        raise ValidationError(f"unknown district {code!r} for this API key")
    return district


class InDistrict(Protocol):
    """A row that belongs to one district (a resident, an official, an incident...)."""

    @property
    def district_id(self) -> int: ...


R = TypeVar("R", bound=InDistrict)


async def in_scope(
    session: AsyncSession, principal: Principal, model: type[R], ident: str, kind: str
) -> R:
    """The row, if the key may see its district (404 otherwise, existence not leaked)."""
    row = await session.get(model, ident)
    if row is None:
        raise NotFoundError(kind, ident)
    principal.require_district(row.district_id, kind, ident)
    return row


async def resident_in_scope(
    session: AsyncSession, principal: Principal, resident_id: str
) -> Resident:
    """The resident, if the key may see their district (404 otherwise, existence not leaked)."""
    return await in_scope(session, principal, Resident, resident_id, "resident")
