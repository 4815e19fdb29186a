"""Kannel's HTTP callbacks, parsed into typed events (pure: no I/O).

Two callbacks reach anbu's API from smsbox:

* delivery reports, on the ``dlr-url`` we attach to every message (``kannel_dlr_url``); it
  carries our own reference because Kannel's ``%I`` differs between the "accepted by SMSC"
  report and the final "delivered" report;
* incoming SMS (an official's reply), on the sms-service ``get-url`` (``kannel_mo_url``).

Both are parsed from the raw query string (``request.url.query``), not from a decoded
mapping: the message text arrives as percent-encoded bytes in the charset Kannel names, and a
framework that decodes it as UTF-8 first would garble UCS-2 text.
"""

from __future__ import annotations

import codecs
import datetime as dt
from dataclasses import dataclass
from urllib.parse import parse_qsl

from anbu.domain.incidents import DeliveryStatus
from anbu.domain.phone import normalize_phone
from anbu.domain.sms_text import validate_reference
from anbu.errors import InvalidPhoneNumberError, ValidationError

# Kannel escapes: %d report type, %T unix time, %i smsc-id, %F the SMSC's message id,
# %A the SMSC's reply text (e.g. "id:... stat:DELIVRD err:000" over SMPP).
KANNEL_DLR_QUERY = "status=%d&ts=%T&smsc=%i&fid=%F&answer=%A"
# %p sender, %P receiver, %b the text as sent (not %a, which collapses whitespace),
# %c coding, %C charset (to decode %b), %T unix time, %I Kannel's id (to drop repeats when
# smsbox retries), %i smsc-id.
KANNEL_MO_QUERY = "from=%p&to=%P&text=%b&coding=%c&charset=%C&ts=%T&id=%I&smsc=%i"


def _append_query(base: str, query: str) -> str:
    if "?" not in base:
        return f"{base}?{query}"
    return f"{base}{'' if base.endswith(('?', '&')) else '&'}{query}"


def with_callback_key(base: str, key: str | None) -> str:
    """``base`` carrying the callbacks' secret (``key=``), unless it has one already. The
    secret goes in the URL because that is all smsbox can send; the access log masks it."""
    if not key or "key=" in base:
        return base
    if any(c in key for c in "%&=?# \"'\n"):
        raise ValidationError("the callback token must be URL-safe (letters, digits, - and _)")
    return _append_query(base, f"key={key}")


def kannel_dlr_url(base: str, reference: str) -> str:
    """The ``dlr-url`` for one message: ``base`` plus our reference and Kannel's escapes."""
    return _append_query(base, f"ref={validate_reference(reference)}&{KANNEL_DLR_QUERY}")


def kannel_mo_url(base: str) -> str:
    """The sms-service ``get-url`` that forwards incoming SMS to ``base``."""
    return _append_query(base, KANNEL_MO_QUERY)


_DLR_BITS: dict[int, DeliveryStatus] = {
    1: DeliveryStatus.DELIVERED,
    2: DeliveryStatus.UNDELIVERABLE,
    4: DeliveryStatus.BUFFERED,
    8: DeliveryStatus.ACCEPTED,
    16: DeliveryStatus.REJECTED,
}


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    reference: str
    status: DeliveryStatus
    at: dt.datetime | None  # when Kannel got the report (UTC); None if it did not say
    smsc_id: str | None
    provider_message_id: str | None  # the SMSC's id (%F), when it gave one
    detail: str  # the SMSC's own words (%A), for logs


@dataclass(frozen=True, slots=True)
class InboundSms:
    """An SMS someone sent to our number: normally an official answering an alert."""

    sender: str  # national digits when it is a Korean number, else as the network gave it
    receiver: str
    text: str
    received_at: dt.datetime | None
    message_id: str | None  # Kannel's id: the same on a retried callback
    smsc_id: str | None


def _params(query: str | bytes) -> dict[str, bytes]:
    """Percent-decode each value to raw bytes (latin-1 maps bytes 1:1); first value wins."""
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    params: dict[str, bytes] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, encoding="latin-1"):
        params.setdefault(key, value.encode("latin-1"))
    return params


def _no_nul(key: str, text: str) -> str:
    # The input gate leaves these callbacks' raw bytes alone (UCS-2 is full of 0x00 bytes);
    # the decoded text must still hold no NUL (PostgreSQL cannot store one).
    if "\x00" in text:
        raise ValidationError(f"{key}: NUL characters are not allowed")
    return text


def _text(params: dict[str, bytes], key: str) -> str | None:
    raw = params.get(key)
    if raw is None:
        return None
    return _no_nul(key, raw.decode("utf-8", errors="replace"))


def _timestamp(params: dict[str, bytes]) -> dt.datetime | None:
    raw = _text(params, "ts")
    if not raw:
        return None
    try:
        return dt.datetime.fromtimestamp(int(raw), dt.UTC)
    except (ValueError, OverflowError) as exc:
        raise ValidationError(f"bad timestamp {raw!r} in Kannel callback") from exc


def _number(raw: str) -> str:
    try:
        return normalize_phone(raw)
    except InvalidPhoneNumberError:
        # Short codes and foreign numbers are still a sender; keep them as given.
        return raw.strip()


_UCS2_NAMES = {"", "ucs-2", "ucs2", "utf-16be", "utf-16", "iso-10646-ucs-2"}
# euc-kr text decodes fine (and more completely) as cp949, its superset.
_CHARSET_ALIASES = {"euc-kr": "cp949", "euc_kr": "cp949", "ks_c_5601-1987": "cp949"}


def _decode_message(raw: bytes, coding: str, charset: str) -> str:
    name = charset.strip().lower()
    if coding == "2" and name in _UCS2_NAMES:
        return raw.decode("utf-16-be", errors="replace")
    name = _CHARSET_ALIASES.get(name, name)
    try:
        codecs.lookup(name)
    except LookupError:
        name = "utf-8"  # Kannel's own charset for 7-bit text since 1.4
    return raw.decode(name, errors="replace")


def parse_delivery_report(query: str | bytes) -> DeliveryReport:
    """Parse the query of a ``kannel_dlr_url`` callback; raise ValidationError if malformed."""
    params = _params(query)
    reference = _text(params, "ref")
    if not reference:
        raise ValidationError("delivery report without our reference (ref)")
    validate_reference(reference)
    raw_status = _text(params, "status") or ""
    try:
        status = _DLR_BITS[int(raw_status)]
    except (ValueError, KeyError) as exc:
        raise ValidationError(f"unknown delivery report type {raw_status!r}") from exc
    return DeliveryReport(
        reference=reference,
        status=status,
        at=_timestamp(params),
        smsc_id=_text(params, "smsc") or None,
        provider_message_id=_text(params, "fid") or None,
        detail=_text(params, "answer") or "",
    )


def parse_inbound_sms(query: str | bytes) -> InboundSms:
    """Parse the query of a ``kannel_mo_url`` callback; raise ValidationError if malformed."""
    params = _params(query)
    sender = _text(params, "from")
    if not sender or not sender.strip():
        raise ValidationError("incoming SMS without a sender (from)")
    raw_text = params.get("text", b"")
    text = _no_nul(
        "text",
        _decode_message(
            raw_text, (_text(params, "coding") or "").strip(), _text(params, "charset") or ""
        ),
    )
    return InboundSms(
        sender=_number(sender),
        receiver=_number(_text(params, "to") or ""),
        text=text,
        received_at=_timestamp(params),
        message_id=_text(params, "id") or None,
        smsc_id=_text(params, "smsc") or None,
    )
