"""Annotation data bundles: a vcfanno TOML config, a sources manifest and the data it names.

A bundle folder holds

* ``vcfanno_config.toml``: the vcfanno config; relative ``file`` paths are relative to the bundle;
* ``sources.json``: ella-anno's manifest shape, one entry per dataset
  (``{"gnomad": {"version": "2.1.1", "files": {"variantDBs/gnomad.vcf.gz": "<sha256>"}}}``);
  ``files`` maps paths relative to the bundle to a sha256 (or, as in ella-anno's ``MD5SUM`` files,
  an md5) hex digest. Instead of ``files`` a dataset may name its ``destination`` folder holding an
  ella-anno ``MD5SUM`` file (``<md5>  <path>`` lines);
* ``version``: the bundle's own version (one line).

``add_bundle`` checks the manifest, that every file it lists exists with the right checksum and
that every source the config uses is listed, then copies (hard-links where possible) the folder
to ``ANNOSTREAM_DATA_DIR/bundles/<version>/``, compiles the annotation indexes there and records
the bundle in the database. ``activate_bundle`` makes one bundle the active one, atomically; a
partial unique index keeps more than one from ever being active.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db.models import AnnotationBundle
from engine.errors import InputError
from engine.timeutil import utcnow

CONFIG_FILE = "vcfanno_config.toml"
MANIFEST_FILE = "sources.json"
VERSION_FILE = "version"
MD5SUM_FILE = "MD5SUM"
BUNDLES_FOLDER = "bundles"
_SKIPPED_FOLDERS = frozenset({".annostream-cache"})  # compiled indexes are rebuilt in the copy
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_DIGESTS = {64: "sha256", 32: "md5"}
_HEX = re.compile(r"[0-9a-fA-F]+")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Dataset:
    name: str
    version: str
    files: dict[str, str]  # path relative to the bundle -> expected hex digest


@dataclass(frozen=True)
class BundleSpec:
    """A bundle folder whose manifest, version and config have been read and checked."""

    folder: Path
    version: str
    manifest: dict[str, Any]
    datasets: tuple[Dataset, ...]
    config_sha256: str

    @property
    def files(self) -> dict[str, str]:
        return {path: digest for dataset in self.datasets for path, digest in dataset.files.items()}


@dataclass(frozen=True)
class BundleInfo:
    """A bundle as stored."""

    version: str
    path: Path
    active: bool
    config_sha256: str
    date_added: dt.datetime
    date_activated: dt.datetime | None
    datasets: dict[str, str]  # dataset name -> dataset version
    date_removed: dt.datetime | None = None

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @classmethod
    def of(cls, row: AnnotationBundle) -> BundleInfo:
        datasets = {
            name: str(entry.get("version", ""))
            for name, entry in row.manifest.items()
            if isinstance(entry, dict)
        }
        return cls(
            version=row.version,
            path=Path(row.path),
            active=bool(row.active),
            config_sha256=row.config_sha256,
            date_added=row.date_added,
            date_activated=row.date_activated,
            datasets=datasets,
            date_removed=row.date_removed,
        )


def bundles_root(data_dir: Path) -> Path:
    return Path(data_dir) / BUNDLES_FOLDER


# --- reading and checking a bundle folder ---------------------------------------------------


def read_bundle(folder: Path) -> BundleSpec:
    """Read a bundle folder's version, manifest and config; every problem names the file."""
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise InputError("bundle folder not found", file=str(folder), expected="a directory")
    version = _read_version(folder / VERSION_FILE)
    manifest_path = folder / MANIFEST_FILE
    manifest = _read_manifest(manifest_path)
    datasets = tuple(_dataset(folder, manifest_path, name, entry) for name, entry in manifest.items())
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise InputError(
            "bundle has no annotation config",
            file=str(config),
            expected=f"{CONFIG_FILE} (vcfanno TOML) in the bundle folder",
        )
    return BundleSpec(
        folder=folder,
        version=version,
        manifest=manifest,
        datasets=datasets,
        config_sha256=_digest(config, "sha256"),
    )


