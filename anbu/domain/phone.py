"""Korean telephone numbers: validation, one canonical form, and masking for logs."""

from __future__ import annotations

import re

from anbu.errors import InvalidPhoneNumberError

# Canonical form is the national digits string ("01012345678", "0212345678"): it is what the
# trunk dials. +82 / 82 prefixes, spaces, dots and dashes are accepted on input.
_MOBILE = re.compile(r"^01[016789]\d{7,8}$")
_SEOUL = re.compile(r"^02[2-9]\d{6,7}$")
_AREA = re.compile(r"^0(3[1-3]|4[1-4]|5[1-5]|6[1-4])[2-9]\d{6,7}$")
_VOIP = re.compile(r"^070\d{8}$")
_SEPARATORS = re.compile(r"[\s.\-()]")


def normalize_phone(raw: str) -> str:
    """Return the national digit string of a Korean number, or raise InvalidPhoneNumberError.

    Accepts mobile (010, 011, 016-019), Seoul (02), area codes (031-064) and 070 numbers,
    written with or without separators or the +82 country code.
    """
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("+82"):
        text = "0" + text[3:].lstrip("0")
    elif text.startswith("82") and len(text) >= 11:
        text = "0" + text[2:].lstrip("0")
    if not text.isdigit():
        raise InvalidPhoneNumberError(raw, "only digits, spaces, dashes and a leading +82 allowed")
    if _MOBILE.match(text) or _SEOUL.match(text) or _AREA.match(text) or _VOIP.match(text):
        return text
    raise InvalidPhoneNumberError(
        raw, "not a Korean mobile (010...), area (02, 031-064) or 070 number"
    )


def mask_phone(number: str) -> str:
    """Mask all but the last four digits: logs never carry a full number (PIPA)."""
    if len(number) <= 4:
        return "*" * len(number)
    return "*" * (len(number) - 4) + number[-4:]


# Senders may also be 15xx-18xx representative numbers (대표번호), which residents never have.
_SENDER = re.compile(r"^(0\d{8,10}|1[5-9]\d{6})$")


def normalize_sender(raw: str) -> str:
    """National digits of an SMS sender number (발신번호): a Korean phone number as
    :func:`normalize_phone` accepts, or a 15xx-18xx representative number."""
    try:
        return normalize_phone(raw)
    except InvalidPhoneNumberError:
        text = _SEPARATORS.sub("", raw.strip())
        if text.startswith("+82"):
            text = "0" + text[3:].lstrip("0")
        if _SENDER.match(text):
            return text
        raise
