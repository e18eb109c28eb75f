"""Every error Annostream raises on purpose, in one tree, each saying whether retrying can help.

::

    AnnostreamError                      retriable?  what the pipeline does with it
    |-- InputError                           no      FAILED job + error.json + dead letter (file:line)
    |   |-- DuplicateAnalysisError           no
    |   |-- MissingGenepanelError            no
    |   |-- AnnotationConfigError            no
    |   |-- AnnotationValueError             no
    |   |-- UnknownAnalysisError             no      API 404: a request names no stored analysis
    |   |-- EventRejected                    no      dead letter (the event itself is invalid)
    |   |-- DestinationExistsError           no      ANALYSES_PATH already has the name (left in incoming)
    |   `-- LimitExceeded                    no      a configured bound on input was exceeded
    |-- ConfigError                          no      a setting is missing or invalid (CLI exit 2)
    |-- DatabaseNotCurrentError              no      run `annostream db upgrade`
    |-- JobTransitionError                   no      a bug: a finished job asked to move again
    |-- GaveUp                               no      an event failed its bounded number of attempts
    |-- FailureNotRecorded                   no      the failure path failed: retried, then parked
    |-- NotFoundError                        no      API 404: an id in the URL names nothing
    |-- UnknownEllaVersionError              no      an ELLA database at an unknown schema revision
    |-- RetryRefused                         no      `annostream retry` / API: the retry cannot be done
    |-- SmokeFailed                          no      `annostream smoke` did not see the import
    |-- BrokerError                          no      the embedded broker binary could not start
    `-- InfrastructureError                 yes      retried with backoff and jitter, never a failure
        |-- BrokerUnavailable               yes      Kafka unreachable or did not acknowledge
        |-- DatabaseUnavailable             yes      API 503, worker waits
        `-- StorageError                    yes      a data folder is not writable or the disk is full

Third-party errors are classified by :func:`is_retriable` (database connection errors,
Kafka errors whose ``retriable`` flag is set, connection/timeouts and file-system errors
such as ENOSPC or EACCES). Anything else is a bug: the worker retries it a bounded number of
times (``ANNOSTREAM_MAX_ATTEMPTS``) and then fails the event as an internal error with the
traceback logged, instead of restarting in a loop.

Each boundary translates once: :mod:`engine.pipeline.stages` (worker), ``engine.cli.main``
(exit codes) and ``api.errors`` (HTTP status). Private control-flow exceptions (a stage's
"skip this event", a parser's "not a number") stay local to their module.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, ClassVar


class AnnostreamError(Exception):
    """Base class for errors whose message is meant for a user."""

    #: Whether the same operation may succeed if tried again later (as aiokafka's ``KafkaError``).
    retriable: ClassVar[bool] = False


# --- bad input --------------------------------------------------------------------------------


@dataclass
class InputError(AnnostreamError):
    """Bad input in an analysis folder, gene panel, VCF, PED, config or event. Not retriable.

    ``str(error)`` reads ``FILE:LINE: MESSAGE (expected EXPECTED)``.
    """

    message: str
    file: str | None = None
    line: int | None = None
    expected: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        tail = f" (expected {self.expected})" if self.expected else ""
        return f"{where}{self.message}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {"message": str(self), "file": self.file, "line": self.line, "expected": self.expected}


class DuplicateAnalysisError(InputError):
    """An analysis with this name was already imported with different content. Not retriable."""


class MissingGenepanelError(InputError):
    """The analysis names a gene panel that is not in the database. Not retriable."""


class AnnotationConfigError(InputError):
    """The annotation config is wrong: an unknown converter, option or option value. Not retriable."""


class AnnotationValueError(InputError):
    """A VCF INFO value cannot be converted as the annotation config asks. Not retriable.

    Raised without a line number; the VCF reader knows the line and may re-raise with it.
    """


class EventRejected(InputError):
    """An event that must not be processed; ``reason`` says why (naming the field). Not retriable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)

    @property
    def reason(self) -> str:
        return self.message


class DestinationExistsError(InputError):
    """ANALYSES_PATH already holds a folder of this name: the analysis is left in incoming. Not retriable."""


class LimitExceeded(InputError):
    """Input exceeds a configured bound (size, line length, samples, nesting). Not retriable."""


# --- operator and programming errors ----------------------------------------------------------


class ConfigError(AnnostreamError):
    """A configuration value is missing or invalid; the message names the variable. Not retriable."""


