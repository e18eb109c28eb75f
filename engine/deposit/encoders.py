"""The bulk writer's three encoders: variants into rows the loader takes without more Python work.

Encoding is the Python-heavy part of a write; it runs in a background thread (see
``engine.deposit.streams.prefetched``) while the database works on the previous chunk, and only
the cheap id splicing is left for the writing thread. Which encoder serves a write follows from
the loader's ``row_format`` (:func:`encoder_for`):

- :class:`CopyTextEncoder` (``RowFormat.COPY_TEXT``): records as COPY text built with f-strings,
  and columnar blocks (``engine.deposit.columns``) as COPY text built with pyarrow kernels;
- :class:`ParameterEncoder` (``RowFormat.PARAMETERS``): records as parameter tuples; columnar
  blocks are turned back into records first (the small-data path has no columnar writer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from engine.db import copytext
from engine.db.bulk import RowFormat
from engine.db.copytext import escape
from engine.db.ella import SMALLINT_MAX
from engine.deposit.alleles import allele_row
from engine.deposit.columns import VariantColumns, to_records
from engine.errors import InputError
from engine.vcf.records import AlleleRecord, SampleGenotypeRecord, VariantRecord

NON_REFERENCE = frozenset({"Heterozygous", "Homozygous"})
# Stands for the genotype id in pre-encoded sample-data rows. Never part of the encoded values:
# those are numbers, fixed words and JSON, which escapes control characters.
GENOTYPE_ID = "\x01"
_NULL = copytext.NULL

Timer = Callable[[str], AbstractContextManager[None]]


@dataclass(slots=True)
class EncodedChunk:
    """One chunk of variant records with every row already encoded except the database ids."""

    size: int  # variants
    alleles: list[Any]  # staged allele rows without their id: first allele, then second if any
    second_at: list[int]  # per variant: index of its second allele row, or -1
    genotype_tails: list[Any]  # per variant: sample_id, filter_status, variant_quality
    sample_data: list[Any]  # per variant (COPY text, GENOTYPE_ID placeholders) or per row
    sample_data_owner: list[int]  # parameters only: variant index of each sample-data row
    has_annotation: bool


@dataclass(slots=True)
class ColumnarChunk:
    """A columnar block encoded as COPY text columns, one entry per variant (ids still missing)."""

    size: int
    alleles: pa.Array  # staged allele rows after (id, ord)
    genotype_tails: pa.Array  # genotype rows after (id, allele_id, secondallele_id, sample_id)
    proband: int  # sample id of the genotypes
    sample_data: list[tuple[int, pa.Array]]  # per sample: its id, rows after (genotype_id, ...)
    has_annotation: bool


class ChunkEncoder(ABC):
    """Checks and encodes chunks of one analysis's variants; touches no database."""

    def __init__(self, sample_ids: dict[str, int], probands: list[int], vcf_file: str) -> None:
        self.sample_ids = sample_ids
        self.probands = probands
        self.identifier_by_id = {v: k for k, v in sample_ids.items()}
        self.vcf_file = vcf_file

    def encode(
        self, chunk: list[VariantRecord] | VariantColumns, timed: Timer
    ) -> EncodedChunk | ColumnarChunk:
        if isinstance(chunk, VariantColumns):
            return self.encode_columns(chunk, timed)
        with timed("check"):
            self.check(chunk)
        with timed("encode"):
            return self.encode_records(chunk)

    def encode_columns(self, columns: VariantColumns, timed: Timer) -> EncodedChunk | ColumnarChunk:
        return self.encode(to_records(columns), timed)

    @abstractmethod
    def encode_records(self, chunk: list[VariantRecord]) -> EncodedChunk: ...

    # -- id splicing (the writing thread) --------------------------------------------------------

    @abstractmethod
    def alleles_with_ids(self, encoded: EncodedChunk, ids: list[int]) -> Any:
        """The staged allele rows of ``encoded`` under ``ids``, ready for ``load_encoded``."""

    @abstractmethod
    def genotypes_with_ids(
        self,
        encoded: EncodedChunk,
        genotype_ids: list[int],
        first_ids: list[int],
        second_ids: list[int | None],
    ) -> Any: ...

    @abstractmethod
    def sample_data_with_ids(self, encoded: EncodedChunk, genotype_ids: list[int]) -> Any: ...

    # -- shared -----------------------------------------------------------------------------------

    def check(self, chunk: list[VariantRecord]) -> None:
        seen: set[tuple[AlleleRecord, AlleleRecord | None]] = set()
        known = self.sample_ids.keys()
        for record in chunk:
            key = (record.allele, record.secondallele)
            if key in seen:
                raise InputError(
                    f"variant {record.allele.chromosome}:{record.allele.vcf_pos} "
                    f"{record.allele.vcf_ref}>{record.allele.vcf_alt} appears twice",
                    file=self.vcf_file,
                    line=record.source_line,
                    expected="each variant once per VCF",
                )
            seen.add(key)
            if not known >= record.samples.keys():
                unknown = set(record.samples) - known
                raise InputError(
                    f"genotype for unknown sample {sorted(unknown)[0]}",
                    file=self.vcf_file,
                    line=record.source_line,
                    expected=f"one of {', '.join(sorted(self.sample_ids))}",
                )

    def proband_for(self, record: VariantRecord) -> int:
        if len(self.probands) == 1:
            return self.probands[0]
        for sample_id in self.probands:
            data = record.samples.get(self.identifier_by_id[sample_id])
            if data is not None and data.type in NON_REFERENCE:
                return sample_id
        return self.probands[0]


