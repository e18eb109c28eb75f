"""Splitting a multi-allelic record into one record per ALT, as ``vt decompose -s`` does.

For the record of ALT ``i`` (vt's "smart" decomposition, which ella-anno runs):

* ``OLD_MULTIALLELIC=CHROM:POS:REF/ALT1/ALT2...`` is appended to INFO (the original alleles);
* Number=A values keep value ``i``, Number=R values keep ``[REF, i]``, Number=G values keep the
  likelihoods of the genotypes ``0/0, 0/i, i/i`` (haploid: ``0, i``); a list of the wrong length
  becomes ``.``; every other value is copied;
* GT alleles: ``0`` stays ``0``, ``i`` becomes ``1``, any other ALT becomes ``.`` and phasing is
  kept, so a ``1/2`` sample is ``1/.`` on the ALT1 record and ``./1`` on the ALT2 record. ELLA's
  importer (and ``engine.vcf.reader``) pairs those two records back into one genotype.

``*`` alleles (a deletion upstream overlaps this site) are dropped, as ella-anno does: their
records are not written and a ``*`` in a genotype is read as REF (ella-anno's
``remove_star_alleles``), e.g. ``1/*`` becomes ``1/0`` on the ALT1 record. gVCF's placeholders
``<NON_REF>`` and ``<*>`` are handled the same way (``PLACEHOLDERS``).
"""

from __future__ import annotations

import re

STAR = "*"
# gVCF's "any other allele" placeholders: GATK's <NON_REF>, DeepVariant's and bcftools' <*>. No
# variant: dropped like '*' (a reference block, whose only ALT is one, is not written at all).
PLACEHOLDERS = frozenset({STAR, "<NON_REF>", "<*>"})
_GT_SEPARATORS = re.compile(r"([/|])")


def split_record(
    fields: list[str], info_numbers: dict[str, str], format_numbers: dict[str, str]
) -> list[list[str]]:
    """One field list per ALT of ``fields`` (a full record), ``*`` ALTs left out."""
    alts = fields[4].split(",")
    n_alleles = len(alts) + 1
    stars = frozenset(i for i, alt in enumerate(alts, 1) if alt in PLACEHOLDERS)
    old = f"OLD_MULTIALLELIC={fields[0]}:{fields[1]}:{fields[3]}/{'/'.join(alts)}"
    info_items = (
        []
        if fields[7] in (".", "")
        else [item for item in fields[7].split(";") if not item.startswith("OLD_MULTIALLELIC=")]
    )
    format_keys = fields[8].split(":") if len(fields) > 8 else []
    samples = [value.split(":") for value in fields[9:]]
    records = []
    for i, alt in enumerate(alts, 1):
        if alt in PLACEHOLDERS:
            continue
        info = [_split_info_item(item, i, n_alleles, info_numbers) for item in info_items]
        info.append(old)
        record = [*fields[:4], alt, fields[5], fields[6], ";".join(info)]
        if len(fields) > 8:
            record.append(fields[8])
            record.extend(
                ":".join(_split_sample(values, format_keys, i, n_alleles, format_numbers, stars))
                for values in samples
            )
        records.append(record)
    return records


def star_to_ref(fields: list[str]) -> None:
    """For a record whose only ALT is kept: genotype alleles pointing at a ``*`` ALT become REF."""
    alts = fields[4].split(",")
    stars = frozenset(i for i, alt in enumerate(alts, 1) if alt in PLACEHOLDERS)
    if not stars or len(fields) <= 9:
        return
    keys = fields[8].split(":")
    if "GT" not in keys:
        return
    gt_index = keys.index("GT")
    for column in range(9, len(fields)):
        values = fields[column].split(":")
        if gt_index < len(values):
            values[gt_index] = _star_gt(values[gt_index], stars)
            fields[column] = ":".join(values)


def _star_gt(gt: str, stars: frozenset[int]) -> str:
    parts = _GT_SEPARATORS.split(gt)
    for k in range(0, len(parts), 2):
        if parts[k].isdigit() and int(parts[k]) in stars:
            parts[k] = "0"
    return "".join(parts)


def _split_info_item(item: str, alt: int, n_alleles: int, numbers: dict[str, str]) -> str:
    key, eq, value = item.partition("=")
    if not eq:
        return item
    number = numbers.get(key)
    if number not in ("A", "R", "G"):
        return item
    return f"{key}={_split_values(value, number, alt, n_alleles)}"


def _split_sample(
    values: list[str],
    keys: list[str],
    alt: int,
    n_alleles: int,
    numbers: dict[str, str],
    stars: frozenset[int],
) -> list[str]:
    out = list(values)
    for k, key in enumerate(keys[: len(values)]):
        if key == "GT":
            out[k] = _recode_gt(values[k], alt, stars)
            continue
        number = numbers.get(key)
        if number in ("A", "R", "G") and values[k] != ".":
            out[k] = _split_values(values[k], number, alt, n_alleles)
    return out


def _split_values(value: str, number: str, alt: int, n_alleles: int) -> str:
    parts = value.split(",")
    if number == "A":
        return parts[alt - 1] if len(parts) == n_alleles - 1 else "."
    if number == "R":
        return f"{parts[0]},{parts[alt]}" if len(parts) == n_alleles else "."
    if len(parts) == n_alleles:  # Number=G of a haploid call: one value per allele
        return f"{parts[0]},{parts[alt]}"
    if len(parts) == n_alleles * (n_alleles + 1) // 2:  # diploid: VCF genotype order j<=k -> k(k+1)/2+j
        het = alt * (alt + 1) // 2
        return f"{parts[0]},{parts[het]},{parts[het + alt]}"
    return "."


def _recode_gt(gt: str, alt: int, stars: frozenset[int]) -> str:
    parts = _GT_SEPARATORS.split(gt)
    for k in range(0, len(parts), 2):
        allele = parts[k]
        if not allele.isdigit():
            continue  # '.' stays missing
        index = int(allele)
        if index == 0 or index in stars:
            parts[k] = "0"
        else:
            parts[k] = "1" if index == alt else "."
    return "".join(parts)
