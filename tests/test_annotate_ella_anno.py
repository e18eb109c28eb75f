"""ella-anno's real vcfanno configuration, run the way ella-anno runs it, equal to vcfanno's output.

``tests/data/ella-anno/datasets-vcfanno.json`` holds the vcfanno blocks of ella-anno's
``ops/datasets.json`` (gnomAD exomes and genomes, ~50 fields each with ``OLD_MULTIALLELIC``
flagged, and ClinVar's ``CLINVARJSON``). They become ``vcfanno_config.toml`` as ``ops/sync_data.py``
makes it (each ``file`` formatted with the dataset's destination and version, blocks in dataset
order), and run as ``src/annotation/annotate.sh`` runs vcfanno: ``-p N -base-path $ANNODATA``.
The sources are small synthetic VCFs at those paths with those fields, decomposed as vt decomposes
(split records sharing ``OLD_MULTIALLELIC``); so is the query.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pysam
import pytest

from engine.annotate import annotate_vcf
from engine.normalise.vcf import OLD_MULTIALLELIC_LINE
from tests.test_annotate_vcfanno import every_record, same_value

VCFANNO_ENV = {"IRELATE_MAX_GAP": "1000", "GOGC": "1000", "PATH": "/usr/bin:/bin"}  # as annotate.sh
DATASETS = Path(__file__).parent / "data" / "ella-anno" / "datasets-vcfanno.json"

pytestmark = pytest.mark.skipif(
    not shutil.which("vcfanno"), reason="vcfanno not installed (run ops/scripts/ensure-tools.sh as root)"
)


def sync_data_toml(datasets: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The TOML ``sync_data.py`` writes (its ``format_obj`` + ``update_vcfanno_toml``)."""
    blocks = []
    for dataset in datasets.values():
        options = {"destination": dataset["destination"], "version": dataset["version"]}
        for block in dataset["vcfanno"]:
            blocks.append(
                {
                    key: (
                        value.format(**options)
                        if isinstance(value, str)
                        else [v.format(**options) for v in value]
                    )
                    for key, value in block.items()
                }
            )

    def toml_value(value: Any) -> str:
        return json.dumps(value)  # strings and lists of strings: JSON and TOML agree

    text = "".join(
        "[[annotation]]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in b.items()) + "\n"
        for b in blocks
    )
    return text, blocks


def info_line(field: str) -> str:
    if field == "OLD_MULTIALLELIC":
        return OLD_MULTIALLELIC_LINE
    if field == "CLINVARJSON":
        return '##INFO=<ID=CLINVARJSON,Number=1,Type=String,Description="Base64-encoded ClinVar JSON">'
    if field.startswith("AF"):
        return f'##INFO=<ID={field},Number=A,Type=Float,Description="Alternate allele frequency {field}">'
    number = "1" if field.startswith("AN") else "A"
    return f'##INFO=<ID={field},Number={number},Type=Integer,Description="Count {field}">'


SITES = [(chrom, 10_000 + 37 * i) for chrom in ("1", "2", "X") for i in range(60)]


def site_records(rng: random.Random, chrom: str, pos: int) -> list[tuple[str, str, str]]:
    """(REF, ALT, OLD_MULTIALLELIC or '') of one site, decomposed as vt does."""
    ref = rng.choice("ACGT")
    alts = [b for b in "ACGT" if b != ref]
    kind = rng.random()
    if kind < 0.3:  # a split multi-allelic site
        picked = sorted(rng.sample(alts, 2))
        old = f"{chrom}:{pos}:{ref}/{'/'.join(picked)}"
        return [(ref, alt, old) for alt in picked]
    if kind < 0.4:  # an indel
        return [(ref + "T", ref, "")]
    return [(ref, rng.choice(alts), "")]