class CopyTextEncoder(ChunkEncoder):
    """PostgreSQL COPY text; each row's id is spliced in by the writing thread."""

    @staticmethod
    def likelihood_text(likelihood: list[int]) -> str:
        """``genotype_likelihood`` as a COPY field (a JSON list in Annostream's own schema)."""
        return escape(_json(likelihood))

    def encode_columns(self, columns: VariantColumns, timed: Timer) -> ColumnarChunk:
        with timed("encode"):
            return encode_columns(self, columns)

    def encode_records(self, chunk: list[VariantRecord]) -> EncodedChunk:
        alleles: list[str] = []
        second_at: list[int] = []
        tails: list[str] = []
        blocks: list[str] = []
        has_annotation = False
        sample_ids = self.sample_ids
        placeholder = GENOTYPE_ID
        likelihood_text = self.likelihood_text
        for ord_, record in enumerate(chunk):
            doc = record.annotation
            alleles.append(_allele_text(ord_, "f", record.allele, doc))
            second = record.secondallele
            if second is not None:
                second_at.append(len(alleles))
                second_doc = record.secondallele_annotation
                alleles.append(_allele_text(ord_, "t", second, second_doc))
                has_annotation = has_annotation or second_doc is not None
            else:
                second_at.append(-1)
            has_annotation = has_annotation or doc is not None
            tails.append(
                f"\t{self.proband_for(record)}\t"
                f"{_NULL if record.filter_status is None else escape(record.filter_status)}\t"
                f"{_NULL if record.variant_quality is None else record.variant_quality}\n"
            )
            rows = [
                f"{placeholder}\t{sample_ids[identifier]}\tf{sample_data_text(d, likelihood_text)}"
                for identifier, d in record.samples.items()
            ]
            if second is not None and record.secondallele_samples:
                rows += [
                    f"{placeholder}\t{sample_ids[identifier]}\tt{sample_data_text(d, likelihood_text)}"
                    for identifier, d in record.secondallele_samples.items()
                ]
            blocks.append("".join(rows))
        return EncodedChunk(len(chunk), alleles, second_at, tails, blocks, [], has_annotation)

    def alleles_with_ids(self, encoded: EncodedChunk, ids: list[int]) -> str:
        return "".join([f"{allele_id}\t{row}" for allele_id, row in zip(ids, encoded.alleles, strict=True)])

    def genotypes_with_ids(
        self,
        encoded: EncodedChunk,
        genotype_ids: list[int],
        first_ids: list[int],
        second_ids: list[int | None],
    ) -> str:
        return "".join(
            [
                f"{genotype_id}\t{first}\t{_NULL if second is None else second}{tail}"
                for genotype_id, first, second, tail in zip(
                    genotype_ids, first_ids, second_ids, encoded.genotype_tails, strict=True
                )
            ]
        )

    def sample_data_with_ids(self, encoded: EncodedChunk, genotype_ids: list[int]) -> str:
        placeholder = GENOTYPE_ID
        return "".join(
            [
                block.replace(placeholder, str(genotype_id))
                for genotype_id, block in zip(genotype_ids, encoded.sample_data, strict=True)
            ]
        )


