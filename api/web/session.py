"""Login for the web pages: the bearer token kept in a session cookie.

The cookie holds the token itself (the same secret the API accepts as ``Authorization: Bearer``)
and is ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (other sites' pages never send
it) and ``Secure`` behind HTTPS. Every form that changes something also carries a CSRF value
derived from the token (HMAC), and a POST whose ``Origin`` names another site is refused, so a
forged form cannot act even in a browser that ignores SameSite.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request

from api.auth import configured_tokens, token_is_valid
from engine.config import Settings

COOKIE = "annostream_session"
COOKIE_MAX_AGE_S = 12 * 3600


def session_token(request: Request, settings: Settings) -> str | None:
    """The valid token of the session cookie, or None (absent, revoked or wrong)."""
    token = request.cookies.get(COOKIE)
    if not token or not token_is_valid(token, configured_tokens(settings)):
        return None
    return token


def csrf_value(token: str) -> str:
    return hmac.new(token.encode(), b"annostream-web-csrf", hashlib.sha256).hexdigest()


def csrf_ok(token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_value(token), str(presented))


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin != "null"
    return urlsplit(origin).netloc == request.headers.get("host", "")


def safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send the user to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
