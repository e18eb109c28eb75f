"""vcfanno-compatible TOML configuration: ``[[annotation]]`` and ``[[postannotation]]`` blocks.

Every problem is reported as an :class:`InputError` naming the config file and the block
(``[[annotation]] #2 (file=...)``) so the user can find it without guessing.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError

SOURCE_OPS = frozenset(
    {"self", "first", "concat", "uniq", "sum", "mean", "min", "max", "count", "flag", "by_alt", "div2"}
)
POST_REDUCER_OPS = SOURCE_OPS - {"by_alt"}
LUA_MESSAGE = 'Lua is not supported; write it as an expression (e.g. op="AC / AN")'
NAME_SUFFIXES = {"_int": "Integer", "_float": "Float", "_flag": "Flag"}


@dataclass(frozen=True)
class OutputField:
    """One value the annotation writes: read ``field`` (INFO name, ID, FILTER) or ``column`` (1-based)
    from the source, reduce with ``op``, write as INFO ``name``."""

    name: str
    op: str
    field: str | None = None
    column: int | None = None
    forced_type: str | None = None  # from a _int/_float/_flag name suffix

    @property
    def key(self) -> str:
        return self.field if self.field is not None else f"column {self.column}"


@dataclass
class AnnotationBlock:
    index: int
    file: Path
    file_text: str
    outputs: list[OutputField]
    optional: bool = False
    searched: tuple[Path, ...] = ()  # where the file was looked for, in order (for the error)

    @property
    def label(self) -> str:
        return f"[[annotation]] #{self.index} (file={self.file_text!r})"

    @property
    def uses_columns(self) -> bool:
        return any(o.column is not None for o in self.outputs)


@dataclass
class PostAnnotation:
    index: int
    fields: list[str]
    op: str
    name: str | None
    type: str

    @property
    def label(self) -> str:
        return f"[[postannotation]] #{self.index} (name={self.name!r})"


@dataclass
class AnnotationConfig:
    path: Path
    annotations: list[AnnotationBlock] = field(default_factory=list)
    postannotations: list[PostAnnotation] = field(default_factory=list)


def load_config(path: Path, base_path: Path | None = None, *, search_cwd: bool = True) -> AnnotationConfig:
    """Parse and validate a vcfanno TOML config; source paths are resolved as vcfanno resolves
    them (``resolve_source``). ``search_cwd=False`` skips the working directory (for bundles,
    whose sources live in the bundle folder whatever directory the worker runs in)."""
    path = Path(path)
    if not path.exists():
        raise InputError("annotation config not found", file=str(path))
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"invalid TOML: {error}", file=str(path)) from error
    unknown = set(raw) - {"annotation", "postannotation"}
    if unknown:
        raise InputError(
            f"unknown top-level entries {sorted(unknown)}",
            file=str(path),
            expected="[[annotation]] and [[postannotation]] blocks",
        )
    config = AnnotationConfig(path=path)
    for number, block in enumerate(raw.get("annotation", []), start=1):
        config.annotations.append(_annotation_block(path, number, block, base_path, search_cwd))
    for number, block in enumerate(raw.get("postannotation", []), start=1):
        config.postannotations.append(_post_block(path, number, block))
    return config


def _fail(path: Path, label: str, message: str, expected: str | None = None) -> InputError:
    return InputError(f"{label}: {message}", file=str(path), expected=expected)


def _string_list(path: Path, label: str, block: dict[str, Any], key: str) -> list[str] | None:
    value = block.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail(path, label, f"'{key}' must be a list", f'{key} = ["..."]')
    return value


def resolve_source(
    file_text: str, base: Path | None, config_dir: Path, *, search_cwd: bool = True
) -> tuple[Path, tuple[Path, ...]]:
    """Where a source ``file`` is, and every place looked at, by vcfanno's rule
    (``shared.Config.Sources``): the file as given when it exists (absolute, or relative to the
    working directory), else ``-base-path`` + "/" + file. Without ``-base-path`` vcfanno tries
    "/" + file, which finds nothing a config means; Annostream tries the config's folder instead,
    so a config written next to its sources works from anywhere (a deliberate difference)."""
    given = Path(file_text)
    searched: list[Path] = []
    if search_cwd:
        if given.exists():
            return given.absolute(), (given.absolute(),)
        searched.append(given.absolute())
    if base is not None:
        candidate = Path(f"{base}/{file_text}")  # vcfanno joins strings: base + "/" + "/abs" too
    else:
        candidate = given if given.is_absolute() else config_dir / given
    if candidate not in searched:
        searched.append(candidate)
    return candidate, tuple(searched)


def _annotation_block(
    path: Path, number: int, block: dict[str, Any], base: Path | None, search_cwd: bool
) -> AnnotationBlock:
    file_text = block.get("file")
    label = f"[[annotation]] #{number} (file={file_text!r})"
    if not isinstance(file_text, str) or not file_text:
        raise _fail(path, label, "missing 'file'", 'file = "source.vcf.gz"')
    allowed = {"file", "fields", "columns", "names", "ops", "optional"}
    unknown = set(block) - allowed
    if unknown:
        raise _fail(path, label, f"unknown keys {sorted(unknown)}", f"only {sorted(allowed)}")
    fields = _string_list(path, label, block, "fields")
    columns = _string_list(path, label, block, "columns")
    names = _string_list(path, label, block, "names")
    ops = _string_list(path, label, block, "ops")
    if (fields is None) == (columns is None):
        raise _fail(path, label, "give exactly one of 'fields' (VCF) or 'columns' (BED/TSV)")
    selectors: list[Any] = fields if fields is not None else columns  # type: ignore[assignment]
    if ops is None:
        raise _fail(path, label, "missing 'ops'", "one op per field/column")
    if names is None:
        if fields is None:
            raise _fail(path, label, "'names' is required with 'columns'")
        names = list(fields)
    if not (len(selectors) == len(names) == len(ops)):
        raise _fail(
            path,
            label,
            f"{'fields' if fields is not None else 'columns'}, names and ops have different lengths "
            f"({len(selectors)}, {len(names)}, {len(ops)})",
            "lists of equal length",
        )
    outputs = []
    for selector, name, op in zip(selectors, names, ops, strict=True):
        outputs.append(_output_field(path, label, selector, name, op, columns is not None))
    file_path, searched = resolve_source(file_text, base, path.parent, search_cwd=search_cwd)
    optional = block.get("optional", False)
    if not isinstance(optional, bool):
        raise _fail(path, label, "'optional' must be true or false")
    return AnnotationBlock(number, file_path, file_text, outputs, optional, searched)


def _output_field(path: Path, label: str, selector: Any, name: Any, op: Any, is_column: bool) -> OutputField:
    if not isinstance(op, str):
        raise _fail(path, label, f"op {op!r} is not a string")
    if op.startswith("lua:"):
        raise _fail(path, label, f"op {op!r}: {LUA_MESSAGE}")
    if op not in SOURCE_OPS:
        raise _fail(path, label, f"unknown op {op!r}", f"one of {sorted(SOURCE_OPS)}")
    if not isinstance(name, str) or not name:
        raise _fail(path, label, f"name {name!r} is not a non-empty string")
    forced = None
    for suffix, vcf_type in NAME_SUFFIXES.items():
        # vcfanno (api.go: UpdateHeader) keeps the name when the type comes from the source's VCF
        # header (self/first); by_alt takes _float and _int (its Number stays A), not _flag.
        strip = suffix != "_flag" if op == "by_alt" else is_column or op not in ("self", "first")
        if name.endswith(suffix) and strip:
            name, forced = name[: -len(suffix)], vcf_type
    if is_column:
        if not isinstance(selector, int) or isinstance(selector, bool) or selector < 1:
            raise _fail(path, label, f"column {selector!r} is not a 1-based column number")
        return OutputField(name=name, op=op, column=selector, forced_type=forced)
    if not isinstance(selector, str) or not selector:
        raise _fail(path, label, f"field {selector!r} is not a non-empty string")
    return OutputField(name=name, op=op, field=selector, forced_type=forced)


def _post_block(path: Path, number: int, block: dict[str, Any]) -> PostAnnotation:
    name = block.get("name")
    label = f"[[postannotation]] #{number} (name={name!r})"
    op = block.get("op")
    fields = block.get("fields", [])
    if not isinstance(op, str) or not op:
        raise _fail(path, label, "missing 'op'")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise _fail(path, label, "'fields' must be a list of INFO names")
    if op.startswith("lua:"):
        raise _fail(path, label, f"op {op!r}: {LUA_MESSAGE}")
    vcf_type = block.get("type", "String")
    if vcf_type not in ("Integer", "Float", "String", "Flag", "Character"):
        raise _fail(path, label, f"type {vcf_type!r} is not a VCF INFO type")
    if op == "delete":
        return PostAnnotation(number, fields, op, name, vcf_type)
    if not isinstance(name, str) or not name:
        raise _fail(path, label, "missing 'name'")
    if op == "setid" and name != "ID":
        raise _fail(path, label, "op 'setid' writes the ID column", 'name = "ID"')
    if op not in POST_REDUCER_OPS and op != "setid":
        from engine.annotate.expr import compile_expression

        try:
            compile_expression(op, fields)
        except ValueError as error:
            raise _fail(
                path,
                label,
                f"op {op!r} is neither a reducer nor a valid expression: {error}",
                f"one of {sorted(POST_REDUCER_OPS | {'setid', 'delete'})} or arithmetic over the fields",
            ) from error
    return PostAnnotation(number, fields, op, name, vcf_type)
