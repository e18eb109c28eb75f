"""Deposit targets: what differs between Annostream's own schema and ELLA's database.

The writer stores the same rows in both; the target says how (one class per database mode,
chosen by :func:`deposit_target` from the session's engine, see ``engine.db.ella``):

- :class:`StandaloneTarget`: Annostream owns the database. ``analysis.priority`` holds the
  priority; annotation rows record the annotation bundle that made them (``bundle_version``).
- :class:`EllaTarget`: ELLA's own database (1.17.x). The rows ELLA's deposit writes and nothing
  else: no ``analysis.priority`` and no ``annotation.bundle_version`` (ELLA has neither column);
  ELLA's workflow rows instead (``analysisinterpretation`` and ``interpretationlog``, as
  ``src/vardb/deposit/importers.py: AnalysisInterpretationImporter.process`` writes them);
  ``genotype_likelihood`` as a PostgreSQL integer array and GQ/DP/copy number checked against
  ELLA's SMALLINT columns, so a value ELLA cannot hold fails with file and line.
"""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db.bulk import RowFormat
from engine.db.ella import DatabaseMode, mode_of
from engine.db.models import Analysis, Annotation, AnnotationConfig
from engine.deposit.encoders import ENCODERS, ChunkEncoder, EllaCopyTextEncoder
from engine.deposit.specs import AnalysisSpec
from engine.timeutil import utcnow


class DepositTarget:
    """Standalone mode: Annostream's own schema."""

    mode: ClassVar[DatabaseMode] = DatabaseMode.STANDALONE
    # Columns of ``annotation`` recording where a document came from, beside ELLA's.
    records_bundle_version: ClassVar[bool] = True
    requires_annotation_config: ClassVar[bool] = False

    def encoder_class(self, row_format: RowFormat) -> type[ChunkEncoder]:
        return ENCODERS[row_format]

    def insert_analysis_row(
        self, session: Session, spec: AnalysisSpec, properties: dict[str, Any] | None
    ) -> int:
        analysis = Analysis(
            name=spec.name,
            genepanel_name=spec.genepanel_name,
            genepanel_version=spec.genepanel_version,
            priority=spec.priority,
            date_requested=spec.date_requested,
            warnings=spec.warnings,
            report=spec.report,
            properties=properties,
        )
        session.add(analysis)
        session.flush()
        return analysis.id

    def find_annotation_config(self, session: Session, digest: str) -> int | None:
        return session.scalar(sa.select(AnnotationConfig.id).where(AnnotationConfig.sha256 == digest))

    def annotation_config_values(self, digest: str) -> dict[str, Any]:
        return {"sha256": digest}

    def analysis_priority(self) -> sa.ColumnElement[int]:
        """The priority of :class:`Analysis` rows, as a column expression to select beside them."""
        return Analysis.__table__.c.priority

    def annotation_bundle_version(self) -> sa.ColumnElement[Any]:
        """The bundle that made an :class:`Annotation` row, as a column labelled ``bundle_version``."""
        return Annotation.__table__.c.bundle_version


StandaloneTarget = DepositTarget


# ELLA's analysis columns (a plain table clause: the mapped class would add ``priority``, which
# has a Python default, to every INSERT).
_ELLA_ANALYSIS = sa.table(
    "analysis",
    *(
        sa.column(name)
        for name in (
            "id",
            "name",
            "genepanel_name",
            "genepanel_version",
            "date_requested",
            "date_deposited",
            "warnings",
            "report",
        )
    ),
    sa.column("properties", Analysis.__table__.c.properties.type),
)
# ELLA's workflow tables, as far as the priority is concerned (src/vardb/datamodel/workflow.py).
_ELLA_INTERPRETATION = sa.table("analysisinterpretation", sa.column("id"), sa.column("analysis_id"))
_ELLA_INTERPRETATION_LOG = sa.table(
    "interpretationlog",
    sa.column("analysisinterpretation_id"),
    sa.column("priority", sa.Integer),
    sa.column("date_created"),
)
# ELLA's priority of an analysis with no priority log row.
ELLA_DEFAULT_PRIORITY = 1


