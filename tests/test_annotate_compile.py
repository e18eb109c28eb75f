"""The vectorised VCF-source compiler: records the block rules leave to the per-record code, and
the same index whatever the block boundaries are."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.annotate import annotate_vcf
from engine.annotate.config import load_config
from engine.annotate.index import field_numbers, vcf_text_chunks
from engine.annotate.reducers import FieldSpec
from engine.annotate.vcfcompile import VcfCompiler

DATA = Path(__file__).parent / "data" / "annotate"

pytestmark = pytest.mark.skipif(
    not (shutil.which("bgzip") and shutil.which("tabix")), reason="bgzip/tabix not installed"
)

# records the fixture lacks: a Flag next to a same-site record, an ALT '.', ';' in ID and FILTER,
# an empty value, a key given twice, INFO '.', a value containing '='
EXTRA_SOURCE = """\
2	150	rs2150b	C	A	.	PASS	AC=9;AF=0.9;AN=10;GENE=DUP;COMMON
2	160	.	C	.	.	PASS	AC=1;AN=10
2	170	x;y	C	T	.	q;r	AC=1;AN=10;AF=;GENE=G1;GENE=G2
2	180	rs180	C	T	.	LowQ	AC=1;COMMON;AN=;SCORE=5
2	180	rs181	C	T	.	PASS	.
2	190	rs190	CA	C	.	PASS	AF=0.5;AC=1
2	195	rs195	C	T	.	PASS	AF=0.5;AC=1;COMMON=1;TAGS=a=b
"""

QUERY = """\
##fileformat=VCFv4.2
##contig=<ID=2,length=100000>
#CHROM	POS	ID	REF	ALT	QUAL	FILTER	INFO
2	150	.	C	A	.	PASS	X=1
2	160	.	C	A	.	PASS	X=1
2	170	.	C	T	.	PASS	X=1
2	180	.	C	T	.	PASS	X=1
2	190	.	CA	C	.	PASS	X=1
2	195	.	C	T	.	PASS	X=1
"""

CONFIG = """\
[[annotation]]
file="source.vcf.gz"
fields=["GENE","AF","AN","COMMON","TAGS","ID","FILTER","AC"]
names=["g","af","an","common","tags","id","filt","ac_sum"]
ops=["self","self","self","self","self","self","self","sum"]
"""


@pytest.fixture()
def edge_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ANNOSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "source.vcf"
    source.write_text((DATA / "source.vcf").read_text() + EXTRA_SOURCE)
    subprocess.run(["bgzip", "-f", str(source)], check=True)
    subprocess.run(["tabix", "-f", "-p", "vcf", str(tmp_path / "source.vcf.gz")], check=True)
    (tmp_path / "query.vcf").write_text(QUERY)
    (tmp_path / "edge.toml").write_text(CONFIG)
    return tmp_path


def test_rare_records_follow_vcfanno_rules(edge_source: Path) -> None:
    out = edge_source / "out.vcf"
    annotate_vcf(edge_source / "edge.toml", edge_source / "query.vcf", out)
    infos = [line.split("\t")[7] for line in out.read_text().splitlines() if not line.startswith("#")]
    assert infos == [
        # rs2150 (multi-ALT, AF per ALT 0.1 for A) then rs2150b (0.9): self keeps the last; AC of
        # the multi-ALT record is summed over its items (1+2+3) plus 9
        "X=1;g=MNO,DUP;af=0.9;an=10,10;common;id=rs2150,rs2150b;ac_sum=15",
        "X=1",  # the ALT '.' record matches nothing
        "X=1;g=G2;an=10;id=x,y;filt=q,r;ac_sum=1",  # last GENE wins, empty AF is no value
        "X=1;common;id=rs180,rs181;filt=LowQ;ac_sum=1",  # INFO '.' still gives its ID
        "X=1;af=0.5;id=rs190;ac_sum=1",
        "X=1;af=0.5;common=1;tags=a=b;id=rs195;ac_sum=1",  # values are split at the first '='
    ]


def _compile(edge_source: Path, directory: Path, chunk_bytes: int) -> list[str]:
    config = load_config(edge_source / "edge.toml")
    block = config.annotations[0]
    header, chunks = vcf_text_chunks(block.file, chunk_bytes)
    numbers = field_numbers(block, header.infos, config.path)
    specs = [FieldSpec(o, slot, numbers[slot], True) for slot, o in enumerate(block.outputs)]
    directory.mkdir()
    compiler = VcfCompiler(block, config.path, directory, specs, first_line=header.line_count)
    for chunk in chunks:
        compiler.add_block(chunk)
    chroms, _ = compiler.finish()
    return chroms


def test_index_does_not_depend_on_block_boundaries(edge_source: Path) -> None:
    whole = _compile(edge_source, edge_source / "whole", 1 << 20)
    split = _compile(edge_source, edge_source / "split", 64)  # about one record per block
    assert whole == split == ["1", "2"]
    names = sorted(p.name for p in (edge_source / "whole").iterdir())
    assert names == sorted(p.name for p in (edge_source / "split").iterdir())
    for name in names:
        a, b = np.load(edge_source / "whole" / name), np.load(edge_source / "split" / name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
