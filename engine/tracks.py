"""IGV tracks follow the active bundle (ELLA's "Updates to IGV tracks" procedure, automated).

A dataset in a bundle's ``sources.json`` may name the IGV track it provides:
``"clinvar": {"version": "20240601", "igv_track": "clinvar-current.vcf.gz", "files": {...}}``.
When a bundle becomes active (``bundle.activated`` event -> the worker's ``tracks`` stage), for
each such dataset:

1. the dataset's ``.vcf.gz`` (or ``.bed.gz``) and its ``.tbi`` are hard-linked (copied across file
   systems) into ``$IGV_DATA/tracks/`` as ``<dataset>_<version>.vcf.gz`` and ``...vcf.gz.tbi``;
2. the ``igv_track`` symlinks (``clinvar-current.vcf.gz`` and ``clinvar-current.vcf.gz.tbi``) are
   repointed to them atomically (a new link renamed over the old one), so ELLA never sees a
   missing or half-written track;
3. in ELLA's ``$IGV_DATA/track_config.json`` (a JSON object whose keys are fnmatch patterns of
   track ids such as ``{STATIC}/clinvar-current.vcf.gz``; see ELLA's
   ``src/api/v1/resources/igvcfg.py``) the entry whose key names exactly that track gets the
   new version in its ``description``; the previous file is kept as
   ``track_config.json.<UTC time>.bak`` and the new one is written atomically.

Activating an older bundle puts its versions back the same way. Running it again changes
nothing (no new files, no backup). Without ``IGV_DATA`` (or without the folder) it is a warning,
never a failure of the release.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fnmatch
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.bundles import BundleInfo, read_bundle
from engine.errors import InputError

log = logging.getLogger("annostream.tracks")

TRACKS_FOLDER = "tracks"
TRACK_CONFIG = "track_config.json"
TRACK_KEY = "igv_track"
_TRACK_SUFFIXES = (".vcf.gz", ".bed.gz", ".gff3.gz")  # tabix-indexed track types ELLA shows
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass
class TracksResult:
    bundle: str
    linked: list[str] = field(default_factory=list)  # "<link> -> <file>" repointed
    unchanged: list[str] = field(default_factory=list)  # links already right
    config_updated: list[str] = field(default_factory=list)  # track_config.json keys edited
    backup: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{len(self.linked)} track(s) repointed",
            f"{len(self.unchanged)} already current",
            f"{len(self.config_updated)} track config entr(y/ies) updated",
        ]
        if self.backup is not None:
            parts.append(f"previous config kept as {self.backup.name}")
        return (
            f"IGV tracks of bundle {self.bundle}: "
            + ", ".join(parts)
            + "".join(f"; warning: {warning}" for warning in self.warnings)
        )


@dataclass(frozen=True)
class DatasetTrack:
    dataset: str
    version: str
    link: str  # the igv_track name, e.g. clinvar-current.vcf.gz
    source: Path  # the dataset's track file in the bundle


def bundle_tracks(folder: Path) -> list[DatasetTrack]:
    """The IGV tracks a bundle folder declares; InputError names what is wrong."""
    spec = read_bundle(folder)
    manifest_path = folder / "sources.json"
    tracks = []
    for dataset in spec.datasets:
        entry = spec.manifest.get(dataset.name)
        link = entry.get(TRACK_KEY) if isinstance(entry, dict) else None
        if link is None:
            continue
        suffix = next((s for s in _TRACK_SUFFIXES if isinstance(link, str) and link.endswith(s)), None)
        if not isinstance(link, str) or suffix is None or "/" in link or link.startswith("."):
            raise InputError(
                f"dataset {dataset.name!r}: igv_track {link!r}",
                file=str(manifest_path),
                expected=f"a file name ending in {' or '.join(_TRACK_SUFFIXES)}, without '/'",
            )
        candidates = [relative for relative in dataset.files if relative.endswith(suffix)]
        if len(candidates) != 1:
            raise InputError(
                f"dataset {dataset.name!r} declares igv_track {link!r} but lists "
                f"{len(candidates)} {suffix} files",
                file=str(manifest_path),
                expected=f"exactly one {suffix} file (with its .tbi) in the dataset",
            )
        source = folder / candidates[0]
        if not Path(str(source) + ".tbi").is_file():
            raise InputError(
                f"dataset {dataset.name!r}: the track has no index",
                file=str(source),
                expected=f"{source.name}.tbi next to it",
            )
        tracks.append(DatasetTrack(dataset.name, dataset.version, link, source))
    return tracks


def apply_tracks(
    bundle: BundleInfo, igv_data: Path | None, *, now: dt.datetime | None = None
) -> TracksResult:
    """Put ``bundle``'s IGV tracks into ``igv_data`` (see the module doc). Idempotent."""
    result = TracksResult(bundle.version)
    tracks = bundle_tracks(bundle.path)
    if not tracks:
        return result
    if igv_data is None or not Path(igv_data).is_dir():
        where = "IGV_DATA is not set" if igv_data is None else f"IGV_DATA folder {igv_data} does not exist"
        result.warnings.append(
            f"{where}: {len(tracks)} IGV track(s) of bundle {bundle.version} not "
            f"installed ({', '.join(track.link for track in tracks)})"
        )
        return result
    folder = Path(igv_data) / TRACKS_FOLDER
    folder.mkdir(exist_ok=True)
    versions: dict[str, tuple[str, str | None]] = {}  # link -> (new version, previous version)
    for track in tracks:
        suffix = next(s for s in _TRACK_SUFFIXES if track.link.endswith(s))
        name = f"{_UNSAFE.sub('_', track.dataset)}_{_UNSAFE.sub('_', track.version)}{suffix}"
        previous = _previous_version(folder / track.link, track.dataset, suffix)
        for extension in ("", ".tbi"):
            _place(Path(str(track.source) + extension), folder / (name + extension))
            if _repoint(folder / (track.link + extension), name + extension):
                result.linked.append(f"{track.link}{extension} -> {name}{extension}")
            else:
                result.unchanged.append(track.link + extension)
        versions[track.link] = (track.version, previous)
    _update_config(Path(igv_data), versions, tracks, result, now or dt.datetime.now(dt.UTC))
    return result


