"""Console accounts: creation, invitation, login with lockout, server-side sessions.

Passwords are hashed with argon2id (argon2-cffi's defaults), off the event loop: one hash
takes tens of milliseconds of CPU. A login for an unknown name still verifies a hash, so the
answer's timing does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from anbu.db.models import District
from anbu.db.models_console import ConsoleAccount, ConsoleSession
from anbu.db.models_escalation import Official
from anbu.domain.console import (
    INVITE_VALID,
    ConsoleRole,
    locks_after,
    session_expired,
)
from anbu.domain.incidents import OfficialRole
from anbu.errors import AnbuError, ConflictError, GoneError, NotFoundError, ValidationError

_hasher = PasswordHasher()
# The idle clock restarts at most once a minute: no UPDATE on every page of a busy official.
TOUCH_EVERY = dt.timedelta(minutes=1)
MIN_PASSWORD = 10


class LoginRefusedError(AnbuError):
    """Wrong name or password (the message never says which)."""


class AccountLockedError(LoginRefusedError):
    """Too many wrong passwords: a district admin (or ``anbu official-account unlock``) must
    unlock the account."""


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def hash_password(password: str) -> str:
    check_password(password)
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(stored: str, password: str) -> bool:
    def run() -> bool:
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(run)


async def verify_password(stored: str, password: str) -> bool:
    """True when ``password`` matches the stored argon2 hash (run in a thread)."""
    return await _verify(stored, password)


_DUMMY = _hasher.hash("not a password anyone has")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > 200:
        raise ValidationError("the password is longer than 200 characters")


async def _district(session: AsyncSession, code: str | None) -> District | None:
    if code is None:
        return None
    district = (
        await session.execute(select(District).where(District.code == code))
    ).scalar_one_or_none()
    if district is None:
        raise NotFoundError("district", code)
    return district


async def create_account(
    session: AsyncSession,
    *,
    login: str,
    name: str,
    role: ConsoleRole,
    password: str,
    district_code: str | None,
    dong: str = "",
    now: dt.datetime,
) -> ConsoleAccount:
    """An account that can log in at once (the first one of a district, from the CLI)."""
    if role is not ConsoleRole.ANALYST and district_code is None:
        raise ValidationError(f"a {role} account needs a district")
    login = login.strip()
    if not login or len(login) > 64:
        raise ValidationError("the login name needs 1 to 64 characters")
    if await session.scalar(select(ConsoleAccount.id).where(ConsoleAccount.login == login)):
        raise ConflictError(f"the login name {login!r} is taken")
    district = await _district(session, district_code)
    account = ConsoleAccount(
        login=login,
        name=name,
        role=role,
        district_id=district.id if district else None,
        dong=dong,
        password_hash=await hash_password(password),
        failed_logins=0,
        active=True,
        created_at=now,
    )
    session.add(account)
    await session.flush()
    return account


async def invite_official(
    session: AsyncSession, official_id: str, *, login: str, now: dt.datetime
) -> str:
    """An account for an official of the escalation directory; returns the one-time token of
    the invitation link (only its hash is stored). The official picks the password."""
    official = await session.get(Official, official_id)
    if official is None or not official.active:
        raise NotFoundError("official", official_id)
    existing = await session.scalar(
        select(ConsoleAccount).where(ConsoleAccount.official_id == official_id)
    )
    if existing is not None and existing.password_hash is not None:
        raise ConflictError(f"official {official_id} already has an account ({existing.login})")
    token = secrets.token_urlsafe(32)
    if existing is None:
        if await session.scalar(select(ConsoleAccount.id).where(ConsoleAccount.login == login)):
            raise ConflictError(f"the login name {login!r} is taken")
        role = (
            ConsoleRole.DISTRICT_ADMIN if official.role is OfficialRole.GU else ConsoleRole.OFFICIAL
        )
        existing = ConsoleAccount(
            login=login,
            name=official.name,
            role=role,
            district_id=official.district_id,
            dong=official.dong,
            official_id=official.id,
            failed_logins=0,
            active=True,
            created_at=now,
        )
        session.add(existing)
    existing.invite_hash = sha256(token)  # a new invitation voids the previous link
    existing.invite_expires_at = now + INVITE_VALID
    await session.flush()
    return token


async def invited(session: AsyncSession, token: str, now: dt.datetime) -> ConsoleAccount:
    account = await session.scalar(
        select(ConsoleAccount).where(ConsoleAccount.invite_hash == sha256(token))
    )
    if account is None:
        raise NotFoundError("invitation", "for this link")
    if account.invite_expires_at is None or account.invite_expires_at <= now:
        raise GoneError("this invitation has expired; ask your district admin for a new one")
    return account


async def accept_invitation(
    session: AsyncSession, token: str, password: str, now: dt.datetime
) -> ConsoleAccount:
    account = await invited(session, token, now)
    account.password_hash = await hash_password(password)
    account.invite_hash = None  # one use
    account.invite_expires_at = None
    await session.flush()
    return account


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # goes in the cookie, never stored
    csrf: str
    account: ConsoleAccount


async def login(
    session: AsyncSession, login_name: str, password: str, now: dt.datetime, client: str = ""
) -> NewSession:
    """Check the password; the ``MAX_FAILED_LOGINS``-th wrong one in a row locks the account.
    The caller commits (also on failure: the count must stick)."""
    account = await session.scalar(
        select(ConsoleAccount).where(ConsoleAccount.login == login_name.strip())
    )
    if account is None or account.password_hash is None or not account.active:
        await _verify(_DUMMY, password)
        raise LoginRefusedError("wrong login name or password")
    if account.locked_at is not None:
        raise AccountLockedError("this account is locked after too many wrong passwords")
    if not await _verify(account.password_hash, password):
        account.failed_logins += 1
        if locks_after(account.failed_logins):
            account.locked_at = now
            raise AccountLockedError("this account is locked after too many wrong passwords")
        raise LoginRefusedError("wrong login name or password")
    return await open_session(session, account, now, client)


async def open_session(
    session: AsyncSession, account: ConsoleAccount, now: dt.datetime, client: str = ""
) -> NewSession:
    """A new server-side session for an account that proved who it is (password or single
    sign-on). The caller commits."""
    account.failed_logins = 0
    account.last_login_at = now
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            id=sha256(token),
            account_id=account.id,
            csrf=csrf,
            created_at=now,
            last_seen_at=now,
            client=client[:64],
        )
    )
    await session.flush()
    return NewSession(token, csrf, account)


async def current(session: AsyncSession, token: str, now: dt.datetime) -> ConsoleSession | None:
    """The live session of a cookie, touched; None (and the row deleted) once it expired."""
    row = await session.get(ConsoleSession, sha256(token))
    if row is None:
        return None
    account = row.account
    if (
        session_expired(row.created_at, row.last_seen_at, now)
        or not account.active
        or account.locked_at is not None
    ):
        await session.delete(row)
        await session.flush()
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now  # the caller's commit (with the page's log lines) stores it
    return row


async def logout(session: AsyncSession, token: str) -> None:
    await session.execute(delete(ConsoleSession).where(ConsoleSession.id == sha256(token)))


async def unlock(session: AsyncSession, login_name: str) -> ConsoleAccount:
    account = await session.scalar(select(ConsoleAccount).where(ConsoleAccount.login == login_name))
    if account is None:
        raise NotFoundError("account", login_name)
    account.locked_at = None
    account.failed_logins = 0
    await session.flush()
    return account