class EllaTarget(DepositTarget):
    """ELLA database mode: ELLA 1.17.x's tables, written as ELLA's deposit writes them."""

    mode = DatabaseMode.ELLA
    records_bundle_version = False
    # ELLA's annotation.annotation_config_id is NOT NULL.
    requires_annotation_config = True

    def encoder_class(self, row_format: RowFormat) -> type[ChunkEncoder]:
        return EllaCopyTextEncoder  # ELLA runs on PostgreSQL only

    def insert_analysis_row(
        self, session: Session, spec: AnalysisSpec, properties: dict[str, Any] | None
    ) -> int:
        now = utcnow()
        # ELLA's analysis has no priority column (importers.py: AnalysisImporter.process).
        analysis_id: int = session.execute(
            sa.insert(_ELLA_ANALYSIS)
            .values(
                name=spec.name,
                genepanel_name=spec.genepanel_name,
                genepanel_version=spec.genepanel_version,
                date_requested=spec.date_requested,
                date_deposited=now,
                warnings=spec.warnings,
                report=spec.report,
                properties=properties,
            )
            .returning(_ELLA_ANALYSIS.c.id)
        ).scalar_one()
        # AnalysisInterpretation.get_or_create(analysis, genepanel=analysis.genepanel,
        # status="Not started"), with the defaults of src/vardb/datamodel/workflow.py.
        interpretation_id: int = session.execute(
            sa.text(
                "INSERT INTO analysisinterpretation (analysis_id, genepanel_name, genepanel_version, status, "
                "workflow_status, state, user_state, user_id, finalized, date_created, date_last_update) "
                "VALUES (:analysis_id, :name, :version, 'Not started', 'Interpretation', '{}'::jsonb, "
                "'{}'::jsonb, NULL, NULL, :now, :now) RETURNING id"
            ),
            {
                "analysis_id": analysis_id,
                "name": spec.genepanel_name,
                "version": spec.genepanel_version,
                "now": now,
            },
        ).scalar_one()
        # ELLA writes the priority on an interpretation log row, only `if priority:`.
        if spec.priority:
            session.execute(
                sa.text(
                    "INSERT INTO interpretationlog (analysisinterpretation_id, priority, date_created) "
                    "VALUES (:interpretation_id, :priority, :now)"
                ),
                {"interpretation_id": interpretation_id, "priority": spec.priority, "now": now},
            )
        return analysis_id

    def find_annotation_config(self, session: Session, digest: str) -> int | None:
        # ELLA's annotationconfig has no digest column; sites keep a handful of versions.
        from engine.deposit.annotation_config import config_sha256

        rows = session.execute(
            sa.select(AnnotationConfig.id, AnnotationConfig.deposit, AnnotationConfig.view).order_by(
                AnnotationConfig.id
            )
        )
        for config_id, deposit, view in rows:
            if config_sha256({"deposit": deposit, "view": view}) == digest:
                return int(config_id)
        return None

    def annotation_config_values(self, digest: str) -> dict[str, Any]:
        return {}

    def annotation_bundle_version(self) -> sa.ColumnElement[Any]:
        # ELLA's annotation table has no bundle_version column.
        return sa.null().label("bundle_version")

    def analysis_priority(self) -> sa.ColumnElement[int]:
        # ELLA keeps the priority on interpretation log rows; the newest one with a priority wins,
        # and an analysis without one is priority 1 (src/datalayer/queries.py:
        # workflow_analyses_priority, src/api/v1/resources/overview.py).
        log, interpretation = _ELLA_INTERPRETATION_LOG, _ELLA_INTERPRETATION
        newest = (
            sa.select(log.c.priority)
            .join(interpretation, interpretation.c.id == log.c.analysisinterpretation_id)
            .where(interpretation.c.analysis_id == Analysis.id, log.c.priority.is_not(None))
            .order_by(log.c.date_created.desc())
            .limit(1)
            .correlate(Analysis)
            .scalar_subquery()
        )
        return sa.func.coalesce(newest, ELLA_DEFAULT_PRIORITY)


def deposit_target(session: Session) -> DepositTarget:
    """The target of the database ``session`` is bound to."""
    if mode_of(session.connection()) is DatabaseMode.ELLA:
        return EllaTarget()
    return StandaloneTarget()
