"""Streaming a VCF into ``VariantRecord`` batches for the proband of an analysis (ELLA's rules).

The file is read line by line (plain or gzip/BGZF) so memory stays flat and every error names its
1-based line; htslib (cyvcf2) checks the header. Records the proband does not carry are dropped
after reading only the proband's GT; only carried records are parsed fully. Why text and not
cyvcf2 records: cyvcf2 costs microseconds per record before any field is touched (bench/README.md),
cannot give raw FILTER/INFO text or line numbers, and the proband filter makes most of
the per-sample work unnecessary.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.deposit.specs import SampleRecord, VcfSpec
from engine.errors import InputError
from engine.vcf.alleles import SYMBOLIC_CHANGE_TYPES, check_bases
from engine.vcf.genotypes import (
    NO_CALL,
    AnnotationBuilder,
    build_single_variant,
    build_variant,
    proband_has_allele,
)
from engine.vcf.header import VcfHeader, parse_pos, read_header
from engine.vcf.records import VariantRecord
from engine.vcf.sites import FormatLayout, Genotype, SiteRecord, parse_gt, relative_to_alt
from engine.vcf.textio import numbered_lines, open_text

_DUP_TYPES = frozenset({"dup", "dup_tandem"})
# '*' (allele missing due to an overlapping deletion), '.' (no ALT) and gVCF's "any other allele"
# placeholders (<NON_REF>, <*>) are no variants to import.
_NOT_AN_ALLELE = frozenset({"*", ".", "<NON_REF>", "<*>"})


def read_vcf_samples(path: Path | str) -> list[str]:
    """Sample names of a VCF's ``#CHROM`` line, in column order (header checked)."""
    return read_header(Path(path)).samples


def iter_variant_batches(
    vcf: VcfSpec,
    samples: list[SampleRecord],
    *,
    batch_size: int = 50_000,
    annotation_builder: AnnotationBuilder | None = None,
) -> Iterator[list[VariantRecord]]:
    """Yield lists of at most ``batch_size`` proband genotypes, in file order."""
    path = Path(vcf.path)
    with open_text(path) as handle:
        lines = numbered_lines(path, handle)
        header = VcfHeader.parse(path, lines)
        header.check()
        header.check_with_htslib()
        parser = RecordParser(header, samples, annotation_builder)
        yield from _batches(parser, lines, batch_size)


def _batches(
    parser: RecordParser, lines: Iterator[tuple[int, str]], size: int
) -> Iterator[list[VariantRecord]]:
    """Fill batches with the cyclic garbage collector paused (it stays on while the caller works).

    A batch is hundreds of thousands of small acyclic objects; letting the collector rescan them
    again and again costs a large share of the parse time (bench/README.md). Nothing here forms cycles.
    """
    collector_was_on = gc.isenabled()
    batch: list[VariantRecord] = []
    try:
        gc.disable()
        for number, line in lines:
            batch.extend(parser.feed(number, line))
            if len(batch) >= size:
                if collector_was_on:
                    gc.enable()
                yield batch
                gc.disable()
                batch = []
        batch.extend(parser.finish())
    finally:
        if collector_was_on:
            gc.enable()
    if batch:
        yield batch


def _sample_columns(header: VcfHeader, samples: Sequence[SampleRecord]) -> tuple[list[int], int]:
    """Column offsets (after FORMAT) of the analysis' samples, and the proband's position."""
    missing = [s.identifier for s in samples if s.identifier not in header.samples]
    if missing:
        raise InputError(
            f"samples {missing} are not columns of the VCF",
            file=str(header.path),
            line=header.line_count,
            expected=f"one of {header.samples}",
        )
    probands = [i for i, s in enumerate(samples) if s.proband]
    if len(probands) != 1:
        raise InputError(
            f"{len(probands)} probands among the samples of this VCF",
            file=str(header.path),
            expected="exactly one proband",
        )
    return [header.samples.index(s.identifier) for s in samples], probands[0]


