"""API keys, for administrators: create (the key is shown once), list, read, revoke.

A key's scopes nest (read < write < admin, see :mod:`anbu.domain.access`); a key without the
admin scope is bound to its districts. Revoked and expired keys answer 401 at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from anbu.api.deps import MAX_ROW_ID, ContainerDep, PrincipalDep, SessionDep
from anbu.api.strict import IsoDatetime, Timestamp
from anbu.db.models import ApiKey
from anbu.domain.access import KeyState, Scope, decode_scopes, key_state
from anbu.errors import ConflictError
from anbu.services import admin

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])

KeyId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(min_length=1, max_length=100)
    district_codes: list[Annotated[StrictStr, Field(min_length=1, max_length=16)]] = Field(
        default_factory=list, max_length=500, description="needed unless scopes has admin"
    )
    scopes: list[Scope] = Field(
        default_factory=lambda: [Scope.WRITE],
        min_length=1,
        description="read < write < admin; each implies the ones before it",
    )
    expires_at: IsoDatetime | None = Field(
        default=None, description="with a time zone; None: until revoked"
    )


class ApiKeyOut(BaseModel):
    id: int
    name: str
    scopes: list[Scope]
    district_codes: list[str]
    state: KeyState
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None = Field(description="to the minute")

    @classmethod
    def of(cls, row: ApiKey, now: dt.datetime) -> ApiKeyOut:
        held = decode_scopes(row.scopes, is_admin=row.is_admin)
        return cls(
            id=row.id,
            name=row.name,
            scopes=[s for s in Scope if s in held],
            district_codes=sorted(d.code for d in row.districts),
            state=key_state(row.revoked_at, row.expires_at, now),
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself: shown this once, only its hash is stored")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_key(
    body: ApiKeyIn, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> ApiKeyCreated:
    principal.require_admin()
    now = container.clock.now()
    row, secret = await admin.add_api_key(
        session,
        body.name,
        body.district_codes,
        scopes=body.scopes,
        expires_at=body.expires_at,
        now=now,
    )
    await session.commit()
    return ApiKeyCreated(**ApiKeyOut.of(row, now).model_dump(), key=secret)


@router.get("", response_model=list[ApiKeyOut])
async def list_keys(
    principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> list[ApiKeyOut]:
    principal.require_admin()
    now = container.clock.now()
    return [ApiKeyOut.of(row, now) for row in await admin.list_api_keys(session)]


@router.get("/{key_id}", response_model=ApiKeyOut)
async def get_key(
    key_id: KeyId, principal: PrincipalDep, session: SessionDep, container: ContainerDep
) -> ApiKeyOut:
    principal.require_admin()
    return ApiKeyOut.of(await admin.get_api_key(session, key_id), container.clock.now())


@router.post("/{key_id}/revoke", response_model=ApiKeyOut)
async def revoke_key(
    key_id: KeyId,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
) -> ApiKeyOut:
    """Revoke at once (idempotent: revoking again keeps the first time). A key cannot revoke
    itself: the last administrator key would lock everyone out; use another admin key."""
    principal.require_admin()
    if key_id == principal.key_id:
        raise ConflictError("a key cannot revoke itself; revoke it with another admin key")
    now = container.clock.now()
    row = await admin.revoke_api_key(session, key_id, now)
    await session.commit()
    container.verified_keys.forget(key_id)  # 401 at once here; other processes within its TTL
    return ApiKeyOut.of(row, now)
