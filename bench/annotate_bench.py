#!/usr/bin/env python3
"""annostream annotate (-p 2 and -p 1) vs vcfanno -p 2 vs bcftools annotate: same inputs, alternating rounds.

    .venv/bin/python bench/annotate_bench.py [--rounds 3] [--bed] [--data bench/data]

Generates the data with bench/gen_bench.py (or $GEN_BENCH) when missing, compiles the
annostream index once (timed separately), then times each tool per round (wall, variants/s, peak
RSS of the child) and checks correctness: the records annostream annotated equal
expected_hits.txt.gz and every copied value equals the source text.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ["AF", "AC", "AN", "GENE", "CLNSIG", "ID"]


def ensure_data(data: Path) -> None:
    if (data / "query.vcf.gz").exists() and (data / "source.vcf.gz").exists():
        return
    generator = os.environ.get("GEN_BENCH", str(Path(__file__).resolve().parent / "gen_bench.py"))
    subprocess.run([sys.executable, generator, "--out", str(data), "--compress"], check=True)


def write_configs(data: Path, bed: bool) -> Path:
    text = (
        f'[[annotation]]\nfile="source.vcf.gz"\nfields={FIELDS!r}\nops={["self"] * len(FIELDS)!r}\n'.replace(
            "'", '"'
        )
    )
    if bed:
        text += (
            '[[annotation]]\nfile="intervals.bed.gz"\ncolumns=[5,4,4]\n'
            'names=["reg_mean","reg_names","reg_count"]\nops=["mean","uniq","count"]\n'
        )
    path = data / ("bench_bed.toml" if bed else "bench_vcf.toml")
    path.write_text(text)
    return path


def timed(cmd: list[str], stdout_path: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, from GNU time when installed) of one run."""
    wrapper = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    started = time.perf_counter()
    with open(stdout_path, "wb") as out:
        done = subprocess.run([*wrapper, *cmd], stdout=out, stderr=subprocess.PIPE, check=True)
    wall = time.perf_counter() - started
    lines = done.stderr.decode().strip().splitlines()
    peak_kb = float(lines[-1]) if wrapper and lines and lines[-1].isdigit() else float("nan")
    return wall, peak_kb / 1024


def timed_compile(cmd: list[str], stdout_path: Path) -> tuple[float, float]:
    """The first run compiles the indexes; its own summary line reports the compile time."""
    wrapper = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    started = time.perf_counter()
    done = subprocess.run([*wrapper, *cmd, "-o", str(stdout_path)], stderr=subprocess.PIPE, check=True)
    wall = time.perf_counter() - started
    lines = done.stderr.decode().strip().splitlines()
    for line in lines:
        if line.startswith("annostream annotate:"):
            print(line)
    peak_kb = float(lines[-1]) if wrapper and lines and lines[-1].isdigit() else float("nan")
    return wall, peak_kb / 1024


def bcftools_command(data: Path, query: Path, bed: bool) -> list[str]:
    """bcftools copies values; with --bed it also copies the BED's name and score columns of an
    overlapping interval (it has no mean/uniq/count), piped from the VCF-source pass."""
    vcf_pass = (
        f"bcftools annotate -a {data / 'source.vcf.gz'} -c ID,INFO/AF,INFO/AC,INFO/AN,INFO/GENE,INFO/CLNSIG"
    )
    if not bed:
        return ["sh", "-c", f"{vcf_pass} {query}"]
    header = data / "bed_header.txt"
    header.write_text(
        '##INFO=<ID=reg_names,Number=1,Type=String,Description="BED name">\n'
        '##INFO=<ID=reg_mean,Number=1,Type=Float,Description="BED score">\n'
    )
    bed_pass = (
        f"bcftools annotate -a {data / 'intervals.bed.gz'} -c CHROM,FROM,TO,reg_names,reg_mean -h {header}"
    )
    return ["sh", "-c", f"{vcf_pass} -Ou {query} | {bed_pass} -"]


