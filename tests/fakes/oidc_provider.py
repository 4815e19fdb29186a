"""A small local OpenID Connect provider for the console's single sign-on tests: the
authorization code flow with a confidential client, as a district's identity server runs it.

``GET /authorize`` shows a sign-in form (a user name), ``POST /authorize`` sends the browser
back to the client's redirect_uri with a one-time code and the client's state; ``POST
/token`` checks the client's id and secret, the code and the redirect_uri, and answers with an
HS256-signed ID token (iss, aud, sub, preferred_username, nonce, iat, exp). It implements the
protocol itself (no anbu code), so it checks the console's client independently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(claims: dict[str, Any], secret: str) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


@dataclass
class Grant:
    user: str
    nonce: str
    redirect_uri: str
    client_id: str


@dataclass
class FakeOidcProvider:
    client_id: str
    client_secret: str
    signing_secret: str = ""  # "" = the client secret (a different one: a forged token)
    port: int = 0
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _form(self) -> dict[str, str]:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

            def do_GET(self) -> None:
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path != "/authorize" or q.get("response_type") != "code":
                    self._send(400, b"bad request", "text/plain")
                    return
                hidden = "".join(
                    f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                    for k, v in q.items()
                )
                page = (
                    '<!doctype html><html lang="ko"><body><h1>구청 통합 로그인</h1>'
                    f'<form method="post" action="/authorize">{hidden}'
                    '<label for="user">사용자</label><input id="user" name="user">'
                    "<button>승인</button></form></body></html>"
                )
                self._send(200, page.encode(), "text/html; charset=utf-8")

            def do_POST(self) -> None:
                form = self._form()
                if self.path == "/authorize":
                    code = secrets.token_urlsafe(16)
                    provider.grants[code] = Grant(
                        form.get("user", ""),
                        form.get("nonce", ""),
                        form.get("redirect_uri", ""),
                        form.get("client_id", ""),
                    )
                    back = f"{form['redirect_uri']}?" + urlencode(
                        {"code": code, "state": form.get("state", "")}
                    )
                    self._send(302, b"", "text/plain", Location=back)
                    return
                if self.path != "/token":
                    self._send(404, b"", "text/plain")
                    return
                provider.token_requests += 1
                grant = provider.grants.pop(form.get("code", ""), None)
                if (
                    form.get("grant_type") != "authorization_code"
                    or form.get("client_id") != provider.client_id
                    or form.get("client_secret") != provider.client_secret
                    or grant is None
                    or grant.client_id != provider.client_id
                    or grant.redirect_uri != form.get("redirect_uri")
                ):
                    body = json.dumps({"error": "invalid_grant"}).encode()
                    self._send(400, body, "application/json")
                    return
                now = int(time.time())
                claims = {
                    "iss": provider.issuer,
                    "aud": provider.client_id,
                    "sub": f"user-{grant.user}",
                    "preferred_username": grant.user,
                    "nonce": grant.nonce,
                    "iat": now,
                    "exp": now + 300,
                }
                token = hs256_token(claims, provider.signing_secret or provider.client_secret)
                body = json.dumps(
                    {"access_token": "a", "token_type": "Bearer", "id_token": token}
                ).encode()
                self._send(200, body, "application/json")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
