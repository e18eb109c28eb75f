"""The import-flow events: ``analysis.ready``, ``.annotated``, ``.imported``, ``.failed``, ``.status``.

Their models and how they are built from analysis folders and stage results. Events carry
paths, checksums and metadata, never file contents. See docs/events.md for the contract.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson

from engine.errors import EventRejected, InputError
from engine.events.base import Event, plain_fields
from engine.folders import (
    ANALYSIS_NAME_RE,
    ERROR_FILE,
    READY_FILE,
    check_analysis_name,
    check_relative_path,
    relative_to_incoming,
    resolve_in_incoming,
    resolve_under,
)
from engine.timeutil import iso_utc

#: Files in an analysis folder that are markers, not content.
EXCLUDED_FILES = frozenset({READY_FILE, ERROR_FILE})


# --- models -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    path: str  # relative, POSIX separators
    sha256: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Genepanel:
    name: str
    version: str


@dataclass(frozen=True, kw_only=True)
class AnalysisEvent(Event):
    """An event about one analysis: keyed by its name, so all of them land on one partition."""

    analysis: str | None

    @property
    def key(self) -> str:
        return self.analysis or ""


@dataclass(frozen=True, kw_only=True)
class ReadyEvent(AnalysisEvent):
    SCHEMA: ClassVar[str] = "analysis.ready"

    analysis: str
    folder: str  # relative to ANALYSES_INCOMING
    files: tuple[FileEntry, ...]
    fingerprint: str
    genepanel: Genepanel | None = None
    priority: int = 1

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ReadyEvent:
        panel = document.get("genepanel")
        return cls(
            **plain_fields(document, cls, nested=frozenset({"files", "genepanel"})),
            files=_files_from(document["files"]),
            genepanel=Genepanel(**panel) if panel else None,
        )

    def check_paths(self, incoming: Path | None) -> None:
        """The folder and every file must resolve inside ``incoming`` (EventRejected otherwise)."""
        if incoming is None:
            raise TypeError("decoding an analysis.ready event needs incoming= (ANALYSES_INCOMING)")
        try:
            # The name becomes a path segment (work directory): checked like a path.
            check_analysis_name(self.analysis)
        except InputError as error:
            raise EventRejected(f"field analysis: {error.message}") from None
        try:
            folder = resolve_in_incoming(self.folder, incoming)
        except InputError as error:
            raise EventRejected(f"field folder: {error.message} ({self.folder!r})") from None
        for index, entry in enumerate(self.files):
            try:
                resolve_under(entry.path, folder, what="file")
            except InputError as error:
                raise EventRejected(f"field files[{index}].path: {error.message} ({entry.path!r})") from None


@dataclass(frozen=True, kw_only=True)
class AnnotatedEvent(AnalysisEvent):
    SCHEMA: ClassVar[str] = "analysis.annotated"

    analysis: str
    ready: ReadyEvent
    artifacts: tuple[FileEntry, ...]  # relative to the data work directory
    annotation: dict[str, Any] | None = None  # e.g. {"bundle_version": "2024.1"}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> AnnotatedEvent:
        return cls(
            **plain_fields(document, cls, nested=frozenset({"ready", "artifacts"})),
            ready=ReadyEvent.from_document(document["ready"]),
            artifacts=_files_from(document["artifacts"]),
        )

    def check_paths(self, incoming: Path | None) -> None:
        self.ready.check_paths(incoming)
        for index, artifact in enumerate(self.artifacts):
            # Artifacts live under the work directory, which decoding does not know; reject
            # what could never be inside it. Consumers resolve them with engine.folders.resolve_under.
            try:
                check_relative_path(artifact.path, what="artifact", root="the data work directory")
            except InputError as error:
                raise EventRejected(
                    f"field artifacts[{index}].path: {error.message} ({artifact.path!r})"
                ) from None


@dataclass(frozen=True, kw_only=True)
class ImportedEvent(AnalysisEvent):
    SCHEMA: ClassVar[str] = "analysis.imported"

    analysis: str
    ready_event_id: str
    fingerprint: str
    analysis_id: int
    counts: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class FailedEvent(AnalysisEvent):
    SCHEMA: ClassVar[str] = "analysis.failed"

    analysis: str | None
    stage: str
    error: dict[str, Any]  # message, file, line, expected
    attempt: int = 1
    original: dict[str, Any] | str


@dataclass(frozen=True, kw_only=True)
class StatusEvent(AnalysisEvent):
    """One import job transition, on the compacted ``analysis.status`` topic."""

    SCHEMA: ClassVar[str] = "analysis.status"

    analysis: str
    ready_event_id: str
    job_id: int
    status: str
    stage: str | None
    message: str | None
    attempts: int
    at: str  # when the job made the transition (ISO 8601 UTC, Z)


def _files_from(items: list[dict[str, Any]]) -> tuple[FileEntry, ...]:
    return tuple(FileEntry(**item) for item in items)


# --- building ---------------------------------------------------------------------------------


def sha256_file(path: Path) -> FileEntry:
    """Checksum and size of one file, streamed (never the whole file in memory)."""
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
        size = os.fstat(stream.fileno()).st_size
    return FileEntry(path=path.name, sha256=digest, size=size)


def fingerprint(files: tuple[FileEntry, ...] | list[FileEntry]) -> str:
    """sha256 over the files sorted by path, one ``PATH NUL SHA256 LF`` line each (UTF-8)."""
    digest = hashlib.sha256()
    for entry in sorted(files, key=lambda item: item.path):
        digest.update(entry.path.encode() + b"\0" + entry.sha256.encode() + b"\n")
    return digest.hexdigest()


def content_files(folder: Path) -> Iterator[Path]:
    """Every regular file under ``folder`` except the READY and error.json markers.

    A symlink counts as its target but must stay inside the folder (InputError otherwise),
    so an event never points at data outside ANALYSES_INCOMING.
    """
    real_folder = folder.resolve()
    for directory, subdirs, names in os.walk(folder, followlinks=False):
        subdirs.sort()
        for name in sorted(names):
            path = Path(directory, name)
            # error.json is written as ".error.json.<random>" then renamed; counting that
            # partial file would change the fingerprint and make the watcher publish a folder
            # that is being moved to ANALYSES_FAILED a second time.
            if path.parent == folder and (name in EXCLUDED_FILES or name.startswith(f".{ERROR_FILE}.")):
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(real_folder):
                raise InputError(
                    "symlink points outside the analysis folder",
                    file=str(path),
                    expected="regular files inside the folder",
                )
            if path.is_file():
                yield path


def describe_files(folder: Path, root: Path | None = None) -> tuple[FileEntry, ...]:
    """FileEntry (path relative to ``root``, default ``folder``) for each content file."""
    base = root or folder
    entries = []
    for path in content_files(folder):
        checked = sha256_file(path)
        entries.append(dataclasses.replace(checked, path=path.relative_to(base).as_posix()))
    return tuple(entries)


def default_producer(role: str) -> str:
    return f"{role}@{socket.gethostname()}"


def build_ready_event(
    folder: Path,
    incoming: Path,
    *,
    producer: str,
    analysis: str | None = None,
    genepanel: Genepanel | None = None,
    priority: int = 1,
) -> ReadyEvent:
    """An ``analysis.ready`` event for ``folder`` (which must be inside ``incoming``).

    ``analysis`` defaults to the folder name; callers that parsed the ``.analysis`` file pass
    its name, gene panel and priority.
    """
    relative = relative_to_incoming(folder, incoming)
    files = describe_files(folder)
    if not files:
        raise InputError(
            "analysis folder has no files", file=str(folder), expected="a .vcf and a .analysis file"
        )
    return ReadyEvent(
        producer=producer,
        analysis=analysis or folder.name,
        folder=relative,
        files=files,
        fingerprint=fingerprint(files),
        genepanel=genepanel,
        priority=priority,
    )


def annotated_event(
    ready: ReadyEvent,
    artifacts: list[Path],
    work_dir: Path,
    *,
    producer: str,
    annotation: dict[str, Any] | None = None,
) -> AnnotatedEvent:
    """An ``analysis.annotated`` event; artifact paths are stored relative to ``work_dir``."""
    entries = []
    for path in artifacts:
        checked = sha256_file(path)
        relative = path.resolve().relative_to(work_dir.resolve()).as_posix()
        entries.append(dataclasses.replace(checked, path=relative))
    return AnnotatedEvent(
        producer=producer,
        analysis=ready.analysis,
        ready=ready,
        artifacts=tuple(entries),
        annotation=annotation,
    )


def imported_event(
    ready: ReadyEvent, *, analysis_id: int, counts: Mapping[str, int], producer: str
) -> ImportedEvent:
    return ImportedEvent(
        producer=producer,
        analysis=ready.analysis,
        ready_event_id=ready.event_id,
        fingerprint=ready.fingerprint,
        analysis_id=analysis_id,
        counts=dict(counts),
    )


def status_event(
    entry: Mapping[str, Any], *, analysis: str, ready_event_id: str, job_id: int, attempts: int, producer: str
) -> StatusEvent:
    """An ``analysis.status`` event for one entry of an import job's status history."""
    return StatusEvent(
        producer=producer,
        analysis=analysis,
        ready_event_id=ready_event_id,
        job_id=job_id,
        status=str(entry["status"]),
        stage=entry.get("stage"),
        message=entry.get("message"),
        attempts=attempts,
        at=iso_utc(dt.datetime.fromisoformat(str(entry["at"]))),
    )


