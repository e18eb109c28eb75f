"""ELLA's PED format and its sample rules (importers.SampleImporter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.deposit.ped import read_ped, resolve_samples
from engine.deposit.specs import SampleRecord
from engine.errors import InputError

DATA = Path(__file__).parent / "data"
TRIO_PED = DATA / "analyses" / "TestAnalysis-001" / "TestAnalysis-001.ped"
TRIO_IDS = ["TestSample-001", "TestSample-002", "TestSample-003"]


def write_ped(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "family.ped"
    path.write_text("".join(row.replace(" ", "\t") + "\n" for row in rows))
    return path


def test_read_ella_trio_ped() -> None:
    assert read_ped(TRIO_PED) == [
        SampleRecord(
            "TestSample-001",
            affected=True,
            proband=True,
            sex="Male",
            family_id="TestFam",
            father_identifier="TestSample-002",
            mother_identifier="TestSample-003",
        ),
        SampleRecord("TestSample-002", affected=False, proband=False, sex="Male", family_id="TestFam"),
        SampleRecord("TestSample-003", affected=False, proband=False, sex="Female", family_id="TestFam"),
    ]


def test_trio_resolves_parents_without_siblings() -> None:
    samples = resolve_samples(Path("trio.vcf"), TRIO_IDS, TRIO_PED, "HTS")
    assert [s.identifier for s in samples] == TRIO_IDS
    proband = samples[0]
    assert (proband.proband, proband.affected) == (True, True)
    assert (proband.father_identifier, proband.mother_identifier) == ("TestSample-002", "TestSample-003")
    assert [s.sibling_identifier for s in samples] == [None, None, None]
    assert {s.sample_type for s in samples} == {"HTS"}


def test_vcf_order_wins_over_ped_order() -> None:
    samples = resolve_samples(Path("trio.vcf"), list(reversed(TRIO_IDS)), TRIO_PED, "Sanger")
    assert [s.identifier for s in samples] == list(reversed(TRIO_IDS))
    assert {s.sample_type for s in samples} == {"Sanger"}


def test_siblings_share_the_probands_parents(tmp_path: Path) -> None:
    ped = write_ped(
        tmp_path,
        "F P Dad Mum 2 2 1",
        "F Sib Dad Mum 1 1 0",
        "F Half Dad 0 1 1 0",
        "F Dad 0 0 1 1 0",
        "F Mum 0 0 2 1 0",
    )
    samples = {
        s.identifier: s
        for s in resolve_samples(Path("x.vcf"), ["P", "Sib", "Half", "Dad", "Mum"], ped, "HTS")
    }
    assert samples["Sib"].sibling_identifier == "P"
    assert samples["Half"].sibling_identifier is None  # different mother
    assert samples["Dad"].sibling_identifier is None
    assert samples["P"].sibling_identifier is None
    assert samples["P"].sex == "Female" and samples["Sib"].sex == "Male"


def test_without_parents_every_other_sample_is_a_sibling(tmp_path: Path) -> None:
    ped = write_ped(tmp_path, "F P 0 0 1 2 1", "F S1 0 0 2 1 0", "F S2 0 0 0 2 0")
    samples = resolve_samples(Path("x.vcf"), ["P", "S1", "S2"], ped, "HTS")
    assert [s.sibling_identifier for s in samples] == [None, "P", "P"]
    assert samples[2].sex is None and samples[2].affected is True


def test_single_sample_without_ped_is_affected_proband() -> None:
    (sample,) = resolve_samples(Path("single.vcf"), ["S1"], None, "HTS")
    assert sample == SampleRecord("S1", affected=True, proband=True, sample_type="HTS")


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "c.ped"
    path.write_text("#family\tsample\n\nF\tP\t0\t0\t1\t2\t1\n")
    assert [s.identifier for s in read_ped(path)] == ["P"]


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        (["F P 0 0 1 2 1", "F S 0 0 1 2"], 2, "6 tab-separated columns"),
        (["F P 0 0 1 2 1 extra"], 1, "8 tab-separated columns"),
        (["F P 0 0 1 2 1", " S 0 0 1 1 0"], 2, "empty family id"),
        (["F P 0 0 1 2 1", "F P 0 0 1 1 0"], 2, "listed twice (first on line 1)"),
    ],
)
def test_ped_line_errors(tmp_path: Path, rows: list[str], line: int, fragment: str) -> None:
    ped = write_ped(tmp_path, *rows)
    with pytest.raises(InputError) as caught:
        read_ped(ped)
    assert caught.value.file == str(ped)
    assert caught.value.line == line
    assert fragment in str(caught.value)
    assert f"{ped}:{line}:" in str(caught.value)


@pytest.mark.parametrize(
    ("rows", "vcf_ids", "fragment", "blames_ped"),
    [
        (["F P 0 0 1 2 1", "F S 0 0 1 1 1"], ["P", "S"], "2 probands ['P', 'S']", True),
        (["F P 0 0 1 2 0", "F S 0 0 1 1 0"], ["P", "S"], "0 probands", True),
        (["F P 0 0 1 2 1", "G S 0 0 1 1 0"], ["P", "S"], "several families", True),
        (["F P 0 0 1 2 1"], ["P", "S"], "VCF samples ['S'] are not in the PED", False),
        # a PED sample absent from the VCF named as a parent: ELLA fails too (next() finds no row)
        (["F P D 0 1 2 1", "F D 0 0 1 1 0"], ["P"], "father ['D'] is not a sample", True),
        (
            ["F P D1 0 1 2 1", "F S D2 0 1 1 0", "F D1 0 0 1 1 0", "F D2 0 0 1 1 0"],
            ["P", "S", "D1", "D2"],
            "more than one father",
            True,
        ),
        (["F P D 0 1 2 1", "F S 0 0 1 1 0"], ["P", "S"], "father ['D'] is not a sample", True),
    ],
)
def test_family_rule_errors(
    tmp_path: Path, rows: list[str], vcf_ids: list[str], fragment: str, blames_ped: bool
) -> None:
    ped = write_ped(tmp_path, *rows)
    with pytest.raises(InputError) as caught:
        resolve_samples(tmp_path / "x.vcf", vcf_ids, ped, "HTS")
    assert fragment in str(caught.value)
    assert caught.value.file == str(ped if blames_ped else tmp_path / "x.vcf")


def test_multi_sample_vcf_needs_a_ped() -> None:
    with pytest.raises(InputError, match=r"3 samples .* but no PED file"):
        resolve_samples(Path("trio.vcf"), TRIO_IDS, None, "HTS")


def test_unknown_technology_and_missing_ped(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="technology 'WGS'"):
        resolve_samples(Path("x.vcf"), ["S"], None, "WGS")
    with pytest.raises(InputError, match="PED file not found"):
        resolve_samples(Path("x.vcf"), ["S"], tmp_path / "missing.ped", "HTS")
    with pytest.raises(InputError, match="no sample columns"):
        resolve_samples(Path("x.vcf"), [], None, "HTS")


def test_ped_samples_absent_from_the_vcf_are_ignored(tmp_path: Path) -> None:
    # ELLA's SampleImporter.process looks up only the VCF's sample names in the PED: a listed
    # sibling who was not sequenced is ignored (ella-cases: ped-extra-sample).
    ped = write_ped(tmp_path, "F P F1 M1 1 2 1", "F F1 0 0 1 1 0", "F M1 0 0 2 1 0", "F S2 F1 M1 2 1 0")
    samples = resolve_samples(tmp_path / "x.vcf", ["P", "F1", "M1"], ped, "HTS")
    assert [s.identifier for s in samples] == ["P", "F1", "M1"]
    assert (samples[0].father_identifier, samples[0].mother_identifier) == ("F1", "M1")
    assert all(s.sibling_identifier is None for s in samples)
