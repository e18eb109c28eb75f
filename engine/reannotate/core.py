"""Re-annotate stored alleles with an annotation bundle: export -> annotate -> convert -> write.

1. **Export** the selected alleles to a VCF (CHROM, POS, REF, ALT from ``allele.chromosome``,
   ``vcf_pos``, ``vcf_ref``, ``vcf_alt``; the ``ID`` column carries ``allele.id``), sorted by
   chromosome and position. PostgreSQL writes the lines itself (``COPY (SELECT ...) TO STDOUT``
   produces tab-separated VCF records), SQLite through Python.
2. **Annotate** it with the bundle's vcfanno config (``annotate_vcf``, ``base_path`` = bundle).
3. **Convert** each record's INFO with the active annotation config's converters (the
   ``deposit`` section); the ``ID`` column maps it back to the allele. The new document is the
   current one without the targets the bundle owns, plus what the bundle produced now (see
   :mod:`engine.reannotate.merge`): a ClinVar classification withdrawn in the new release
   disappears, VEP transcripts from the analysis VCF stay.
4. **Write** with ``write_annotations`` (ELLA's versioning: identical documents are kept, changed
   ones superseded with history), stamping the bundle version and annotation config.

Steps 1, 3 and 4 run in the caller's transaction, so a crash leaves nothing half-written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.annotate import annotate_vcf, load_config
from engine.bundles import BundleInfo
from engine.db.bulk import bulk_loader
from engine.deposit.annotation_config import active_annotation_config
from engine.deposit.converters import build_annotation_builder
from engine.deposit.writer import AnnotationWriteResult, write_annotations
from engine.errors import InputError
from engine.reannotate.merge import bundle_info_fields, merge_document, owned_targets, owned_values
from engine.reannotate.scope import AlleleSelection
from engine.vcf.header import read_header
from engine.vcf.info import parse_info

# Records carry a flag as INFO: the annotator's fast path appends to INFO, while an empty INFO
# ('.') sends every record down its slower per-record path (bench/README.md).
EXPORT_FLAG = "ANNOSTREAM_EXPORT"
VCF_HEADER = (
    "##fileformat=VCFv4.2\n"
    f"##INFO=<ID={EXPORT_FLAG},Number=0,Type=Flag,"
    'Description="Exported by annostream reannotate">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)


@dataclass
class ReannotateResult:
    bundle_version: str
    n_alleles: int = 0
    n_with_values: int = 0  # alleles the bundle had something for
    annotations: AnnotationWriteResult = field(default_factory=AnnotationWriteResult)
    # The change report: (allele id, target path, old value, new value) per owned target whose
    # value changed (None: absent).
    changes: list[tuple[int, str, Any, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # export, annotate, read, convert, write


def reannotate_alleles(
    session: Session, bundle: BundleInfo, selection: AlleleSelection, *, work_dir: Path
) -> ReannotateResult:
    """Re-annotate the selected alleles with ``bundle`` in the caller's transaction (no commit)."""
    result = ReannotateResult(bundle_version=bundle.version)
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="reannotate-", dir=work_dir))
    try:
        exported, annotated = scratch / "alleles.vcf", scratch / "annotated.vcf"
        with _timed(result, "export"):
            result.n_alleles = export_alleles_vcf(session, selection, exported)
        if result.n_alleles == 0:
            return result
        with _timed(result, "annotate"):
            annotate_vcf(bundle.config, exported, annotated, base_path=bundle.path, search_cwd=False)
        config_id, config = active_annotation_config(session)
        builder = build_annotation_builder(config, read_header(annotated).infos)
        bundle_config = load_config(bundle.config, bundle.path, search_cwd=False)
        owned = owned_targets(config, bundle_info_fields(bundle_config))
        with _timed(result, "read"):
            current = current_documents(session, selection)
        counter = _Counter()
        # Batches are bounded (the CLI cuts runs into id ranges), so the documents fit in memory
        # and converting and writing can be timed apart.
        with _timed(result, "convert"):
            documents = []
            for allele_id, info in iter_annotated_infos(annotated):
                document = current.pop(allele_id, None)
                before = owned_values(document, owned) if document else {}
                merged = merge_document(document, counter.seen(builder(info)), owned)
                after = owned_values(merged, owned)
                if before != after:
                    result.changes.extend(
                        (allele_id, target, before.get(target), after.get(target))
                        for target in sorted(before.keys() | after.keys())
                        if before.get(target) != after.get(target)
                    )
                documents.append((allele_id, merged))
        with _timed(result, "write"):
            result.annotations = write_annotations(
                session,
                documents,
                annotation_config_id=config_id,
                bundle_version=bundle.version,
                yield_to_concurrent=True,
                stamp_unchanged=True,
            )
        result.n_with_values = counter.with_values
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