def _previous_version(link: Path, dataset: str, suffix: str) -> str | None:
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    prefix = f"{_UNSAFE.sub('_', dataset)}_"
    if target.startswith(prefix) and target.endswith(suffix):
        return target[len(prefix) : -len(suffix)]
    return None


def _place(source: Path, target: Path) -> None:
    """Hard-link (or copy across file systems) ``source`` to ``target`` unless it is there."""
    if target.exists():
        if target.stat().st_size == source.stat().st_size:
            return  # placed before (bundle files never change after 'bundle add')
        target.unlink()
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    try:
        os.link(source, staging)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(source, staging)
    os.replace(staging, target)


def _repoint(link: Path, target_name: str) -> bool:
    """Make ``link`` a symlink to ``target_name`` (relative) atomically; False if it already is."""
    if link.is_symlink() and os.readlink(link) == target_name:
        return False
    if link.exists() and not link.is_symlink():
        raise InputError(
            f"{link.name} in the IGV tracks folder is a file, not a symlink",
            file=str(link),
            expected="a symlink annostream can repoint (move the file away)",
        )
    staging = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(target_name, staging)
    os.replace(staging, link)
    return True


def _update_config(
    igv_data: Path,
    versions: dict[str, tuple[str, str | None]],
    tracks: list[DatasetTrack],
    result: TracksResult,
    now: dt.datetime,
) -> None:
    path = igv_data / TRACK_CONFIG
    if not path.is_file():
        result.warnings.append(f"{path} not found: no track descriptions updated")
        return
    text = path.read_text(encoding="utf-8")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"malformed JSON: {error.msg}",
            file=str(path),
            line=error.lineno,
            expected="ELLA's IGV track config (a JSON object)",
        ) from None
    if not isinstance(config, dict):
        raise InputError(
            "the track config is not a JSON object",
            file=str(path),
            expected="ELLA's IGV track config (track id pattern -> settings)",
        )
    datasets = {track.link: track.dataset for track in tracks}
    for link, (version, previous) in versions.items():
        track_id = f"{{STATIC}}/{link}"
        # Only the entry naming this very track (no wildcard), not e.g. "{STATIC}/*.vcf.gz".
        keys = [
            key
            for key, entry in config.items()
            if isinstance(entry, dict)
            and not any(char in key for char in "*?[")
            and fnmatch.fnmatchcase(track_id, key)
        ]
        if not keys:
            result.warnings.append(f"{path} has no entry for {track_id}: its description is not updated")
        for key in keys:
            entry = config[key]
            described = _described(entry.get("description"), datasets[link], version, previous)
            if described != entry.get("description"):
                entry["description"] = described
                result.config_updated.append(key)
    if not result.config_updated:
        return
    backup = path.with_name(f"{TRACK_CONFIG}.{now.strftime('%Y%m%dT%H%M%S%fZ')}.bak")
    shutil.copy2(path, backup)
    result.backup = backup
    staging = path.with_name(f".{TRACK_CONFIG}.{uuid.uuid4().hex[:8]}")
    try:
        staging.write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
        os.replace(staging, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def _described(description: Any, dataset: str, version: str, previous: str | None) -> str:
    """The description with the version swapped in: the previous version's text is replaced where
    it appears, otherwise ``<dataset> <version>`` is written."""
    if isinstance(description, str) and description:
        if version in description:
            return description
        if previous and previous in description:
            return description.replace(previous, version)
        return f"{description} ({dataset} {version})"
    return f"{dataset} {version}"