class RecordParser:
    """Turns data lines into ``VariantRecord``s, holding back an unfinished multiallelic block."""

    def __init__(
        self, header: VcfHeader, samples: Sequence[SampleRecord], annotation_builder: AnnotationBuilder | None
    ) -> None:
        self.file = str(header.path)
        self.header = header
        self.columns, self.proband = _sample_columns(header, samples)
        self.proband_column = 9 + self.columns[self.proband]
        self.sample_ids = [s.identifier for s in samples]
        self.n_fields = 9 + len(header.samples)
        self.annotation_builder = annotation_builder
        self.layouts: dict[str, FormatLayout] = {}
        self.block: list[SiteRecord] = []

    # -- validation helpers -------------------------------------------------------------------
    def _error(self, line: int, message: str, expected: str) -> InputError:
        return InputError(message, file=self.file, line=line, expected=expected)

    def _layout(self, number: int, fmt: str) -> FormatLayout:
        layout = self.layouts.get(fmt)
        if layout is None:
            keys = fmt.split(":")
            if "GT" not in keys:
                raise self._error(number, f"FORMAT {fmt!r} has no GT", "GT in FORMAT (ELLA needs genotypes)")
            layout = self.layouts[fmt] = FormatLayout.of(keys)
        return layout

    def _split(self, number: int, line: str) -> list[str]:
        fields = line.split("\t")
        if len(fields) != self.n_fields:
            raise self._error(
                number,
                f"{len(fields)} tab-separated columns",
                f"{self.n_fields} columns (8 fixed, FORMAT, {len(self.header.samples)} samples)",
            )
        if not fields[0]:
            raise self._error(number, "empty CHROM", "a chromosome name")
        return fields

    def _bases(self, number: int, value: str, column: str) -> None:
        if column == "ALT" and (value in _NOT_AN_ALLELE or (value.startswith("<") and value.endswith(">"))):
            # Symbolic ALTs: allele_from_vcf decides, as ELLA's VCFRecord._build_allele does: a CNV
            # when INFO has SVTYPE (DEL/DUP), else trimmed like bases (ELLA stores that as an indel).
            return
        if column == "ALT" and ("[" in value or "]" in value):
            # ELLA imports only the CNV types it models; breakends stop the import with the record
            # named rather than being stored as something they are not.
            raise self._error(
                number,
                f"structural variant ALT {value!r} (breakend) is not supported",
                "sequence variants, or the CNV alleles ELLA imports: "
                + ", ".join(SYMBOLIC_CHANGE_TYPES)
                + " or another symbolic ALT with INFO/SVTYPE DEL or DUP"
                + " (filter other structural variants out first, e.g. with bcftools view -e)",
            )
        try:
            check_bases(value, column)
        except InputError as exc:
            raise self._error(number, exc.message, exc.expected or "") from None

    def _genotype(self, number: int, values: list[str], layout: FormatLayout, sample: int) -> Genotype:
        raw = values[layout.gt] if layout.gt < len(values) else "."
        gt = parse_gt(raw)
        if gt is None:
            raise self._error(
                number,
                f"malformed GT {raw!r} for sample {self.header.samples[sample]!r}",
                "GT like 0/1, 1|0, 1/1, ./. or 1",
            )
        return gt

    # -- parsing ------------------------------------------------------------------------------
    def feed(self, number: int, line: str) -> list[VariantRecord]:
        if not line:
            return []
        fields = self._split(number, line)
        pos = parse_pos(fields[1], file=self.file, line=number)
        ref, alt_field, info = fields[3], fields[4], fields[7]
        self._bases(number, ref, "REF")
        layout = self._layout(number, fields[8])
        block_id = _old_multiallelic(info)
        if block_id is None and "," not in alt_field:
            done = self.flush()
            self._bases(number, alt_field, "ALT")
            if alt_field in _NOT_AN_ALLELE:
                return done
            proband_values = fields[self.proband_column].split(":")
            proband_gt = self._genotype(number, proband_values, layout, self.columns[self.proband])
            if max(proband_gt) > 1:
                self._only_first_alt(number, proband_gt)
            if 1 not in proband_gt and not (proband_gt in NO_CALL and _is_cnv_dup(alt_field, info)):
                return done  # not the proband's variant: nothing else to read on this line
            record = self._single_site(number, fields, pos, layout)
            done.append(build_single_variant(record, self.sample_ids, self.file, self.annotation_builder))
            return done
        return self._feed_block(number, fields, pos, layout, block_id)

    def _single_site(self, number: int, fields: list[str], pos: int, layout: FormatLayout) -> SiteRecord:
        """The record of a line with one ALT and no multiallelic block."""
        sample_values = [fields[9 + c].split(":") for c in self.columns]
        genotypes = []
        for values, column in zip(sample_values, self.columns, strict=True):
            gt = parse_gt(values[layout.gt]) if layout.gt < len(values) else (-1,)
            if gt is None:
                gt = self._genotype(number, values, layout, column)  # raises with the detail
            if max(gt) > 1:
                self._only_first_alt(number, gt)
            genotypes.append(gt)
        return SiteRecord(
            number,
            fields[0],
            pos,
            fields[3],
            fields[4],
            fields[5],
            fields[6],
            fields[7],
            layout,
            sample_values,
            genotypes,
            None,
        )

    def _only_first_alt(self, number: int, gt: Genotype) -> None:
        if any(a > 1 for a in gt):
            raise self._error(
                number,
                f"genotype {gt} refers to an ALT this line does not have",
                "allele indices 0 and 1 on a line with one ALT",
            )

    def _site(
        self,
        number: int,
        fields: list[str],
        pos: int,
        layout: FormatLayout,
        block_id: str | None,
        alt_index: int = 0,
    ) -> SiteRecord:
        """A record for one ALT (``alt_index`` 0 = the line has one ALT; k = k-th of several)."""
        sample_values = [fields[9 + c].split(":") for c in self.columns]
        genotypes = [
            self._genotype(number, v, layout, c) for v, c in zip(sample_values, self.columns, strict=True)
        ]
        alts = fields[4].split(",")
        if alt_index:
            genotypes = [relative_to_alt(gt, alt_index) for gt in genotypes]
        else:
            for gt in genotypes:
                self._only_first_alt(number, gt)
        return SiteRecord(
            line=number,
            chrom=fields[0],
            pos=pos,
            ref=fields[3],
            alt=alts[max(alt_index, 1) - 1],
            qual=fields[5],
            filter=fields[6],
            info=fields[7],
            layout=layout,
            sample_values=sample_values,
            genotypes=genotypes,
            block_id=block_id,
            alt_index=max(alt_index, 1),
            alt_count=len(alts) if alt_index else 1,
            info_numbers=self.header.info_numbers if alt_index else None,
        )

    def _feed_block(
        self, number: int, fields: list[str], pos: int, layout: FormatLayout, block_id: str | None
    ) -> list[VariantRecord]:
        alts = fields[4].split(",")
        for alt in alts:
            self._bases(number, alt, "ALT")
        if len(alts) > 1:
            block_id = block_id or f"{fields[0]}:{pos}:{fields[3]}/{'/'.join(alts)}"
            records = [self._site(number, fields, pos, layout, block_id, k) for k in range(1, len(alts) + 1)]
        else:
            records = [self._site(number, fields, pos, layout, block_id)]
        done = self.flush() if self.block and self.block[0].block_id != block_id else []
        self.block.extend(r for r in records if r.alt not in _NOT_AN_ALLELE)
        return done

    def flush(self) -> list[VariantRecord]:
        """Finish the pending multiallelic block (ELLA's ``BlockIterator``)."""
        if not self.block:
            return []
        block, self.block = self.block, []
        proband_records = [
            r for r in block if proband_has_allele(r, self.proband, _is_cnv_dup(r.alt, r.info))
        ]
        if not proband_records:
            return []
        carried = {id(r) for r in proband_records}
        block_records = [r for r in block if id(r) in carried or any(-1 in gt for gt in r.genotypes)]
        covered = [any(any(a != -1 for a in r.genotypes[i]) for r in block) for i in range(len(self.columns))]
        if any(_is_cnv_dup(r.alt, r.info) for r in proband_records):
            covered = [True] * len(covered)  # ELLA: './.' on a CNV duplication counts as covered
        return [self._variant(proband_records, block_records, covered)]

    def finish(self) -> list[VariantRecord]:
        return self.flush()

    def _variant(
        self, proband_records: list[SiteRecord], block_records: list[SiteRecord], covered: list[bool]
    ) -> VariantRecord:
        return build_variant(
            proband_records,
            block_records,
            covered,
            self.proband,
            self.sample_ids,
            self.file,
            self.annotation_builder,
        )


def _old_multiallelic(info: str) -> str | None:
    start = info.find("OLD_MULTIALLELIC=")
    if start == -1 or (start > 0 and info[start - 1] != ";"):
        return None
    value = info[start + len("OLD_MULTIALLELIC=") :]
    return value.split(";", 1)[0]


def _is_cnv_dup(alt: str, info: str) -> bool:
    """ELLA counts an uncalled proband as carrying a CNV duplication (SVTYPE must be present)."""
    if "SVTYPE=" not in info:
        return False
    if alt in SYMBOLIC_CHANGE_TYPES:
        return SYMBOLIC_CHANGE_TYPES[alt] in _DUP_TYPES
    return any(item == "SVTYPE=DUP" for item in info.split(";"))
