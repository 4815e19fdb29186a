"""Administration: districts and API keys (CLI and start-up use these)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import ApiKey, District
from anbu.errors import ValidationError


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


async def create_api_key(
    session: AsyncSession,
    name: str,
    district_codes: Sequence[str] = (),
    *,
    admin: bool = False,
    key: str | None = None,
) -> str:
    """Create a key for the given districts and return it. Only its hash is stored."""
    if not admin and not district_codes:
        raise ValidationError("a non-admin key needs at least one district")
    districts = []
    for code in district_codes:
        d = (
            await session.execute(select(District).where(District.code == code))
        ).scalar_one_or_none()
        if d is None:
            raise ValidationError(f"unknown district {code!r}")
        districts.append(d)
    key = key or "anbu_" + secrets.token_urlsafe(24)
    session.add(ApiKey(name=name, key_hash=hash_key(key), is_admin=admin, districts=districts))
    await session.flush()
    return key


async def ensure_key(session: AsyncSession, name: str, key: str, *, admin: bool) -> None:
    """Idempotently register a known key (the development bootstrap key)."""
    found = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    ).scalar_one_or_none()
    if found is None:
        await create_api_key(session, name, admin=admin, key=key)