def verify(output: Path, data: Path) -> str:
    expected = set()
    with gzip.open(data / "expected_hits.txt.gz", "rt") as fh:
        expected = {tuple(line.rstrip("\n").split("\t")) for line in fh}
    source = {}
    with gzip.open(data / "source.vcf.gz", "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            c = line.rstrip("\n").split("\t")
            info = dict(kv.split("=", 1) for kv in c[7].split(";"))
            source[(c[0], c[1], c[3], c[4])] = (c[2], info)
    annotated, wrong = set(), 0
    with open(output) as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            c = line.split("\t", 8)
            info = dict(kv.split("=", 1) for kv in c[7].split(";") if "=" in kv)
            if "AN" not in info:
                continue
            key = (c[0], c[1], c[3], c[4])
            annotated.add(key)
            rid, src = source[key]
            for f in FIELDS:
                want = (rid if rid != "." else None) if f == "ID" else src.get(f)
                if info.get(f) != want:
                    wrong += 1
    ok = annotated == expected and wrong == 0
    return (
        f"{'OK' if ok else 'FAIL'}: {len(annotated)} annotated records vs {len(expected)} expected, "
        f"{wrong} copied values differing from the source text"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT / "bench" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bed", action="store_true", help="also annotate with the 300k-interval BED")
    parser.add_argument(
        "--keep-index", action="store_true", help="reuse a compiled index (no compile timing)"
    )
    args = parser.parse_args()
    data = args.data
    ensure_data(data)
    config = write_configs(data, args.bed)
    query = data / "query.vcf.gz"
    out_dir = data / "out"
    out_dir.mkdir(exist_ok=True)
    with gzip.open(query, "rt") as fh:
        n_records = sum(1 for line in fh if not line.startswith("#"))
    annostream = [
        str(ROOT / ".venv" / "bin" / "annostream"),
        "annotate",
        "-q",
        "-p",
        "2",
        "-base-path",
        str(data),
        str(config),
        str(query),
    ]
    cache = data / ".annostream-cache"
    if not args.keep_index:
        shutil.rmtree(cache, ignore_errors=True)  # the one-off compile is measured too
    warmup = [arg for arg in annostream if arg != "-q"]
    wall, peak = timed_compile(warmup, out_dir / "warmup.vcf")
    print(f"one-off index compile + first run: {wall:.2f}s wall, peak RSS {peak:.0f} MB")
    single = list(annostream)
    single[single.index("-p") + 1] = "1"
    # -p 1 beside -p 2: the gain of the threaded annotator on this machine, in the same run.
    tools = {"annostream": annostream, "annostream -p 1": single}
    if shutil.which("vcfanno"):
        tools["vcfanno -p 2"] = ["vcfanno", "-p", "2", "-base-path", str(data), str(config), str(query)]
    if shutil.which("bcftools"):
        tools["bcftools annotate"] = bcftools_command(data, query, args.bed)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
    for _round in range(args.rounds):
        for name, cmd in tools.items():
            results[name].append(timed(cmd, out_dir / f"{name.replace(' ', '')}.vcf"))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(
        f"{'tool':20} {'best s':>8} {'median s':>9} {'variants/s':>12} {'peak RSS MB':>12} "
        f"{'median ratio':>13}"
    )
    ours = [w for w, _ in results["annostream"]]
    for name, runs in results.items():
        walls = sorted(w for w, _ in runs)
        ratios = sorted(w / a for (w, _), a in zip(runs, ours, strict=True))
        print(
            f"{name:20} {walls[0]:8.2f} {walls[len(walls) // 2]:9.2f} {n_records / walls[0]:12,.0f} "
            f"{max(r for _, r in runs):12.0f} {ratios[len(ratios) // 2]:12.2f}x"
        )
    print("correctness (-p 2):", verify(out_dir / "annostream.vcf", data))
    print("correctness (-p 1):", verify(out_dir / "annostream-p1.vcf", data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
