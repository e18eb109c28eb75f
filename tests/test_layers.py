"""Import layers (docs/architecture.md, "Layers"): checked on the source, lazy imports included.

- ``engine/`` is the core: it never imports the adapters ``api``, ``consumers`` or ``producers``,
  except the CLI (``engine/cli/``), the composition root that starts them.
- The VCF text layer (``engine/vcf``) and normalisation (``engine/normalise``) sit below the
  annotation engine: they never import ``engine.annotate``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ("api", "consumers", "producers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, at any depth."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # `from engine import annotate` imports a module too
                yield node.lineno, f"{base}.{alias.name}"


def violations(folder: str, forbidden: tuple[str, ...], *, allowed_under: str | None = None) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if allowed_under and relative.startswith(allowed_under):
            continue
        for line, name in imports(path):
            if any(name == target or name.startswith(f"{target}.") for target in forbidden):
                found.append(f"{relative}:{line} imports {name}")
    return sorted(set(found))


def test_the_import_walker_sees_lazy_imports() -> None:
    sample = ROOT / "engine" / "cli" / "services.py"
    names = {name for _line, name in imports(sample)}
    assert any(name.startswith(ADAPTERS) for name in names), "engine/cli must start the adapters lazily"


def test_engine_never_imports_the_adapters() -> None:
    assert violations("engine", ADAPTERS, allowed_under="engine/cli/") == []


@pytest.mark.parametrize("folder", ["engine/vcf", "engine/normalise"])
def test_vcf_layer_never_imports_the_annotation_engine(folder: str) -> None:
    assert violations(folder, ("engine.annotate",)) == []
