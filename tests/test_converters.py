"""Converters configured like ELLA's annotation config ``deposit`` section, on handcrafted INFO."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from engine.deposit.converters import build_annotation_builder, validate_annotation
from engine.errors import AnnotationConfigError, AnnotationValueError, InputError


def config(name: str, *elements: dict[str, Any]) -> dict[str, Any]:
    return {"deposit": [{"name": name, "converter_config": {"elements": list(elements)}}], "view": []}


def b16(data: Any) -> str:
    return base64.b16encode(json.dumps(data).encode()).decode()


NO_HEADER: dict[str, dict[str, str]] = {}


# --- keyvalue -----------------------------------------------------------------------------------


def test_keyvalue_casts_and_splits() -> None:
    build = build_annotation_builder(
        config(
            "keyvalue",
            {"source": "AC", "target": "frequencies.DB.count.G", "target_type": "int"},
            {"source": "AF", "target": "frequencies.DB.freq.G", "target_type": "float"},
            {"source": "FILT", "target": "frequencies.DB.filter.G", "target_type": "string", "split": "|"},
            {"source": "OK", "target": "flags.ok", "target_type": "bool"},
            {"source": "HOM", "target": "frequencies.DB.hom.G", "target_type": "int", "split": ","},
        ),
        NO_HEADER,
    )
    doc = build({"AC": "12", "AF": "0.25", "FILT": "PASS|AC0", "OK": True, "HOM": "1,2", "OTHER": "x"})
    assert doc == {
        "frequencies": {
            "DB": {
                "count": {"G": 12},
                "freq": {"G": 0.25},
                "filter": {"G": ["PASS", "AC0"]},
                "hom": {"G": [1, 2]},
            }
        },
        "flags": {"ok": True},
    }


def test_keyvalue_identity_types_by_header() -> None:
    header = {
        "CODON": {"Number": ".", "Type": "Integer", "Description": "x"},
        "SCORES": {"Number": "A", "Type": "Float", "Description": "x"},
        "NAME": {"Number": "1", "Type": "String", "Description": "x"},
    }
    build = build_annotation_builder(
        config(
            "keyvalue",
            {"source": "CODON", "target": "a.codon"},
            {"source": "SCORES", "target": "a.scores"},
            {"source": "NAME", "target": "a.name"},
        ),
        header,
    )
    assert build({"CODON": "4", "SCORES": "0.5,1.5", "NAME": "x,y"}) == {
        "a": {"codon": 4, "scores": [0.5, 1.5], "name": "x,y"}
    }


def test_keyvalue_failed_cast_throws_or_skips() -> None:
    strict = build_annotation_builder(
        config("keyvalue", {"source": "HEMI", "target": "f.hemi", "target_type": "int"}), NO_HEADER
    )
    with pytest.raises(AnnotationValueError, match=r"INFO HEMI='n/a': cannot convert to int"):
        strict({"HEMI": "n/a"})
    lenient = build_annotation_builder(
        config(
            "keyvalue",
            {"source": "HEMI", "target": "f.hemi", "target_type": "int", "target_type_throw": False},
            {"source": "AC", "target": "f.ac", "target_type": "int"},
        ),
        NO_HEADER,
    )
    assert lenient({"HEMI": "n/a"}) is None
    assert lenient({"HEMI": "n/a", "AC": "3"}) == {"f": {"ac": 3}}


def test_missing_values_produce_nothing_and_dot_is_stored_as_ella_does() -> None:
    # ELLA reads INFO with cyvcf2: Integer/Float '.' is None, String '.' is ".", and its
    # KeyValueConverter stores what the cast gives (identity: None -> null, "." -> ".").
    header = {"AC": {"Number": "1", "Type": "Integer"}, "NOTE": {"Number": "1", "Type": "String"}}
    build = build_annotation_builder(
        config(
            "keyvalue",
            {"source": "AC", "target": "x", "target_type": "int"},
            {"source": "NOTE", "target": "note"},
        ),
        header,
    )
    assert build({}) is None
    assert build({"OTHER": "1"}) is None
    assert build({"AC": ""}) is None
    # int(None) fails in ELLA (the import is rejected); Annostream stores null (lenient)
    assert build({"AC": "."}) == {"x": None}
    assert build({"NOTE": "."}) == {"note": "."}


# --- json / clinvarjson -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("base16", base64.b16encode), ("base32", base64.b32encode), ("base64", base64.b64encode)],
)
def test_json_encodings_and_subpath(encoding: str, encode: Any) -> None:
    raw = encode(json.dumps({"foo": 1, "bar": {"baz": [1, 2]}}).encode()).decode()
    build = build_annotation_builder(
        config(
            "json",
            {"source": "MYJSON", "target": "PATH.TO.TARGET", "encoding": encoding},
            {"source": "MYJSON", "target": "sub", "encoding": encoding, "subpath": "bar.baz"},
        ),
        NO_HEADER,
    )
    assert build({"MYJSON": raw}) == {
        "PATH": {"TO": {"TARGET": {"foo": 1, "bar": {"baz": [1, 2]}}}},
        "sub": [1, 2],
    }


def test_json_default_is_base16_and_bad_text_is_named() -> None:
    build = build_annotation_builder(config("json", {"source": "J", "target": "t"}), NO_HEADER)
    assert build({"J": "7B22666F6F223A20312C2022626172223A20327D"}) == {"t": {"foo": 1, "bar": 2}}
    with pytest.raises(AnnotationValueError, match=r"INFO J='nothex': not base16-encoded JSON"):
        build({"J": "nothex"})


CLINVAR_V1_INCOMING = {
    "variant_description": "criteria provided, single submitter",
    "variant_id": 1234,
    "rcvs": {
        "RCV0001": {
            "traitnames": ["Breast cancer", "Ovarian cancer"],
            "clinical_significance_descr": ["Pathogenic"],
            "variant_id": ["1234"],
            "submitter": ["Lab A"],
            "last_evaluated": ["2019-01-01"],
        }
    },
    "pubmed_ids": [111, "222"],
}


def test_clinvarjson_flattens_v1_and_validates() -> None:
    build = build_annotation_builder(
        config("clinvarjson", {"source": "CLINVARJSON", "target": "external.CLINVAR", "encoding": "base16"}),
        NO_HEADER,
        validate=True,
    )
    assert build({"CLINVARJSON": b16(CLINVAR_V1_INCOMING)}) == {
        "external": {
            "CLINVAR": {
                "variant_description": "criteria provided, single submitter",
                "variant_id": 1234,
                "items": [
                    {
                        "rcv": "RCV0001",
                        "traitnames": "Breast cancer, Ovarian cancer",
                        "clinical_significance_descr": "Pathogenic",
                        "variant_id": "1234",
                        "submitter": "Lab A",
                        "last_evaluated": "2019-01-01",
                    }
                ],
            }
        }
    }
    already_flat = {"variant_description": "x", "variant_id": "N/A", "items": []}
    assert build({"CLINVARJSON": b16(already_flat)}) == {"external": {"CLINVAR": already_flat}}


# --- mapping / meta -----------------------------------------------------------------------------


def test_mapping_with_value_types() -> None:
    build = build_annotation_builder(
        config(
            "mapping",
            {"source": "IND", "target": "frequencies.inDB.indications.X", "target_type": "string"},
            {
                "source": "NUMS",
                "target": "n",
                "item_separator": ";",
                "keyvalue_separator": "=",
                "value_target_type": "int",
            },
        ),
        NO_HEADER,
    )
    assert build({"IND": "foo:1,bar:2", "NUMS": "a=1;b=2"}) == {
        "frequencies": {"inDB": {"indications": {"X": {"foo": "1", "bar": "2"}}}},
        "n": {"a": 1, "b": 2},
    }
    with pytest.raises(AnnotationValueError, match="item 'b' has no ':'"):
        build({"IND": "a:1,b"})


def test_meta_uses_header_keys() -> None:
    header = {"DABLA": {"Number": ".", "Type": "String", "Description": "Values. Format: foo|bar|skip"}}
    sub = [{"source": "foo", "target_type": "int"}, {"source": "bar", "target_type": "float"}]
    build = build_annotation_builder(
        config(
            "meta",
            {"source": "DABLA", "target": "PATH.one", "subelements": sub},
            {"source": "DABLA", "target": "PATH.many", "subelements": sub, "list_separator": ","},
        ),
        header,
    )
    assert build({"DABLA": "1|2.5|x"}) == {
        "PATH": {"one": {"foo": 1, "bar": 2.5}, "many": [{"foo": 1, "bar": 2.5}]}
    }
    assert build({"DABLA": "1|2|x,3|4|y"})["PATH"]["many"] == [{"foo": 1, "bar": 2.0}, {"foo": 3, "bar": 4.0}]


def test_meta_subelement_not_in_header_is_config_error() -> None:
    header = {"DABLA": {"Number": ".", "Type": "String", "Description": "Format: foo|bar"}}
    with pytest.raises(
        AnnotationConfigError, match=r"deposit\[0\] \(meta\) element 0 \(source DABLA\).*nope"
    ):
        build_annotation_builder(
            config("meta", {"source": "DABLA", "target": "x", "subelements": [{"source": "nope"}]}), header
        )


# --- HGMD and references ------------------------------------------------------------------------

EXTRAREFS_HEADER = {
    "HGMD__extrarefs": {
        "Number": ".",
        "Type": "String",
        "Description": "Format: (pmid|title|author|fullname|year|vol|issue|page|reftag|gene|disease"
        "|comments). Source: x",
    }
}

HGMD_CONFIG = {
    "deposit": [
        {
            "name": "hgmdprimaryreport",
            "converter_config": {
                "elements": [
                    {
                        "source": "HGMD__pmid",
                        "additional_sources": ["HGMD__comments"],
                        "target": "references",
                        "target_mode": "extend",
                    }
                ]
            },
        },
        {
            "name": "hgmdextrarefs",
            "converter_config": {
                "elements": [{"source": "HGMD__extrarefs", "target": "references", "target_mode": "extend"}]
            },
        },
        {
            "name": "clinvarreferences",
            "converter_config": {
                "elements": [{"source": "CLINVARJSON", "target": "references", "target_mode": "extend"}]
            },
        },
        {
            "name": "hgmd",
            "converter_config": {
                "elements": [
                    {
                        "source": "HGMD__acc_num",
                        "additional_sources": ["HGMD__disease", "HGMD__tag"],
                        "target": "external.HGMD",
                    }
                ]
            },
        },
    ],
    "view": [],
}


def test_references_from_hgmd_and_clinvar_in_config_order() -> None:
    build = build_annotation_builder(HGMD_CONFIG, EXTRAREFS_HEADER, validate=True)
    info = {
        "CLINVARJSON": b16(CLINVAR_V1_INCOMING),
        "HGMD__acc_num": "CM1",
        "HGMD__disease": "Breast@#SPcancer@#CMfamilial",
        "HGMD__tag": "DM",
        "HGMD__pmid": "8589730",
        "HGMD__comments": "aka@#SP279delAC",
        "HGMD__extrarefs": "1|T|A|F|2008|14||875|FCR|BRCA2||,2|T|A|F|2008|||1|APR|BRCA2|Fanconi@#SPanemia|,"
        "x|T|A|F|2008|||1|SAR|BRCA2||,3|T|A|F|2008|||1|XXX|BRCA2||note",
    }
    # ELLA's AnnotationImporter._extract_annotation_from_record: references sorted by pubmed_id
    # (the config order only decides ties).
    assert build(info) == {
        "references": [
            {"pubmed_id": 1, "source": "HGMD", "source_info": "Functional characterisation. No comments."},
            {"pubmed_id": 2, "source": "HGMD", "source_info": "Additional phenotype. Fanconi anemia"},
            {"pubmed_id": 3, "source": "HGMD", "source_info": "Reftag not specified. note"},
            {"pubmed_id": 111, "source": "CLINVAR", "source_info": ""},
            {"pubmed_id": 222, "source": "CLINVAR", "source_info": ""},
            {
                "pubmed_id": 8589730,
                "source": "HGMD",
                "source_info": "Primary literature report. aka 279delAC",
            },
        ],
        "external": {"HGMD": {"acc_num": "CM1", "disease": "Breast cancer,familial", "tag": "DM"}},
    }


def test_hgmd_primary_report_without_comments() -> None:
    build = build_annotation_builder(HGMD_CONFIG, EXTRAREFS_HEADER)
    assert build({"HGMD__pmid": "17453335", "HGMD__comments": "None"}) == {
        "references": [
            {
                "pubmed_id": 17453335,
                "source": "HGMD",
                "source_info": "Primary literature report. No comments.",
            }
        ]
    }


def test_extrarefs_without_header_is_skipped_not_guessed() -> None:
    build = build_annotation_builder(HGMD_CONFIG, NO_HEADER)
    assert build({"HGMD__extrarefs": "1|T|A|F|2008|14||875|FCR|BRCA2||"}) is None


# --- config errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deposit", "message"),
    [
        (
            [{"name": "nosuch", "converter_config": {"elements": [{"source": "A", "target": "a"}]}}],
            r"deposit\[0\]: unknown converter 'nosuch'",
        ),
        (
            [
                {
                    "name": "keyvalue",
                    "converter_config": {
                        "elements": [{"source": "A", "target": "a", "target_type": "integer"}]
                    },
                }
            ],
            r"deposit\[0\] \(keyvalue\) element 0 \(source A\): option 'target_type' is 'integer'",
        ),
        (
            [
                {
                    "name": "keyvalue",
                    "converter_config": {
                        "elements": [
                            {"source": "A", "target": "a"},
                            {"source": "B", "target": "b", "spilt": ","},
                        ]
                    },
                }
            ],
            r"deposit\[0\] \(keyvalue\) element 1 \(source B\): unknown option\(s\) spilt",
        ),
        (
            [
                {
                    "name": "json",
                    "converter_config": {"elements": [{"source": "A", "target": "a", "encoding": "hex"}]},
                }
            ],
            r"option 'encoding' is 'hex'",
        ),
        (
            [
                {
                    "name": "keyvalue",
                    "converter_config": {
                        "elements": [{"source": "A", "target": "a", "target_type_throw": "no"}]
                    },
                }
            ],
            r"option 'target_type_throw' is 'no'",
        ),
        (
            [
                {"name": "keyvalue", "converter_config": {"elements": [{"source": "A", "target": "a"}]}},
                {"name": "keyvalue", "converter_config": {"elements": [{"source": "B", "target": "a.b"}]}},
            ],
            r"deposit\[1\] \(keyvalue\) element 0 \(source B\): target 'a.b' \(insert\) collides",
        ),
        (
            [
                {
                    "name": "keyvalue",
                    "converter_config": {
                        "elements": [{"source": "A", "target": "a", "target_mode": "replace"}]
                    },
                }
            ],
            r"target_mode is 'replace'",
        ),
        (
            [
                {
                    "name": "hgmd",
                    "converter_config": {"elements": [{"source": "HGMD__acc_num", "target": "x"}]},
                }
            ],
            r"additional_sources lacks HGMD__disease, HGMD__tag",
        ),
        ([{"name": "vep"}], r"deposit\[0\] \(vep\): converter_config.elements is None"),
        ("nope", r"annotation config has deposit 'nope'"),
    ],
)
def test_config_errors_name_the_entry(deposit: Any, message: str) -> None:
    with pytest.raises(AnnotationConfigError, match=message) as caught:
        build_annotation_builder({"deposit": deposit, "view": []}, NO_HEADER, config_file="cfg.yml")
    assert str(caught.value).startswith("cfg.yml: ")


def test_merge_and_append_modes() -> None:
    build = build_annotation_builder(
        {
            "deposit": [
                {
                    "name": "json",
                    "converter_config": {
                        "elements": [
                            {"source": "J1", "target": "m", "target_mode": "merge"},
                            {"source": "J2", "target": "m", "target_mode": "merge"},
                            {"source": "J1", "target": "l", "target_mode": "append"},
                            {"source": "J2", "target": "l", "target_mode": "append"},
                        ]
                    },
                },
            ],
            "view": [],
        },
        NO_HEADER,
    )
    assert build({"J1": b16({"a": {"x": 1}}), "J2": b16({"a": {"y": 2}, "b": 3})}) == {
        "m": {"a": {"x": 1, "y": 2}, "b": 3},
        "l": [{"a": {"x": 1}}, {"a": {"y": 2}, "b": 3}],
    }


# --- schema -------------------------------------------------------------------------------------


def test_validate_annotation_names_failing_path() -> None:
    validate_annotation({"transcripts": [], "references": [], "anything": {"goes": 1}})
    bad_reference = {"references": [{"pubmed_id": "12", "source": "HGMD", "source_info": ""}]}
    with pytest.raises(
        InputError, match=r"invalid at references\.0\.pubmed_id: '12' is not of type 'integer'"
    ):
        validate_annotation(bad_reference)
    bad_hgmd = {"external": {"HGMD": {"acc_num": "CM1", "disease": "x", "tag": "XX"}}}
    with pytest.raises(InputError, match=r"invalid at external\.HGMD\.tag"):
        validate_annotation(bad_hgmd)
    bad_transcript = {
        "transcripts": [
            {
                "transcript": "NM_1",
                "strand": 2,
                "is_canonical": True,
                "in_last_exon": "no",
                "consequences": [],
            }
        ]
    }
    with pytest.raises(InputError, match=r"invalid at transcripts\.0\.strand"):
        validate_annotation(bad_transcript)


def test_builder_validates_when_asked() -> None:
    cfg = config("keyvalue", {"source": "PM", "target": "references", "target_type": "string", "split": ","})
    assert build_annotation_builder(cfg, NO_HEADER)({"PM": "1,2"}) == {"references": ["1", "2"]}
    with pytest.raises(InputError, match=r"invalid at references\.\d"):
        build_annotation_builder(cfg, NO_HEADER, validate=True)({"PM": "1,2"})


# --- speed --------------------------------------------------------------------------------------


def test_simple_config_is_fast() -> None:
    """1M records must convert in a few seconds for simple configs; measured on 200k here."""
    build = build_annotation_builder(
        config(
            "keyvalue",
            {"source": "AC", "target": "frequencies.DB.count.G", "target_type": "int"},
            {"source": "AF", "target": "frequencies.DB.freq.G", "target_type": "float"},
        ),
        NO_HEADER,
    )
    records = [{"AC": str(i % 50), "AF": "0.01", "DP": "30", "MQ": "60"} for i in range(1000)]
    n = 200_000
    # CPU time, not wall time: the test machine is shared with other workloads.
    start = time.process_time()
    for i in range(n):
        build(records[i % 1000])
    per_million = (time.process_time() - start) * 1_000_000 / n
    print(f"simple keyvalue config: {per_million:.2f} s per 1M records")
    assert per_million < 6.0
