"""ELLA's pedigree file and its rules for the samples of one VCF.

ELLA's PED (``vardb.deposit.importers.SampleImporter.parse_ped``) is tab-separated with seven
columns: family, sample, father, mother, sex (1 male, 2 female, else unknown), affected
(2 = affected) and proband (1 = proband). ``#`` lines are comments; ``0`` means no parent.
"""

from __future__ import annotations

from pathlib import Path

from engine.deposit.specs import SampleRecord
from engine.errors import InputError

PED_COLUMNS = ("family", "sample", "father", "mother", "sex", "affected", "proband")
TECHNOLOGIES = ("HTS", "Sanger")
_SEX = {"1": "Male", "2": "Female"}
_NO_PARENT = ("", "0")


def read_ped(path: Path) -> list[SampleRecord]:
    """Parse an ELLA PED file; errors name the line and the expected columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError("PED file not found", file=str(path), expected="an existing .ped file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("PED file is not UTF-8 text", file=str(path), expected="UTF-8 text") from exc
    records: list[SampleRecord] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("#") or not raw.strip():
            continue
        record = _ped_line(path, number, raw)
        if record.identifier in seen:
            raise InputError(
                f"sample {record.identifier!r} is listed twice (first on line {seen[record.identifier]})",
                file=str(path),
                line=number,
                expected="one line per sample",
            )
        seen[record.identifier] = number
        records.append(record)
    if not records:
        raise InputError("PED file has no samples", file=str(path), expected="one line per sample")
    return records


def _ped_line(path: Path, number: int, raw: str) -> SampleRecord:
    columns = [c.strip() for c in raw.split("\t")]
    if len(columns) != len(PED_COLUMNS):
        raise InputError(
            f"{len(columns)} tab-separated columns",
            file=str(path),
            line=number,
            expected="7 tab-separated columns: " + " ".join(PED_COLUMNS),
        )
    family, sample, father, mother, sex, affected, proband = columns
    for name, value in (("family", family), ("sample", sample)):
        if not value:
            raise InputError(f"empty {name} id", file=str(path), line=number, expected=f"a {name} id")
    for role, parent in (("father", father), ("mother", mother)):
        if parent == sample:
            raise InputError(
                f"sample {sample!r} is its own {role}",
                file=str(path),
                line=number,
                expected=f"a {role} id other than the sample's own, or 0",
            )
    if father == mother and father not in _NO_PARENT:
        raise InputError(
            f"sample {sample!r} has {father!r} as both father and mother",
            file=str(path),
            line=number,
            expected="two different parents",
        )
    return SampleRecord(
        identifier=sample,
        affected=affected == "2",
        proband=proband == "1",
        sex=_SEX.get(sex),
        family_id=family,
        father_identifier=None if father in _NO_PARENT else father,
        mother_identifier=None if mother in _NO_PARENT else mother,
    )


def resolve_samples(
    vcf_path: Path, vcf_sample_ids: list[str], ped: Path | None, technology: str
) -> list[SampleRecord]:
    """The analysis' samples for one VCF, in VCF column order, checked by ELLA's rules.

    PED lines of samples that are not columns of the VCF are ignored (ELLA's
    ``SampleImporter.process``), unless such a sample is named as a parent: an error.
    """
    if technology not in TECHNOLOGIES:
        raise InputError(f"technology {technology!r}", file=str(vcf_path), expected=" or ".join(TECHNOLOGIES))
    if not vcf_sample_ids:
        raise InputError(
            "VCF has no sample columns", file=str(vcf_path), expected="at least the proband's column"
        )
    if ped is None:
        if len(vcf_sample_ids) > 1:
            raise InputError(
                f"VCF has {len(vcf_sample_ids)} samples {vcf_sample_ids} but no PED file",
                file=str(vcf_path),
                expected="a .ped file naming the proband of a multi-sample VCF",
            )
        return [
            SampleRecord(identifier=vcf_sample_ids[0], affected=True, proband=True, sample_type=technology)
        ]

    by_id = {r.identifier: r for r in read_ped(ped)}
    _check_same_samples(vcf_path, vcf_sample_ids, ped, by_id)
    samples = [by_id[s] for s in vcf_sample_ids]
    for sample in samples:
        sample.sample_type = technology
    _check_family(ped, samples)
    _assign_siblings(samples)
    return samples


def _check_same_samples(
    vcf_path: Path, vcf_ids: list[str], ped: Path, by_id: dict[str, SampleRecord]
) -> None:
    # ELLA's SampleImporter.process reads only the PED lines of the VCF's samples: other PED
    # samples (a sibling not sequenced, ...) are ignored, unless named as a parent (_check_family).
    not_in_ped = [s for s in vcf_ids if s not in by_id]
    if not_in_ped:
        raise InputError(
            f"VCF samples {not_in_ped} are not in the PED file {ped}",
            file=str(vcf_path),
            expected=f"every VCF sample in the PED file (PED has {sorted(by_id)})",
        )


def _line_of_sample(ped: Path, identifier: str) -> int | None:
    for number, raw in enumerate(ped.read_text(encoding="utf-8").splitlines(), 1):
        columns = raw.split()
        if len(columns) > 1 and columns[1] == identifier:
            return number
    return None


def _check_family(ped: Path, samples: list[SampleRecord]) -> None:
    probands = [s.identifier for s in samples if s.proband]
    if len(probands) != 1:
        raise InputError(
            f"{len(probands)} probands {probands}",
            file=str(ped),
            expected="exactly one sample with proband = 1",
        )
    families = sorted({s.family_id or "" for s in samples})
    if len(families) != 1:
        raise InputError(f"several families {families}", file=str(ped), expected="one family id")
    ids = {s.identifier for s in samples}
    for role in ("father", "mother"):
        parents: set[str] = {p for s in samples if (p := getattr(s, f"{role}_identifier"))}
        if len(parents) > 1:
            raise InputError(
                f"more than one {role}: {sorted(parents)}",
                file=str(ped),
                expected=f"at most one {role} in an analysis' family",
            )
        unknown = parents - ids
        if unknown:
            raise InputError(
                f"{role} {sorted(unknown)} is not a sample of the VCF",
                file=str(ped),
                line=_line_of_sample(ped, sorted(unknown)[0]),
                expected=f"the {role} id to be a sample in the PED and VCF, or 0",
            )


def _assign_siblings(samples: list[SampleRecord]) -> None:
    """ELLA: without any parent links every non-proband is the proband's sibling; otherwise the
    non-probands with the proband's father and mother are."""
    proband = next(s for s in samples if s.proband)
    has_parents = any(s.father_identifier or s.mother_identifier for s in samples)
    for sample in samples:
        if sample.proband:
            continue
        same_parents = (
            sample.father_identifier == proband.father_identifier
            and sample.mother_identifier == proband.mother_identifier
        )
        if not has_parents or same_parents:
            sample.sibling_identifier = proband.identifier
