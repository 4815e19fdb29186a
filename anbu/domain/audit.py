"""The access log's vocabulary (PIPA: who read or changed whose personal record, when, from
where). Pure: the API and, later, the officials' console turn their requests into these."""

from __future__ import annotations

import enum


class ActorKind(enum.StrEnum):
    API_KEY = "api_key"  # the integrating system, a district's or an administrator's key
    OFFICIAL = "official"  # an official (the ack link today, the officials' console next)
    SYSTEM = "system"  # anbu itself (the retention job)


class AuditResource(enum.StrEnum):
    RESIDENT = "resident"
    CHECKIN = "checkin"
    TRANSCRIPT = "transcript"  # what a resident said on a call (a call attempt's transcript)
    INCIDENT = "incident"
    FINDING = "finding"  # what an official found on a visit
    OFFICIAL = "official"  # an official of the escalation directory (their mobile number)
    ESCALATION_CHAIN = "escalation_chain"  # who is told, in what order, when on duty
    PROGRAM = "program"  # a calling programme: when a district's residents are called
    RECORDING = "recording"  # a district's recorded prompt (the id names the prompt)


class AuditAction(enum.StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


# Path parameters that name a personal record: any route that has one is logged on its own.
PATH_RESOURCES: dict[str, AuditResource] = {
    "resident_id": AuditResource.RESIDENT,
    "checkin_id": AuditResource.CHECKIN,
    "incident_id": AuditResource.INCIDENT,
}


def action_for(method: str, *, names_the_record: bool) -> AuditAction:
    """What a request does to the record its path names. ``names_the_record``: the path ends
    with the record's id (``/residents/{id}``), not a part of it (``/residents/{id}/holds``),
    where any write changes the record's data: an update."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        return AuditAction.READ
    if method == "DELETE" and names_the_record:
        return AuditAction.DELETE
    return AuditAction.UPDATE