class ParameterEncoder(ChunkEncoder):
    """Parameter tuples (SQLite executemany)."""

    def encode_records(self, chunk: list[VariantRecord]) -> EncodedChunk:
        alleles: list[tuple[Any, ...]] = []
        second_at: list[int] = []
        tails: list[tuple[Any, ...]] = []
        rows: list[tuple[Any, ...]] = []
        owner: list[int] = []
        has_annotation = False
        for ord_, record in enumerate(chunk):
            alleles.append(allele_row(ord_, False, record.allele, _json_or_none(record.annotation)))
            has_annotation = has_annotation or record.annotation is not None
            if record.secondallele is not None:
                second_at.append(len(alleles))
                alleles.append(
                    allele_row(ord_, True, record.secondallele, _json_or_none(record.secondallele_annotation))
                )
                has_annotation = has_annotation or record.secondallele_annotation is not None
            else:
                second_at.append(-1)
            tails.append((self.proband_for(record), record.filter_status, record.variant_quality))
            per_allele = [(False, record.samples)]
            if record.secondallele is not None and record.secondallele_samples:
                per_allele.append((True, record.secondallele_samples))
            for secondallele, samples in per_allele:
                for identifier, d in samples.items():
                    rows.append(
                        (
                            self.sample_ids[identifier],
                            secondallele,
                            d.multiallelic,
                            d.type,
                            d.genotype_quality,
                            d.sequencing_depth,
                            _json_or_none(d.allele_depth),
                            d.allele_ratio,
                            _json_or_none(d.genotype_likelihood),
                            d.copy_number,
                        )
                    )
                    owner.append(ord_)
        return EncodedChunk(len(chunk), alleles, second_at, tails, rows, owner, has_annotation)

    def alleles_with_ids(self, encoded: EncodedChunk, ids: list[int]) -> list[tuple[Any, ...]]:
        return [(allele_id, *row) for allele_id, row in zip(ids, encoded.alleles, strict=True)]

    def genotypes_with_ids(
        self,
        encoded: EncodedChunk,
        genotype_ids: list[int],
        first_ids: list[int],
        second_ids: list[int | None],
    ) -> list[tuple[Any, ...]]:
        return [
            (genotype_id, first, second, *tail)
            for genotype_id, first, second, tail in zip(
                genotype_ids, first_ids, second_ids, encoded.genotype_tails, strict=True
            )
        ]

    def sample_data_with_ids(self, encoded: EncodedChunk, genotype_ids: list[int]) -> list[tuple[Any, ...]]:
        return [
            (genotype_ids[owner], *row)
            for owner, row in zip(encoded.sample_data_owner, encoded.sample_data, strict=True)
        ]


class EllaCopyTextEncoder(CopyTextEncoder):
    """COPY text for ELLA's own tables (``engine.deposit.targets.EllaTarget``).

    ELLA stores ``genotype_likelihood`` as ``integer[]`` and GQ, DP and copy number as SMALLINT
    (``src/vardb/datamodel/genotype.py``): values are checked here, so that one ELLA cannot hold
    fails the import naming the file and line instead of as a database error.
    """

    @staticmethod
    def likelihood_text(likelihood: list[int]) -> str:
        return "{" + ",".join(map(str, likelihood)) + "}"

    def encode_records(self, chunk: list[VariantRecord]) -> EncodedChunk:
        for record in chunk:
            for samples in (record.samples, record.secondallele_samples or {}):
                for identifier, d in samples.items():
                    for column, value in (
                        ("genotype_quality", d.genotype_quality),
                        ("sequencing_depth", d.sequencing_depth),
                        ("copy_number", d.copy_number),
                    ):
                        if value is not None and not -SMALLINT_MAX - 1 <= value <= SMALLINT_MAX:
                            raise _smallint_error(
                                self.vcf_file, record.source_line, identifier, column, value
                            )
        return super().encode_records(chunk)

    def encode_columns(self, columns: VariantColumns, timed: Timer) -> ColumnarChunk:
        with timed("check"):
            for identifier, d in columns.samples:
                for column in ("genotype_quality", "sequencing_depth", "copy_number"):
                    values = getattr(d, column)
                    too_big = pc.fill_null(pc.greater(pc.abs(values), SMALLINT_MAX), False)
                    if pc.any(too_big).as_py():
                        at = int(pc.index(too_big, True).as_py())
                        line = None if columns.lines is None else int(columns.lines[at].as_py())
                        raise _smallint_error(self.vcf_file, line, identifier, column, values[at].as_py())
        with timed("encode"):
            return encode_columns(self, columns, int_arrays=True)


_FORMAT_KEY = {"genotype_quality": "GQ", "sequencing_depth": "DP", "copy_number": "CN"}