def check_complete(spec: BundleSpec) -> None:
    """Every listed file exists, and every source the config uses is listed (and indexed)."""
    from engine.annotate.config import load_config
    from engine.annotate.index import check_source_file
    from engine.tracks import bundle_tracks

    for relative in spec.files:
        if not (spec.folder / relative).is_file():
            raise InputError(
                "file listed in sources.json is missing",
                file=str(spec.folder / relative),
                expected=f"the file, as listed in {spec.folder / MANIFEST_FILE}",
            )
    config = load_config(spec.folder / CONFIG_FILE, base_path=spec.folder, search_cwd=False)
    listed = {(spec.folder / relative).resolve() for relative in spec.files}
    for block in config.annotations:
        if block.optional and not block.file.exists():
            continue
        source = block.file.resolve()
        if not source.is_relative_to(spec.folder.resolve()):
            raise InputError(
                f"{block.label}: source {block.file} is outside the bundle",
                file=str(config.path),
                expected="sources inside the bundle folder, named relative to it",
            )
        check_source_file(block, config.path)
        if source not in listed:
            raise InputError(
                f"{block.label}: source is not listed in {MANIFEST_FILE}, so its checksum cannot be verified",
                file=str(block.file),
                expected=f"an entry under a dataset's 'files' in {spec.folder / MANIFEST_FILE}",
            )
    bundle_tracks(spec.folder)  # declared IGV tracks name one indexed file of their dataset


def _read_version(path: Path) -> str:
    if not path.is_file():
        raise InputError(
            "bundle has no version file",
            file=str(path),
            expected="a 'version' file with the bundle's version on one line",
        )
    version = path.read_text(encoding="utf-8").strip()
    if not _VERSION.fullmatch(version):
        raise InputError(
            f"invalid bundle version {version!r}",
            file=str(path),
            line=1,
            expected="letters, digits and . _ + - (starting with a letter or digit)",
        )
    return version


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(
            "bundle has no sources manifest",
            file=str(path),
            expected=f"{MANIFEST_FILE}: per dataset its version and files with checksums",
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(
            f"malformed JSON: {error.msg}", file=str(path), line=error.lineno, expected="a JSON object"
        ) from None
    if not isinstance(manifest, dict) or not manifest:
        raise InputError(
            "the manifest lists no datasets",
            file=str(path),
            expected='{"<dataset>": {"version": "...", "files": {"<path>": "<sha256>"}}}',
        )
    return manifest


def _dataset(folder: Path, manifest_path: Path, name: str, entry: Any) -> Dataset:
    where = f"dataset {name!r}"
    shape = '{"version": "...", "files": {"<path relative to the bundle>": "<sha256>"}}'
    if not isinstance(entry, dict) or not isinstance(entry.get("version"), str | int | float):
        raise InputError(f"{where} has no version", file=str(manifest_path), expected=shape)
    files = entry.get("files")
    if files is None and isinstance(entry.get("destination"), str):
        files = _md5sum_files(folder, entry["destination"], where)
    if not isinstance(files, dict) or not files:
        raise InputError(
            f"{where} lists no files",
            file=str(manifest_path),
            expected=f"{shape}, or a 'destination' folder with an {MD5SUM_FILE} file",
        )
    checked: dict[str, str] = {}
    for relative, digest in files.items():
        _check_relative(relative, where, manifest_path)
        if not isinstance(digest, str) or len(digest) not in _DIGESTS or not _HEX.fullmatch(digest):
            raise InputError(
                f"{where}: checksum of {relative!r} is {digest!r}",
                file=str(manifest_path),
                expected="a sha256 (64 hex digits) or md5 (32 hex digits) digest",
            )
        checked[Path(relative).as_posix()] = digest.lower()
    return Dataset(name=name, version=str(entry["version"]), files=checked)


def _md5sum_files(folder: Path, destination: str, where: str) -> dict[str, str]:
    """ella-anno's per-dataset ``MD5SUM`` (``<md5>  <path relative to the destination>``)."""
    path = folder / destination / MD5SUM_FILE
    if not path.is_file():
        raise InputError(
            f"{where}: no 'files' and no {MD5SUM_FILE} in its destination",
            file=str(path),
            expected="an MD5SUM file as ella-anno writes it",
        )
    files = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, relative = line.strip().partition(" ") if "\t" not in line else line.partition("\t")
        relative = relative.strip().lstrip("*")
        if not relative or not _HEX.fullmatch(digest) or len(digest) != 32:
            raise InputError(
                "malformed MD5SUM line", file=str(path), line=number, expected="<32 hex digits> <path>"
            )
        files[(Path(destination) / relative).as_posix()] = digest
    return files


def _check_relative(relative: Any, where: str, manifest_path: Path) -> None:
    if not isinstance(relative, str) or not relative:
        raise InputError(f"{where}: file name {relative!r}", file=str(manifest_path), expected="a path")
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts:
        raise InputError(
            f"{where}: file {relative!r} is not inside the bundle",
            file=str(manifest_path),
            expected="a path relative to the bundle folder, without '..'",
        )


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            hasher.update(block)
    return hasher.hexdigest()


# --- adding, listing, activating -------------------------------------------------------------


def add_bundle(
    session: Session, folder: Path, data_dir: Path, *, link: bool = True
) -> tuple[BundleInfo, bool]:
    """Verify the bundle in ``folder``, copy it under ``data_dir/bundles/<version>/`` and record it.

    Returns the stored bundle and whether it was new (adding the same bundle again is a no-op;
    the same version with other content is refused). The caller commits.
    """
    spec = read_bundle(folder)
    existing = session.scalar(sa.select(AnnotationBundle).where(AnnotationBundle.version == spec.version))
    if existing is not None:
        if existing.config_sha256 == spec.config_sha256 and existing.manifest == spec.manifest:
            return BundleInfo.of(existing), False
        raise InputError(
            f"bundle version {spec.version} was already added with other content",
            file=str(spec.folder / VERSION_FILE),
            expected="a new version for a changed bundle",
        )
    check_complete(spec)
    root = bundles_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = (root / spec.version).absolute()
    staging = root / f".staging-{spec.version}-{uuid.uuid4().hex[:8]}"
    try:
        _copy_verified(spec, staging, link)
        if final.exists():  # left by an add that failed before its database commit
            shutil.rmtree(final)
        os.replace(staging, final)
        _compile_indexes(final)
        row = AnnotationBundle(
            version=spec.version,
            path=str(final),
            manifest=spec.manifest,
            config_sha256=spec.config_sha256,
            active=False,
        )
        session.add(row)
        session.flush()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        raise
    return BundleInfo.of(row), True


def _copy_verified(spec: BundleSpec, staging: Path, link: bool) -> None:
    """Copy (or hard-link) the folder; listed files are checksummed on the way (one read each)."""
    expected = spec.files
    for source in _bundle_files(spec.folder):
        relative = source.relative_to(spec.folder).as_posix()
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = expected.get(relative)
        algorithm = _DIGESTS[len(digest)] if digest else None
        actual = _link_or_copy(source, target, link, algorithm)
        if digest and actual != digest:
            raise InputError(
                f"checksum mismatch: {algorithm} is {actual}, sources.json says {digest}",
                file=str(source),
                expected="the file as listed (corrupt, or changed since it was listed?)",
            )


def _bundle_files(folder: Path) -> list[Path]:
    files: list[Path] = []
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_FOLDERS and not d.startswith(".staging-"))
        files.extend(Path(directory) / name for name in sorted(names))
    return files


