"""Administration: districts and API keys (the CLI, start-up and the admin API use these)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import ApiKey, District
from anbu.domain.access import Scope, close_scopes, encode_scopes
from anbu.errors import NotFoundError, ValidationError


def hash_key(key: str) -> str:
    """What is stored of an API key (the key itself is shown once, never stored)."""
    return hashlib.sha256(key.encode()).hexdigest()


async def ensure_district(session: AsyncSession, code: str, name: str) -> District:
    district = (
        await session.execute(select(District).where(District.code == code))
    ).scalar_one_or_none()
    if district is None:
        district = District(code=code, name=name)
        session.add(district)
        await session.flush()
    return district


async def add_api_key(
    session: AsyncSession,
    name: str,
    district_codes: Sequence[str] = (),
    *,
    scopes: Iterable[Scope | str] = (Scope.WRITE,),
    expires_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
    key: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the key itself (shown once, only its hash is stored)."""
    try:
        held = close_scopes(scopes)
    except ValueError as exc:
        raise ValidationError(f"unknown scope: {exc}") from exc
    if not held:
        raise ValidationError("a key needs at least one scope (read, write, admin)")
    admin = Scope.ADMIN in held
    if not admin and not district_codes:
        raise ValidationError("a key without the admin scope needs at least one district")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationError("expires_at needs a time zone (e.g. 2027-01-01T00:00:00+09:00)")
        if now is not None and expires_at <= now:
            raise ValidationError("expires_at is in the past")
    districts = []
    for code in dict.fromkeys(district_codes):
        d = (
            await session.execute(select(District).where(District.code == code))
        ).scalar_one_or_none()
        if d is None:
            raise ValidationError(f"unknown district {code!r}")
        districts.append(d)
    key = key or "anbu_" + secrets.token_urlsafe(24)
    row = ApiKey(
        name=name,
        key_hash=hash_key(key),
        is_admin=admin,
        scopes=encode_scopes(held),
        expires_at=expires_at,
        districts=districts,
    )
    if now is not None:
        row.created_at = now
    session.add(row)
    await session.flush()
    return row, key


async def create_api_key(
    session: AsyncSession,
    name: str,
    district_codes: Sequence[str] = (),
    *,
    admin: bool = False,
    key: str | None = None,
    scopes: Iterable[Scope | str] | None = None,
    expires_at: dt.datetime | None = None,
) -> str:
    """Create a key for the given districts and return it. Only its hash is stored."""
    chosen = scopes if scopes is not None else ([Scope.ADMIN] if admin else [Scope.WRITE])
    _row, secret = await add_api_key(
        session, name, district_codes, scopes=chosen, expires_at=expires_at, key=key
    )
    return secret


async def list_api_keys(session: AsyncSession, *, include_revoked: bool = True) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list((await session.execute(query)).scalars().all())


async def get_api_key(session: AsyncSession, key_id: int) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFoundError("API key", key_id)
    return row


async def revoke_api_key(session: AsyncSession, key_id: int, now: dt.datetime) -> ApiKey:
    """Revoke a key (idempotent: a second revocation keeps the first time). The caller commits."""
    row = await get_api_key(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = now
    return row


async def ensure_key(session: AsyncSession, name: str, key: str, *, admin: bool) -> None:
    """Idempotently register a known key (the development bootstrap key)."""
    found = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    ).scalar_one_or_none()
    if found is None:
        await create_api_key(session, name, admin=admin, key=key)
