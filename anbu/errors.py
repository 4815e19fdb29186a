"""Typed errors of the core. Adapters translate library errors into these at the boundary;
the API turns them into 4xx responses with a reason."""

from __future__ import annotations


class AnbuError(Exception):
    """Base of every error anbu raises on purpose."""


class ValidationError(AnbuError, ValueError):
    """Input that cannot be accepted; the message says why."""


class InvalidPhoneNumberError(ValidationError):
    def __init__(self, raw: str, why: str) -> None:
        super().__init__(f"invalid phone number {raw!r}: {why}")
        self.raw = raw
        self.why = why


class NotFoundError(AnbuError):
    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind
        self.ident = ident


class ConflictError(AnbuError):
    """The request contradicts stored state (e.g. a duplicate)."""


class ChainInUseError(ConflictError):
    """An escalation chain residents' alerts still go to, or open incidents still escalate
    along: deleting it would leave them with nobody to tell."""

    def __init__(self, chain_id: str, residents: int, open_incidents: int) -> None:
        super().__init__(
            f"escalation chain {chain_id} is still in use: {residents} active resident(s) and"
            f" {open_incidents} open incident(s) are alerted along it; give them another chain"
            " or acknowledge the incidents first"
        )
        self.chain_id = chain_id
        self.residents = residents
        self.open_incidents = open_incidents


class GoneError(AnbuError):
    """The thing existed but is no longer usable (an expired link)."""


class ForbiddenError(AnbuError):
    """The API key may not see this district's data."""


class TelephonyError(AnbuError):
    """Asterisk could not be reached or refused an action."""


class AmiError(TelephonyError):
    """The AMI connection failed or an action was refused."""


class SmsError(AnbuError):
    """An SMS provider refused or could not be reached."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