def _smallint_error(file: str, line: int | None, sample: str, column: str, value: int) -> InputError:
    return InputError(
        f"sample {sample}: {_FORMAT_KEY[column]} {value} does not fit ELLA's "
        f"genotypesampledata.{column} (SMALLINT)",
        file=file,
        line=line,
        expected=f"{_FORMAT_KEY[column]} between -32768 and {SMALLINT_MAX}",
    )


def _int_array_text(likelihood: pa.Array) -> pa.Array:
    """JSON integer lists (``[0,30,300]``) as PostgreSQL array literals (``{0,30,300}``)."""
    return pc.replace_substring(pc.replace_substring(likelihood, "[", "{"), "]", "}")


ENCODERS: dict[RowFormat, type[ChunkEncoder]] = {
    RowFormat.COPY_TEXT: CopyTextEncoder,
    RowFormat.PARAMETERS: ParameterEncoder,
}


# --- columnar blocks -------------------------------------------------------------------------------


def encode_columns(
    encoder: ChunkEncoder, columns: VariantColumns, *, int_arrays: bool = False
) -> ColumnarChunk:
    """COPY text of a columnar block, built with vectorised string kernels."""
    sample_ids = encoder.sample_ids
    unknown = {identifier for identifier, _ in columns.samples} - sample_ids.keys()
    if unknown:
        raise InputError(
            f"genotype for unknown sample {sorted(unknown)[0]}",
            file=encoder.vcf_file,
            expected=f"one of {', '.join(sorted(sample_ids))}",
        )
    c = columns
    text, number = copytext.text_column, copytext.number_column
    has_annotation = c.annotation.null_count < c.size
    alleles = copytext.row_column(
        "f",
        text(c.chromosome),
        number(c.start_position),
        number(c.open_end_position),
        text(c.change_from),
        text(c.change_to),
        text(c.change_type),
        number(c.vcf_pos),
        text(c.vcf_ref),
        text(c.vcf_alt),
        number(c.length),
        escape(c.caller_type),
        escape(c.genome_reference),
        text(c.annotation),
    )
    genotype_tails = copytext.row_column("", text(c.filter_status), number(c.variant_quality))
    sample_data = [
        (
            sample_ids[identifier],
            copytext.row_column(
                "",
                pc.if_else(d.multiallelic, "t", "f"),
                text(d.type),
                number(d.genotype_quality),
                number(d.sequencing_depth),
                text(d.allele_depth),
                number(d.allele_ratio),
                text(_int_array_text(d.genotype_likelihood) if int_arrays else d.genotype_likelihood),
                number(d.copy_number),
            ),
        )
        for identifier, d in c.samples
    ]
    proband = encoder.probands[0] if len(encoder.probands) == 1 else sample_ids[c.proband]
    return ColumnarChunk(c.size, alleles, genotype_tails, proband, sample_data, has_annotation)


# --- COPY text of records ------------------------------------------------------------------------


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_or_none(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _allele_text(ord_: int, second: str, a: AlleleRecord, doc: Any) -> str:
    return (
        f"{ord_}\t{second}\t{escape(a.chromosome)}\t{a.start_position}\t{a.open_end_position}\t"
        f"{escape(a.change_from)}\t{escape(a.change_to)}\t{escape(a.change_type)}\t{a.vcf_pos}\t"
        f"{escape(a.vcf_ref)}\t{escape(a.vcf_alt)}\t{a.length}\t{escape(a.caller_type)}\t"
        f"{escape(a.genome_reference)}\t{_NULL if doc is None else escape(_json(doc))}\n"
    )


def sample_data_text(d: SampleGenotypeRecord, likelihood_text: Callable[[list[int]], str]) -> str:
    """The genotypesampledata columns after (genotype_id, sample_id, secondallele), tab-led."""
    null = _NULL
    depth = d.allele_depth
    likelihood = d.genotype_likelihood
    return (
        f"\t{'t' if d.multiallelic else 'f'}\t{escape(d.type)}\t"
        f"{null if d.genotype_quality is None else d.genotype_quality}\t"
        f"{null if d.sequencing_depth is None else d.sequencing_depth}\t"
        f"{null if depth is None else escape(_json(depth))}\t"
        f"{null if d.allele_ratio is None else d.allele_ratio}\t"
        f"{null if likelihood is None else likelihood_text(likelihood)}\t"
        f"{null if d.copy_number is None else d.copy_number}\n"
    )
