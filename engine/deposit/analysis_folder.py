"""Reading an ELLA analysis folder into an ``AnalysisSpec`` (ELLA's ``AnalysisConfigData``).

Three forms, as in ELLA:

* modern ``.analysis`` JSON: ``name``, ``genepanel_name``, ``genepanel_version``, ``priority``,
  ``date_requested``, ``date_analysis_requested`` (accepted and unused, as in ELLA), ``report``,
  ``warnings`` and ``data`` (one entry per VCF: ``vcf``, ``ped``, ``technology``, ``callerName``;
  ``[]`` is an analysis without samples); any other key is an error;
* legacy ``.analysis`` JSON (has ``params``): ``params.genepanel`` is ``NAME_VERSION``, the VCF is
  the first ``*.vcf``/``*.vcf.gz`` under the ``.analysis`` file's folder (sorted), the PED the
  ``.ped`` named like the ``.analysis`` file, ``priority`` may be a string,
  ``date_analysis_requested`` wins over ``date_requested``; other keys are ignored;
* no ``.analysis`` file: name and gene panel come from the folder name
  (``<anything>[.-]<panel>[-_]<version>``), every ``*.vcf``/``*.vcf.gz`` is one VCF, paired with the
  ``.ped`` whose stem is the VCF's name before its first dot (``Diag-7.PANEL_v01.vcf`` +
  ``Diag-7.ped``).

``warnings`` and ``report`` are always the content of ``warnings.txt`` and ``report.txt`` (None
when the file is absent), never the ``.analysis`` keys (ELLA's ``AnalysisConfigData.__init__``).
Priority is any integer (ELLA stores it on the interpretation log; 0 means none).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from engine.deposit.ped import TECHNOLOGIES
from engine.deposit.specs import AnalysisSpec, VcfSpec
from engine.errors import InputError, LimitExceeded
from engine.folders import check_analysis_name

# ELLA's FOLDER_FIELDS_RE: the greedy first group puts the split at the last possible separator.
FOLDER_NAME_RE = re.compile(r"(?P<name>.+[.-](?P<panel>.+)[-_](?P<version>.+))")
MODERN_KEYS = {
    "name",
    "genepanel_name",
    "genepanel_version",
    "priority",
    "date_requested",
    "date_analysis_requested",
    "report",
    "warnings",
    "data",
}
DATA_KEYS = {"vcf", "ped", "technology", "callerName"}
# analysis.priority is a SMALLINT (ELLA's interpretationlog.priority an INTEGER).
PRIORITY_RANGE = (-32768, 32767)


#: Bounds on the .analysis file (Settings: ANNOSTREAM_MAX_ANALYSIS_FILE_BYTES, ANNOSTREAM_MAX_JSON_DEPTH).
DEFAULT_MAX_ANALYSIS_BYTES = 2**20
DEFAULT_MAX_JSON_DEPTH = 32


def load_analysis_folder(
    folder: Path,
    *,
    max_analysis_bytes: int = DEFAULT_MAX_ANALYSIS_BYTES,
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> AnalysisSpec:
    """Parse and check an analysis folder; every problem is an ``InputError`` naming the file.

    Nothing outside the folder is read: symlinks leading out of it and ``.analysis`` paths that
    are absolute or contain ``..`` are refused.
    """
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise InputError("analysis folder not found", file=str(folder), expected="a directory")
    reject_escaping_symlinks(folder)
    limits = (max_analysis_bytes, max_json_depth)
    analysis_files = sorted(folder.rglob("*.analysis"))
    if len(analysis_files) > 1:
        raise InputError(
            f"several .analysis files: {[p.name for p in analysis_files]}",
            file=str(folder),
            expected="at most one .analysis file per folder",
        )
    spec = (
        _from_analysis_file(folder, analysis_files[0], limits)
        if analysis_files
        else _from_folder_name(folder)
    )
    check_analysis_name(spec.name, file=str(analysis_files[0] if analysis_files else folder))
    spec.warnings = _read_text(folder / "warnings.txt")
    spec.report = _read_text(folder / "report.txt")
    return spec


def _read_text(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("not UTF-8 text", file=str(path), expected="UTF-8 text") from exc


def reject_escaping_symlinks(folder: Path) -> None:
    """InputError naming the first symlink in ``folder`` that resolves outside it."""
    root = folder.resolve()
    for directory, subdirs, names in os.walk(folder, followlinks=False):
        for name in [*subdirs, *names]:
            entry = Path(directory, name)
            if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                raise InputError(
                    "symlink leads out of the analysis folder",
                    file=str(entry),
                    expected="files inside the analysis folder (copy them in)",
                )


def _json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, iteratively (no recursion), stopping past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _load_json(
    path: Path, limits: tuple[int, int] = (DEFAULT_MAX_ANALYSIS_BYTES, DEFAULT_MAX_JSON_DEPTH)
) -> dict[str, Any]:
    max_bytes, max_depth = limits
    size = path.stat().st_size
    if size > max_bytes:
        raise LimitExceeded(
            f".analysis file is {size} bytes",
            file=str(path),
            expected=f"at most {max_bytes} bytes (ANNOSTREAM_MAX_ANALYSIS_FILE_BYTES)",
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise LimitExceeded(
            "JSON nested too deeply",
            file=str(path),
            expected=f"at most {max_depth} levels (ANNOSTREAM_MAX_JSON_DEPTH)",
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            file=str(path),
            line=exc.lineno,
            expected="a JSON object",
        ) from exc
    except UnicodeDecodeError as exc:
        raise InputError("not UTF-8 text", file=str(path), expected="UTF-8 JSON") from exc
    if not isinstance(content, dict):
        raise InputError(f"top level is a {type(content).__name__}", file=str(path), expected="a JSON object")
    if _json_depth(content, max_depth) > max_depth:
        raise LimitExceeded(
            "JSON nested too deeply",
            file=str(path),
            expected=f"at most {max_depth} levels (ANNOSTREAM_MAX_JSON_DEPTH)",
        )
    return content


def _from_analysis_file(folder: Path, path: Path, limits: tuple[int, int]) -> AnalysisSpec:
    content = _load_json(path, limits)
    if "params" in content:
        return _from_legacy(folder, path, content)
    return _from_modern(folder, path, content)


def _string(path: Path, content: dict[str, Any], key: str) -> str:
    value = content.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(
            f"{key!r} is {'missing' if key not in content else repr(value)}",
            file=str(path),
            expected=f"a non-empty string {key!r}",
        )
    return value


def _priority(path: Path, value: Any) -> int:
    """Any integer, as ELLA (an integer-valued string too: lenient, ELLA's schema rejects it)."""
    try:
        priority = int(value)
    except (TypeError, ValueError):
        priority = None
    low, high = PRIORITY_RANGE
    if isinstance(value, bool | float) or priority is None or not low <= priority <= high:
        raise InputError(
            f"priority {value!r}",
            file=str(path),
            expected=f"an integer priority ({low}..{high}; 1 normal, 2 high, 3 urgent)",
        )
    return priority


def _date_requested(path: Path, value: Any) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise InputError(
            f"date_requested {value!r}", file=str(path), expected="an ISO date YYYY-MM-DD (or date and time)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _existing_file(path: Path, folder: Path, name: str, key: str) -> Path:
    pure = PurePosixPath(name)
    if pure.is_absolute() or Path(name).is_absolute() or ".." in pure.parts or "\x00" in name:
        raise InputError(
            f"{key} {name!r} points outside the analysis folder",
            file=str(path),
            expected=f"{key} to name a file inside {folder} (relative, without '..')",
        )
    resolved = folder / name
    if resolved.exists() and not resolved.resolve().is_relative_to(folder.resolve()):
        raise InputError(
            f"{key} {name!r} is a symlink leading out of the analysis folder",
            file=str(path),
            expected=f"{key} to name a file inside {folder}",
        )
    if not resolved.is_file():
        raise InputError(
            f"{key} file {name!r} does not exist",
            file=str(path),
            expected=f"{key} to name a file in {folder}",
        )
    return resolved


def _from_modern(folder: Path, path: Path, content: dict[str, Any]) -> AnalysisSpec:
    unknown = sorted(set(content) - MODERN_KEYS)
    if unknown:
        raise InputError(f"unknown keys {unknown}", file=str(path), expected=f"only {sorted(MODERN_KEYS)}")
    data = content.get("data", [])
    if not isinstance(data, list):
        raise InputError(
            f"'data' is {type(data).__name__}",
            file=str(path),
            expected='"data": [{"vcf": ..., "ped": ..., "technology": "HTS"}, ...] ([] for no samples)',
        )
    return AnalysisSpec(
        name=_string(path, content, "name"),
        genepanel_name=_string(path, content, "genepanel_name"),
        genepanel_version=_string(path, content, "genepanel_version"),
        folder=folder,
        priority=_priority(path, content.get("priority", 1)),
        date_requested=_date_requested(path, content.get("date_requested")),
        vcfs=[_data_entry(folder, path, i, entry) for i, entry in enumerate(data)],
    )


def _data_entry(folder: Path, path: Path, index: int, entry: Any) -> VcfSpec:
    where = f"data[{index}]"
    if not isinstance(entry, dict):
        raise InputError(
            f"{where} is not an object", file=str(path), expected='{"vcf": ..., "technology": ...}'
        )
    unknown = sorted(set(entry) - DATA_KEYS)
    if unknown:
        raise InputError(
            f"{where} has unknown keys {unknown}", file=str(path), expected=f"only {sorted(DATA_KEYS)}"
        )
    vcf = entry.get("vcf")
    if not isinstance(vcf, str) or not vcf:
        raise InputError(f"{where} has no 'vcf'", file=str(path), expected=f"{where}.vcf naming a VCF file")
    ped = entry.get("ped")
    if ped is not None and not isinstance(ped, str):
        raise InputError(f"{where}.ped is {ped!r}", file=str(path), expected="a file name or null")
    technology = entry.get("technology", "HTS")
    if technology not in TECHNOLOGIES:
        raise InputError(
            f"{where}.technology is {technology!r}", file=str(path), expected=" or ".join(TECHNOLOGIES)
        )
    caller = entry.get("callerName")
    if caller is not None and not isinstance(caller, str):
        raise InputError(f"{where}.callerName is {caller!r}", file=str(path), expected="a string")
    return VcfSpec(
        path=_existing_file(path, folder, vcf, f"{where}.vcf"),
        ped=_existing_file(path, folder, ped, f"{where}.ped") if ped else None,
        technology=technology,
        caller_name=caller,
    )


def _from_legacy(folder: Path, path: Path, content: dict[str, Any]) -> AnalysisSpec:
    params = content["params"]
    genepanel = params.get("genepanel") if isinstance(params, dict) else None
    parts = genepanel.split("_") if isinstance(genepanel, str) else []
    if len(parts) != 2 or not all(parts):
        raise InputError(
            f"params.genepanel is {genepanel!r}",
            file=str(path),
            expected='params.genepanel as "NAME_VERSION", e.g. "HBOC_v1.0.0"',
        )
    stem = path.name[: -len(".analysis")]
    vcfs = _vcf_files(path.parent)
    if not vcfs:
        raise InputError(
            "no VCF file next to the legacy .analysis file",
            file=str(path),
            expected="a .vcf or .vcf.gz file in its folder",
        )
    ped = path.parent / f"{stem}.ped"
    # ELLA's _init_from_legacy_analysis_file: date_analysis_requested, when present, wins.
    date_key = "date_analysis_requested" if "date_analysis_requested" in content else "date_requested"
    return AnalysisSpec(
        name=_string(path, content, "name"),
        genepanel_name=parts[0],
        genepanel_version=parts[1],
        folder=folder,
        priority=_priority(path, content.get("priority", 1)),
        date_requested=_date_requested(path, content.get(date_key)),
        vcfs=[VcfSpec(path=vcfs[0], ped=ped if ped.is_file() else None, technology="HTS")],
    )


def _vcf_files(folder: Path) -> list[Path]:
    """ELLA's ``__find_analysis_vcfs``: every ``*.vcf``/``*.vcf.gz`` under ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*.vcf*") if p.is_file() and _is_vcf(p))


def _is_vcf(path: Path) -> bool:
    return path.suffix == ".vcf" or path.suffixes[-2:] == [".vcf", ".gz"]


def _ped_key(vcf: Path) -> str:
    """The PED stem a VCF pairs with: its name before the first dot (ELLA: vcf.stem.split('.')[0])."""
    return vcf.name.split(".")[0]


def _from_folder_name(folder: Path) -> AnalysisSpec:
    match = FOLDER_NAME_RE.fullmatch(folder.name)
    if match is None:
        raise InputError(
            f"folder name {folder.name!r} does not name a gene panel",
            file=str(folder),
            expected="a .analysis file, or a folder named <analysis>.<panel>_<version>",
        )
    vcfs = _vcf_files(folder)
    if not vcfs:
        raise InputError(
            "no VCF file in the folder", file=str(folder), expected="at least one .vcf or .vcf.gz"
        )
    peds: dict[str, Path] = {}
    for ped in sorted(folder.rglob("*.ped")):
        peds.setdefault(ped.stem, ped)
    return AnalysisSpec(
        name=match["name"],
        genepanel_name=match["panel"],
        genepanel_version=match["version"],
        folder=folder,
        vcfs=[VcfSpec(path=v, ped=peds.get(_ped_key(v))) for v in vcfs],
    )
