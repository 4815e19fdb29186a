"""Request dependencies: database session, API-key principal, the application container."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.container import Container
from anbu.db.models import ApiKey, District, Resident
from anbu.errors import ForbiddenError, NotFoundError, ValidationError
from anbu.services.admin import hash_key

# Integer row ids fit PostgreSQL's INTEGER: a larger number in a path or body is a 422, not a
# driver overflow (a 500).
MAX_ROW_ID = 2**31 - 1

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="anbu API key")


class UnauthenticatedError(Exception):
    """No key, or a key we do not know (or that was revoked)."""


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_session(container: ContainerDep) -> AsyncIterator[AsyncSession]:
    async with container.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key and the districts it may see."""

    key_id: int
    name: str
    is_admin: bool
    district_ids: frozenset[int]

    def can_see(self, district_id: int) -> bool:
        return self.is_admin or district_id in self.district_ids

    def require_district(self, district_id: int, kind: str, ident: object) -> None:
        # Another district's record answers 404, not 403: a key must not learn that it exists.
        if not self.can_see(district_id):
            raise NotFoundError(kind, ident)

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ForbiddenError("this action needs an administrator key")


async def get_principal(
    session: SessionDep, key: Annotated[str | None, Security(API_KEY_HEADER)]
) -> Principal:
    if not key:
        raise UnauthenticatedError("missing X-API-Key header")
    row = (
        await session.execute(
            select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
        )
    ).scalar_one_or_none()
    if row is None:
        raise UnauthenticatedError("unknown or revoked API key")
    return Principal(row.id, row.name, row.is_admin, frozenset(d.id for d in row.districts))


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


async def resident_in_scope(
    session: AsyncSession, principal: Principal, resident_id: str
) -> Resident:
    """The resident, if the key may see their district (404 otherwise, existence not leaked)."""
    resident = await session.get(Resident, resident_id)
    if resident is None:
        raise NotFoundError("resident", resident_id)
    principal.require_district(resident.district_id, "resident", resident_id)
    return resident
