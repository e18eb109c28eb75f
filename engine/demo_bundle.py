"""The demo annotation bundle of ``annostream up --demo``: SYNTHETIC data, generated from the demo
VCFs, so that a newcomer sees the annotation engine work on the demo analyses.

Two sources cover every variant of ``engine/demo/analyses``:

- ``gnomad_synthetic``: a gnomAD-like VCF (AC, AN, AF) that the bundle's vcfanno config writes as
  ``GNOMAD_GENOMES__AC/AN/AF``, which ELLA's annotation config turns into
  ``frequencies.GNOMAD_GENOMES``;
- ``clinvar_synthetic``: a ClinVar-like VCF whose ``CLINVARJSON`` (base16 JSON in the
  ``clinvar_v1`` shape) becomes ``external.CLINVAR``.

The values are made up (derived from a hash of each variant, so the same VCFs always give the same
bundle) and ``sources.json`` says so for every dataset (``"synthetic": true``). Never use this
bundle for interpretation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from engine.config import Settings

DEMO_ANALYSES = Path(__file__).parent / "demo" / "analyses"
DEMO_BUNDLE_VERSION = "demo-synthetic-1"
CLASSES = ("Pathogenic", "Likely pathogenic", "Uncertain significance", "Likely benign", "Benign")
SYNTHETIC_NOTE = (
    "SYNTHETIC demo data generated from the demo VCFs by annostream (engine/demo_bundle.py); "
    "the values are made up: never use them for interpretation"
)

HEADER = """##fileformat=VCFv4.2
##source=annostream-demo-synthetic
{contigs}{info}#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
"""
GNOMAD_INFO = (
    '##INFO=<ID=AC,Number=A,Type=Integer,Description="Synthetic allele count">\n'
    '##INFO=<ID=AN,Number=1,Type=Integer,Description="Synthetic allele number">\n'
    '##INFO=<ID=AF,Number=A,Type=Float,Description="Synthetic allele frequency">\n'
)
CLINVAR_INFO = (
    '##INFO=<ID=CLINVARJSON,Number=1,Type=String,Description="Synthetic ClinVar-like JSON, base16">\n'
)
CONFIG = """# SYNTHETIC demo bundle (engine/demo_bundle.py): made-up values for the demo variants.
[[annotation]]
file = "variantDBs/gnomad_synthetic/gnomad_synthetic.vcf.gz"
fields = ["AC", "AN", "AF"]
names = ["GNOMAD_GENOMES__AC", "GNOMAD_GENOMES__AN", "GNOMAD_GENOMES__AF"]
ops = ["self", "self", "self"]

[[annotation]]
file = "variantDBs/clinvar_synthetic/clinvar_synthetic.vcf.gz"
fields = ["CLINVARJSON"]
names = ["CLINVARJSON"]
ops = ["self"]
"""

Variant = tuple[str, int, str, str]  # chromosome, position, ref, alt


def demo_variants(analyses: Path = DEMO_ANALYSES) -> list[Variant]:
    """Every (CHROM, POS, REF, ALT) of the demo VCFs, multi-allelic records split, sorted."""
    found: set[Variant] = set()
    for vcf in sorted(analyses.glob("*/*.vcf")):
        for line in vcf.read_text().splitlines():
            if not line or line.startswith("#"):
                continue
            chrom, pos, _id, ref, alts = line.split("\t")[:5]
            for alt in alts.split(","):
                if alt not in ("*", "."):
                    found.add((chrom, int(pos), ref, alt))
    return sorted(found, key=lambda variant: (_contig_order(variant[0]), variant[1], variant[2], variant[3]))


def _contig_order(chrom: str) -> tuple[int, str]:
    name = chrom.removeprefix("chr")
    return (int(name), "") if name.isdigit() else (100, name)


def _draw(variant: Variant, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}:{':'.join(map(str, variant))}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def gnomad_record(variant: Variant) -> str:
    an = 150_000 + _draw(variant, "an") % 10_000
    ac = 1 + _draw(variant, "ac") % 3_000
    chrom, pos, ref, alt = variant
    return f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\tAC={ac};AN={an};AF={ac / an:.6g}"


def clinvar_document(variant: Variant) -> dict[str, object]:
    clinical = CLASSES[_draw(variant, "class") % len(CLASSES)]
    variant_id = 900_000 + _draw(variant, "id") % 99_999
    return {
        "variant_description": f"synthetic demo record: {clinical}",
        "variant_id": variant_id,
        "items": [
            {
                "rcv": f"SCV-DEMO-{variant_id}",
                "traitnames": "Synthetic demo condition",
                "clinical_significance_descr": clinical,
                "variant_id": str(variant_id),
                "submitter": "annostream demo (synthetic)",
                "last_evaluated": "2024-01-01",
            }
        ],
    }


def clinvar_record(variant: Variant) -> str:
    encoded = base64.b16encode(json.dumps(clinvar_document(variant), sort_keys=True).encode()).decode()
    chrom, pos, ref, alt = variant
    return f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\tCLINVARJSON={encoded}"


def _write_source(path: Path, info: str, records: list[str], contigs: list[str]) -> list[Path]:
    import pysam  # htslib's bgzip and tabix

    path.parent.mkdir(parents=True, exist_ok=True)
    contig_lines = "".join(f"##contig=<ID={name}>\n" for name in contigs)
    path.write_text(HEADER.format(contigs=contig_lines, info=info) + "".join(f"{r}\n" for r in records))
    pysam.tabix_index(str(path), preset="vcf", force=True)  # writes path.gz and path.gz.tbi
    return [Path(f"{path}.gz"), Path(f"{path}.gz.tbi")]


def build_demo_bundle(folder: Path, *, version: str = DEMO_BUNDLE_VERSION) -> Path:
    """Write the complete demo bundle into ``folder`` (created) and return it."""
    variants = demo_variants()
    contigs = list(dict.fromkeys(variant[0] for variant in variants))
    manifest: dict[str, object] = {}
    for dataset, info, records in (
        ("gnomad_synthetic", GNOMAD_INFO, [gnomad_record(v) for v in variants]),
        ("clinvar_synthetic", CLINVAR_INFO, [clinvar_record(v) for v in variants]),
    ):
        plain = folder / "variantDBs" / dataset / f"{dataset}.vcf"
        files = _write_source(plain, info, records, contigs)
        manifest[dataset] = {
            "version": version,
            "synthetic": True,
            "description": SYNTHETIC_NOTE,
            "files": {
                file.relative_to(folder).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
                for file in files
            },
        }
    (folder / "vcfanno_config.toml").write_text(CONFIG)
    (folder / "sources.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "version").write_text(f"{version}\n")
    return folder


def install_demo_bundle(settings: Settings) -> str:
    """Add the demo bundle (a no-op when it is stored) and activate it unless another bundle is
    active (a site's own bundle is never replaced by demo data). Returns what was done."""
    from engine.bundles import activate_bundle, active_bundle, add_bundle
    from engine.db.session import session_scope

    staging = Path(tempfile.mkdtemp(prefix=".demo-bundle-", dir=settings.data_dir))
    try:
        build_demo_bundle(staging)
        with session_scope(settings.database_url) as session:
            info, added = add_bundle(session, staging, settings.data_dir, link=False)
            active = active_bundle(session)
            if active is not None and active.version != info.version:
                state = "added" if added else "stored"
                return f"demo bundle {info.version} {state}; {active.version} stays active"
            if active is None:
                activate_bundle(session, info.version)
            return f"demo bundle {info.version} (synthetic) active"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
