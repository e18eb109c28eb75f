"""Building real annotation bundles (bgzipped, tabix-indexed source + vcfanno TOML + sources.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pysam

SOURCE_HEADER = """##fileformat=VCFv4.2
##contig=<ID=13,length=115169878>
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##INFO=<ID=CLNSIG,Number=1,Type=String,Description="Clinical significance">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
"""
# Two variants of tests/data/analyses/TestAnalysis-001 and one it does not have.
SOURCE_RECORDS = [
    "13\t32890607\trs397507571\tG\tT\t.\tPASS\tAF=0.0001;CLNSIG=Pathogenic",
    "13\t32893344\trs28897700\tA\tG\t.\tPASS\tAF=0.002;CLNSIG=Benign",
    "13\t32900000\t.\tC\tT\t.\tPASS\tAF=0.5;CLNSIG=Benign",
]
CONFIG = """[[annotation]]
file = "data/mydb.vcf.gz"
fields = ["AF", "CLNSIG"]
names = ["MYDB_AF", "MYDB_CLNSIG"]
ops = ["self", "self"]
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_bundle(folder: Path, version: str = "2024.1", *, af_scale: str = "") -> Path:
    """A complete bundle in ``folder``; ``af_scale`` is appended to every AF (to vary content)."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    plain = data / "mydb.vcf"
    records = [r.replace("AF=", "AF=" + af_scale) if af_scale else r for r in SOURCE_RECORDS]
    plain.write_text(SOURCE_HEADER + "".join(f"{r}\n" for r in records))
    pysam.tabix_index(str(plain), preset="vcf", force=True)  # writes mydb.vcf.gz and .tbi
    source = data / "mydb.vcf.gz"
    (folder / "vcfanno_config.toml").write_text(CONFIG)
    manifest = {
        "mydb": {
            "version": "1.0",
            "timestamp": "2024-01-01 00:00:00",
            "files": {
                "data/mydb.vcf.gz": sha256(source),
                "data/mydb.vcf.gz.tbi": sha256(data / "mydb.vcf.gz.tbi"),
            },
        }
    }
    (folder / "sources.json").write_text(json.dumps(manifest, indent=2))
    (folder / "version").write_text(f"{version}\n")
    return folder
