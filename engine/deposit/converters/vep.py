"""The ``vep`` converter: VEP's CSQ INFO field into ELLA's ``transcripts`` list.

Behaviour follows ELLA v1.17's VEP converter:

* only ``Feature_type=Transcript`` entries whose ``Feature`` starts with ``NM_``, ``NR_`` or ``ENST``;
* the HGNC id is ``HGNC_ID``, else the HGNC id of the ``Gene`` column (an Ensembl or NCBI gene id),
  else that of the approved ``SYMBOL``, from the HGNC table (``engine.deposit.hgnc``: the release
  ELLA bundles); entries without one are dropped. A missing ``SYMBOL`` is the approved symbol of
  the HGNC id. ``exon_distance`` and ``coding_region_distance`` are always present (null without
  HGVSc), as ELLA's ``TranscriptData.as_dict`` writes them;
* a transcript listed twice is kept from the preferred ``SOURCE``
  (``RefSeq_gff`` > ``RefSeq_Interim_gff`` > ``RefSeq``);
* the list is sorted by transcript name, consequences are sorted, so documents are comparable.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine.deposit.converters.base import Converter, Options, RawValue
from engine.deposit.hgnc import HgncTable, load_hgnc_table

log = logging.getLogger(__name__)

TRANSCRIPT_PREFIXES = ("NM_", "NR_", "ENST")
REFSEQ_SOURCE_PRIORITY = ("RefSeq_gff", "RefSeq_Interim_gff", "RefSeq")

# Ensembl's consequence terms from most to least severe (the order ELLA ranks them in).
CONSEQUENCE_SEVERITY = (
    "transcript_ablation",
    "splice_donor_variant",
    "splice_acceptor_variant",
    "stop_gained",
    "frameshift_variant",
    "start_lost",
    "initiator_codon_variant",
    "stop_lost",
    "inframe_insertion",
    "inframe_deletion",
    "missense_variant",
    "protein_altering_variant",
    "transcript_amplification",
    "splice_region_variant",
    "splice_donor_5th_base_variant",
    "splice_donor_region_variant",
    "splice_polypyrimidine_tract_variant",
    "incomplete_terminal_codon_variant",
    "synonymous_variant",
    "start_retained_variant",
    "stop_retained_variant",
    "coding_sequence_variant",
    "mature_miRNA_variant",
    "5_prime_UTR_variant",
    "3_prime_UTR_variant",
    "non_coding_transcript_exon_variant",
    "non_coding_transcript_variant",
    "intron_variant",
    "NMD_transcript_variant",
    "upstream_gene_variant",
    "downstream_gene_variant",
    "TFBS_ablation",
    "TFBS_amplification",
    "TF_binding_site_variant",
    "regulatory_region_variant",
    "regulatory_region_ablation",
    "regulatory_region_amplification",
    "feature_elongation",
    "feature_truncation",
    "intergenic_variant",
)
_SEVERITY_RANK = {term: rank for rank, term in enumerate(CONSEQUENCE_SEVERITY)}


def worst_consequence(
    transcripts: Iterable[Mapping[str, Any]], order: Sequence[str] = CONSEQUENCE_SEVERITY
) -> str | None:
    """The most severe consequence over the given transcripts (ELLA computes this when it shows
    an allele, over the gene panel's transcripts; it is not part of the stored document)."""
    rank = _SEVERITY_RANK if order is CONSEQUENCE_SEVERITY else {term: i for i, term in enumerate(order)}
    terms = {term for transcript in transcripts for term in transcript.get("consequences", ())}
    ranked = [term for term in terms if term in rank]
    return min(ranked, key=rank.__getitem__) if ranked else None


# A valid HGVSc position part (transcript prefix removed), e.g. c.279G>A, c.248-1_248insA,
# c.*14G>A, c.-315_-314delAC. Groups: utr sign, position, intron sign, intron offset (x2).
_HGVSC_POSITION = re.compile(
    r"[cn]\.(?P<utr1>[*-]?)(?P<p1>\d+)(?P<pm1>[-+]?)(?P<ed1>\d*)"
    r"(?:(?P<region>_)(?P<utr2>[*-]?)(?P<p2>\d+)(?P<pm2>[-+]?)(?P<ed2>\d*))?"
    r"(?:[ACGT]|[BDHKMNRSVWY]|del|dup|ins|inv)"
)


def _signed_distance(sign1: str, d1: str, sign2: str, d2: str) -> int | None:
    """Distance of the position closest to the reference point; 0 when neither has a sign."""
    if not (sign1 or sign2):
        return 0
    if d1 and not d2:
        return -int(d1) if sign1 == "-" else int(d1)
    if d1 and d2:
        first, second = int(d1), int(d2)
        if first <= second:
            return -first if sign1 == "-" else first
        return -second if sign2 == "-" else second
    return None


def hgvsc_distances(hgvsc: str) -> tuple[int | None, int | None]:
    """(exon_distance, coding_region_distance) from an HGVSc without transcript, as ELLA computes:
    exon_distance is the intronic offset (0 if exonic); coding_region_distance is the distance
    into the UTR for exonic variants (0 in the coding region, None if intronic)."""
    match = _HGVSC_POSITION.match(hgvsc)
    if match is None:
        if hgvsc:
            log.debug("cannot parse distances from HGVSc %s", hgvsc)
        return None, None
    g = {key: value or "" for key, value in match.groupdict().items()}
    if g["region"] and (g["ed1"] or g["ed2"]):
        # A region reaching from an intron into an exon: the exonic end is 0 bases away.
        g["ed1"], g["ed2"] = g["ed1"] or "0", g["ed2"] or "0"
    exon_distance = _signed_distance(g["pm1"], g["ed1"], g["pm2"], g["ed2"])
    if exon_distance is None:
        log.debug("cannot compute distances from HGVSc %s", hgvsc)
        return None, None
    coding_region_distance = None
    if exon_distance == 0:
        in_coding = (g["p1"] and not g["utr1"]) or (g["p2"] and not g["utr2"])
        coding_region_distance = 0 if in_coding else _signed_distance(g["utr1"], g["p1"], g["utr2"], g["p2"])
    return exon_distance, coding_region_distance


_LONG_INSERTION = re.compile(r"(?<=ins)[ACGT]{10,}")
_LONG_DELDUP = re.compile(r"(?<=del|dup)[ACGT]{10,}")


def short_hgvsc(hgvsc: str) -> tuple[str, str | None]:
    """HGVSc with long (>= 10 nt) inserted sequences replaced by their length and long deleted or
    duplicated sequences removed; also returns the long inserted sequence."""
    insertion = _LONG_INSERTION.search(hgvsc)
    short = _LONG_INSERTION.sub(lambda m: f"({len(m.group())})", hgvsc)
    short = _LONG_DELDUP.sub("", short)
    return short, insertion.group() if insertion else None


class _SkipTranscript(Exception):
    pass


def _hgnc_number(text: str | None) -> int | None:
    if not text:
        return None
    number = text.removeprefix("HGNC:")
    return int(number) if number.isdigit() else None


class VEPConverter(Converter):
    """CSQ -> ``transcripts``; field names come from the header's ``Format: a|b|...``."""

    name = "vep"
    needs_header = True

    def configure(self, opts: Options) -> None:
        self.fields: list[str] = []
        self.hgnc: HgncTable | None = None

    def with_hgnc(self, hgnc: HgncTable) -> VEPConverter:
        self.hgnc = hgnc
        return self

    def bind(self, header: Mapping[str, str] | None) -> Converter | None:
        if header is None:
            return None
        description = header.get("Description", "")
        if "Format: " not in description:
            raise self.context.config_error(
                f"INFO header for {self.source} has no 'Format: ' in its Description {description[:80]!r}",
                expected='VEP\'s header: Description="... Format: Allele|Consequence|..."',
            )
        self.fields = description.split("Format: ", 1)[1].strip().split("|")
        for required in ("Feature", "Feature_type"):
            if required not in self.fields:
                raise self.context.config_error(
                    f"CSQ Format lacks {required!r}",
                    expected="VEP fields incl. Feature, Feature_type, STRAND",
                )
        return self

    def _entries(self, raw_csq: str) -> list[dict[str, str]]:
        return [dict(zip(self.fields, raw.split("|"), strict=False)) for raw in raw_csq.split(",")]

    def _hgnc_id(self, entry: dict[str, str], hgnc: HgncTable) -> int:
        """ELLA's TranscriptData._convert_required: HGNC_ID, else Gene, else approved SYMBOL."""
        number = _hgnc_number(entry.get("HGNC_ID"))
        symbol = entry.get("SYMBOL", "")
        if number is None:
            number = hgnc.id_by_gene.get(entry.get("Gene", ""))
        if number is None and symbol:
            number = hgnc.id_by_symbol.get(symbol)
        if number is None:
            log.debug(
                "no HGNC id for %s (SYMBOL %s, Gene %s); transcript skipped",
                entry.get("Feature"),
                symbol or "N/A",
                entry.get("Gene", "N/A"),
            )
            raise _SkipTranscript
        return number

    def _transcript(self, entry: dict[str, str], hgnc: HgncTable) -> dict[str, Any]:
        hgnc_id = self._hgnc_id(entry, hgnc)
        exon = entry.get("EXON") or ""
        exon_parts = exon.split("/")
        try:
            strand = int(entry.get("STRAND") or "")
        except ValueError:
            log.debug("no STRAND for %s; transcript skipped", entry.get("Feature"))
            raise _SkipTranscript from None
        data: dict[str, Any] = {
            "transcript": entry["Feature"],
            "hgnc_id": hgnc_id,
            "is_canonical": entry.get("CANONICAL") == "YES",
            "in_last_exon": "yes" if len(exon_parts) == 2 and exon_parts[0] == exon_parts[1] else "no",
            "strand": strand,
            "consequences": sorted(entry["Consequence"].split("&")) if entry.get("Consequence") else [],
        }
        symbol = entry.get("SYMBOL") or hgnc.symbol_by_id.get(hgnc_id)
        if symbol:
            data["symbol"] = symbol
        for key, target in (
            ("Amino_acids", "amino_acids"),
            ("EXON", "exon"),
            ("INTRON", "intron"),
            ("Codons", "codons"),
        ):
            if entry.get(key):
                data[target] = entry[key]
        if entry.get("Existing_variation"):
            data["dbsnp"] = [
                ident for ident in entry["Existing_variation"].split("&") if ident.startswith("rs")
            ]
        data["exon_distance"] = data["coding_region_distance"] = None
        if entry.get("HGVSc"):
            hgvsc = entry["HGVSc"].split(":", 1)[-1]
            data["HGVSc"] = hgvsc
            data["HGVSc_short"], insertion = short_hgvsc(hgvsc)
            if insertion is not None:
                data["HGVSc_insertion"] = insertion
            data["exon_distance"], data["coding_region_distance"] = hgvsc_distances(hgvsc)
        if entry.get("HGVSp") and ":" in entry["HGVSp"]:
            data["protein"], data["HGVSp"] = entry["HGVSp"].split(":", 1)
        return data

    def _keep_incoming(
        self, existing_source: str | None, incoming_source: str | None, transcript: str
    ) -> bool:
        if existing_source not in REFSEQ_SOURCE_PRIORITY or incoming_source not in REFSEQ_SOURCE_PRIORITY:
            raise self.context.value_error(
                transcript,
                f"transcript listed twice with SOURCE {existing_source!r} and {incoming_source!r}",
                expected=f"duplicates only from sources {', '.join(REFSEQ_SOURCE_PRIORITY)}",
            )
        return REFSEQ_SOURCE_PRIORITY.index(incoming_source) < REFSEQ_SOURCE_PRIORITY.index(existing_source)

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        if not isinstance(value, str):
            return []
        entries = [
            entry
            for entry in self._entries(value)
            if entry.get("Feature_type") == "Transcript"
            and entry.get("Feature", "").startswith(TRANSCRIPT_PREFIXES)
        ]
        hgnc = self.hgnc or load_hgnc_table()
        by_name: dict[str, tuple[str | None, dict[str, Any]]] = {}
        for entry in entries:
            try:
                transcript = self._transcript(entry, hgnc)
            except _SkipTranscript:
                continue
            name, source = transcript["transcript"], entry.get("SOURCE")
            if name in by_name and not self._keep_incoming(by_name[name][0], source, name):
                continue
            by_name[name] = (source, transcript)
        return [by_name[name][1] for name in sorted(by_name)]
