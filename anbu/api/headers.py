"""Security headers on every response.

- ``Cache-Control: no-store`` unless a route set its own: the API's answers are personal data
  (names, numbers, findings) and must not stay in a browser's or proxy's cache;
- a Content-Security-Policy: the ack page loads nothing from elsewhere, runs no script, posts
  only to itself and may not be framed (``frame-ancestors 'none'``: no clickjacking of the
  acknowledgement); JSON answers allow nothing at all; the API docs load Swagger UI from its CDN;
- ``Referrer-Policy: no-referrer`` (the ack link's token must not leak in a Referer header),
  ``X-Content-Type-Options: nosniff`` and ``X-Frame-Options: DENY`` for older browsers.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP_API = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
CSP_PAGE = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
CSP_DOCS = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net; img-src data: https:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(DOCS_PATHS):
            csp = CSP_DOCS
        elif path.startswith("/ack/"):
            csp = CSP_PAGE
        else:
            csp = CSP_API

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Cache-Control", "no-store")
                headers.setdefault("Content-Security-Policy", csp)
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, with_headers)
