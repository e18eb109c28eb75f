"""Bulk (columnar) parsing of the common VCF lines, with the exact parser for everything else.

``iter_variant_blocks`` yields, in file order, ``VariantColumns`` for the simple lines of a block
of the file and ``VariantRecord`` lists (from the exact line parser, ``engine.vcf.reader``) for
the rest. A block (a few MB of whole lines) is split into columns by pyarrow's CSV reader (C,
sub-µs a line) and checked with vectorised string kernels; only a line that passes every check
below is parsed in bulk, and it must give exactly what the exact parser gives:

* one ALT; REF and ALT of the bases ACGTN, different; no ``OLD_MULTIALLELIC`` and no ``SV`` in
  INFO (so no multiallelic block and no CNV); POS a plain positive integer; QUAL ``.`` or a plain
  decimal number;
* FORMAT with GT; every sample has exactly one value per FORMAT key; GT of 0, 1 and ``.``;
  GQ/DP/CN plain integers or ``.``; AD ``n,m`` (or a form ELLA ignores); PL plain integers or ``.``.

Everything else, and every line of a block with anything unusual (``\\r``, ``\\``, empty lines,
a column count pyarrow rejects, duplicated variants), goes through the exact parser with its
line number, so its messages (file, line, expected) are unchanged. Lines the proband does not
carry are dropped, as in the exact parser.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.deposit.columns import SampleColumns, VariantColumns
from engine.deposit.specs import SampleRecord, VcfSpec
from engine.vcf.alleles import allele_from_vcf
from engine.vcf.genotypes import (
    GENOTYPE_TYPES,
    MULTIALLELIC_GENOTYPES,
    NO_CALL,
    AnnotationBuilder,
    annotation_sources,
)
from engine.vcf.header import VcfHeader, read_header
from engine.vcf.info import parse_info
from engine.vcf.reader import RecordParser, iter_variant_batches
from engine.vcf.records import VariantRecord
from engine.vcf.sites import FormatLayout, parse_gt
from engine.vcf.textio import (
    COMPRESSION_ERRORS,
    checked_chunks,
    iter_line_chunks,
    open_binary,
    read_header_and_body,
    stream_error,
)

BLOCK_BYTES = 8 << 20
_INT = r"(?:0|[1-9][0-9]{0,8})"  # what int() reads and JSON writes the same way; < 2**31
_PL = rf"^(?:\.|{_INT}(?:,{_INT})*)$"
_AD_NUMBERS = rf"^{_INT},{_INT}$"
_AD_IGNORED = r"^[^,]*$|^[^,]*,[^,]*,|^\.,|,\.$"  # not two values, or a '.' one: ELLA keeps no AD
_QUAL = r"^(?:\.|[0-9]{1,15}(?:\.[0-9]{1,15})?)$"
_POS = r"^[1-9][0-9]{0,9}$"
_BASES = r"^[ACGTN]+$"
_MAX_POS = 2**31 - 1  # allele.vcf_pos is an INTEGER column


@dataclass(frozen=True)
class _GenotypeTable:
    """Every GT text of 0, 1 and '.' (haploid, diploid, phased or not) with ELLA's reading."""

    texts: pa.Array
    carries: np.ndarray  # the proband carries the ALT: a 1 in the genotype
    types: np.ndarray  # object: the genotypesampledata type of a single-record block
    multiallelic: np.ndarray

    @classmethod
    def build(cls) -> _GenotypeTable:
        texts = ["0", "1", "."] + [f"{a}{sep}{b}" for a, b in product("01.", repeat=2) for sep in "/|"]
        genotypes = [gt for text in texts if (gt := parse_gt(text)) is not None]
        return cls(
            texts=pa.array(texts),
            carries=np.array([1 in gt for gt in genotypes]),
            types=np.array(
                ["No coverage" if gt in NO_CALL else GENOTYPE_TYPES[gt] for gt in genotypes], dtype=object
            ),
            multiallelic=np.array([gt in MULTIALLELIC_GENOTYPES for gt in genotypes]),
        )


_GENOTYPES = _GenotypeTable.build()


