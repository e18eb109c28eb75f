"""Where analysis folders live, and moving them between incoming, imported and failed.

An analysis folder is always in exactly one place: every move is one ``rename`` (or, across
file systems, a copy under a hidden name, a rename, then removal of the source). Nothing is
ever overwritten. A folder moving into ANALYSES_PATH keeps its name, as in ELLA (ELLA's IGV
reads ``ANALYSES_PATH/<name>/tracks``): when the name is taken there, the folder stays in
incoming (:class:`DestinationExistsError`). A taken name in ANALYSES_FAILED gets a timestamp suffix.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from engine.config import Settings
from engine.errors import DestinationExistsError, InputError
from engine.timeutil import iso_utc, utcnow

log = logging.getLogger(__name__)

ERROR_FILE = "error.json"
READY_FILE = "READY"
_MAX_NAME_ATTEMPTS = 100


# --- analysis names ---------------------------------------------------------------------------

#: An analysis name becomes a path segment (work directory, destination folder): no separators,
#: no control characters, no leading dot (so never ``.`` or ``..``), at most 255 characters.
#: schemas/analysis.ready/v1.json ``analysis_name`` says the same for every event.
ANALYSIS_NAME_RE = re.compile(r"[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]{0,254}")


def check_analysis_name(name: object, *, file: str | None = None) -> str:
    """``name`` if it is safe as one path segment, else an InputError naming ``file``."""
    if not isinstance(name, str) or not ANALYSIS_NAME_RE.fullmatch(name):
        raise InputError(
            f"analysis name {name!r} is not allowed",
            file=file,
            expected="1-255 characters without '/', '\\', control characters or a leading '.'",
        )
    return name


# --- paths inside ANALYSES_INCOMING -----------------------------------------------------------


def resolve_under(relative: str, root: Path, *, what: str = "path") -> Path:
    """``root / relative`` resolved, after checking it cannot leave ``root``.

    Rejects absolute paths, ``..`` segments and symlinks that resolve outside ``root``.
    Raises InputError naming the offending path.
    """
    pure = check_relative_path(relative, what=what, root=str(root))
    real_root = root.resolve()
    resolved = (real_root / pure).resolve()
    if not resolved.is_relative_to(real_root):
        raise InputError(
            f"{what} resolves outside {root} (symlink?)", file=relative, expected=f"a {what} inside {root}"
        )
    return resolved


def check_relative_path(relative: str, *, what: str = "path", root: str = "its root") -> PurePosixPath:
    """Lexical checks only: not empty, not absolute, no ``..``. Raises InputError."""
    if not relative or "\x00" in relative:
        raise InputError(
            f"{what} is empty or contains NUL", file=relative or None, expected=f"a {what} relative to {root}"
        )
    pure = PurePosixPath(relative)
    if pure.is_absolute() or Path(relative).is_absolute():
        raise InputError(f"{what} is absolute", file=relative, expected=f"a {what} relative to {root}")
    if ".." in pure.parts:
        raise InputError(f"{what} contains '..'", file=relative, expected=f"a {what} inside {root}")
    return pure


def resolve_in_incoming(rel: str, incoming: Path) -> Path:
    """The analysis folder ``rel`` (relative to ANALYSES_INCOMING), checked not to escape it."""
    folder = resolve_under(rel, incoming, what="analysis folder")
    if folder == incoming.resolve():
        raise InputError(
            "analysis folder is ANALYSES_INCOMING itself", file=rel, expected=f"a folder inside {incoming}"
        )
    return folder


def relative_to_incoming(folder: Path, incoming: Path) -> str:
    """``folder`` relative to ANALYSES_INCOMING (POSIX separators); InputError if outside."""
    real_root = incoming.resolve()
    real_folder = folder.resolve()
    if real_folder == real_root or not real_folder.is_relative_to(real_root):
        raise InputError(
            "analysis folder is not inside ANALYSES_INCOMING",
            file=str(folder),
            expected=f"a folder under {incoming}",
        )
    return real_folder.relative_to(real_root).as_posix()


# --- moves ------------------------------------------------------------------------------------


def check_destination_free(folder: Path, settings: Settings) -> None:
    """ELLA's watcher (``AnalysisWatcher.check_and_import``) skips a folder whose name already
    exists in ANALYSES_PATH and leaves it in incoming; raise the same refusal, with what to do."""
    existing = settings.analyses_path / folder.name
    if existing.exists() or existing.is_symlink():
        raise DestinationExistsError(
            f"ANALYSES_PATH already has a folder named {folder.name}; the analysis folder stays in "
            "ANALYSES_INCOMING and is not imported (it is never renamed: ELLA's IGV reads "
            "ANALYSES_PATH/<name>/tracks)",
            file=str(existing),
            expected="no folder of that name in ANALYSES_PATH: move or remove it, then publish the folder "
            "again (annostream publish FOLDER)",
        )


def move_to_imported(folder: Path, settings: Settings) -> Path:
    """Move an imported analysis folder into ANALYSES_PATH under its own name; returns where it
    ended up. Raises :class:`DestinationExistsError` (folder not moved) if the name is taken."""
    check_destination_free(folder, settings)
    try:
        return move_folder(folder, settings.analyses_path, rename_if_taken=False)
    except FileExistsError:  # taken between the check and the move
        check_destination_free(folder, settings)
        raise


def move_to_failed(folder: Path, settings: Settings, error: dict[str, Any]) -> Path:
    """Write ``error.json`` into the folder, then move it into ANALYSES_FAILED.

    ``error`` holds ``stage`` and the InputError fields (``message``, ``file``, ``line``,
    ``expected``), optionally ``event_id`` and ``time``; missing keys are written as null.
    """
    write_error_file(folder, error)
    return move_folder(folder, settings.analyses_failed)


def fail_folder(
    folder: Path, settings: Settings, *, stage: str, error: InputError, event_id: str | None
) -> Path:
    """Record why ``folder`` failed (``error.json``: the stage, the error's fields, the event id)
    and move it into ANALYSES_FAILED; returns its new path. Used by the watcher and the stages."""
    return move_to_failed(folder, settings, {"stage": stage, **error.to_dict(), "event_id": event_id})


def write_error_file(folder: Path, error: dict[str, Any]) -> Path:
    document = {
        "stage": error.get("stage"),
        "message": error.get("message"),
        "file": error.get("file"),
        "line": error.get("line"),
        "expected": error.get("expected"),
        "event_id": error.get("event_id"),
        "time": error.get("time") or iso_utc(),
    }
    target = folder / ERROR_FILE
    partial = folder / f".{ERROR_FILE}.{uuid.uuid4().hex}"
    partial.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(partial, target)  # readers never see a half-written error.json
    return target


def move_folder(folder: Path, destination_dir: Path, *, rename_if_taken: bool = True) -> Path:
    """Move ``folder`` into ``destination_dir`` without overwriting anything; returns the new path.

    A taken name gets a timestamp suffix, or, with ``rename_if_taken=False``, FileExistsError.
    """
    if not folder.is_dir():
        raise InputError(
            "analysis folder does not exist (moved or deleted?)",
            file=str(folder),
            expected="an existing directory",
        )
    destination_dir.mkdir(parents=True, exist_ok=True)
    candidates = _candidate_names(folder.name) if rename_if_taken else [folder.name]
    for candidate in candidates:
        target = destination_dir / candidate
        # Claim the name with mkdir (atomic, fails if taken); rename then replaces only our own
        # empty placeholder, so a concurrent mover can never be overwritten.
        try:
            target.mkdir()
        except FileExistsError:
            continue
        try:
            _rename_onto_placeholder(folder, target)
        except OSError as error:
            with contextlib.suppress(OSError):
                target.rmdir()
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue  # someone wrote into our placeholder; pick another name
            raise
        log.info("moved %s -> %s", folder, target)
        return target
    if not rename_if_taken:
        raise FileExistsError(errno.EEXIST, f"{folder.name} already exists in {destination_dir}")
    raise OSError(f"no free name for {folder.name} in {destination_dir} after {_MAX_NAME_ATTEMPTS} tries")


def _candidate_names(name: str) -> list[str]:
    stamp = utcnow().strftime("%Y%m%dT%H%M%S.%fZ")
    return [name, f"{name}.{stamp}", *(f"{name}.{stamp}.{n}" for n in range(1, _MAX_NAME_ATTEMPTS - 1))]


def _rename_onto_placeholder(folder: Path, placeholder: Path) -> None:
    try:
        os.rename(folder, placeholder)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        _move_across_devices(folder, placeholder)


def _move_across_devices(folder: Path, placeholder: Path) -> None:
    # Copy under a hidden name first so the destination never shows a half-copied folder;
    # the source is removed only once the complete copy is in place.
    staging = placeholder.parent / f".{placeholder.name}.partial-{uuid.uuid4().hex}"
    shutil.copytree(folder, staging, symlinks=True)
    os.rename(staging, placeholder)
    shutil.rmtree(folder)
