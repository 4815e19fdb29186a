"""The AMI user anbu logs in with may do what anbu does (Originate, Hangup, CoreShowChannels,
Ping) and read the events it follows, nothing else: against the real Asterisk engine.

Issue 12: the user had ``system,command,config,originate``, a shell for whoever has the
secret (``Command`` runs any CLI command, ``Originate`` to ``System`` any program)."""

from __future__ import annotations

import asyncio
import re

import pytest

from devstack.asterisk import AMI_READ, AMI_WRITE
from ivr.ami import AmiActionError, AmiClient, AmiMessage
from tests.fixtures_asterisk import AsteriskPair

pytestmark = [pytest.mark.asterisk]

NEVER_ANSWERS = "01099990004"


async def test_given_anbus_ami_user_when_it_tries_more_than_anbu_needs_then_refused(
    asterisk_pair: AsteriskPair,
) -> None:
    ami = AmiClient(
        "127.0.0.1", asterisk_pair.ami_port, asterisk_pair.ami_user, asterisk_pair.ami_secret
    )
    ami.start()
    try:
        # Refused: a CLI command, reading or changing configuration, running a program.
        for action, fields in [
            ("Command", {"Command": "core show version"}),
            ("GetConfig", {"Filename": "manager.conf"}),
            ("UpdateConfig", {"SrcFilename": "manager.conf", "DstFilename": "manager.conf"}),
            ("ModuleLoad", {"Module": "app_system.so", "LoadType": "load"}),
            (
                "Originate",
                {
                    "Channel": "Local/s@anbu-checkin",
                    "Application": "System",
                    "Data": "touch /tmp/anbu-pwned",
                },
            ),
        ]:
            with pytest.raises(AmiActionError, match=r"(?i)permission denied|forbidden"):
                await ami.action(action, fields, timeout_s=10.0)

        # Allowed: what anbu does.
        await ami.action("Ping", timeout_s=10.0)
        await ami.action_list("CoreShowChannels", timeout_s=10.0)
        events: list[AmiMessage] = []
        ami.subscribe(events.append, "Newchannel", "Hangup")
        channel_id = "sec-ami-test-1"
        await ami.action(
            "Originate",
            {
                "Channel": f"PJSIP/{NEVER_ANSWERS}@trunk",
                "Context": "anbu-checkin",
                "Exten": "s",
                "Priority": "1",
                "Timeout": "20000",
                "Async": "true",
                "ChannelId": channel_id,
            },
            timeout_s=10.0,
        )
        for _ in range(500):
            channels = [e.get("Channel") for e in events if e.get("Uniqueid") == channel_id]
            if channels:
                break
            await asyncio.sleep(0.02)
        [channel] = channels[:1]
        assert channel is not None
        await ami.action("Hangup", {"Channel": channel, "Cause": "16"}, timeout_s=10.0)
        for _ in range(500):
            if any(e.event == "Hangup" and e.get("Uniqueid") == channel_id for e in events):
                break
            await asyncio.sleep(0.02)
        assert any(e.event == "Hangup" and e.get("Uniqueid") == channel_id for e in events)
    finally:
        await ami.close()
    conf = (asterisk_pair.engine.etc_dir / "manager.conf").read_text()
    assert re.search(rf"^read = {AMI_READ}$", conf, re.M)
    assert re.search(rf"^write = {AMI_WRITE}$", conf, re.M)
