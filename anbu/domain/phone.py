"""Korean telephone numbers: validation, one canonical form, and masking for logs."""

from __future__ import annotations

import re

from anbu.errors import InvalidPhoneNumberError

# Canonical form is the national digits string ("01012345678", "0212345678"): it is what the
# trunk dials. +82 / 82 prefixes, spaces, dots and dashes are accepted on input.
#
# The numbering plan (전기통신번호관리세칙), as far as it decides validity here:
# - 010 numbers are 010 + an 8-digit subscriber number whose exchange (국번) never starts with 0
#   (010-0XXX was never assigned): 010-0000-0000 and 10-digit 010 numbers do not exist;
# - the 2G-era prefixes 011, 016-019 keep 10 or 11 digits, exchange not starting with 0;
# - geographic numbers (02, 031-064) have an exchange starting with 2-9 (0 and 1 lead to
#   carriers and special services);
# - 070 (VoIP) is 070 + 8 digits, exchange not starting with 0. It cannot receive SMS
#   reliably, so it is refused where an SMS must arrive (normalize_mobile).
# Only ASCII digits: str.isdigit() would take full-width and other scripts' digits.
_MOBILE = re.compile(r"^(010[1-9][0-9]{7}|01[16789][1-9][0-9]{6,7})$")
_SEOUL = re.compile(r"^02[2-9][0-9]{6,7}$")
_AREA = re.compile(r"^0(3[1-3]|4[1-4]|5[1-5]|6[1-4])[2-9][0-9]{6,7}$")
_VOIP = re.compile(r"^070[1-9][0-9]{7}$")
_ASCII_DIGITS = re.compile(r"^[0-9]+$")
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
    if not _ASCII_DIGITS.match(text):
        raise InvalidPhoneNumberError(
            raw, "only ASCII digits 0-9, spaces, dashes and a leading +82 allowed"
        )
    if _MOBILE.match(text) or _SEOUL.match(text) or _AREA.match(text) or _VOIP.match(text):
        return text
    raise InvalidPhoneNumberError(
        raw, "not a Korean mobile (010...), area (02, 031-064) or 070 number"
    )


def normalize_mobile(raw: str) -> str:
    """Like :func:`normalize_phone`, but only mobile numbers (010, 011, 016-019): where an SMS
    must arrive (an official's number)."""
    number = normalize_phone(raw)
    if not _MOBILE.match(number):
        raise InvalidPhoneNumberError(raw, "an SMS must reach it: give a mobile number (010...)")
    return number


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
