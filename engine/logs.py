"""Logging for every process: ``ANNOSTREAM_LOG_FORMAT=text|json``, analysis context on each line,
and third-party start-up chatter kept out of an operator's way.

- ``text`` (default): ``TIME LEVEL LOGGER: MESSAGE [analysis=NAME event=ID]``;
- ``json``: one JSON object per line (``time``, ``level``, ``logger``, ``message``, ``analysis``,
  ``event_id``, ``process``, ``exc``) for log shippers.

:func:`log_context` puts the analysis name and event id of the event being processed into a
context variable; a filter on the handler copies them onto every record logged inside it (an
explicit ``extra={"analysis": ..., "event_id": ...}`` wins). The worker wraps each stage call in
it, so every line about an analysis carries both, whoever logs it.

faust and mode log their start-up and rebalance steps at INFO; those lines are shown only at
``LOG_LEVEL=DEBUG``. Their warnings and errors always show.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import orjson

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "annostream_log_context", default=None
)
#: Libraries whose INFO lines are start-up/connection chatter (shown at DEBUG only).
CHATTY = ("faust", "mode", "kafka", "aiokafka", "gunicorn.error", "uvicorn.error", "watchfiles", "alembic")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"


@contextlib.contextmanager
def log_context(*, analysis: str | None = None, event_id: str | None = None) -> Iterator[None]:
    """Every log line inside carries ``analysis`` and ``event_id``."""
    values = {key: value for key, value in (("analysis", analysis), ("event_id", event_id)) if value}
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **values})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def event_context(raw: bytes) -> dict[str, str]:
    """The analysis name and (import) event id of a raw event (empty when it is not a JSON object)."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(document, dict):
        return {}
    # Later events of one import carry the analysis.ready event they descend from: its id is the
    # import job's key, so it is the id every line of that import shows.
    ready = document.get("ready")
    origin = ready.get("event_id") if isinstance(ready, dict) else document.get("ready_event_id")
    found = {"analysis": document.get("analysis"), "event_id": origin or document.get("event_id")}
    return {key: str(value) for key, value in found.items() if isinstance(value, str | int) and value != ""}


class ContextFilter(logging.Filter):
    """Adds ``analysis``/``event_id`` (from log_context unless given) and the text suffix."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get() or {}
        for key in ("analysis", "event_id"):
            if getattr(record, key, None) is None and key in context:
                setattr(record, key, context[key])
        analysis, event_id = getattr(record, "analysis", None), getattr(record, "event_id", None)
        parts = [f"analysis={analysis}" if analysis else "", f"event={event_id}" if event_id else ""]
        shown = " ".join(part for part in parts if part)
        record.context = f" [{shown}]" if shown else ""
        return True


class ChatterFilter(logging.Filter):
    """Drops INFO (and lower) lines of chatty libraries unless the level is DEBUG."""

    def __init__(self, level: str) -> None:
        super().__init__()
        self.debug = logging.getLevelName(level) <= logging.DEBUG

    def filter(self, record: logging.LogRecord) -> bool:
        if self.debug or record.levelno > logging.INFO:
            return True
        return not any(record.name == name or record.name.startswith(f"{name}.") for name in CHATTY)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key in ("analysis", "event_id"):
            value = getattr(record, key, None)
            if value is not None:
                document[key] = str(value)
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document (also handed to faust's worker, which would
    otherwise install its own format)."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"annostream": formatter},
        "filters": {
            "context": {"()": f"{__name__}.ContextFilter"},
            "chatter": {"()": f"{__name__}.ChatterFilter", "level": level},
        },
        "handlers": {
            "annostream": {
                "class": "logging.StreamHandler",
                "formatter": "annostream",
                "filters": ["context", "chatter"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["annostream"]},
        # gunicorn brings its own handlers for these; route them through ours instead. gunicorn's
        # two loggers get our handler directly: the uvicorn worker copies their handlers onto
        # uvicorn.error/uvicorn.access and stops those propagating, so without a handler here the
        # access log would be lost.
        "loggers": {
            **{
                name: {"level": level, "handlers": ["annostream"], "propagate": False}
                for name in ("gunicorn.error", "gunicorn.access")
            },
            **{
                name: {"level": level, "handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
        },
    }


def configure(level: str, log_format: str) -> None:
    logging.config.dictConfig(logging_config(level, log_format))
