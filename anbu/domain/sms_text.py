"""Korean SMS/LMS text rules, pure: byte counting, SMS vs LMS, and the 90-byte key line.

Korean providers count length in cp949 bytes (Hangul = 2, ASCII = 1): an SMS holds 90 bytes
(45 Hangul syllables), an LMS about 2,000 bytes with a subject of at most 40 bytes. Providers
do not split long text: we choose SMS or LMS ourselves.

Never count with Python's ``euc-kr`` codec: it encodes the 8,822 modern syllables outside
KS X 1001's 2,350 (e.g. "똠", "쀍") as 8-byte make-up sequences, so lengths come out wrong.
``cp949`` (Microsoft's superset, what carriers actually use) encodes every modern syllable in
2 bytes.

Kannel sends UCS-2 instead (70 UTF-16 units per single part, 67 per concatenated part):
``ucs2_parts`` counts those parts.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from dataclasses import dataclass

from anbu.domain.phone import normalize_phone, normalize_sender
from anbu.errors import ValidationError

SMS_MAX_BYTES = 90
LMS_MAX_BYTES = 2000
LMS_SUBJECT_MAX_BYTES = 40
# A character cp949 cannot encode (emoji, some symbols) reaches the handset as "?" or is
# refused; count it as 2 bytes so a budget never comes out short for the common case.
UNENCODABLE_CHAR_BYTES = 2
UCS2_SINGLE_UNITS = 70
UCS2_PART_UNITS = 67  # 140 octets minus the 6-octet concatenation UDH, in UTF-16 units
ELLIPSIS = "…"  # in cp949 (2 bytes)


class SmsKind(enum.StrEnum):
    SMS = "SMS"
    LMS = "LMS"


def _char_len(ch: str) -> int:
    try:
        return len(ch.encode("cp949"))
    except UnicodeEncodeError:
        return UNENCODABLE_CHAR_BYTES


def cp949_len(text: str) -> int:
    """Length of ``text`` in cp949 bytes, as Korean providers count it.

    Characters cp949 cannot encode count as ``UNENCODABLE_CHAR_BYTES`` each.
    """
    try:
        return len(text.encode("cp949"))
    except UnicodeEncodeError:
        return sum(_char_len(ch) for ch in text)


def unencodable_chars(text: str) -> list[str]:
    """The distinct characters of ``text`` that cp949 cannot carry, in order of appearance."""
    seen: list[str] = []
    for ch in text:
        if ch not in seen:
            try:
                ch.encode("cp949")
            except UnicodeEncodeError:
                seen.append(ch)
    return seen


def fits_sms(text: str) -> bool:
    """True when ``text`` fits one Korean SMS (90 cp949 bytes)."""
    return cp949_len(text) <= SMS_MAX_BYTES


def choose_kind(text: str) -> SmsKind:
    """SMS when the text fits 90 bytes, LMS up to 2,000 bytes; longer text is refused."""
    size = cp949_len(text)
    if size <= SMS_MAX_BYTES:
        return SmsKind.SMS
    if size <= LMS_MAX_BYTES:
        return SmsKind.LMS
    raise ValidationError(f"text is {size} bytes (cp949), an LMS holds at most {LMS_MAX_BYTES}")


def truncate_cp949(text: str, max_bytes: int, ellipsis: str = ELLIPSIS) -> str:
    """Cut ``text`` at a character boundary so it takes at most ``max_bytes`` cp949 bytes.

    When text is cut, ``ellipsis`` is appended (within the budget) so the reader knows.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    if cp949_len(text) <= max_bytes:
        return text
    budget = max_bytes - cp949_len(ellipsis)
    if budget < 0:
        ellipsis, budget = "", max_bytes
    used = 0
    out: list[str] = []
    for ch in text:
        size = _char_len(ch)
        if used + size > budget:
            break
        out.append(ch)
        used += size
    return "".join(out).rstrip() + ellipsis


def ucs2_units(text: str) -> int:
    """UTF-16 code units: what a UCS-2 SMS (Kannel ``coding=2``) spends per character."""
    return len(text.encode("utf-16-be")) // 2


def ucs2_parts(text: str) -> int:
    """Number of concatenated UCS-2 SMS parts ``text`` needs (Kannel's own split)."""
    units = ucs2_units(text)
    if units <= UCS2_SINGLE_UNITS:
        return 1
    return math.ceil(units / UCS2_PART_UNITS)


