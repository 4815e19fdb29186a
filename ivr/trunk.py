"""One engine node's trunk as its Asterisk sees it: the SIP OPTIONS answers (PJSIP qualify).

Asterisk reports each change of a contact's state as an AMI ``ContactStatus`` event (class
system, already in the login's event mask), never the state itself: after every (re)connect
the state is read once with ``Getvar`` of ``PJSIP_AOR(aor,contact)`` and
``PJSIP_CONTACT(id,status)``. ``PJSIPShowContacts`` would say the same but needs the AMI
user's "system" write, which would also allow ModuleLoad and Reload (tests/test_security_ami).
The rule that turns these states into the node's health is in :mod:`anbu.domain.node_health`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from anbu.domain.node_health import TrunkContacts
from anbu.errors import AmiError
from ivr.ami import AmiClient, AmiMessage, AmiState

log = logging.getLogger(__name__)


class TrunkWatch:
    """Follows the contacts of the AOR ``aor`` on one node's AMI. ``on_change`` (set by the
    composition root) is called whenever what is known may have changed."""

    def __init__(self, ami: AmiClient, aor: str) -> None:
        self.ami = ami
        self.aor = aor
        self.contacts = TrunkContacts()
        self.on_change: Callable[[], None] | None = None
        self._reads: set[asyncio.Task[None]] = set()
        self._subscriptions = [
            ami.subscribe(self._on_event, "ContactStatus"),
            ami.on_state(self._on_state),
        ]

    @property
    def reachable(self) -> bool | None:
        return self.contacts.reachable

    def _on_event(self, message: AmiMessage) -> None:
        uri, status = message.get("URI"), message.get("ContactStatus")
        if message.get("AOR") != self.aor or not uri or not status:
            return
        before = self.contacts.reachable
        self.contacts.seen(uri, status)
        if self.contacts.reachable != before:
            log.warning(
                "AMI %s:%s: trunk %s contact %s is %s",
                self.ami.host,
                self.ami.port,
                self.aor,
                uri,
                status,
            )
        self._changed()

    def _on_state(self, state: AmiState) -> None:
        self.contacts.forget()
        if state is AmiState.BOOTED:
            task = asyncio.create_task(self._read(), name=f"trunk-{self.ami.port}")
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)
        self._changed()

    async def _read(self) -> None:
        asked_at = self.contacts.events
        try:
            ids = await self._getvar(f"PJSIP_AOR({self.aor},contact)")
            labels: dict[str, str] = {}
            for contact in filter(None, ids.split(",")):
                uri = await self._getvar(f"PJSIP_CONTACT({contact},uri)")
                status = await self._getvar(f"PJSIP_CONTACT({contact},status)")
                if uri and status:
                    labels[uri] = status
        except AmiError as exc:
            # Not known until the next ContactStatus event: the node keeps taking calls.
            log.warning(
                "AMI %s:%s: trunk %s state not read (%s)",
                self.ami.host,
                self.ami.port,
                self.aor,
                exc,
            )
            return
        if not ids:
            log.warning(
                "AMI %s:%s: no contact for trunk %s (func_pjsip_aor not loaded?): its state is"
                " known only from the next change",
                self.ami.host,
                self.ami.port,
                self.aor,
            )
        self.contacts.snapshot(labels, asked_at)
        self._changed()

    async def _getvar(self, variable: str) -> str:
        response = await self.ami.action("Getvar", {"Variable": variable})
        return response.get("Value") or ""

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.cancel()
        for task in list(self._reads):
            task.cancel()
        await asyncio.gather(*self._reads, return_exceptions=True)
