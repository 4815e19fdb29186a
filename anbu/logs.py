"""One logging setup for every anbu process, uvicorn included: a single root handler whose
filter masks personal data in every line, whichever library wrote it.

Masked: Korean phone numbers (all but the last four digits, as :func:`mask_phone`), ack link
tokens (``/ack/***``), secrets and message text in query strings (``key=``, ``token=``,
``password=``, ``text=``...), and ``name`` values. uvicorn's access log goes through the same
handler (``log_config=None`` keeps uvicorn from installing its own), so
``GET /v1/do-not-call/01012345678`` is written ``GET /v1/do-not-call/*******5678``.

``ANBU_LOG__FORMAT=json`` writes one JSON object per line for a log collector.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Literal, TextIO

# A Korean number, written with separators, +82 / 82 (also percent-encoded) or plain; not
# inside a longer run of letters or digits (ids, timestamps).
_PHONE = re.compile(
    r"(?<![0-9A-Za-z])"
    r"(?:(?:\+|%2[Bb])?82[- .]?0?|0)"
    r"(?:1[016789]|2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70)"
    r"[- .]?[0-9]{3,4}[- .]?([0-9]{4})"
    r"(?![0-9])"
)
_ACK = re.compile(r"/ack/[^\s/?\"']+")
# Query/form parameters whose value is a secret or personal (in URLs, bodies, reprs).
_PARAM = re.compile(
    r"(?i)(?<![0-9A-Za-z_])(key|token|password|passwd|secret|text|msg|name|note)=[^&\s\"']*"
)
_JSON_NAME = re.compile(r"(?i)(\"(?:name|note|text)\"\s*:\s*)\"(?:[^\"\\]|\\.)*\"")


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"[^0-9]", "", match.group(0))
    return "*" * max(0, len(digits) - 4) + match.group(1)


def mask_text(text: str) -> str:
    """``text`` with numbers, tokens, secrets and names masked (see the module doc)."""
    text = _ACK.sub("/ack/***", text)
    text = _PARAM.sub(lambda m: f"{m.group(1)}=***", text)
    text = _JSON_NAME.sub(lambda m: f'{m.group(1)}"***"', text)
    return _PHONE.sub(_mask_phone, text)


class MaskingFilter(logging.Filter):
    """Renders each record's message once, masked; tracebacks are masked too."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "anbu"


def configure_logging(
    level: int | str = logging.INFO,
    fmt: Literal["text", "json"] = "text",
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install the one root handler (replacing any earlier one, ours or basicConfig's) and
    route uvicorn's loggers to it. Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
        # A uvicorn started earlier in this process with its own log_level leaves its level
        # behind (the access log at WARNING would vanish): follow the root's.
        logger.setLevel(logging.NOTSET)
        logger.disabled = False
    # APScheduler logs every run of every job (the dispatcher ticks each second) at INFO.
    quiet = logging.DEBUG if level in (logging.DEBUG, "DEBUG") else logging.WARNING
    logging.getLogger("apscheduler").setLevel(quiet)
    return handler
