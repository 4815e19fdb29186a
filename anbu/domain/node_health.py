"""Is an engine node fit to take calls? Its AMI is connected AND its trunk answers.

A node whose AMI answers but whose trunk to the carrier is broken would take calls that all
fail, each one burning a retry of a person at risk. Asterisk pings the trunk with SIP OPTIONS
(PJSIP ``qualify_frequency``, ``trunk.qualify_s``) and reports every change of the trunk
contact's state (AMI ``ContactStatus``); :class:`TrunkContacts` keeps those states and
:func:`node_fault` turns a node's facts into the reason it must not take calls, if any.

Not yet known counts as reachable: at start (Asterisk spreads the first OPTIONS over one
period), after a reload (a new contact is ``NonQualified`` until pinged) and with the pings
off. A node is taken out only when Asterisk reports the contact Unreachable: a ping had no
answer within ``qualify_timeout`` (any SIP answer, even 405 or 404, counts as reachable). A
carrier that drops OPTIONS without answering would therefore take its node out: turn the
pings off for it (``trunk.qualify_s = 0``, or the node's ``trunk_qualify = false``; the
administrator's page names the cause). With the pings off the node takes calls as before this
check existed, and the network failure watch (:class:`anbu.domain.calls.NetworkFailureWatch`)
still pages when its calls fail.

Pure: no I/O; the AMI side is ``ivr.trunk``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class ContactState(enum.Enum):
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"  # not qualified (yet, or pings off)


# Asterisk's words for a contact's state: ContactStatus events say Reachable/Unreachable/
# NonQualified/Unknown/Created/Updated/Removed; PJSIP_CONTACT(id,status) says the first four.
_LABELS = {
    "reachable": ContactState.REACHABLE,
    "unreachable": ContactState.UNREACHABLE,
}
REMOVED = "removed"
UPDATED = "updated"  # the contact's details changed (a re-registration), not its state


def contact_state(label: str) -> ContactState | None:
    """The state an Asterisk label means; None for ``Removed`` (the contact is gone). Any other
    word (NonQualified, Unknown, Created, Updated, one a later Asterisk adds) is not known."""
    word = label.strip().lower()
    if word == REMOVED:
        return None
    return _LABELS.get(word, ContactState.UNKNOWN)


class NodeFault(enum.StrEnum):
    """Why a node takes no calls."""

    AMI_LOST = "ami_lost"
    TRUNK_UNREACHABLE = "trunk_unreachable"


# How the administrator's page names the cause (in Korean, as every page is worded).
FAULT_KOREAN = {
    NodeFault.AMI_LOST: "AMI 연결 끊김",
    NodeFault.TRUNK_UNREACHABLE: "통신사 트렁크 응답 없음(SIP OPTIONS)",
}


@dataclass
class TrunkContacts:
    """The states of one trunk's contacts (its AOR's), as the node's Asterisk reported them.

    Events and snapshots (the state read at AMI connect) may cross: a snapshot taken before an
    event arrived must not undo it, so each contact remembers the event count at its last
    event and a snapshot only sets the contacts with no event since it was asked for."""

    _states: dict[str, ContactState] = field(default_factory=dict)
    _changed_at: dict[str, int] = field(default_factory=dict)
    events: int = 0

    def seen(self, uri: str, label: str) -> None:
        """A ContactStatus event."""
        self.events += 1
        self._changed_at[uri] = self.events
        self._set(uri, label)

    def snapshot(self, labels: Mapping[str, str], asked_at: int) -> None:
        """The states read when ``events`` was ``asked_at``; contacts missing from it are gone."""
        for uri in [u for u in self._states if u not in labels]:
            if self._changed_at.get(uri, 0) <= asked_at:
                del self._states[uri]
        for uri, label in labels.items():
            if self._changed_at.get(uri, 0) <= asked_at:
                self._set(uri, label)

    def forget(self) -> None:
        """The AMI connection is gone: nothing is known until it is read again."""
        self._states.clear()

    def _set(self, uri: str, label: str) -> None:
        if label.strip().lower() == UPDATED and uri in self._states:
            return
        state = contact_state(label)
        if state is None:
            self._states.pop(uri, None)
        else:
            self._states[uri] = state

    @property
    def reachable(self) -> bool | None:
        """True when a contact answers; False when every contact was pinged and none answered;
        None (not known) otherwise."""
        states = set(self._states.values())
        if ContactState.REACHABLE in states:
            return True
        if states == {ContactState.UNREACHABLE}:
            return False
        return None


def node_fault(*, ami_booted: bool, trunk_reachable: bool | None) -> NodeFault | None:
    """Why the node must take no new calls, or None when it may. A lost AMI comes first: with
    it gone the trunk's state is not known either."""
    if not ami_booted:
        return NodeFault.AMI_LOST
    if trunk_reachable is False:
        return NodeFault.TRUNK_UNREACHABLE
    return None
