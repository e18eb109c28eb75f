"""Every error the API returns is JSON ``{"message": ...}``; validation errors name the parameter."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from engine.errors import (
    AnnostreamError,
    ConfigError,
    InfrastructureError,
    InputError,
    NotFoundError,
    is_database_outage,
)

log = logging.getLogger("annostream.api")

_LOCATION_NAMES = {
    "query": "query parameter",
    "path": "path parameter",
    "header": "header",
    "body": "request body",
    "cookie": "cookie",
}


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """``invalid query parameter 'per_page': Input should be ... (got '5000')`` per problem."""
    parts = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        where = _LOCATION_NAMES.get(location[0], location[0]) if location else "request"
        name = ".".join(location[1:])
        got = f" (got {error['input']!r})" if "input" in error and error["input"] is not None else ""
        parts.append(f"invalid {where} '{name}': {error.get('msg', 'invalid value')}{got}")
    return "; ".join(parts) or "invalid request"


def _message(status_code: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"message": message})


def http_status(error: BaseException) -> int:
    """The one translation of the engine's errors into HTTP statuses (see engine.errors)."""
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, InputError | ConfigError):
        return 422
    if is_database_outage(error) or isinstance(error, InfrastructureError):
        return 503
    return 500


async def _engine_error(request: Request, error: Exception) -> JSONResponse:
    status = http_status(error)
    if status == 503:
        what = "database" if is_database_outage(error) else "service"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.warning("%s unavailable answering %s %s: %s", what, request.method, request.url.path, first_line)
        response = _message(503, f"{what} unavailable ({first_line}); retry later")
        response.headers["Retry-After"] = "5"
        return response
    if status == 500:
        return await _unexpected(request, error)
    return _message(status, str(error))


async def _validation_failed(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return _message(422, describe_validation_errors(error.errors()))


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    response = _message(error.status_code, str(error.detail))
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error answering %s %s", request.method, request.url.path, exc_info=error)
    return _message(500, "internal server error (details are in the API log)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AnnostreamError, _engine_error)
    # A lost database connection surfaces as the driver's error, not as one of ours.
    app.add_exception_handler(sa.exc.OperationalError, _engine_error)
    app.add_exception_handler(sa.exc.InterfaceError, _engine_error)
    app.add_exception_handler(sa.exc.DisconnectionError, _engine_error)
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
