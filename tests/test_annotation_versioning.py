"""Annotation versioning (``engine.deposit.annotations``) follows ELLA's rule for when a new
annotation row supersedes the current one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine.db import migrate
from engine.db.models import Annotation, AnnotationConfig
from engine.db.session import session_scope
from engine.deposit.annotations import write_annotations
from engine.vcf.records import AlleleRecord

ALLELE = AlleleRecord("1", 999, 1000, "A", "G", "SNP", 1000, "A", "G", 1)
DOCUMENT = {"frequencies": {"GNOMAD_GENOMES": {"num": {"G": 5000}}}}


@pytest.fixture
def url(db_url: str) -> str:
    migrate.upgrade(db_url)
    return db_url


def _config(url: str, view: str) -> int:
    with session_scope(url) as session:
        config = AnnotationConfig(deposit=[], view=[{"section": view, "template": "t"}], sha256=view * 64)
        session.add(config)
        session.flush()
        return config.id


def test_new_annotation_config_supersedes_an_identical_document(url: str) -> None:
    """ELLA: ``src/vardb/deposit/importers.py: AnnotationImporter.process`` supersedes the current
    row when ``annotations != new OR annotation_config_id != new`` (shared case
    ``supersede-on-config-change``: a config that changes only the view). The same document under
    the same config stays as it is."""
    first, second = _config(url, "a"), _config(url, "b")
    with session_scope(url) as session:
        created = write_annotations(session, [(ALLELE, DOCUMENT)], annotation_config_id=first)
        same = write_annotations(session, [(ALLELE, DOCUMENT)], annotation_config_id=first)
    assert (created.created, same.created, same.unchanged) == (1, 0, 1)
    with session_scope(url) as session:
        result = write_annotations(session, [(ALLELE, DOCUMENT)], annotation_config_id=second)
    assert (result.created, result.superseded, result.unchanged) == (1, 1, 0)
    with session_scope(url) as session:
        rows = session.scalars(sa.select(Annotation).order_by(Annotation.id)).all()
        assert [(r.annotation_config_id, r.date_superceeded is None) for r in rows] == [
            (first, False),
            (second, True),
        ]
        assert rows[1].previous_annotation_id == rows[0].id and rows[1].annotations == DOCUMENT
