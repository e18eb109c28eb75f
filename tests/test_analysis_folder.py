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
    # ELLA's legacy reader keeps only name, panel, VCF, PED, priority and dates ("type" is dropped).
    assert spec.properties == {}
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
    # ELLA's AnalysisConfigData.__init__: report/warnings are always the files' content (None
    # when absent); the .analysis keys are overwritten.
    assert spec.report is None and spec.warnings == "careful"
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
                "priority": 1.5,
            },
            "priority 1.5",
        ),
        (
            {
                "genepanel_name": "P",
                "genepanel_version": "v1",
                "data": [{"vcf": "a.vcf"}],
                "name": "A",
                "priority": 40000,
            },
            "priority 40000",
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
            {"genepanel_name": "P", "genepanel_version": "v1", "data": {"vcf": "a.vcf"}, "name": "A"},
            "'data' is dict",
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
        ({"A.analysis": json.dumps({"name": "A", "params": {"genepanel": "HBOC_v1.0.0"}})}, "no VCF file"),
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


# --- ELLA 1.17.2 rules (src/vardb/deposit/analysis_config.py: AnalysisConfigData) ------------------

MODERN = {"name": "M-1", "genepanel_name": "P", "genepanel_version": "v1", "data": [{"vcf": "a.vcf"}]}


def test_modern_date_analysis_requested_is_accepted_and_unused(tmp_path: Path) -> None:
    # ELLA's SCHEMA lists date_analysis_requested as optional; nothing reads it for a modern file.
    config = {**MODERN, "date_analysis_requested": "2023-02-01"}
    spec = load_analysis_folder(make_folder(tmp_path, "M", {"M.analysis": json.dumps(config), "a.vcf": ""}))
    assert spec.date_requested is None


def test_legacy_date_analysis_requested_wins_over_date_requested(tmp_path: Path) -> None:
    # ELLA's _init_from_legacy_analysis_file loops over (date_requested, date_analysis_requested):
    # the later key overwrites the earlier one.
    legacy = {
        "name": "L",
        "params": {"genepanel": "P_v1"},
        "date_requested": "2023-01-01",
        "date_analysis_requested": "2023-02-01",
        "type": "exome",
    }
    spec = load_analysis_folder(make_folder(tmp_path, "L", {"L.analysis": json.dumps(legacy), "L.vcf": ""}))
    assert spec.date_requested == dt.datetime(2023, 2, 1, tzinfo=dt.UTC)
    assert spec.properties == {}  # legacy extra keys (type, ...) are not kept


def test_legacy_vcf_is_the_first_vcf_in_the_folder(tmp_path: Path) -> None:
    # ELLA's __find_analysis_vcfs: sorted rglob("*.vcf*") filtered to .vcf/.vcf.gz; legacy uses [0].
    legacy = {"name": "L", "params": {"genepanel": "P_v1"}}
    folder = make_folder(
        tmp_path,
        "L",
        {
            "L.analysis": json.dumps(legacy),
            "Sample-1.HBOC.vcf.gz": "",
            "zz.vcf": "",
            "a.vcf.tbi": "",
            "L.ped": "",
        },
    )
    spec = load_analysis_folder(folder)
    pairs = [(v.path.name, v.ped.name if v.ped else None) for v in spec.vcfs]
    assert pairs == [("Sample-1.HBOC.vcf.gz", "L.ped")]


def test_modern_empty_data_is_an_analysis_without_samples(tmp_path: Path) -> None:
    # ELLA's DEFAULTS give "data": [] and import_vcf loops over no VCF: analysis, no samples.
    empty = {"M.analysis": json.dumps({**MODERN, "data": []})}
    spec = load_analysis_folder(make_folder(tmp_path, "M", empty))
    assert spec.vcfs == []


@pytest.mark.parametrize("priority", [0, 3, 4, 17, -1])
def test_any_integer_priority(tmp_path: Path, priority: int) -> None:
    # ELLA's schema: "priority": {"type": "integer"}; AnalysisInterpretationImporter.process stores it
    # on the interpretation log (none for 0).
    config = {**MODERN, "priority": priority}
    spec = load_analysis_folder(make_folder(tmp_path, "M", {"M.analysis": json.dumps(config), "a.vcf": ""}))
    assert spec.priority == priority


def test_warnings_and_report_only_from_the_files(tmp_path: Path) -> None:
    # ELLA's AnalysisConfigData.__init__ sets self["warnings"]/self["report"] from warnings.txt and
    # report.txt after reading the .analysis file: the keys never survive, absent files give None.
    config = {**MODERN, "warnings": "from the key", "report": "from the key"}
    spec = load_analysis_folder(make_folder(tmp_path, "M", {"M.analysis": json.dumps(config), "a.vcf": ""}))
    assert (spec.warnings, spec.report) == (None, None)
    folder = make_folder(tmp_path, "N", {"N.analysis": json.dumps(config), "a.vcf": "", "report.txt": "file"})
    assert (load_analysis_folder(folder).warnings, load_analysis_folder(folder).report) == (None, "file")


def test_no_analysis_file_pairs_ped_by_name_before_first_dot(tmp_path: Path) -> None:
    # ELLA's _init_from_folder: ped.stem == vcf.stem.split(".")[0].
    folder = make_folder(
        tmp_path,
        "Diag-7.PANEL_v01",
        {"Diag-7.PANEL_v01.vcf": "", "Diag-7.ped": "", "Other.x.vcf.gz": "", "Other.x.ped": ""},
    )
    spec = load_analysis_folder(folder)
    assert [(v.path.name, v.ped.name if v.ped else None) for v in spec.vcfs] == [
        ("Diag-7.PANEL_v01.vcf", "Diag-7.ped"),
        ("Other.x.vcf.gz", None),
    ]
