"""Bearer-token access: write endpoints always need a token, reads only with ANNOSTREAM_API_READ_AUTH.

Tokens come from ``ANNOSTREAM_API_TOKENS`` (comma-separated) and/or ``ANNOSTREAM_API_TOKENS_FILE``
(one per line, ``#`` comments; re-read when the file changes, so tokens rotate without a
restart). Every configured token is compared in constant time (``hmac.compare_digest``), so the
answer time does not tell how much of a token was right. With no tokens configured, write
endpoints refuse everyone: an unconfigured server is closed, not open.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SettingsDep
from engine.config import Settings

# Probes and metrics stay open: orchestrators and Prometheus carry no token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_bearer = HTTPBearer(auto_error=False, description="An API token (ANNOSTREAM_API_TOKENS)")
_file_cache: dict[Path, tuple[float, tuple[str, ...]]] = {}


def configured_tokens(settings: Settings) -> tuple[str, ...]:
    tokens = [token.strip() for token in settings.api_tokens.split(",") if token.strip()]
    if settings.api_tokens_file is not None:
        tokens.extend(_tokens_from_file(settings.api_tokens_file))
    return tuple(tokens)


def _tokens_from_file(path: Path) -> tuple[str, ...]:
    try:
        modified = path.stat().st_mtime
    except OSError:
        return ()  # a missing file grants nothing
    cached = _file_cache.get(path)
    if cached is not None and cached[0] == modified:
        return cached[1]
    lines = path.read_text(encoding="utf-8").splitlines()
    tokens = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    _file_cache[path] = (modified, tokens)
    return tokens


def token_is_valid(presented: str, tokens: tuple[str, ...]) -> bool:
    # Compare against every token (no early exit) so timing reveals nothing about which matched.
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented.encode(), token.encode())
    return matched


def _refuse(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def _check(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _refuse("missing bearer token (send 'Authorization: Bearer <token>')")
    if not token_is_valid(credentials.credentials, configured_tokens(settings)):
        raise _refuse("invalid bearer token")
    return credentials.credentials


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require_write_token(settings: SettingsDep, credentials: Credentials) -> str:
    """Dependency of every write endpoint; returns the token (for the request log)."""
    return _check(settings, credentials)


async def require_read_token(request: Request, settings: SettingsDep, credentials: Credentials) -> None:
    """App-wide dependency: reads need a token only when ANNOSTREAM_API_READ_AUTH is true.

    The web pages (``/``, ``/ui/``, ``/static/``) check their session cookie themselves and
    send a browser to the login form instead of answering 401.
    """
    path = request.url.path
    if settings.api_read_auth and path not in OPEN_PATHS and not _web_path(path):
        _check(settings, credentials)


def _web_path(path: str) -> bool:
    return path == "/" or path.startswith(("/ui/", "/static/"))


WriteToken = Annotated[str, Depends(require_write_token)]