def write_vcf(path: Path, header: list[str], records: list[str]) -> None:
    contigs = [f"##contig=<ID={c}>" for c in ("1", "2", "X")]
    columns = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    text = "\n".join(["##fileformat=VCFv4.2", *contigs, *header, columns, *records]) + "\n"
    plain = path.with_suffix("")
    plain.parent.mkdir(parents=True, exist_ok=True)
    plain.write_text(text)
    pysam.tabix_compress(str(plain), str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    plain.unlink()


def source_value(rng: random.Random, field: str) -> str:
    if field.startswith("AF"):
        return rng.choice(["0", "1.23e-05", "0.000123456789", "0.5", "0.0123"])
    if field == "CLINVARJSON":
        document = {"variant_id": rng.randrange(10**6), "rcvs": {"RCV1": {"clinical_significance": "Benign"}}}
        return base64.b16encode(json.dumps(document).encode()).decode()
    return str(rng.randrange(0, 30000))


def make_sources(annodata: Path, blocks: list[dict[str, Any]], known: dict[tuple[str, int], list]) -> None:
    for number, block in enumerate(blocks):
        rng = random.Random(number)
        fields = [f for f in dict.fromkeys(block["fields"]) if f != "FILTER"]
        records = []
        for chrom, pos in SITES:
            if rng.random() < 0.25:
                continue  # a site this source lacks
            for ref, alt, old in known[(chrom, pos)]:
                if rng.random() < 0.1:
                    continue
                info = [
                    f"{f}={source_value(rng, f)}"
                    for f in fields
                    if f != "OLD_MULTIALLELIC" and rng.random() < 0.9
                ]
                if old and "OLD_MULTIALLELIC" in fields:
                    info.append(f"OLD_MULTIALLELIC={old}")
                filt = rng.choice(["PASS", "PASS", "AC0", "RF;AC0", "."])
                records.append(f"{chrom}\t{pos}\trs{pos}\t{ref}\t{alt}\t.\t{filt}\t{';'.join(info) or '.'}")
        write_vcf(annodata / block["file"], [info_line(f) for f in fields], records)


def test_ella_anno_datasets_run_as_vcfanno_runs_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = json.loads(DATASETS.read_text())
    text, blocks = sync_data_toml(datasets)
    assert len(blocks) == 3 and sum(len(b["fields"]) for b in blocks) > 100
    annodata = tmp_path / "anno-data"
    config = annodata / "vcfanno_config.toml"
    config.parent.mkdir()
    config.write_text(text)
    rng = random.Random(42)
    known = {site: site_records(rng, *site) for site in SITES}
    make_sources(annodata, blocks, known)
    query_records = []
    for chrom, pos in SITES:
        for ref, alt, old in known[(chrom, pos)]:
            info = f"DP={rng.randrange(5, 90)}" + (f";OLD_MULTIALLELIC={old}" if old else "")
            query_records.append(f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t50\tPASS\t{info}")
        query_records.append(f"{chrom}\t{pos + 1}\t.\tC\tA\t50\tPASS\tDP=3")  # in no source
    query = tmp_path / "work" / "normalised.vcf.gz"
    write_vcf(
        query,
        [info_line("OLD_MULTIALLELIC"), '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">'],
        query_records,
    )
    workdir = tmp_path / "work"
    monkeypatch.chdir(workdir)  # annotate.sh runs in its work folder; sources come from -base-path
    monkeypatch.setenv("ANNOSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    done = subprocess.run(
        ["vcfanno", "-p", "2", "-base-path", str(annodata), str(config), str(query)],
        capture_output=True,
        text=True,
        check=True,
        env={"IRELATE_MAX_GAP": "1000", "GOGC": "1000", "PATH": "/usr/bin:/bin"},
    )
    theirs = sorted(every_record(done.stdout), key=lambda r: r[0])
    out = workdir / "annotated.vcf"
    annotate_vcf(config, query, out, base_path=annodata, threads=2)
    ours = sorted(every_record(out.read_text()), key=lambda r: r[0])
    assert [key for key, _ in ours] == [key for key, _ in theirs]
    problems, compared, annotated = [], 0, 0
    for (key, mine), (_, info) in zip(ours, theirs, strict=True):
        annotated += any(name.startswith("GNOMAD") for name in info)
        for field in sorted(set(mine) | set(info)):
            compared += 1
            if not same_value(mine.get(field), info.get(field)):
                problems.append(f"{key} {field}: ours={mine.get(field)!r} vcfanno={info.get(field)!r}")
    assert not problems, "\n".join(problems[:40])
    assert annotated > 100 and compared > 5000
    flagged = [info for _, info in ours if info.get("GNOMAD_EXOMES__MULTIALLELIC") is True]
    assert flagged and any("CLINVARJSON" in info for _, info in ours)