class _Counter:
    def __init__(self) -> None:
        self.with_values = 0

    def seen(self, produced: dict[str, Any] | None) -> dict[str, Any] | None:
        if produced:
            self.with_values += 1
        return produced


def current_documents(session: Session, selection: AlleleSelection) -> dict[int, dict[str, Any]]:
    """{allele id: current annotation document} of the selected alleles, in one query."""
    condition, params = selection.where()
    # The id range repeated on annotation itself: the partial index of current rows is then read
    # for the batch's range only, instead of joining the whole table.
    if selection.id_from is not None:
        condition += " AND c.allele_id >= :id_from"
    if selection.id_to is not None:
        condition += " AND c.allele_id <= :id_to"
    loader = bulk_loader(session)
    # As text, parsed by orjson: faster than the driver's json.loads per row (bench/README.md).
    document = loader.json_text("c.annotations")
    # Locked until commit: an import changing one of these documents meanwhile waits, instead of
    # having its change overwritten by a merge with the document read here.
    lock = loader.lock_clause("c")
    rows = loader.connection.execute(
        sa.text(
            f"SELECT c.allele_id, {document} FROM annotation c JOIN allele a ON a.id = c.allele_id "
            f"WHERE c.date_superceeded IS NULL AND {condition}{lock}"
        ),
        params,
    )
    return {allele_id: orjson.loads(text) for allele_id, text in rows}


def export_alleles_vcf(session: Session, selection: AlleleSelection, path: Path) -> int:
    """Write the selected alleles as a sorted, sites-only VCF (ID = allele id); returns the count."""
    condition, params = selection.where()
    select = (
        f"SELECT a.chromosome, a.vcf_pos, a.id, a.vcf_ref, a.vcf_alt, '.', '.', '{EXPORT_FLAG}' "
        "FROM allele a "
        f"WHERE {condition} ORDER BY a.chromosome, a.vcf_pos, a.id"
    )
    loader = bulk_loader(session)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(VCF_HEADER)
        return loader.copy_out(select, params, out)


def iter_annotated_infos(path: Path) -> Iterator[tuple[int, dict[str, str | bool]]]:
    """(allele id, INFO as key -> raw text, flags -> True) per record of an exported VCF."""
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t", 8)
            try:
                allele_id = int(fields[2])
            except (IndexError, ValueError):
                raise InputError(
                    "record without an allele id",
                    file=str(path),
                    line=number,
                    expected="the ID column as exported (allele.id)",
                ) from None
            yield allele_id, _info_dict(fields[7])


_NOTHING_ADDED: dict[str, str | bool] = {}


def _info_dict(info: str) -> dict[str, str | bool]:
    # Most records of a release get nothing from the bundle: INFO is just the export flag.
    if info in (".", "", EXPORT_FLAG):
        return _NOTHING_ADDED
    return parse_info(info)


class _timed:
    def __init__(self, result: ReannotateResult, step: str) -> None:
        self.result, self.step = result, step

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        elapsed = time.perf_counter() - self.started
        self.result.seconds[self.step] = self.result.seconds.get(self.step, 0.0) + elapsed
