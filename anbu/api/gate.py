"""The input gate: one ASGI middleware every request passes before any route sees it.

It refuses, with a 422 in the API's error shape, a NUL character or a lone UTF-16 surrogate
(or bytes that are not UTF-8) anywhere in the path, the query string or the body (JSON or
form). PostgreSQL cannot store NUL in text and no Korean name or note needs one; a lone
surrogate cannot be encoded at all. Both used to surface as 500s deep inside a route.

The signal batch checks each event itself (see PER_ITEM_BODIES). Kannel's callbacks are the
exception for the raw query: their text is percent-encoded bytes in
the charset Kannel names (UCS-2 has a 0x00 byte in every ASCII character), so
:mod:`escalation.dlr` checks the text after decoding it instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Routes whose query/body carry raw bytes in a charset of their own.
RAW_BYTE_PREFIXES = ("/v1/sms/kannel/",)
# Batch ingestion refuses a bad event per item (its patterns refuse NUL and surrogates) and
# keeps the good ones: refusing the whole batch of 10,000 for one bad id would lose data.
PER_ITEM_BODIES = frozenset({"/v1/signals"})
# File uploads are binary (an XLSX is a zip, full of NUL bytes): the route checks every cell
# it reads from the file instead (anbu.console.enrolment). The console's 녹음 form carries
# audio, which sox reads and ivr.recording refuses unless it is a voice; its text fields are
# matched against fixed values (CSRF token, prompt names), never stored.
UPLOAD_BODIES = frozenset({"/console/residents/import", "/console/recordings"})

# Fast path: only a body with one of these can hold a NUL or a surrogate once parsed.
_JSON_SUSPECT = re.compile(rb"\x00|\\u(?:0000|[dD][89a-fA-F])")


class InputRefusedError(ValueError):
    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


def check_text(where: str, text: str) -> None:
    """Raise InputRefusedError if ``text`` holds a NUL or a lone surrogate."""
    if "\x00" in text:
        raise InputRefusedError(where, "NUL characters are not allowed")
    for ch in text:
        if "\ud800" <= ch <= "\udfff":
            raise InputRefusedError(where, "lone surrogate characters are not allowed")


def _check_bytes(where: str, raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Percent-encoded surrogates (%ED%A0%80) land here: UTF-8 forbids them.
        raise InputRefusedError(where, "not valid UTF-8 (or a lone surrogate)") from exc
    check_text(where, text)


def _check_query(where: str, query: bytes) -> None:
    for pair in query.split(b"&"):
        for part in pair.split(b"=", 1):
            _check_bytes(where, unquote_to_bytes(part.replace(b"+", b" ")))


def _walk(where: str, value: Any) -> None:
    if isinstance(value, str):
        check_text(where, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(where, key)
            _walk(where, item)
    elif isinstance(value, list):
        for item in value:
            _walk(where, item)


def check_body(content_type: str, body: bytes) -> None:
    """Check a request body by its content type (JSON and forms; others for raw NUL)."""
    if not body:
        return
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        _check_query("body", body)
        return
    if ctype == "application/json" or ctype.endswith("+json"):
        if not _JSON_SUSPECT.search(body):
            return
        try:
            parsed = json.loads(body)
        except ValueError:
            if b"\x00" in body:
                raise InputRefusedError("body", "NUL characters are not allowed") from None
            return  # the route's own parser answers a malformed document
        _walk("body", parsed)
        return
    if ctype.startswith("audio/"):
        return  # a recorded prompt (ivr.recording_api): binary, never stored as text
    if b"\x00" in body:
        raise InputRefusedError("body", "NUL characters are not allowed")


def problem_422(exc: InputRefusedError) -> bytes:
    return json.dumps(
        {
            "error": "invalid_request",
            "detail": str(exc),
            "fields": [{"field": exc.where, "reason": exc.why}],
        }
    ).encode()


async def send_json(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class InputGate:
    """ASGI middleware: checks path and query first, then reads the body (at most
    ``max_body_bytes``, refused with 413 as soon as it grows past that, or at once when
    Content-Length says so: a 100 MB body is never held), checks it and hands the route the
    same bytes."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = 5 * 1024 * 1024) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def _too_large(self, send: Send) -> None:
        detail = f"request body larger than {self.max_body_bytes} bytes"
        await send_json(
            send,
            413,
            json.dumps({"error": "too_large", "detail": detail}).encode(),
            [(b"connection", b"close")],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        raw_bytes = path.startswith(RAW_BYTE_PREFIXES)
        try:
            raw_path = scope.get("raw_path")
            if raw_path:
                _check_bytes("path", unquote_to_bytes(raw_path))
            check_text("path", path)
            if not raw_bytes:
                _check_query("query", scope.get("query_string", b""))
        except InputRefusedError as exc:
            await send_json(send, 422, problem_422(exc))
            return
        content_type, length = "", None
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                length = int(value)
        if length is not None and length > self.max_body_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            if path not in PER_ITEM_BODIES and path not in UPLOAD_BODIES and not raw_bytes:
                check_body(content_type, body)
        except InputRefusedError as exc:
            await send_json(send, 422, problem_422(exc))
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