def _link_or_copy(source: Path, target: Path, link: bool, algorithm: str | None) -> str | None:
    if link:
        try:
            os.link(source, target)
            return _digest(target, algorithm) if algorithm else None
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    hasher = hashlib.new(algorithm) if algorithm else None
    with source.open("rb") as reader, target.open("wb") as writer:
        while block := reader.read(_BLOCK):
            writer.write(block)
            if hasher is not None:
                hasher.update(block)
    shutil.copystat(source, target)
    return hasher.hexdigest() if hasher is not None else None


def _compile_indexes(folder: Path) -> None:
    """Build the annotation indexes now, so no analysis waits for them."""
    from engine.annotate.config import load_config
    from engine.annotate.index import load_or_compile

    config = load_config(folder / CONFIG_FILE, base_path=folder, search_cwd=False)
    for block in config.annotations:
        if block.optional and not block.file.exists():
            continue
        load_or_compile(block, config.path)


def list_bundles(session: Session) -> list[BundleInfo]:
    rows = session.scalars(
        sa.select(AnnotationBundle).order_by(AnnotationBundle.date_added, AnnotationBundle.id)
    )
    return [BundleInfo.of(row) for row in rows]


def active_bundle(session: Session) -> BundleInfo | None:
    row = session.scalar(sa.select(AnnotationBundle).where(AnnotationBundle.active.is_(True)))
    return BundleInfo.of(row) if row is not None else None