class DatabaseNotCurrentError(AnnostreamError):
    """The database schema is not at the revision this code expects. Not retriable."""

    def __init__(self, url: str, found: str | None, expected: str) -> None:
        import sqlalchemy as sa  # lazily: this module stays a dependency-free leaf

        self.found = found
        self.expected = expected
        safe_url = sa.engine.make_url(url).render_as_string(hide_password=True)
        super().__init__(
            f"database {safe_url} is at schema revision {found or '<empty>'} but this annostream "
            f"needs {expected}; run 'annostream db upgrade'"
        )


class JobTransitionError(AnnostreamError):
    """A job was asked to move out of a terminal status (DONE or CANCELLED). Not retriable."""


class GaveUp(AnnostreamError):
    """An event used up its attempts (crashes or unexpected errors); it is failed. Not retriable."""


class FailureNotRecorded(AnnostreamError):
    """Recording a failure (error.json, folder move, dead letter) failed. Not retriable as such:
    the stage guard retries the failure path a few times, then parks the event.

    ``error`` is the failure that was being recorded; ``__cause__`` is why recording it failed.
    """

    def __init__(self, error: InputError) -> None:
        super().__init__(f"could not record the failure: {error}")
        self.error = error


class NotFoundError(AnnostreamError):
    """An id in a URL or command names nothing. Not retriable."""

    def __init__(self, kind: str, identifier: object) -> None:
        super().__init__(f"{kind} {identifier} not found")


class UnknownEllaVersionError(AnnostreamError):
    """The database is ELLA's, at a schema revision this Annostream was not written for. Not retriable."""


class RetryRefused(AnnostreamError):
    """A retry of a failed import cannot be done; ``status`` is the HTTP status the API answers
    with. Not retriable."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


class SmokeFailed(AnnostreamError):
    """The pipeline did not import the smoke analysis; the message says where it stopped."""


class BrokerError(AnnostreamError):
    """The embedded broker could not be found or did not start. Not retriable."""


# --- infrastructure ---------------------------------------------------------------------------


class InfrastructureError(AnnostreamError):
    """The database, the broker or the file system is unavailable. Retriable."""

    retriable: ClassVar[bool] = True


class BrokerUnavailable(InfrastructureError):
    """The Kafka broker could not be reached or did not acknowledge a write. Retriable."""


class DatabaseUnavailable(InfrastructureError):
    """The database could not be reached. Retriable."""


class StorageError(InfrastructureError):
    """A data folder is not writable, vanished or the disk is full; names the path. Retriable."""


#: File-system errors that are the machine's trouble, not the input's.
STORAGE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EIO,
        errno.EACCES,
        errno.EPERM,
        errno.EMFILE,
        errno.ENFILE,
    }
)


def is_retriable(error: BaseException) -> bool:
    """Whether trying the same operation again later may succeed (infrastructure trouble)."""
    if isinstance(error, AnnostreamError):
        return error.retriable
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    if isinstance(error, OSError):
        return error.errno in STORAGE_ERRNOS
    return _is_retriable_database_error(error) or _is_retriable_kafka_error(error)


def _is_retriable_database_error(error: BaseException) -> bool:
    try:
        from sqlalchemy import exc
    except ImportError:  # pragma: no cover - a hard dependency
        return False
    return isinstance(
        error, exc.OperationalError | exc.InterfaceError | exc.DisconnectionError | exc.TimeoutError
    )


def _is_retriable_kafka_error(error: BaseException) -> bool:
    try:
        from kafka.errors import KafkaError, KafkaTimeoutError, NoBrokersAvailable
    except ImportError:  # pragma: no cover - a hard dependency
        return False
    if isinstance(error, NoBrokersAvailable | KafkaTimeoutError):
        return True
    return isinstance(error, KafkaError) and bool(
        getattr(error, "retriable", False) or getattr(error, "invalid_metadata", False)
    )


def is_database_outage(error: BaseException) -> bool:
    """The database is unreachable (as opposed to a bad query): the API answers 503."""
    return isinstance(error, DatabaseUnavailable) or _is_retriable_database_error(error)


def describe_internal(error: BaseException) -> str:
    """The message of an unexpected error as users see it: ``internal error (Type): text``."""
    return f"internal error ({type(error).__name__}): {error}"


class UnknownAnalysisError(InputError):
    """A request names an analysis that is not stored (the API answers 404). Not retriable."""
