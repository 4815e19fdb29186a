"""A local Solapi: ``POST /messages/v4/send`` with Solapi's HMAC-SHA256 authentication.

It checks what the real service checks (docs.solapi.com "API Key 인증 방식", "단일 메시지"):
the ``Authorization: HMAC-SHA256 apiKey=..., date=..., salt=..., signature=...`` header,
signature = hex HMAC-SHA256(api secret, date + salt), date within ±15 minutes, a salt of
12-64 bytes, no signature used twice; a pre-registered sender (발신번호), SMS at most 90 bytes
and LMS at most 2,000 bytes counted in cp949, subject at most 40 bytes. It answers like Solapi:
``{"groupId", "messageId", "statusCode": "2000", ...}`` or ``{"errorCode", "errorMessage"}``.

It counts bytes itself (not with ``anbu.domain.sms_text``), so it checks the client
independently. Run alone: ``python -m tests.fakes.solapi_server --port 18090``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SKEW = dt.timedelta(minutes=15)
_AUTH_RE = re.compile(r"^HMAC-SHA256\s+(?P<params>.+)$")


def _cp949_len(text: str) -> int:
    return len(text.encode("cp949", errors="replace"))


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    response: dict[str, Any]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class _Failure:
    status: int
    error_code: str
    message: str
    delay_s: float


@dataclass
class _State:
    api_key: str
    api_secret: str
    senders: set[str]
    requests: list[RecordedRequest] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    seen_signatures: set[str] = field(default_factory=set)
    failures: list[_Failure] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class _AuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _check_authorization(state: _State, header: str | None) -> None:
    if not header:
        raise _AuthError("InvalidAuthorization", "Authorization 헤더가 없습니다.")
    match = _AUTH_RE.match(header.strip())
    if match is None:
        raise _AuthError("InvalidAuthenticationMethod", "HMAC-SHA256 인증만 지원합니다.")
    params: dict[str, str] = {}
    for item in match.group("params").split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise _AuthError("InvalidAuthorization", f"잘못된 인증 항목: {item.strip()!r}")
        params[key.strip().lower()] = value.strip()
    missing = {"apikey", "date", "salt", "signature"} - params.keys()
    if missing:
        raise _AuthError("InvalidAuthorization", f"인증 항목 누락: {sorted(missing)}")
    if params["apikey"] != state.api_key:
        raise _AuthError("InvalidAPIKey", "유효하지 않은 API Key 입니다.")
    try:
        date = dt.datetime.fromisoformat(params["date"])
    except ValueError as exc:
        raise _AuthError("InvalidDateTime", "date 는 ISO 8601 이어야 합니다.") from exc
    if date.tzinfo is None:
        raise _AuthError("InvalidDateTime", "date 에 시간대가 없습니다.")
    if abs(dt.datetime.now(dt.UTC) - date) > SKEW:
        raise _AuthError("RequestTimeTooSkewed", "요청 시각이 15분 이상 차이 납니다.")
    if not 12 <= len(params["salt"].encode()) <= 64:
        raise _AuthError("InvalidSalt", "salt 는 12~64 바이트여야 합니다.")
    expected = hmac.new(
        state.api_secret.encode(), (params["date"] + params["salt"]).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, params["signature"].lower()):
        raise _AuthError("SignatureDoesNotMatch", "서명이 일치하지 않습니다.")
    with state.lock:
        if params["signature"] in state.seen_signatures:
            raise _AuthError("DuplicatedSignature", "이미 사용된 서명입니다.")
        state.seen_signatures.add(params["signature"])


def _validate_message(state: _State, message: Any) -> str | None:
    """The Solapi error message for a bad message, or None when it is acceptable."""
    if not isinstance(message, dict):
        return "message 는 객체여야 합니다."
    for key in ("to", "from", "text"):
        if not isinstance(message.get(key), str) or not message[key]:
            return f"{key} 는 필수입니다."
    if message["from"] not in state.senders:
        return f"발신번호 미등록: {message['from']}"
    kind = message.get("type", "SMS")
    text_bytes = _cp949_len(message["text"])
    if kind == "SMS":
        if text_bytes > 90:
            return f"SMS 는 90 바이트까지입니다 ({text_bytes})."
        if message.get("subject"):
            return "SMS 에는 제목을 쓸 수 없습니다."
    elif kind == "LMS":
        if text_bytes > 2000:
            return f"LMS 는 2000 바이트까지입니다 ({text_bytes})."
        if _cp949_len(message.get("subject") or "") > 40:
            return "제목은 40 바이트까지입니다."
    else:
        return f"지원하지 않는 type: {kind}"
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read .requests instead

    def _answer(self, status: int, payload: dict[str, Any], body: bytes) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.server.state.requests.append(
            RecordedRequest(self.path, dict(self.headers.items()), body, status, payload)
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(404, {"errorCode": "NotFound", "errorMessage": "없는 경로"}, b"")

    def do_POST(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] != "/messages/v4/send":
            self._answer(404, {"errorCode": "NotFound", "errorMessage": "없는 경로"}, body)
            return
        with state.lock:
            failure = state.failures.pop(0) if state.failures else None
        if failure is not None:
            if failure.delay_s:
                time.sleep(failure.delay_s)
            payload = {"errorCode": failure.error_code, "errorMessage": failure.message}
            self._answer(failure.status, payload, body)
            return
        try:
            _check_authorization(state, self.headers.get("Authorization"))
        except _AuthError as exc:
            self._answer(401, {"errorCode": exc.code, "errorMessage": exc.message}, body)
            return
        try:
            request = json.loads(body)
        except ValueError:
            self._answer(400, {"errorCode": "ValidationError", "errorMessage": "JSON"}, body)
            return
        message = request.get("message") if isinstance(request, dict) else None
        problem = _validate_message(state, message)
        if problem is not None or not isinstance(message, dict):
            error = {"errorCode": "ValidationError", "errorMessage": problem or "message"}
            self._answer(400, error, body)
            return
        number = next(state.ids)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        response = {
            "groupId": f"G4V{stamp}FAKE{number:08d}",
            "messageId": f"M4V{stamp}FAKE{number:08d}",
            "accountId": "12925149",
            "statusMessage": "정상 접수(이통사로 접수 예정) ",
            "statusCode": "2000",
            "to": message["to"],
            "from": message["from"],
            "type": message.get("type", "SMS"),
            "country": "82",
        }
        with state.lock:
            state.accepted.append(message)
        self._answer(200, response, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        super().__init__(address, _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out on purpose (slow-answer tests) leaves a broken pipe behind.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class FakeSolapiServer:
    """A Solapi stand-in on a free local port, in a background thread."""

    def __init__(
        self,
        api_key: str = "NCSFAKEKEY000001",
        api_secret: str = "FAKESECRETFAKESECRETFAKESECRET01",
        senders: set[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self._state = _State(api_key, api_secret, set(senders or {"0212345678"}))
        self._server = _Server((host, port), self._state)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._state.requests)

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The ``message`` objects Solapi accepted, in order."""
        return list(self._state.accepted)

    def fail_next(
        self, status: int, error_code: str = "InternalError", delay_s: float = 0.0
    ) -> None:
        """Answer the next send with this HTTP status (after ``delay_s``), unauthenticated."""
        with self._state.lock:
            self._state.failures.append(_Failure(status, error_code, "강제 실패", delay_s))

    def start(self) -> FakeSolapiServer:
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="fake-solapi", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSolapiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--sender", action="append", default=None)
    args = parser.parse_args()
    server = FakeSolapiServer(port=args.port, senders=set(args.sender or ["0212345678"]))
    print(f"fake Solapi on {server.url} key={server.api_key} secret={server.api_secret}")
    server.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