def failed_event(
    original: bytes | dict[str, Any] | str,
    *,
    stage: str,
    error: InputError | Exception,
    producer: str,
    attempt: int = 1,
    analysis: str | None = None,
) -> FailedEvent:
    """A dead letter for ``original`` (raw bytes are kept as an object if they were JSON)."""
    if isinstance(original, bytes):
        original = _raw_to_original(original)
    if analysis is None and isinstance(original, dict) and isinstance(original.get("analysis"), str):
        # A hostile name stays inside ``original``; the dead letter's own field must be valid.
        analysis = original["analysis"] if ANALYSIS_NAME_RE.fullmatch(original["analysis"]) else None
    details = (
        error.to_dict()
        if isinstance(error, InputError)
        else {"message": str(error) or type(error).__name__, "file": None, "line": None, "expected": None}
    )
    return FailedEvent(
        producer=producer,
        analysis=analysis or None,
        stage=stage,
        error=details,
        attempt=attempt,
        original=original,
    )


def _raw_to_original(raw: bytes) -> dict[str, Any] | str:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")
    return value if isinstance(value, dict) else raw.decode("utf-8", errors="replace")


# --- checks against the file system -----------------------------------------------------------


def verify_files(event: ReadyEvent, incoming: Path) -> None:
    """Raise InputError naming the first file whose size or sha256 no longer matches the event."""
    folder = resolve_in_incoming(event.folder, incoming)
    for entry in event.files:
        path = resolve_under(entry.path, folder, what="file")
        if not path.is_file():
            raise InputError(
                "file listed in the event is missing",
                file=str(path),
                expected=f"a file of {entry.size} bytes with sha256 {entry.sha256}",
            )
        actual = sha256_file(path)
        if actual.size != entry.size:
            raise InputError(
                f"file size changed since the event was published: {actual.size} bytes",
                file=str(path),
                expected=f"{entry.size} bytes",
            )
        if actual.sha256 != entry.sha256:
            raise InputError(
                f"file content changed since the event was published: sha256 {actual.sha256}",
                file=str(path),
                expected=f"sha256 {entry.sha256}",
            )
