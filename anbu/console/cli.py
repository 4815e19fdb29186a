"""``anbu official-account``: the first console account of a district, invitations for the
officials already in the escalation directory, unlocking a locked account."""

from __future__ import annotations

import argparse
import getpass
import os

from anbu.domain.console import ConsoleRole
from anbu.errors import ValidationError
from anbu.settings import Settings

ROLES = {
    "official": ConsoleRole.OFFICIAL,
    "admin": ConsoleRole.DISTRICT_ADMIN,
    "analyst": ConsoleRole.ANALYST,
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    acc = sub.add_parser("official-account", help="officials' console accounts").add_subparsers(
        dest="action", required=True
    )
    create = acc.add_parser("create", help="an account that can log in now (the first one)")
    create.add_argument("--login", required=True)
    create.add_argument("--name", required=True, help="the name shown in the console")
    create.add_argument("--role", choices=sorted(ROLES), default="admin")
    create.add_argument("--district", help="district code, e.g. 11620 (not for analysts)")
    create.add_argument("--dong", default="", help="one dong only (officials)")
    create.add_argument(
        "--password-env",
        default="ANBU_CONSOLE_PASSWORD",
        help="environment variable holding the password (asked for when unset)",
    )
    create.set_defaults(fn=_create)
    invite = acc.add_parser("invite", help="a one-time link for an official of the directory")
    invite.add_argument("--official", required=True, help="the official's id (officials table)")
    invite.add_argument("--login", required=True)
    invite.set_defaults(fn=_invite)
    unlock = acc.add_parser("unlock", help="unlock an account locked by wrong passwords")
    unlock.add_argument("--login", required=True)
    unlock.set_defaults(fn=_unlock)


async def _create(settings: Settings, a: argparse.Namespace) -> int:
    from anbu.app.parts import one_off
    from anbu.console import accounts

    role = ROLES[a.role]
    if role is ConsoleRole.ANALYST and a.district:
        raise ValidationError("analysts see every district: leave out --district")
    if role is not ConsoleRole.ANALYST and not a.district:
        raise ValidationError(f"--district is required for the role {a.role}")
    password = os.environ.get(a.password_env) or getpass.getpass("password: ")
    accounts.check_password(password)
    async with one_off(settings) as c, c.sessions() as s:
        account = await accounts.create_account(
            s,
            login=a.login,
            name=a.name,
            role=role,
            password=password,
            district_code=a.district,
            dong=a.dong,
            now=c.clock.now(),
        )
        await s.commit()
        print(f"account {account.login} ({role}) created: {settings.public_url}/console")
    return 0


async def _invite(settings: Settings, a: argparse.Namespace) -> int:
    from anbu.app.parts import one_off
    from anbu.console import accounts

    async with one_off(settings) as c:
        async with c.sessions() as s:
            token = await accounts.invite_official(s, a.official, login=a.login, now=c.clock.now())
            await s.commit()
        # Printed once; only its hash is stored. Send it to the official yourself.
        print(f"{settings.public_url.rstrip('/')}/console/invite/{token}")
    return 0


async def _unlock(settings: Settings, a: argparse.Namespace) -> int:
    from anbu.app.parts import one_off
    from anbu.console import accounts

    async with one_off(settings) as c, c.sessions() as s:
        account = await accounts.unlock(s, a.login)
        await s.commit()
        print(f"account {account.login} unlocked")
    return 0
