"""Synthetic analysis folders of any size (single-sample VCF, HBOC v1.0.0 panel) for tests and
benches of many analyses: priority lanes, scale-out, failover, throughput."""

from __future__ import annotations

import json
import random
import shutil
import zlib
from pathlib import Path

BASES = "ACGT"
HEADER = """##fileformat=VCFv4.1
##contig=<ID=1,length=249250621>
##contig=<ID=2,length=243199373>
##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{sample}
"""


def vcf_text(sample: str, variants: int, seed: int) -> str:
    """``variants`` SNVs at distinct sorted positions (heterozygous or homozygous)."""
    rng = random.Random(seed)
    lines = [HEADER.format(sample=sample)]
    per_chromosome = (variants + 1) // 2
    for chromosome, count in (("1", per_chromosome), ("2", variants - per_chromosome)):
        position = rng.randint(10_000, 20_000)
        for _ in range(count):
            position += rng.randint(1, 200)
            ref = rng.choice(BASES)
            alt = rng.choice([base for base in BASES if base != ref])
            genotype = "0/1" if rng.random() < 0.7 else "1/1"
            depth = rng.randint(10, 90)
            lines.append(
                f"{chromosome}\t{position}\t.\t{ref}\t{alt}\t{rng.randint(30, 3000)}\tPASS\t"
                f"DP={depth}\tGT:DP\t{genotype}:{depth}\n"
            )
    return "".join(lines)


def drop_synthetic(
    incoming: Path,
    name: str,
    *,
    variants: int,
    priority: int = 1,
    seed: int | None = None,
    ready: bool = True,
) -> Path:
    """Write analysis ``name`` beside ``incoming`` and move it in whole, READY last (as pipelines do)."""
    staging = incoming.parent / f".staging-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / f"{name}.vcf").write_text(
        vcf_text(f"{name}-S1", variants, zlib.crc32(name.encode()) if seed is None else seed)
    )
    analysis = {
        "name": name,
        "genepanel_name": "HBOC",
        "genepanel_version": "v1.0.0",
        "priority": priority,
        "data": [{"vcf": f"{name}.vcf", "technology": "HTS"}],
    }
    (staging / f"{name}.analysis").write_text(json.dumps(analysis, indent=2))
    target = incoming / name
    staging.rename(target)
    if ready:
        (target / "READY").touch()
    return target
