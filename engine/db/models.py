"""SQLAlchemy models with ELLA's table and column names (ELLA v1.17 ``vardb.datamodel``), and
Annostream's own tables (on :class:`AnnostreamBase`).

Identity columns are unique in the database so that alleles are shared across analyses and a
replayed event can never insert a row twice.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from engine.timeutil import utcnow

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class AnnostreamBase(Base):
    """Base of every table Annostream owns (not one of ELLA's): import jobs, bundles,
    re-annotation runs, ... In ELLA database mode (``engine.db.ella``) these live in the
    ``annostream`` schema beside ELLA's tables, created by Annostream's own migrations; in
    standalone mode they sit beside the ELLA-shaped tables. A new table: subclass this, never
    reuse an ELLA table name (``tests/test_ella_database.py`` checks), and create it in a
    migration with a plain ``op.create_table`` (see ``docs/data-model.md``).
    """

    __abstract__ = True


def annostream_tables() -> list[sa.Table]:
    """The tables declared on :class:`AnnostreamBase`."""
    tables: list[sa.Table] = []
    pending: list[type[Any]] = list(AnnostreamBase.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        table = cls.__dict__.get("__table__")
        if isinstance(table, sa.Table):
            tables.append(table)
    return sorted(tables, key=lambda t: t.name)


class Genepanel(Base):
    __tablename__ = "genepanel"

    name: Mapped[str] = mapped_column(sa.String, primary_key=True)
    version: Mapped[str] = mapped_column(sa.String, primary_key=True)
    genome_reference: Mapped[str] = mapped_column(sa.String, default="GRCh37")
    official: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    date_created: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class Analysis(Base):
    __tablename__ = "analysis"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["genepanel_name", "genepanel_version"], ["genepanel.name", "genepanel.version"]
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String, unique=True)
    genepanel_name: Mapped[str] = mapped_column(sa.String)
    genepanel_version: Mapped[str] = mapped_column(sa.String)
    # Deferred, and an error if read unloaded: ELLA's analysis table has no priority column (ELLA
    # keeps it on interpretation log rows). Readers select
    # ``engine.deposit.targets.deposit_target(session).analysis_priority()`` beside the row.
    priority: Mapped[int] = mapped_column(sa.SmallInteger, default=1, deferred=True, deferred_raiseload=True)
    date_requested: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    date_deposited: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    warnings: Mapped[str | None] = mapped_column(sa.Text)
    report: Mapped[str | None] = mapped_column(sa.Text)
    # Free-form ELLA properties (e.g. legacy "type"); also where the import fingerprint lives.
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    samples: Mapped[list[Sample]] = relationship(back_populates="analysis", order_by="Sample.id")


class SampleType(enum.StrEnum):
    HTS = "HTS"
    SANGER = "Sanger"


class Sample(Base):
    __tablename__ = "sample"
    # No unique (analysis_id, identifier): as in ELLA, each VCF of an analysis has its own sample
    # rows (an HTS trio plus a Sanger proband is two rows for the proband).

    id: Mapped[int] = mapped_column(primary_key=True)
    identifier: Mapped[str] = mapped_column(sa.String)
    analysis_id: Mapped[int] = mapped_column(sa.ForeignKey("analysis.id", ondelete="CASCADE"), index=True)
    sample_type: Mapped[str] = mapped_column(sa.String, default=SampleType.HTS.value)
    date_deposited: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    affected: Mapped[bool] = mapped_column(sa.Boolean)
    proband: Mapped[bool] = mapped_column(sa.Boolean)
    family_id: Mapped[str | None] = mapped_column(sa.String)
    father_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sample.id"))
    mother_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sample.id"))
    sibling_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sample.id"))
    sex: Mapped[str | None] = mapped_column(sa.String)

    analysis: Mapped[Analysis] = relationship(back_populates="samples")


# ELLA's ucAllele (v1.17): the columns that identify an allele.
ALLELE_IDENTITY = (
    "chromosome",
    "start_position",
    "open_end_position",
    "change_from",
    "change_to",
    "change_type",
    "vcf_pos",
    "vcf_ref",
    "vcf_alt",
    "length",
    "caller_type",
)
# Every column of an allele row but its id.
ALLELE_COLUMNS = (*ALLELE_IDENTITY, "genome_reference")
# A sample's call on a genotype (genotypesampledata), every column but the keys.
SAMPLE_DATA_FIELDS = (
    "type",
    "multiallelic",
    "genotype_quality",
    "sequencing_depth",
    "allele_depth",
    "allele_ratio",
    "genotype_likelihood",
    "copy_number",
)


class Allele(Base):
    __tablename__ = "allele"
    __table_args__ = (
        sa.UniqueConstraint(*ALLELE_IDENTITY, name="ucAllele"),
        sa.Index("ix_alleleloci", "chromosome", "start_position", "open_end_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    genome_reference: Mapped[str] = mapped_column(sa.String, default="GRCh37")
    chromosome: Mapped[str] = mapped_column(sa.String)
    start_position: Mapped[int] = mapped_column(sa.Integer)
    open_end_position: Mapped[int] = mapped_column(sa.Integer)
    change_from: Mapped[str] = mapped_column(sa.String)
    change_to: Mapped[str] = mapped_column(sa.String)
    change_type: Mapped[str] = mapped_column(sa.String)
    vcf_pos: Mapped[int] = mapped_column(sa.Integer)
    vcf_ref: Mapped[str] = mapped_column(sa.String)
    vcf_alt: Mapped[str] = mapped_column(sa.String)
    length: Mapped[int] = mapped_column(sa.Integer)
    caller_type: Mapped[str] = mapped_column(sa.String, default="snv")


# genotype and genotypesampledata are the high-volume tables (1M and 3M rows for a large
# exome). They reference allele/sample/genotype ids WITHOUT database foreign keys: PostgreSQL
# checks a foreign key with one lookup per inserted row, which made a 1M-variant import 3-4x
# slower. Their ids are only ever written by engine.deposit.writer inside one transaction (the
# referenced rows are created or looked up in that same transaction), and rows are deleted
# only through engine.deposit.writer.delete_analysis. ELLA declares these foreign keys.
class Genotype(Base):
    __tablename__ = "genotype"
    __table_args__ = (
        sa.UniqueConstraint("sample_id", "allele_id", "secondallele_id"),
        # Small (only 1/2 genotypes have a second allele): lets an allele page find them by id.
        sa.Index(
            "ix_genotype_secondallele_id",
            "secondallele_id",
            postgresql_where=sa.text("secondallele_id IS NOT NULL"),
            sqlite_where=sa.text("secondallele_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    allele_id: Mapped[int] = mapped_column(sa.Integer, index=True)  # -> allele.id
    secondallele_id: Mapped[int | None] = mapped_column(sa.Integer)  # -> allele.id
    # The proband sample the genotype was imported for (ELLA's meaning); -> sample.id.
    # Indexed by the unique constraint's leading column.
    sample_id: Mapped[int] = mapped_column(sa.Integer)
    filter_status: Mapped[str | None] = mapped_column(sa.String)
    variant_quality: Mapped[float | None] = mapped_column(sa.Float)


class GenotypeSampleData(Base):
    __tablename__ = "genotypesampledata"
    # The unique constraint's leading column also serves lookups by genotype_id.
    __table_args__ = (sa.UniqueConstraint("genotype_id", "sample_id", "secondallele"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    genotype_id: Mapped[int] = mapped_column(sa.Integer)  # -> genotype.id
    sample_id: Mapped[int] = mapped_column(sa.Integer)  # -> sample.id
    secondallele: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    multiallelic: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    type: Mapped[str] = mapped_column(sa.String)
    genotype_quality: Mapped[int | None] = mapped_column(sa.Integer)
    genotype_likelihood: Mapped[list[int] | None] = mapped_column(JSONType)
    sequencing_depth: Mapped[int | None] = mapped_column(sa.Integer)
    allele_depth: Mapped[dict[str, int] | None] = mapped_column(JSONType)
    allele_ratio: Mapped[float | None] = mapped_column(sa.Float)
    copy_number: Mapped[int | None] = mapped_column(sa.Integer)


class Annotation(Base):
    __tablename__ = "annotation"
    __table_args__ = (
        # Exactly one current annotation per allele, enforced by the database.
        sa.Index(
            "uq_annotation_current_allele",
            "allele_id",
            unique=True,
            postgresql_where=sa.text("date_superceeded IS NULL"),
            sqlite_where=sa.text("date_superceeded IS NULL"),
        ),
        # A release plan counts the current rows per source bundle and config (reannotate.select).
        sa.Index(
            "ix_annotation_current_source",
            "bundle_version",
            "annotation_config_id",
            postgresql_where=sa.text("date_superceeded IS NULL"),
            sqlite_where=sa.text("date_superceeded IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No database foreign keys on annotation (ELLA has them): see migration 0005 and
    # docs/data-model.md, "Differences from ELLA". -> allele.id
    allele_id: Mapped[int] = mapped_column(sa.Integer, index=True)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSONType)
    schema_version: Mapped[int] = mapped_column(sa.Integer, default=1)
    date_created: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    date_superceeded: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    previous_annotation_id: Mapped[int | None] = mapped_column(sa.Integer)  # -> annotation.id
    # -> annotationconfig.id. ELLA: a foreign key, NOT NULL. Nullable here: documents from an
    # annotation bundle were not produced by an annotation config.
    annotation_config_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    # Annostream: which annotation data bundle produced the document (None = from the VCF INFO).
    bundle_version: Mapped[str | None] = mapped_column(sa.String)


class JobStatus(enum.StrEnum):
    SUBMITTED = "SUBMITTED"
    ANNOTATING = "ANNOTATING"
    ANNOTATED = "ANNOTATED"
    PERSISTING = "PERSISTING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ImportJob(AnnostreamBase):
    __tablename__ = "import_job"

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_name: Mapped[str] = mapped_column(sa.String, index=True)
    event_id: Mapped[str] = mapped_column(sa.String, unique=True)
    # sha256 over the folder's files: a re-published folder with the same content is the same job.
    fingerprint: Mapped[str | None] = mapped_column(sa.String, index=True)
    status: Mapped[str] = mapped_column(sa.String, default=JobStatus.SUBMITTED.value, index=True)
    stage: Mapped[str | None] = mapped_column(sa.String)
    message: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    analysis_id: Mapped[int | None] = mapped_column(sa.ForeignKey("analysis.id", ondelete="SET NULL"))
    date_created: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    date_updated: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    # The FAILED job this one retries (engine/retry.py); unique, so a failure is retried once.
    retry_of: Mapped[int | None] = mapped_column(
        sa.ForeignKey("import_job.id", ondelete="SET NULL"), unique=True
    )


# --- Gene panels (ELLA ``vardb.datamodel.gene``) --------------------------------------------
# Genes, transcripts and phenotypes are shared by all panels; the association tables say which
# panel uses which. ELLA stores integer/string arrays as PostgreSQL ARRAY; SQLite gets JSON lists.
IntArray = sa.JSON().with_variant(ARRAY(sa.Integer), "postgresql")
StringArray = sa.JSON(none_as_null=True).with_variant(ARRAY(sa.String), "postgresql")


class Gene(Base):
    __tablename__ = "gene"
    __table_args__ = (sa.Index("ix_gene_hgnc_symbol", sa.func.lower(sa.text("hgnc_symbol")), unique=True),)

    hgnc_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    hgnc_symbol: Mapped[str] = mapped_column(sa.String)


class Transcript(Base):
    __tablename__ = "transcript"

    id: Mapped[int] = mapped_column(primary_key=True)
    gene_id: Mapped[int] = mapped_column(sa.ForeignKey("gene.hgnc_id"), index=True)
    transcript_name: Mapped[str] = mapped_column(sa.String, unique=True)
    # A CHECK constraint rather than a PostgreSQL enum type: same values as ELLA, nothing to drop.
    type: Mapped[str] = mapped_column(
        sa.Enum("RefSeq", "Ensembl", "LRG", name="transcript_type", native_enum=False, create_constraint=True)
    )
    tags: Mapped[list[str] | None] = mapped_column(StringArray)
    genome_reference: Mapped[str] = mapped_column(sa.String)
    chromosome: Mapped[str] = mapped_column(sa.String)
    tx_start: Mapped[int] = mapped_column(sa.Integer)
    tx_end: Mapped[int] = mapped_column(sa.Integer)
    strand: Mapped[str] = mapped_column(sa.String(1))
    cds_start: Mapped[int | None] = mapped_column(sa.Integer)  # NULL: non-coding transcript (ELLA)
    cds_end: Mapped[int | None] = mapped_column(sa.Integer)
    exon_starts: Mapped[list[int]] = mapped_column(IntArray)
    exon_ends: Mapped[list[int]] = mapped_column(IntArray)


class Phenotype(Base):
    __tablename__ = "phenotype"
    __table_args__ = (sa.UniqueConstraint("gene_id", "description", "inheritance"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gene_id: Mapped[int] = mapped_column(sa.ForeignKey("gene.hgnc_id"))
    description: Mapped[str] = mapped_column(sa.String)
    inheritance: Mapped[str] = mapped_column(sa.String)
    omim_id: Mapped[int | None] = mapped_column(sa.Integer)


# ELLA's association tables have no primary key; ours do, so depositing a panel twice cannot
# link a transcript or phenotype twice.
genepanel_transcript = sa.Table(
    "genepanel_transcript",
    Base.metadata,
    sa.Column("genepanel_name", sa.String, primary_key=True),
    sa.Column("genepanel_version", sa.String, primary_key=True),
    sa.Column("transcript_id", sa.ForeignKey("transcript.id"), primary_key=True, index=True),
    sa.Column("inheritance", sa.String, nullable=False),
    sa.ForeignKeyConstraint(
        ["genepanel_name", "genepanel_version"],
        ["genepanel.name", "genepanel.version"],
        ondelete="CASCADE",
    ),
)

genepanel_phenotype = sa.Table(
    "genepanel_phenotype",
    Base.metadata,
    sa.Column("genepanel_name", sa.String, primary_key=True),
    sa.Column("genepanel_version", sa.String, primary_key=True),
    sa.Column("phenotype_id", sa.ForeignKey("phenotype.id"), primary_key=True, index=True),
    sa.ForeignKeyConstraint(
        ["genepanel_name", "genepanel_version"],
        ["genepanel.name", "genepanel.version"],
        ondelete="CASCADE",
    ),
)


class AnnotationConfig(Base):
    """A version of the annotation config (ELLA's ``annotationconfig``): how INFO fields become
    the annotation document (``deposit``) and how the UI shows it (``view``)."""

    __tablename__ = "annotationconfig"

    id: Mapped[int] = mapped_column(primary_key=True)
    deposit: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    view: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    date_created: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    # Annostream: sha256 of the canonical JSON of deposit + view; storing it again is a no-op.
    sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)


class AnnotationBundle(AnnostreamBase):
    """An annotation data bundle (vcfanno TOML + sources manifest + data), copied under
    ``ANNOSTREAM_DATA_DIR/bundles/<version>/``. At most one is active, enforced by the database."""

    __tablename__ = "annotation_bundle"
    __table_args__ = (
        sa.Index(
            "uq_annotation_bundle_active",
            "active",
            unique=True,
            postgresql_where=sa.text("active"),
            sqlite_where=sa.text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(sa.String, unique=True)
    path: Mapped[str] = mapped_column(sa.String)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the bundle's sources.json
    config_sha256: Mapped[str] = mapped_column(sa.String(64))
    date_added: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    date_activated: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # Set by 'bundle remove': the folder is gone, the record stays (annotations name the version).
    date_removed: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class ReannotationRun(AnnostreamBase):
    """One ``annostream reannotate`` (a data release): its alleles split into id-range batches.

    Progress is read from the batch rows (one row per batch, DONE/FAILED set in the transaction
    that wrote its annotations), so the counts can never disagree with what was written.
    """

    __tablename__ = "reannotation_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.String, unique=True)  # uuid, carried by every batch event
    bundle_version: Mapped[str] = mapped_column(sa.String)
    analyses: Mapped[list[str] | None] = mapped_column(JSONType)  # None: every stored allele
    total_batches: Mapped[int] = mapped_column(sa.Integer, default=0)
    total_alleles: Mapped[int] = mapped_column(sa.Integer, default=0)
    date_created: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    # "all": every selected allele (id-range batches); "incremental": only the alleles listed in
    # reannotation_target (what the difference between the bundles touches).
    mode: Mapped[str] = mapped_column(sa.String, default="all", server_default="all")
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # why each allele was selected


class ReannotationBatch(AnnostreamBase):
    """One batch of a reannotation run: the run's alleles with ``id_from <= id <= id_to``."""

    __tablename__ = "reannotation_batch"
    __table_args__ = (sa.UniqueConstraint("run_id", "batch_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("reannotation_run.id", ondelete="CASCADE"), index=True)
    batch_index: Mapped[int] = mapped_column(sa.Integer)
    id_from: Mapped[int] = mapped_column(sa.Integer)
    id_to: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String, default="PENDING", index=True)  # PENDING, DONE, FAILED
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    n_alleles: Mapped[int | None] = mapped_column(sa.Integer)
    n_created: Mapped[int | None] = mapped_column(sa.Integer)
    n_superseded: Mapped[int | None] = mapped_column(sa.Integer)
    n_unchanged: Mapped[int | None] = mapped_column(sa.Integer)
    message: Mapped[str | None] = mapped_column(sa.Text)
    date_updated: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


# --- Annostream's own reliability tables (not in ELLA's schema) -----------------------------


class EventAttempt(AnnostreamBase):
    """How often a stage has started on one event; bounds crash and bug loops per event.

    Counted before the work starts (a SIGKILL mid-event still counts) and removed when the
    stage finishes, so only events that keep failing accumulate attempts.
    """

    __tablename__ = "annostream_event_attempt"

    stage: Mapped[str] = mapped_column(sa.String, primary_key=True)
    event_key: Mapped[str] = mapped_column(sa.String, primary_key=True)  # event_id, or sha256 of the bytes
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    date_updated: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class ParkedEvent(AnnostreamBase):
    """An event whose failure could not be recorded (dead-letter path failed): kept here with its
    bytes and the reason so the partition can move on; ``annostream parked retry|drop``."""

    __tablename__ = "annostream_parked_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(sa.String)
    topic: Mapped[str] = mapped_column(sa.String)
    key: Mapped[str | None] = mapped_column(sa.String)
    value: Mapped[bytes] = mapped_column(sa.LargeBinary)
    event_id: Mapped[str | None] = mapped_column(sa.String, index=True)
    analysis: Mapped[str | None] = mapped_column(sa.String)
    reason: Mapped[str] = mapped_column(sa.Text)
    date_parked: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class LedgerState(enum.StrEnum):
    PENDING = "PENDING"
    DONE = "DONE"
    FAILED = "FAILED"


class LedgerEntry(AnnostreamBase):
    """The work ledger (transactional outbox): every event that starts work, recorded before or
    as it is published, so work the broker lost is re-published by the reconciler."""

    __tablename__ = "annostream_work_ledger"

    event_id: Mapped[str] = mapped_column(sa.String, primary_key=True)
    schema: Mapped[str] = mapped_column(sa.String)  # analysis.ready, reanalysis.requested, ...
    topic: Mapped[str] = mapped_column(sa.String)
    key: Mapped[str] = mapped_column(sa.String)
    value: Mapped[bytes] = mapped_column(sa.LargeBinary)
    analysis: Mapped[str | None] = mapped_column(sa.String, index=True)
    state: Mapped[str] = mapped_column(sa.String, default=LedgerState.PENDING.value, index=True)
    publish_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    date_created: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    # The last sign of life: published, picked up by a stage, or a stage finished a step.
    date_progress: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class ReannotationTarget(AnnostreamBase):
    """An allele an incremental run re-annotates (its batches cover ranges of these ids)."""

    __tablename__ = "reannotation_target"

    run_id: Mapped[int] = mapped_column(
        sa.ForeignKey("reannotation_run.id", ondelete="CASCADE"), primary_key=True
    )
    allele_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class ReannotationChange(AnnostreamBase):
    """One owned target of one allele whose value a run changed (the change report).

    Linked to analyses through the allele (genotype -> sample -> analysis) when read, so an
    analysis imported later that has the allele is reported too. No foreign key to ``allele``:
    the ELLA tables may live in another schema (ELLA database mode)."""

    __tablename__ = "reannotation_change"
    __table_args__ = (
        sa.Index("ix_reannotation_change_run_allele", "run_id", "allele_id"),
        sa.Index("ix_reannotation_change_run_batch", "run_id", "batch_index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("reannotation_run.id", ondelete="CASCADE"))
    batch_index: Mapped[int] = mapped_column(sa.Integer)
    allele_id: Mapped[int] = mapped_column(sa.Integer)
    target: Mapped[str] = mapped_column(sa.String)
    old_value: Mapped[Any | None] = mapped_column(JSONType)
    new_value: Mapped[Any | None] = mapped_column(JSONType)


# --- Read-side index of an analysis's alleles (api/allele_data.py) ----------------------------
# An analysis's alleles are fixed once it is imported, but finding them means a union over its
# samples' genotypes (first and second allele). The read API materialises that list once per
# analysis, on first read, so that every page is an index range scan (keyset pagination by
# allele id at any depth) and the exact total is counted once, not per page.


class AnalysisAllele(AnnostreamBase):
    __tablename__ = "analysis_allele"

    analysis_id: Mapped[int] = mapped_column(
        sa.ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True
    )
    allele_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class AnalysisAlleleTotal(AnnostreamBase):
    __tablename__ = "analysis_allele_total"

    analysis_id: Mapped[int] = mapped_column(
        sa.ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True
    )
    total: Mapped[int] = mapped_column(sa.Integer)
    # The analysis row this list was built for: an id reused after a delete (SQLite without
    # enforced foreign keys) does not match and the list is rebuilt.
    date_deposited: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