def iter_variant_blocks(
    vcf: VcfSpec,
    samples: list[SampleRecord],
    *,
    annotation_builder: AnnotationBuilder | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[list[VariantRecord] | VariantColumns]:
    """The proband's variants of ``vcf`` in file order: columns for simple lines, records else."""
    path = Path(vcf.path)
    header = read_header(path)  # checks the header (also with htslib), as the exact parser does
    parser = RecordParser(header, samples, annotation_builder)
    with open_binary(path) as handle:
        try:
            header_lines, first = read_header_and_body(handle)
        except COMPRESSION_ERRORS as error:
            raise stream_error(path, error) from None
        if len(header_lines) != header.line_count:
            # A header the byte scanner reads differently (say, '\r' line ends): exact path.
            yield from iter_variant_batches(vcf, samples, annotation_builder=annotation_builder)
            return
        blocks = _BlockParser(header, samples, parser, annotation_builder)
        number = header.line_count
        chunks = iter_line_chunks(handle, first, block_bytes, header_lines=number)
        for chunk in checked_chunks(path, chunks, number):
            yield from blocks.parse(chunk, number)
            number += blocks.lines_in(chunk)
        done = parser.finish()
        if done:
            yield done


class _BlockParser:
    """Parses one block of whole lines: the simple ones in bulk, the others line by line."""

    def __init__(
        self,
        header: VcfHeader,
        samples: Sequence[SampleRecord],
        parser: RecordParser,
        annotation_builder: AnnotationBuilder | None,
    ) -> None:
        self.file = str(header.path)
        self.parser = parser
        self.names = ["CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *header.samples]
        self.sample_ids = [s.identifier for s in samples]
        self.sample_columns = [9 + header.samples.index(s.identifier) for s in samples]
        self.proband = next(i for i, s in enumerate(samples) if s.proband)
        self.builder = annotation_builder
        self.sources = annotation_sources(annotation_builder)
        self.layouts: dict[str, FormatLayout | None] = {}

    @staticmethod
    def lines_in(chunk: bytes) -> int:
        """Lines as the exact reader counts them (it also ends a line at a lone '\r')."""
        if b"\r" not in chunk:
            return chunk.count(b"\n")
        return len(io.StringIO(chunk.decode("utf-8", errors="replace"), newline="").readlines())

    def parse(self, chunk: bytes, before: int) -> Iterator[list[VariantRecord] | VariantColumns]:
        """Variants of the lines ``before + 1 ...`` in ``chunk`` (slow ones first, then the block)."""
        table = self._table(chunk)
        if table is None:
            yield from self._exactly(chunk, before, None)
            return
        fast, columns = self._fast_rows(table)
        if fast is None:
            yield from self._exactly(chunk, before, None)
            return
        yield from self._exactly(chunk, before, fast)
        if columns is not None and columns.size:
            # Line numbers within the block become the file's (for the writer's messages).
            lines = None if columns.lines is None else pc.add(columns.lines, before)
            yield dataclasses.replace(columns, lines=lines)

    # -- bulk ---------------------------------------------------------------------------------

    def _table(self, chunk: bytes) -> pa.Table | None:
        """The block's columns, or None when it needs the exact parser throughout."""
        if b"\r" in chunk or b"\\" in chunk or b"\n\n" in chunk or chunk.startswith(b"\n"):
            return None
        try:
            return pacsv.read_csv(
                pa.py_buffer(chunk),
                read_options=pacsv.ReadOptions(
                    column_names=self.names, block_size=len(chunk) + 1, use_threads=False
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter="\t",
                    quote_char=False,
                    escape_char=False,
                    double_quote=False,
                    ignore_empty_lines=False,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(self.names, pa.string()),
                    null_values=[],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None  # wrong column count, invalid UTF-8, ...: the exact parser says which line

    def _fast_rows(self, table: pa.Table) -> tuple[np.ndarray | None, VariantColumns | None]:
        """Which rows are parsed in bulk (None: none, the block has duplicates) and their variants."""
        n = table.num_rows
        simple = _site_is_simple(table)
        fast = np.zeros(n, dtype=bool)
        carried = np.zeros(n, dtype=bool)
        per_format: list[tuple[np.ndarray, dict[str, Any]]] = []
        formats = table["FORMAT"]
        for fmt in pc.unique(formats).to_pylist():
            layout = self._layout(fmt)
            if layout is None:
                continue
            rows = np.flatnonzero(_np(pc.equal(formats, fmt)) & simple)
            if not len(rows):
                continue
            group = table if len(rows) == table.num_rows else table.take(pa.array(rows))
            ok, values = self._sample_values(group, layout, len(fmt.split(":")))
            fast[rows[ok]] = True
            carriers = ok & values.pop("carried")
            if not carriers.any():
                # No row of this FORMAT is stored (none passed, or the proband carries none):
                # ``values`` may then hold no columns at all, so it must not shape the merge.
                continue
            carried[rows[carriers]] = True
            per_format.append((rows[carriers], {k: _take(v, carriers) for k, v in values.items()}))
        if not per_format:
            return fast, None
        rows = np.concatenate([r for r, _ in per_format])
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        merged = {k: _concat([v[k] for _, v in per_format]).take(pa.array(order)) for k in per_format[0][1]}
        site = table.take(pa.array(rows))
        if _has_duplicates(site):
            return None, None
        lines = pa.array(rows + 1, type=pa.int64())  # within the block; parse() adds the offset
        return fast, dataclasses.replace(self._columns(site, merged), lines=lines)

    def _layout(self, fmt: str) -> FormatLayout | None:
        if fmt not in self.layouts:
            keys = fmt.split(":")
            self.layouts[fmt] = FormatLayout.of(keys) if "GT" in keys and "" not in keys else None
        return self.layouts[fmt]

    def _sample_values(
        self, group: pa.Table, layout: FormatLayout, n_keys: int
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Per sample (in analysis order) the checked FORMAT values of a group of one FORMAT."""
        ok = np.ones(group.num_rows, dtype=bool)
        split = []
        for column in self.sample_columns:
            parts = pc.split_pattern(group.column(column), ":")
            ok &= _np(pc.equal(pc.list_value_length(parts), n_keys))
            split.append(parts)
        if not ok.any():
            return ok, {"carried": ok}
        rows = pa.array(np.flatnonzero(ok))
        if not ok.all():
            split = [parts.take(rows) for parts in split]
        values: dict[str, Any] = {}
        good = np.ones(len(rows), dtype=bool)
        carried = np.zeros(len(rows), dtype=bool)
        for k, parts in enumerate(split):
            gt_code = pc.index_in(pc.list_element(parts, layout.gt), value_set=_GENOTYPES.texts)
            good &= _np(pc.is_valid(gt_code))
            codes = _np(pc.fill_null(gt_code, 0)).astype(np.int64)
            if k == self.proband:
                carried = _GENOTYPES.carries[codes]
            values[f"gt{k}"] = codes
            for key, index in (("gq", layout.gq), ("dp", layout.dp), ("cn", layout.cn)):
                text = _element(parts, index)
                if index is not None:
                    good &= _is_scalar(text)
                values[f"{key}{k}"] = text
            # An absent key reads like a '.' value (no AD: "{}", no PL: NULL, as ELLA stores them).
            ad = _element(parts, layout.ad)
            if layout.ad is not None:
                good &= _np(
                    pc.or_(
                        pc.match_substring_regex(ad, _AD_NUMBERS), pc.match_substring_regex(ad, _AD_IGNORED)
                    )
                )
            values[f"ad{k}"] = ad
            pl = _element(parts, layout.pl)
            if layout.pl is not None:
                good &= _np(pc.match_substring_regex(pl, _PL))
            values[f"pl{k}"] = pl
        full = np.zeros(group.num_rows, dtype=bool)
        full[np.flatnonzero(ok)] = good
        values["carried"] = np.zeros(group.num_rows, dtype=bool)
        values["carried"][np.flatnonzero(ok)] = carried & good
        # Values are kept for the rows that passed the column-count check; expand to the group.
        position = np.full(group.num_rows, -1, dtype=np.int64)
        position[np.flatnonzero(ok)] = np.arange(len(rows))
        values = {k: (v if k == "carried" else _Expanded(v, position)) for k, v in values.items()}
        return full, values

    def _columns(self, site: pa.Table, values: dict[str, Any]) -> VariantColumns:
        ref, alt = site["REF"].combine_chunks(), site["ALT"].combine_chunks()
        chrom, pos = site["CHROM"].combine_chunks(), pc.cast(site["POS"], pa.int64()).combine_chunks()
        start, end, change_from, change_to, change_type, length = _alleles(chrom, pos, ref, alt)
        qual = site["QUAL"].combine_chunks()
        quality = pc.cast(
            pc.trunc(pc.cast(pc.if_else(pc.equal(qual, "."), None, qual), pa.float64())), pa.int64()
        )
        samples = tuple(
            (identifier, self._sample(k, ref, alt, values)) for k, identifier in enumerate(self.sample_ids)
        )
        return VariantColumns(
            size=site.num_rows,
            chromosome=chrom,
            start_position=start,
            open_end_position=end,
            change_from=change_from,
            change_to=change_to,
            change_type=change_type,
            vcf_pos=pos,
            vcf_ref=ref,
            vcf_alt=alt,
            length=length,
            filter_status=site["FILTER"].combine_chunks(),
            variant_quality=quality,
            annotation=self._annotations(site["INFO"].combine_chunks()),
            samples=samples,
            proband=self.sample_ids[self.proband],
        )

    def _sample(self, k: int, ref: pa.Array, alt: pa.Array, values: dict[str, Any]) -> SampleColumns:
        codes = values[f"gt{k}"]
        multiallelic = _GENOTYPES.multiallelic[codes]
        depth, ratio = _allele_depth(values[f"ad{k}"], ref, alt)
        pl = values[f"pl{k}"]
        likelihood = pc.if_else(
            pa.array(multiallelic | _np(pc.equal(pl, "."))),
            None,
            pc.binary_join_element_wise("[", pl, "]", ""),
        )
        return SampleColumns(
            type=pa.array(_GENOTYPES.types[codes], pa.string()),
            multiallelic=pa.array(multiallelic),
            genotype_quality=_integers(values[f"gq{k}"]),
            sequencing_depth=_integers(values[f"dp{k}"]),
            allele_depth=depth,
            allele_ratio=ratio,
            genotype_likelihood=likelihood,
            copy_number=_integers(values[f"cn{k}"]),
        )

    def _annotations(self, info: pa.Array) -> pa.Array:
        """JSON text of the builder's document per line; the builder runs only where it can find
        something (a key it reads occurs in the line)."""
        n = len(info)
        if self.builder is None or (self.sources is not None and not self.sources):
            return pa.nulls(n, pa.string())
        if self.sources is None:
            candidates = np.arange(n)
        else:
            hit = np.zeros(n, dtype=bool)
            for source in self.sources:
                hit |= _np(pc.match_substring(info, source))
            candidates = np.flatnonzero(hit)
        documents: list[str | None] = [None] * n
        texts = info.take(pa.array(candidates)).to_pylist() if len(candidates) else []
        for row, text in zip(candidates.tolist(), texts, strict=True):
            document = self.builder(parse_info(text))
            documents[row] = None if document is None else orjson.dumps(document).decode()
        return pa.array(documents, pa.string())

    # -- line by line -------------------------------------------------------------------------

    def _exactly(self, chunk: bytes, before: int, fast: np.ndarray | None) -> Iterator[list[VariantRecord]]:
        """Feed the lines not parsed in bulk (all when ``fast`` is None) to the exact parser.

        A bulk line ends a pending multiallelic block, as it would in the exact parser.
        """
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as error:
            broken = before + chunk[: error.start].count(b"\n") + 1
            raise stream_error(self.file, error, broken) from None
        parser = self.parser
        done: list[VariantRecord] = []
        if fast is None:
            # The exact reader's own line splitting (io with newline=''), so numbers agree.
            for number, line in enumerate(io.StringIO(text, newline=""), before + 1):
                done.extend(parser.feed(number, line.rstrip("\r\n")))
        else:
            lines = text.split("\n")
            for row in np.flatnonzero(~fast).tolist():
                if row and fast[row - 1]:
                    done.extend(parser.flush())
                done.extend(parser.feed(before + row + 1, lines[row]))
            if len(fast) and fast[-1]:
                done.extend(parser.flush())
        if done:
            yield done


# -- vectorised helpers ---------------------------------------------------------------------------


class _Expanded:
    """Values computed for a subset of a group's rows, addressable by group row (``take``)."""

    def __init__(self, values: Any, index: np.ndarray) -> None:
        self.values, self.index = values, index

    def take(self, rows: np.ndarray) -> Any:
        picked = self.index[rows]
        if isinstance(self.values, np.ndarray):
            return self.values[picked]
        return self.values.take(pa.array(picked))


def _element(parts: pa.Array, index: int | None) -> pa.Array:
    """The ``index``-th FORMAT value of every row ('.' for a key FORMAT does not have)."""
    if index is None:
        return _DOT.take(np.zeros(len(parts), dtype=np.int32))
    return pc.list_element(parts, index)


_DOT = pa.array(["."])


def _take(value: Any, rows: np.ndarray) -> Any:
    return value.take(np.flatnonzero(rows)) if isinstance(value, _Expanded) else value[rows]


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], np.ndarray):
        return _NumpyColumn(np.concatenate(parts))
    return pa.concat_arrays([p.combine_chunks() if isinstance(p, pa.ChunkedArray) else p for p in parts])


class _NumpyColumn:
    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def take(self, order: pa.Array) -> np.ndarray:
        return self.values[order.to_numpy()]


def _is_scalar(text: pa.Array) -> np.ndarray:
    """'.' or what ``int()`` reads and ``str()`` writes back the same (digits, no leading 0)."""
    length = _np(pc.binary_length(text))
    digits = _np(pc.ascii_is_decimal(text)) & (length <= 9)
    digits &= (length == 1) | ~_np(pc.starts_with(text, "0"))
    return digits | _np(pc.equal(text, "."))


def _np(mask: Any) -> np.ndarray:
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return mask.to_numpy(zero_copy_only=False)


def _site_is_simple(table: pa.Table) -> np.ndarray:
    """The fixed columns of a line are ones the bulk path handles exactly like the exact parser."""
    ref, alt, info = table["REF"], table["ALT"], table["INFO"]
    simple = _np(pc.match_substring_regex(ref, _BASES)) & _np(pc.match_substring_regex(alt, _BASES))
    simple &= _np(pc.not_equal(ref, alt))
    simple &= ~_np(pc.match_substring(info, "OLD_MULTIALLELIC")) & ~_np(pc.match_substring(info, "SV"))
    simple &= _np(pc.greater(pc.binary_length(table["CHROM"]), 0))
    simple &= _np(pc.match_substring_regex(table["POS"], _POS))
    simple &= _np(pc.match_substring_regex(table["QUAL"], _QUAL))
    if simple.any():
        positions = pc.cast(pc.if_else(pa.array(simple), table["POS"], "1"), pa.int64())
        simple &= _np(pc.less_equal(positions, _MAX_POS))
    return simple


def _has_duplicates(site: pa.Table) -> bool:
    keys = pc.binary_join_element_wise(site["CHROM"], site["POS"], site["REF"], site["ALT"], "\t")
    return len(pc.unique(keys)) != site.num_rows


def _alleles(chrom: pa.Array, pos: pa.Array, ref: pa.Array, alt: pa.Array) -> tuple[pa.Array, ...]:
    """ELLA's allele columns: SNVs in bulk, other sequence changes by the exact trimming rules."""
    positions = pos.to_numpy()
    start, end = positions - 1, positions.copy()
    length = np.ones(len(positions), dtype=np.int64)
    is_snv = _np(pc.and_(pc.equal(pc.binary_length(ref), 1), pc.equal(pc.binary_length(alt), 1)))
    change_type = pc.if_else(pa.array(is_snv), "SNP", "")
    others = np.flatnonzero(~is_snv)
    if not len(others):
        return pa.array(start), pa.array(end), ref, alt, change_type, pa.array(length)
    picked = pa.array(others)
    alleles = [
        allele_from_vcf(c, p, r, a)
        for c, p, r, a in zip(
            chrom.take(picked).to_pylist(),
            positions[others].tolist(),
            ref.take(picked).to_pylist(),
            alt.take(picked).to_pylist(),
            strict=True,
        )
    ]
    start[others] = [a.start_position for a in alleles]
    end[others] = [a.open_end_position for a in alleles]
    length[others] = [a.length for a in alleles]
    mask = pa.array(~is_snv)

    def replaced(values: pa.Array, field: str) -> pa.Array:
        return pc.replace_with_mask(values, mask, pa.array([getattr(a, field) for a in alleles], pa.string()))

    return (
        pa.array(start),
        pa.array(end),
        replaced(ref, "change_from"),
        replaced(alt, "change_to"),
        replaced(change_type, "change_type"),
        pa.array(length),
    )


def _integers(text: pa.Array) -> pa.Array:
    return pc.cast(pc.if_else(pc.equal(text, "."), None, text), pa.int64())


def _allele_depth(ad: pa.Array, ref: pa.Array, alt: pa.Array) -> tuple[pa.Array, pa.Array]:
    """ELLA's AD document ``{"REF (A)": n, "G": m}`` and allele ratio; ``{}`` and 0.0 without AD."""
    numbers = _np(pc.match_substring_regex(ad, _AD_NUMBERS))
    pairs = pc.split_pattern(pc.if_else(pa.array(numbers), ad, "0,0"), ",")
    ref_depth = pc.cast(pc.list_element(pairs, 0), pa.int64()).to_numpy()
    alt_depth = pc.cast(pc.list_element(pairs, 1), pa.int64()).to_numpy()
    total = ref_depth + alt_depth
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(numbers & (total > 0), alt_depth / np.maximum(total, 1), 0.0)
    document = pc.binary_join_element_wise(
        '{"REF (', ref, ')":', pc.list_element(pairs, 0), ',"', alt, '":', pc.list_element(pairs, 1), "}", ""
    )
    return pc.if_else(pa.array(numbers), document, "{}"), pa.array(ratio)
