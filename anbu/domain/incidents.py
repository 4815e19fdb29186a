"""Statuses of incidents, their log and the SMS outbox (pure enums, shared by the models, the
service and the gateways' adapters)."""

from __future__ import annotations

import enum


class OfficialRole(enum.StrEnum):
    DONG = "dong"  # 동 주민센터 복지 담당
    GU = "gu"  # 구청 복지 담당
    CENTRE = "centre"  # 야간/휴일 당직 센터


class IncidentStatus(enum.StrEnum):
    OPEN = "open"  # told someone, waiting for an acknowledgement
    ACKNOWLEDGED = "acknowledged"
    EXHAUSTED = "exhausted"  # every step told, nobody acknowledged (still acknowledgeable)

    @property
    def ackable(self) -> bool:
        return self is not IncidentStatus.ACKNOWLEDGED


class AckChannel(enum.StrEnum):
    SMS = "sms"  # a reply with the code
    LINK = "link"  # the /ack/{token} page
    CONSOLE = "console"  # an official logged in to the console
    CALL = "call"  # the official took the resident's transfer (pressed 1 after the whisper)


class IncidentEventKind(enum.StrEnum):
    OPENED = "opened"  # the case closed with an alerting outcome
    QUEUED = "queued"  # an SMS to a step's official was stored in the outbox
    SENT = "sent"  # the gateway accepted it (the ack clock starts)
    DELIVERED = "delivered"  # the handset got it (delivery report)
    FAILED = "failed"  # the SMS cannot be delivered (the chain moves on)
    ESCALATED = "escalated"  # the ack clock ran out: the next step is told
    ACKNOWLEDGED = "acknowledged"
    FINDING = "finding"  # the official recorded what they found
    AMENDED = "amended"  # a recorded finding was changed (finding_amendments has before/after)
    EXHAUSTED = "exhausted"  # nobody left to tell
    NO_CHAIN = "no_chain"  # no chain (or no active official) for the resident's district/dong
    REPLY = "reply"  # a reply that acknowledged nothing new (already acknowledged)
    HANDED_OVER = "handed_over"  # an official passed the incident to a colleague (console)
    # A person on the line (anbu.domain.handoff): each official's leg of the transfer.
    CALLING = "calling"  # the official's phone is being dialled
    CALL_ENDED = "call_ended"  # a leg that was not taken: why (no answer, voicemail, ...)
    CONNECTED = "connected"  # the official pressed 1: bridged to the resident
    TALKED = "talked"  # the bridged call ended: for how long
    NO_TRANSFER = "no_transfer"  # help without a transfer (do-not-call, nobody to call)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # stored, waiting to be sent (or to be retried at next_attempt_at)
    SENDING = "sending"  # claimed by a worker; a provider may be taking it right now
    SENT = "sent"  # a provider accepted it
    FAILED = "failed"  # every provider refused it, or attempts ran out
    CANCELLED = "cancelled"  # not sent: the incident was acknowledged before its turn


class DeliveryStatus(enum.StrEnum):
    """Kannel's report types (the ``dlr-mask`` bits)."""

    DELIVERED = "delivered"  # 1: reached the handset
    UNDELIVERABLE = "undeliverable"  # 2: the network gave up
    BUFFERED = "buffered"  # 4: queued in the network (handset off, out of coverage)
    ACCEPTED = "accepted"  # 8: the SMSC took it
    REJECTED = "rejected"  # 16: the SMSC refused it

    @property
    def final(self) -> bool:
        """No further report will follow this one."""
        return self in (
            DeliveryStatus.DELIVERED,
            DeliveryStatus.UNDELIVERABLE,
            DeliveryStatus.REJECTED,
        )