def activate_bundle(session: Session, version: str) -> BundleInfo:
    """Make ``version`` the active bundle (the caller commits; one transaction, so atomic)."""
    # Lock every bundle row: concurrent activations queue instead of racing the unique index.
    rows = session.scalars(sa.select(AnnotationBundle).with_for_update()).all()
    target = next((row for row in rows if row.version == version), None)
    if target is None:
        known = sorted(row.version for row in rows)
        hint = f"one of {known}" if known else "a bundle added with 'annostream bundle add'"
        raise InputError(f"no annotation bundle with version {version!r}", expected=hint)
    if not (Path(target.path) / CONFIG_FILE).is_file():
        raise InputError(
            "the bundle's folder is gone",
            file=target.path,
            expected="the folder 'annostream bundle add' created (add the bundle again)",
        )
    if target.active:
        return BundleInfo.of(target)
    # Two statements in this order: the index never sees two active rows.
    session.execute(sa.update(AnnotationBundle).where(AnnotationBundle.active.is_(True)).values(active=False))
    session.execute(
        sa.update(AnnotationBundle)
        .where(AnnotationBundle.id == target.id)
        .values(active=True, date_activated=utcnow())
    )
    session.flush()
    session.refresh(target)
    return BundleInfo.of(target)


def deactivate_bundle(session: Session) -> BundleInfo | None:
    """Make no bundle active (new analyses are normalised, not annotated); returns the one that was."""
    row = session.scalar(
        sa.select(AnnotationBundle).where(AnnotationBundle.active.is_(True)).with_for_update()
    )
    if row is None:
        return None
    row.active = False
    session.flush()
    return BundleInfo.of(row)


def remove_bundle(session: Session, version: str) -> BundleInfo:
    """Delete an inactive bundle's folder; its database record stays (annotations name it).

    Refused while it is active or a reannotation run that uses it still has batches to do. The
    caller commits; the folder is deleted only after the checks, under the bundle row's lock.
    """
    from engine.db.models import ReannotationBatch, ReannotationRun

    row = session.scalar(
        sa.select(AnnotationBundle).where(AnnotationBundle.version == version).with_for_update()
    )
    if row is None:
        known = sorted(session.scalars(sa.select(AnnotationBundle.version)))
        raise InputError(
            f"no annotation bundle with version {version!r}",
            expected=f"one of {known}" if known else "a bundle added with 'annostream bundle add'",
        )
    if row.active:
        raise InputError(
            f"bundle {version} is the active bundle",
            expected="activate another bundle (or 'annostream bundle deactivate') first",
        )
    running = session.scalars(
        sa.select(ReannotationRun.run_id)
        .join(ReannotationBatch, ReannotationBatch.run_id == ReannotationRun.id)
        .where(ReannotationRun.bundle_version == version, ReannotationBatch.status == "PENDING")
        .distinct()
    ).all()
    if running:
        raise InputError(
            f"bundle {version} is used by reannotation run(s) still running: {', '.join(running)}",
            expected="the runs to finish (GET /api/v1/reannotations) before removing the bundle",
        )
    folder = Path(row.path)
    if folder.exists():
        # Renamed first so no reader ever sees a half-deleted bundle: it is there or it is gone.
        doomed = folder.with_name(f".removed-{folder.name}-{uuid.uuid4().hex[:8]}")
        os.replace(folder, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    if row.date_removed is None:
        row.date_removed = utcnow()
    session.flush()
    return BundleInfo.of(row)


def resolve_bundle(session: Session, version: str | None) -> BundleInfo:
    """The bundle ``version`` (default: the active one), with its folder present."""
    if version is None:
        bundle = active_bundle(session)
        if bundle is None:
            raise InputError(
                "no annotation bundle is active",
                expected="a bundle version, or one activated with 'annostream bundle activate'",
            )
    else:
        bundles = list_bundles(session)
        bundle = next((b for b in bundles if b.version == version), None)
        if bundle is None:
            known = sorted(b.version for b in bundles)
            raise InputError(
                f"no annotation bundle with version {version!r}",
                expected=f"one of {known}" if known else "a bundle added with 'annostream bundle add'",
            )
    if not bundle.config.is_file():
        raise InputError(
            "the bundle's folder is gone",
            file=str(bundle.path),
            expected="the folder 'annostream bundle add' created (add the bundle again)",
        )
    return bundle
