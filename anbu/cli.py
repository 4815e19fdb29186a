"""The ``anbu`` command line. Errors print one clear line and exit non-zero, no traceback."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from anbu.errors import AnbuError
from anbu.logs import configure_logging
from anbu.settings import Settings, SettingsError, get_settings

log = logging.getLogger("anbu")
DEV = "devstack.commands"  # the local stack's commands (development tooling)


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


# --- database and administration -------------------------------------------------------------


async def _db_upgrade(settings: Settings, _a: argparse.Namespace) -> int:
    from anbu.app.parts import one_off
    from anbu.db.migrate import upgrade

    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    async with one_off(settings) as c:
        await upgrade(c.engine)
    print(f"database at head: {c.engine.url.render_as_string(hide_password=True)}")
    return 0


async def _district_add(settings: Settings, a: argparse.Namespace) -> int:
    from anbu.app.parts import one_off
    from anbu.services.admin import ensure_district

    async with one_off(settings) as c, c.sessions() as s:
        d = await ensure_district(s, a.code, a.name)
        await s.commit()
        print(f"district {d.code} {d.name} (id {d.id})")
    return 0


async def _key_create(settings: Settings, a: argparse.Namespace) -> int:
    import datetime as dt

    from anbu.app.parts import one_off
    from anbu.services.admin import add_api_key

    scopes = ["admin"] if a.admin else (a.scope or ["write"])
    async with one_off(settings) as c, c.sessions() as s:
        now = c.clock.now()
        expires = now + dt.timedelta(days=a.expires_days) if a.expires_days else None
        row, key = await add_api_key(
            s, a.name, a.district or [], scopes=scopes, expires_at=expires, now=now
        )
        await s.commit()
        key_id = row.id
    print(key)
    print(f"(key {key_id}; shown once: only its hash is stored)", file=sys.stderr)
    return 0


async def _key_list(settings: Settings, _a: argparse.Namespace) -> int:
    from anbu.api.keys import ApiKeyOut
    from anbu.app.parts import one_off
    from anbu.services.admin import list_api_keys

    async with one_off(settings) as c, c.sessions() as s:
        rows = [ApiKeyOut.of(r, c.clock.now()) for r in await list_api_keys(s)]

    def when(t: object) -> str:
        return "-" if t is None else f"{t:%Y-%m-%d %H:%M}"

    print("id  state    scopes            districts  expires           last used         name")
    for k in rows:
        districts = ",".join(k.district_codes) or "*"
        print(
            f"{k.id:<3} {k.state:<8} {','.join(k.scopes):<17} {districts:<10}"
            f" {when(k.expires_at):<17} {when(k.last_used_at):<17} {k.name}"
        )
    return 0


async def _key_revoke(settings: Settings, a: argparse.Namespace) -> int:
    from anbu.app.parts import one_off
    from anbu.services.admin import revoke_api_key

    async with one_off(settings) as c, c.sessions() as s:
        row = await revoke_api_key(s, a.id, c.clock.now())
        await s.commit()
        print(f"key {row.id} ({row.name}) revoked at {row.revoked_at:%Y-%m-%d %H:%M:%S}Z")
    return 0


# --- commands that run processes are wired in anbu.app (the composition root) ----------------


async def _signals_prune(settings: Settings, a: argparse.Namespace) -> int:
    import datetime as dt

    from anbu.app.parts import one_off
    from anbu.risk.retention import oldest_event, prune_events

    days = a.days if a.days is not None else settings.scheduling.signal_retention_days
    if days is None:
        print("anbu: no retention is set (ANBU_SCHEDULING__SIGNAL_RETENTION_DAYS); pass --days")
        return 2
    async with one_off(settings) as c:
        deleted = await prune_events(c.sessions, c.clock.now(), dt.timedelta(days=days))
        oldest = await oldest_event(c.sessions)
    kept = f"oldest kept received {oldest.isoformat()}" if oldest else "none kept"
    print(f"deleted {deleted} raw signal event(s) older than {days} days; {kept}")
    return 0


async def _retention_run(settings: Settings, _a: argparse.Namespace) -> int:
    from anbu.app.parts import one_off
    from anbu.services.retention import RetentionPolicy, apply_retention

    async with one_off(settings) as c:
        report = await apply_retention(
            c.sessions, c.clock.now(), RetentionPolicy.from_settings(settings)
        )
    print(report.line())
    return 0


def _runtime(
    name: str, module: str = "anbu.app.processes"
) -> Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]:
    """A command of the composition root, or of the local stack (``devstack.commands``),
    imported only when it runs."""

    async def call(settings: Settings, a: argparse.Namespace) -> int:
        runtime = importlib.import_module(module)
        fn: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]] = getattr(
            runtime, name
        )
        return await fn(settings, a)

    return call


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anbu", description="anbu (안부) welfare check-in calls")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the whole local stack (make run)")
    run.set_defaults(fn=_runtime("run_stack", DEV))

    serve = sub.add_parser("serve", help="API + dialer + scheduler against running Asterisk")
    serve.add_argument("--no-telephony", action="store_true", help="API only, no dialing")
    serve.set_defaults(fn=_runtime("serve"))

    stack = sub.add_parser("stack", help="the local stack's parts").add_subparsers(
        dest="action", required=True
    )
    stack.add_parser("down", help="stop Asterisk instances and Kannel").set_defaults(
        fn=_runtime("stack_down", DEV)
    )

    ast = sub.add_parser("asterisk", help="manage the Asterisk instances").add_subparsers(
        dest="action", required=True
    )
    ast.add_parser("install", help="fetch Asterisk 22 into the cache").set_defaults(
        fn=_runtime("asterisk_install", DEV)
    )
    for action in ("up", "down", "status"):
        sp = ast.add_parser(action, help=f"{action} the engine and carrier instances")
        sp.add_argument("--only", choices=["engine", "carrier"], help="one instance")
        sp.set_defaults(fn=_runtime(f"asterisk_{action}", DEV))

    db = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(fn=_db_upgrade)

    district = sub.add_parser("district", help="districts").add_subparsers(
        dest="action", required=True
    )
    dadd = district.add_parser("add", help="add a district")
    dadd.add_argument("code", help="e.g. 11620 (행정구역 코드)")
    dadd.add_argument("name", help="e.g. 관악구")
    dadd.set_defaults(fn=_district_add)

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    kc = key.add_parser("create", help="create an API key (printed once)")
    kc.add_argument("name")
    kc.add_argument("--district", action="append", help="district code (repeatable)")
    kc.add_argument("--admin", action="store_true", help="admin scope: every district, keys")
    kc.add_argument("--scope", action="append", choices=["read", "write", "admin"])
    kc.add_argument("--expires-days", type=int, help="expires this many days from now")
    kc.set_defaults(fn=_key_create)
    key.add_parser("list", help="list keys (never the keys themselves)").set_defaults(fn=_key_list)
    kr = key.add_parser(
        "revoke",
        help="revoke a key (a running anbu refuses it within ANBU_LIMITS__KEY_CACHE_S, 5 s)",
    )
    kr.add_argument("id", type=int, help="the key's id (anbu key list)")
    kr.set_defaults(fn=_key_revoke)

    sub.add_parser("secrets", help="print fresh secrets for an installation's env file (run once)")

    call = sub.add_parser("call", help="one test call to a number, result printed")
    call.add_argument("number", help="Korean number, e.g. 01099990001 (carrier stand-in)")
    call.add_argument("--ring-timeout", type=float, default=20.0)
    call.set_defaults(fn=_runtime("one_call"))

    prompts = sub.add_parser("prompts", help="prompt audio").add_subparsers(
        dest="action", required=True
    )
    prompts.add_parser("render", help="render the prompt catalogue").set_defaults(
        fn=_runtime("prompts_render")
    )
    up = prompts.add_parser("upload", help="a recorded prompt (voice talent, an official)")
    up.add_argument("prompt", help="the catalogue prompt id, e.g. greeting")
    up.add_argument("file", help="the recording (WAV, FLAC, ...), normalised on the way in")
    up.add_argument("--district", help="this district's own (code); default: every district")
    up.add_argument("--official", help="this official's own (id): the residents they visit hear it")
    up.set_defaults(fn=_runtime("prompts_upload"))
    src = prompts.add_parser("sources", help="which source (recording or TTS) each prompt plays")
    src.add_argument("--district", help="as a call in this district hears them")
    src.add_argument("--official", help="as the residents this official visits hear them")
    src.set_defaults(fn=_runtime("prompts_sources"))

    signals = sub.add_parser("signals", help="raw signal events").add_subparsers(
        dest="action", required=True
    )
    prune = signals.add_parser("prune", help="delete raw events past the retention now")
    prune.add_argument(
        "--days", type=int, help="keep this many days (default: the configured retention, >= 3)"
    )
    prune.set_defaults(fn=_signals_prune)

    retention = sub.add_parser("retention", help="personal records' retention").add_subparsers(
        dest="action", required=True
    )
    retention.add_parser(
        "run", help="erase/delete what ANBU_RETENTION__* says is past its keep, now"
    ).set_defaults(fn=_retention_run)

    sim = sub.add_parser("sim", help="simulators").add_subparsers(dest="action", required=True)
    simsig = sim.add_parser("signals", help="generate realistic signal streams")
    simsig.add_argument("args", nargs=argparse.REMAINDER)
    simsig.set_defaults(fn=_runtime("sim_signals", DEV))

    from anbu.report.cli import add_parser as add_report

    add_report(sub)
    from anbu.console.cli import add_parser as add_console

    add_console(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "secrets":  # before the settings: production ones may not load yet
        from anbu.install_secrets import env_lines, generate

        sys.stdout.write(env_lines(generate()))
        return 0
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        settings = get_settings()
        if not args.verbose:
            configure_logging(settings.log.level.upper(), settings.log.format)
        return _run(args.fn(settings, args))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"anbu: {problem}", file=sys.stderr)
        return 2
    except AnbuError as exc:
        print(f"anbu: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic settings errors, bad arguments
        print(f"anbu: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