@dataclass(frozen=True, slots=True)
class ComposedSms:
    """Text ready to send: the kind chosen by length, and whether anything had to be cut."""

    kind: SmsKind
    text: str
    subject: str | None
    truncated: bool


def key_line(text: str) -> tuple[str, bool]:
    """One line of at most 90 bytes: what an official must see even on a lock screen.

    Newlines become spaces; returns the line and whether it was cut.
    """
    line = " ".join(text.split())
    cut = truncate_cp949(line, SMS_MAX_BYTES)
    return cut, cut != line


def compose(key: str, details: str = "", subject: str = "") -> ComposedSms:
    """Build an alert whose first line (``key``, at most 90 bytes) carries the essentials.

    If key line and details fit 90 bytes together the result is an SMS (no subject);
    otherwise an LMS whose body still starts with the key line (some handsets hide the LMS
    subject) and whose subject is ``subject`` or else the key line, cut to 40 bytes. Details
    beyond 2,000 bytes are cut rather than refused: an alert must go out.
    """
    first, cut_key = key_line(key)
    if not first:
        raise ValidationError("an alert needs a non-empty key line")
    body = details.strip()
    full = f"{first}\n{body}" if body else first
    if fits_sms(full):
        return ComposedSms(SmsKind.SMS, full, None, cut_key)
    text = truncate_cp949(full, LMS_MAX_BYTES)
    title = " ".join((subject or first).split())
    short_title = truncate_cp949(title, LMS_SUBJECT_MAX_BYTES)
    return ComposedSms(
        SmsKind.LMS,
        text,
        short_title,
        cut_key or text != full or (bool(subject) and short_title != title),
    )


# Our references travel inside Kannel's dlr-url, where "%" starts an escape and "&"/"="
# separate parameters: keep them to characters that need no quoting.
REFERENCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_reference(reference: str) -> str:
    """Return ``reference`` if it can travel in a callback URL unquoted, else raise."""
    if not REFERENCE_RE.match(reference):
        raise ValidationError(
            f"SMS reference {reference!r} must be 1-64 characters of A-Z a-z 0-9 . _ - "
            "(starting with a letter or digit)"
        )
    return reference


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    """One message to one number. ``reference`` is ours and doubles as the idempotency key."""

    reference: str
    to: str
    sender: str
    text: str
    kind: SmsKind = SmsKind.SMS
    subject: str | None = None  # LMS only

    def __post_init__(self) -> None:
        validate_reference(self.reference)
        # Canonical national digits, whatever separators the caller used.
        object.__setattr__(self, "to", normalize_phone(self.to))
        object.__setattr__(self, "sender", normalize_sender(self.sender))
        if not self.text.strip():
            raise ValidationError("an SMS needs text")
        size = cp949_len(self.text)
        if self.kind is SmsKind.SMS:
            if size > SMS_MAX_BYTES:
                raise ValidationError(f"SMS text is {size} bytes (cp949), at most {SMS_MAX_BYTES}")
            if self.subject:
                raise ValidationError("only an LMS has a subject")
        elif size > LMS_MAX_BYTES:
            raise ValidationError(f"LMS text is {size} bytes (cp949), at most {LMS_MAX_BYTES}")
        if self.subject and cp949_len(self.subject) > LMS_SUBJECT_MAX_BYTES:
            raise ValidationError(f"LMS subject is longer than {LMS_SUBJECT_MAX_BYTES} bytes")

    @classmethod
    def build(
        cls, reference: str, to: str, sender: str, text: str, subject: str | None = None
    ) -> OutgoingSms:
        """Choose SMS or LMS from the text's length (a subject is kept for an LMS only)."""
        kind = choose_kind(text)
        return cls(reference, to, sender, text, kind, subject if kind is SmsKind.LMS else None)


class SendStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # the provider took it for delivery
    QUEUED = "queued"  # the provider stored it to send later (Kannel: SMSC not connected)


@dataclass(frozen=True, slots=True)
class SendReceipt:
    reference: str
    provider: str
    status: SendStatus
    provider_message_id: str | None  # Kannel's sendsms gives none: reports come by reference
    accepted_at: dt.datetime
