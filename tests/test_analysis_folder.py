"""Analysis folders in ELLA's three forms (analysis_config.AnalysisConfigData)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from engine.deposit.analysis_folder import load_analysis_folder
from engine.deposit.specs import VcfSpec
from engine.errors import InputError

DATA = Path(__file__).parent / "data"
TEST_ANALYSIS_001 = DATA / "analyses" / "TestAnalysis-001"
TEST_ANALYSIS_003 = DATA / "analysis_with_error" / "TestAnalysis-003"


def make_folder(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file_name, text in files.items():
        (folder / file_name).parent.mkdir(parents=True, exist_ok=True)
        (folder / file_name).write_text(text)
    return folder


def test_legacy_test_analysis_001() -> None:
    spec = load_analysis_folder(TEST_ANALYSIS_001)
    folder = TEST_ANALYSIS_001.absolute()
    assert (spec.name, spec.genepanel_name, spec.genepanel_version) == ("TestAnalysis-001", "HBOC", "v1.0.0")
    assert spec.priority == 1 and spec.date_requested is None
    assert spec.properties == {"type": "exome"}
    assert spec.vcfs == [
        VcfSpec(
            path=folder / "TestAnalysis-001.vcf",
            ped=folder / "TestAnalysis-001.ped",
            technology="HTS",
            caller_name=None,
        )
    ]
    assert spec.report == "Report:\n\n    This is the analysis report"
    assert spec.warnings == "Warnings:\n    \n    These are all the accumulated warnings."
    assert spec.folder == folder


def test_legacy_without_name_is_rejected_like_ella() -> None:
    with pytest.raises(InputError) as caught:
        load_analysis_folder(TEST_ANALYSIS_003)
    assert str(caught.value.file).endswith("TestAnalysis-003.analysis")
    assert "'name' is missing" in str(caught.value)


def test_legacy_priority_string_date_and_no_ped(tmp_path: Path) -> None:
    legacy = {
        "name": "A1",
        "params": {"genepanel": "Mendel_v02"},
        "priority": "3",
        "date_requested": "2024-02-29",
    }
    folder = make_folder(tmp_path, "A1", {"A1.analysis": json.dumps(legacy), "A1.vcf": ""})
    spec = load_analysis_folder(folder)
    assert (spec.genepanel_name, spec.genepanel_version, spec.priority) == ("Mendel", "v02", 3)
    assert spec.date_requested == dt.datetime(2024, 2, 29, tzinfo=dt.UTC)
    assert spec.vcfs[0].ped is None
    assert spec.report is None and spec.warnings is None


def test_modern_analysis_with_several_vcfs(tmp_path: Path) -> None:
    config = {
        "name": "Fam-7",
        "genepanel_name": "Cardio",
        "genepanel_version": "v3",
        "priority": 2,
        "date_requested": "2023-05-17",
        "report": "inline report",
        "data": [
            {"vcf": "trio.vcf", "ped": "trio.ped", "technology": "HTS", "callerName": "gatk"},
            {"vcf": "sanger.vcf", "technology": "Sanger"},
            {"vcf": "cnv.vcf.gz", "ped": None},
        ],
    }
    folder = make_folder(
        tmp_path,
        "whatever",
        {
            "x.analysis": json.dumps(config),
            "trio.vcf": "",
            "trio.ped": "",
            "sanger.vcf": "",
            "cnv.vcf.gz": "",
            "warnings.txt": "careful",
        },
    )
    spec = load_analysis_folder(folder)
    assert (spec.name, spec.genepanel_name, spec.genepanel_version, spec.priority) == (
        "Fam-7",
        "Cardio",
        "v3",
        2,
    )
    assert spec.date_requested == dt.datetime(2023, 5, 17, tzinfo=dt.UTC)
    assert spec.report == "inline report" and spec.warnings == "careful"
    assert spec.vcfs == [
        VcfSpec(folder / "trio.vcf", folder / "trio.ped", "HTS", "gatk"),
        VcfSpec(folder / "sanger.vcf", None, "Sanger", None),
        VcfSpec(folder / "cnv.vcf.gz", None, "HTS", None),
    ]


def test_folder_name_form_pairs_vcfs_with_peds(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path,
        "HG002-Trio.Mendeliome_v01",
        {
            "b.vcf": "",
            "b.ped": "",
            "a.vcf.gz": "",
            "a.ped": "",
            "sub/c.vcf": "",
            "report.txt": "r",
        },
    )
    spec = load_analysis_folder(folder)
    assert (spec.name, spec.genepanel_name, spec.genepanel_version) == (
        "HG002-Trio.Mendeliome_v01",
        "Mendeliome",
        "v01",
    )
    assert spec.priority == 1 and spec.report == "r"
    assert [(v.path.name, v.ped.name if v.ped else None) for v in spec.vcfs] == [
        ("a.vcf.gz", "a.ped"),
        ("b.vcf", "b.ped"),
        ("c.vcf", None),
    ]


@pytest.mark.parametrize(
    ("folder_name", "expected"),
    [
        ("Diag-excap01-123456789-EEogPU-v02", ("EEogPU", "v02")),
        ("sample.HBOC_v1.0.0", ("HBOC", "v1.0.0")),
        ("a-b-c_d", ("c", "d")),  # greedy: the split is at the last possible separator
    ],
)
def test_folder_name_rule(tmp_path: Path, folder_name: str, expected: tuple[str, str]) -> None:
    spec = load_analysis_folder(make_folder(tmp_path, folder_name, {"x.vcf": ""}))
    assert (spec.genepanel_name, spec.genepanel_version) == expected
    assert spec.name == folder_name


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path, "A", {"A.analysis": '{\n  "name": "A",\n  "priority": 1,,\n}\n', "A.vcf": ""}
    )
    with pytest.raises(InputError) as caught:
        load_analysis_folder(folder)
    assert caught.value.file == str(folder / "A.analysis")
    assert caught.value.line == 3
    assert "column 17" in str(caught.value)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (
            {
                "genepanel_name": "P",
                "genepanel_version": "v1",
                "data": [{"vcf": "a.vcf"}],
                "name": "A",
                "colour": 1,
            },
            "unknown keys ['colour']",
        ),
        (
            {
                "genepanel_name": "P",
                "genepanel_version": "v1",
                "data": [{"vcf": "a.vcf", "pedigree": "x"}],
                "name": "A",
            },
            "data[0] has unknown keys ['pedigree']",
        ),
        (
            {"genepanel_name": "P", "genepanel_version": "v1", "data": [{"vcf": "missing.vcf"}], "name": "A"},
            "data[0].vcf file 'missing.vcf' does not exist",
        ),
        (
            {
                "genepanel_name": "P",
                "genepanel_version": "v1",
                "data": [{"vcf": "a.vcf", "ped": "gone.ped"}],
                "name": "A",
            },
            "data[0].ped file 'gone.ped' does not exist",
        ),
        (
            {
                "genepanel_name": "P",
                "genepanel_version": "v1",
                "data": [{"vcf": "a.vcf"}],
                "name": "A",
                "priority": 4,
            },
            "priority 4",
        ),
        (
            {
                "genepanel_name": "P",
                "genepanel_version": "v1",
                "data": [{"vcf": "a.vcf", "technology": "WGS"}],
                "name": "A",
            },
            "data[0].technology is 'WGS'",
        ),
        (
            {"genepanel_name": "P", "genepanel_version": "v1", "data": [], "name": "A"},
            "'data' is missing or empty",
        ),
        ({"genepanel_name": "P", "data": [{"vcf": "a.vcf"}], "name": "A"}, "'genepanel_version' is missing"),
        (
            {
                "genepanel_name": "P",
                "genepanel_version": "v1",
                "data": [{"vcf": "a.vcf"}],
                "name": "A",
                "date_requested": "yesterday",
            },
            "date_requested 'yesterday'",
        ),
    ],
)
def test_modern_config_errors(tmp_path: Path, config: dict, fragment: str) -> None:
    folder = make_folder(tmp_path, "A", {"A.analysis": json.dumps(config), "a.vcf": ""})
    with pytest.raises(InputError) as caught:
        load_analysis_folder(folder)
    assert fragment in str(caught.value)
    assert caught.value.file == str(folder / "A.analysis")
    assert caught.value.expected


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"A.analysis": json.dumps({"name": "A", "params": {"genepanel": "HBOC_v1.0.0"}})}, "the VCF file"),
        (
            {"A.analysis": json.dumps({"name": "A", "params": {"genepanel": "HBOCv1"}}), "A.vcf": ""},
            "params.genepanel is 'HBOCv1'",
        ),
        ({"A.analysis": "{}", "B.analysis": "{}"}, "several .analysis files"),
    ],
)
def test_legacy_and_folder_errors(tmp_path: Path, files: dict[str, str], fragment: str) -> None:
    with pytest.raises(InputError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        load_analysis_folder(make_folder(tmp_path, "A", files))


def test_folder_without_analysis_file_needs_panel_in_name_and_a_vcf(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not name a gene panel"):
        load_analysis_folder(make_folder(tmp_path, "plainname", {"x.vcf": ""}))
    with pytest.raises(InputError, match="no VCF file"):
        load_analysis_folder(make_folder(tmp_path, "s.P_v1", {"x.txt": ""}))
    with pytest.raises(InputError, match="analysis folder not found"):
        load_analysis_folder(tmp_path / "nope")


def test_copy_of_test_analysis_keeps_working(tmp_path: Path) -> None:
    copy = tmp_path / "TestAnalysis-001"
    shutil.copytree(TEST_ANALYSIS_001, copy)
    (copy / "report.txt").unlink()
    spec = load_analysis_folder(copy)
    assert spec.report is None and spec.vcfs[0].path == copy / "TestAnalysis-001.vcf"
