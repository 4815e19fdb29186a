"""A local stand-in for Google Translate's TTS endpoint, reached the way gTTS reaches the real one.

gTTS POSTs ``f.req=[[["jQ1olc","[text, lang, speed, \\"null\\"]",null,"generic"]]]`` to
``https://translate.google.<tld>/_/TranslateWebserverUi/data/batchexecute`` and pulls base64
MP3 out of the ``jQ1olc`` line of the answer. It sends every request through the proxies in the
environment (``urllib.request.getproxies()``) and does not verify TLS (``verify=False``).

So this fake is an HTTPS proxy: it accepts ``CONNECT translate.google.com:443``, terminates
TLS itself with a throwaway self-signed certificate, and answers the RPC. Tests point gTTS at
it with ``HTTPS_PROXY`` alone: the production code path runs unmodified, nothing in gTTS is
patched, and nothing reaches the internet.

Modes: ``ok`` (audio), ``error`` (HTTP 500), ``hang`` (reads the request, never answers).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RPC_PATH = "/_/TranslateWebserverUi/data/batchexecute"
Mode = Literal["ok", "error", "hang"]


@dataclass
class TtsRequest:
    host: str
    text: str
    lang: str
    slow: bool


@dataclass
class FakeGoogleTts:
    audio: bytes = b""  # MP3 returned in "ok" mode
    mode: Mode = "ok"
    requests: list[TtsRequest] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)
    port: int = 0
    _server: socketserver.ThreadingTCPServer | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGoogleTts:
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-gtts-")
        cert, key = Path(self._tmp.name) / "cert.pem", Path(self._tmp.name) / "key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=translate.google.com",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                # OSError/SSLError: the client gave up (its timeout) or the test is over.
                with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                    fake._serve(self.connection, tls)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="fake-gtts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases "hang" handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def _serve(self, conn: socket.socket, tls: ssl.SSLContext) -> None:
        plain = conn.makefile("rb")
        method, target, _ = plain.readline().decode("latin-1").split(" ", 2)
        _read_headers(plain)
        if method != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        self.connects.append(target)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with tls.wrap_socket(conn, server_side=True) as secure:
            stream = secure.makefile("rb")
            method, path, _ = stream.readline().decode("latin-1").split(" ", 2)
            headers = _read_headers(stream)
            body = stream.read(int(headers.get("content-length", "0")))
            if method != "POST" or path.split("?")[0] != RPC_PATH:
                secure.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            self.requests.append(_parse_rpc(headers.get("host", ""), body))
            if self.mode == "hang":
                self._stop.wait(30)
                return
            if self.mode == "error":
                secure.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
                return
            payload = _rpc_answer(self.audio)
            secure.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )


def _read_headers(stream: object) -> dict[str, str]:
    headers: dict[str, str] = {}
    while True:
        line = stream.readline().decode("latin-1")  # type: ignore[attr-defined]
        if line in ("\r\n", "\n", ""):
            return headers
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()


def _parse_rpc(host: str, body: bytes) -> TtsRequest:
    form = urllib.parse.parse_qs(body.decode("utf-8"))
    rpc = json.loads(form["f.req"][0])
    rpc_id, params_json = rpc[0][0][0], rpc[0][0][1]
    if rpc_id != "jQ1olc":
        raise ValueError(f"unexpected rpc {rpc_id}")
    text, lang, speed, _ = json.loads(params_json)
    return TtsRequest(host=host, text=text, lang=lang, slow=speed is True)


def _rpc_answer(audio: bytes) -> bytes:
    """The batchexecute envelope: an anti-XSSI prefix, a length line, then the JSON frame."""
    compact = (",", ":")  # Google's frames are compact; gTTS's regex depends on it
    inner = json.dumps([base64.b64encode(audio).decode("ascii")], separators=compact)
    frame = json.dumps(
        [["wrb.fr", "jQ1olc", inner, None, None, None, "generic"]], separators=compact
    )
    return f")]}}'\n\n{len(frame)}\n{frame}\n".encode()
