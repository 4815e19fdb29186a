"""Single sign-on for the console: OpenID Connect's authorization code flow, confidential
client (client_secret_post), no library beyond httpx.

The ID token comes straight from the provider's token endpoint over our own back-channel
request, which OIDC Core 3.1.3.7 (6) lets stand in for the signature check; an HS256 token
(signed with the client secret, the one algorithm we can check without the provider's keys) is
verified all the same. The issuer, the audience, the expiry and the nonce are always checked.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import httpx

from anbu.settings import ConsoleSettings

TIMEOUT_S = 10.0


class OidcError(Exception):
    """Sign-on failed; the message is the Korean text the login page shows."""


def authorize_url(cfg: ConsoleSettings, redirect_uri: str, state: str, nonce: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": cfg.oidc_client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid profile",
            "state": state,
            "nonce": nonce,
        }
    )
    sep = "&" if "?" in cfg.oidc_authorize_url else "?"
    return f"{cfg.oidc_authorize_url}{sep}{query}"


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def read_id_token(token: str, secret: str) -> dict[str, Any]:
    """The claims of a compact JWS; an HS256 one must carry the client secret's MAC."""
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header = json.loads(_b64(head_b64))
        claims = json.loads(_b64(body_b64))
    except (ValueError, UnicodeDecodeError) as exc:
        raise OidcError("로그인 제공자의 응답을 읽을 수 없습니다.") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise OidcError("로그인 제공자의 응답을 읽을 수 없습니다.")
    if header.get("alg") == "none":
        raise OidcError("서명 없는 로그인 응답은 받지 않습니다.")
    if header.get("alg") == "HS256":
        mac = hmac.new(secret.encode(), f"{head_b64}.{body_b64}".encode(), hashlib.sha256)
        try:
            signature = _b64(sig_b64)
        except ValueError:
            signature = b""
        if not hmac.compare_digest(mac.digest(), signature):
            raise OidcError("로그인 응답의 서명이 맞지 않습니다.")
    return claims


def check_claims(claims: dict[str, Any], cfg: ConsoleSettings, nonce: str, now: dt.datetime) -> str:
    """The account login the token names, or OidcError."""
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if claims.get("iss") != cfg.oidc_issuer or cfg.oidc_client_id not in audiences:
        raise OidcError("다른 곳에서 발급된 로그인 응답입니다.")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= now.timestamp():
        raise OidcError("로그인 응답이 만료되었습니다. 다시 시도하세요.")
    if not nonce or not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise OidcError("로그인 요청과 응답이 맞지 않습니다. 다시 시도하세요.")
    login = claims.get(cfg.oidc_claim)
    if not isinstance(login, str) or not login:
        raise OidcError("로그인 응답에 계정 이름이 없습니다.")
    return login


async def exchange(cfg: ConsoleSettings, code: str, redirect_uri: str) -> dict[str, Any]:
    """Trade the code for the ID token's claims at the provider's token endpoint."""
    secret = cfg.oidc_client_secret.get_secret_value()
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            r = await client.post(
                cfg.oidc_token_url,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "client_id": cfg.oidc_client_id,
                    "client_secret": secret,
                },
                headers={"Accept": "application/json"},
            )
    except httpx.HTTPError as exc:
        raise OidcError("로그인 제공자에 연결할 수 없습니다.") from exc
    if r.status_code != 200:
        raise OidcError("로그인 제공자가 요청을 거절했습니다. 다시 시도하세요.")
    try:
        body = r.json()
    except ValueError as exc:
        raise OidcError("로그인 제공자의 응답을 읽을 수 없습니다.") from exc
    token = body.get("id_token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise OidcError("로그인 제공자의 응답에 ID 토큰이 없습니다.")
    return read_id_token(token, secret)
