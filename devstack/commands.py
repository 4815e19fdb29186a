"""The local stack's commands (``make run``, ``anbu asterisk ...``, ``anbu stack down``,
``anbu sim signals``): development tooling around the processes the composition root builds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from anbu.app.processes import prompts_render, serve
from anbu.install_secrets import with_local_callback_token
from anbu.settings import Settings
from devstack.asterisk import AsteriskInstance, provision_carrier, provision_engines
from devstack.kannel import KannelConfig, KannelInstance
from ivr.prompts import PromptLibrary

log = logging.getLogger(__name__)


def _instances(settings: Settings, only: str | None = None) -> list[AsteriskInstance]:
    out: list[AsteriskInstance] = []
    if only in (None, "carrier"):
        out.append(provision_carrier(settings))
    if only in (None, "engine"):
        out += provision_engines(settings)  # one per engine node
    return out


def _kannel(settings: Settings) -> KannelInstance:
    return KannelInstance(KannelConfig.from_settings(settings, name="kannel"))


async def asterisk_install(settings: Settings, _a: argparse.Namespace) -> int:
    from devstack.asterisk import install_asterisk

    install = await asyncio.to_thread(install_asterisk, settings.cache_dir)
    print(f"Asterisk {install.version} at {install.root}")
    return 0


async def asterisk_up(settings: Settings, a: argparse.Namespace) -> int:
    for inst in await asyncio.to_thread(_instances, settings, a.only):
        await inst.start_async()
        print(f"{inst.name}: running (pid {inst.pid}, SIP {inst.sip_port}, AMI {inst.ami_port})")
    return 0


async def asterisk_down(settings: Settings, a: argparse.Namespace) -> int:
    for inst in await asyncio.to_thread(_instances, settings, a.only):
        await inst.stop_async()
        print(f"{inst.name}: stopped")
    return 0


async def asterisk_status(settings: Settings, a: argparse.Namespace) -> int:
    rc = 0
    for inst in await asyncio.to_thread(_instances, settings, a.only):
        status = await inst.status_async()
        print(f"{inst.name}: {status} (log {inst.log_path})")
        rc = rc or (0 if str(status) == "running" else 1)
    return rc


async def stack_down(settings: Settings, _a: argparse.Namespace) -> int:
    for inst in await asyncio.to_thread(_instances, settings, None):
        await inst.stop_async()
    await _kannel(settings).stop()
    print("stack stopped")
    return 0


async def sim_signals(_settings: Settings, a: argparse.Namespace) -> int:
    from devstack.sim import sim_main

    return await asyncio.to_thread(sim_main, list(a.args))


async def run_stack(settings: Settings, args: argparse.Namespace) -> int:
    """make run: Asterisk engine + carrier stand-in + Kannel + API + scheduler, on SQLite."""
    # Kannel's callbacks are authenticated in development too (a token kept in the var dir).
    settings = await asyncio.to_thread(with_local_callback_token, settings)
    missing = await asyncio.to_thread(PromptLibrary(settings.audio_dir).missing)
    if missing:
        await prompts_render(settings, args)
    instances = await asyncio.to_thread(_instances, settings, None)
    kannel = _kannel(settings)
    try:
        for inst in instances:
            await inst.start_async()
            log.info("%s up: SIP %s, AMI %s", inst.name, inst.sip_port, inst.ami_port)
        await kannel.start()
        log.info("Kannel up: sendsms %s", settings.sms.kannel_url)
        args.no_telephony = False
        args.demo = True
        print(
            f"anbu is up: API http://{settings.api_host}:{settings.api_port}/docs "
            f"(dev API key: see ANBU_BOOTSTRAP_API_KEY), "
            f"test call: anbu call 01099990001. Ctrl-C stops everything.",
            flush=True,
        )
        return await serve(settings, args)
    finally:
        with contextlib.suppress(Exception):
            await kannel.stop()
        for inst in reversed(instances):
            with contextlib.suppress(Exception):
                await inst.stop_async()
