"""ELLA annotation configs: load and check the YAML, store versions in ``annotationconfig``.

A config is identified by the sha256 of its canonical JSON (``deposit`` and ``view``, keys
sorted). Storing a config that is already stored returns the existing id, so a replayed update
changes nothing. The active config is the newest stored one; a database without any gets the
shipped default (ELLA's legacy config) on first use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import yaml
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.db.models import AnnotationConfig
from engine.deposit.converters import parse_deposit_config
from engine.deposit.targets import deposit_target
from engine.errors import InputError
from engine.timeutil import utcnow

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "default-annotation-config.yml"


def load_annotation_config(path: str | Path) -> dict[str, Any]:
    """Read and check an annotation config YAML file; errors name the file and entry."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read annotation config: {error.strerror}", file) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        raise InputError(
            f"not valid YAML: {problem}", file, line, expected="an annotation config YAML"
        ) from None
    return check_annotation_config(data, file)


def check_annotation_config(data: Any, file: str | None = None) -> dict[str, Any]:
    """Check the structure and every converter's options; returns ``{"deposit": ..., "view": ...}``."""
    if not isinstance(data, Mapping):
        raise InputError(
            f"annotation config is {type(data).__name__}",
            file,
            expected="a mapping with 'deposit' and 'view'",
        )
    unknown = sorted(set(data) - {"deposit", "view"})
    if unknown:
        raise InputError(
            f"annotation config has unknown key(s) {', '.join(map(str, unknown))}",
            file,
            expected="only 'deposit' and 'view'",
        )
    parse_deposit_config(data, file)
    view = data.get("view", [])
    if view is None:
        view = []
    if not isinstance(view, list):
        raise InputError(
            f"annotation config view is {type(view).__name__}", file, expected="a list of view entries"
        )
    for index, entry in enumerate(view):
        if not isinstance(entry, Mapping) or not all(
            isinstance(entry.get(k), str) for k in ("section", "template")
        ):
            raise InputError(
                f"annotation config view[{index}] is {entry!r}",
                file,
                expected="a mapping with 'section' and 'template' strings",
            )
    # JSON round trip: what is stored is exactly what later loads return.
    return orjson.loads(orjson.dumps({"deposit": data["deposit"], "view": view}))


def config_sha256(config: Mapping[str, Any]) -> str:
    canonical = orjson.dumps(
        {"deposit": config["deposit"], "view": config["view"]}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()


def _stored_id(session: Session, digest: str) -> int | None:
    return deposit_target(session).find_annotation_config(session, digest)


def store_annotation_config(session: Session, path_or_dict: str | Path | Mapping[str, Any]) -> int:
    """Store a config version and return its id; an already stored config returns its id."""
    if isinstance(path_or_dict, Mapping):
        config = check_annotation_config(path_or_dict)
    else:
        config = load_annotation_config(path_or_dict)
    digest = config_sha256(config)
    existing = _stored_id(session, digest)
    if existing is not None:
        return existing
    try:
        with session.begin_nested():  # a concurrent writer may store the same config first
            # Core, not the ORM: ELLA's own annotationconfig has no sha256 column.
            config_id: int = session.execute(
                sa.insert(AnnotationConfig)
                .values(
                    deposit=config["deposit"],
                    view=config["view"],
                    date_created=utcnow(),
                    **deposit_target(session).annotation_config_values(digest),
                )
                .returning(AnnotationConfig.id)
            ).scalar_one()
        return config_id
    except IntegrityError:
        stored = _stored_id(session, digest)
        if stored is None:
            raise
        return stored


def active_annotation_config(session: Session) -> tuple[int, dict[str, Any]]:
    """The newest stored config as ``(id, {"deposit": ..., "view": ...})``; stores the shipped
    default first if the database has none."""
    newest = (
        sa.select(AnnotationConfig.id, AnnotationConfig.deposit, AnnotationConfig.view)
        .order_by(AnnotationConfig.id.desc())
        .limit(1)
    )
    row = session.execute(newest).first()
    if row is None:
        store_annotation_config(session, DEFAULT_CONFIG_PATH)
        row = session.execute(newest).one()
    return row.id, {"deposit": row.deposit, "view": row.view}
