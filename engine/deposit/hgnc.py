"""The HGNC gene table: approved symbol, HGNC id, Ensembl gene id and NCBI (Entrez) gene id.

ELLA's VEP converter resolves a CSQ entry without ``HGNC_ID`` through tables it bundles
(``vardb/deposit/annotationconverters/hgnc_*.txt.gz``): the ``Gene`` column (an Ensembl or NCBI
gene id) first, then the approved ``SYMBOL``; and it fills a missing ``SYMBOL`` from the HGNC id.
Annostream ships the same data as one table, ``hgnc_genes.tsv.gz`` beside this module, built
from the HGNC release ELLA 1.17.2 bundles (so ids resolve exactly as in ELLA). HGNC data is
CC0 1.0 (genenames.org); the file's header lines record the release and the licence.

``annostream hgnc build HGNC_FILE -o OUT`` builds a newer table from HGNC's complete set
(``hgnc_complete_set.txt`` or ``.json`` from genenames.org); point ``ANNOSTREAM_HGNC_TABLE`` at
it (or write it over the packaged file when cutting a release).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engine.errors import InputError

PACKAGED_TABLE = Path(__file__).resolve().parent / "hgnc_genes.tsv.gz"
COLUMNS = ("hgnc_id", "symbol", "ensembl_gene_id", "ncbi_gene_id")
LICENCE = "HGNC data: CC0 1.0 (https://www.genenames.org/about/license/)"


@dataclass(frozen=True, slots=True)
class HgncRow:
    hgnc_id: int
    symbol: str  # the approved symbol; empty for a withdrawn entry
    ensembl_gene_id: str
    ncbi_gene_id: str


@dataclass
class HgncTable:
    """The maps ELLA's ``get_hgnc_approved_symbol_maps``/``get_hgnc_ncbi_ensembl_map`` build."""

    symbol_by_id: dict[int, str] = field(default_factory=dict)
    id_by_symbol: dict[str, int] = field(default_factory=dict)
    id_by_gene: dict[str, int] = field(default_factory=dict)  # Ensembl ENSG... and NCBI gene ids
    info: dict[str, str] = field(default_factory=dict)  # header: release, source, licence

    @classmethod
    def from_rows(cls, rows: Iterable[HgncRow], info: dict[str, str] | None = None) -> HgncTable:
        table = cls(info=dict(info or {}))
        for row in rows:
            if row.symbol:
                table.symbol_by_id[row.hgnc_id] = row.symbol
                table.id_by_symbol[row.symbol] = row.hgnc_id
            for gene in (row.ensembl_gene_id, row.ncbi_gene_id):
                if gene:
                    table.id_by_gene[gene] = row.hgnc_id
        return table


@lru_cache(maxsize=4)
def load_hgnc_table(path: Path | None = None) -> HgncTable:
    """Read a table written by :func:`write_hgnc_table` (default: the packaged one)."""
    source = path or PACKAGED_TABLE
    info: dict[str, str] = {}
    rows = []
    try:
        with gzip.open(source, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.startswith("##"):
                    key, _, value = line[2:].strip().partition("=")
                    info[key] = value
                    continue
                if line.startswith("#"):
                    continue
                parts = line.rstrip("\n").split("\t")
                if len(parts) != len(COLUMNS) or not parts[0].isdigit():
                    raise InputError(
                        f"malformed HGNC table line {line.strip()[:60]!r}",
                        file=str(source),
                        line=number,
                        expected="\t".join(COLUMNS),
                    )
                rows.append(HgncRow(int(parts[0]), parts[1], parts[2], parts[3]))
    except OSError as error:
        raise InputError(
            f"cannot read the HGNC table ({error})",
            file=str(source),
            expected="a gzipped table written by 'annostream hgnc build'",
        ) from None
    return HgncTable.from_rows(rows, info)


def write_hgnc_table(rows: Iterable[HgncRow], out: Path, *, release: str, source: str) -> int:
    """Write the gzipped table with its release, source and licence as ``##key=value`` lines."""
    ordered = sorted(rows, key=lambda r: r.hgnc_id)
    buffer = io.StringIO()
    buffer.write(f"##release={release}\n##source={source}\n##licence={LICENCE}\n")
    buffer.write(f"##built={dt.datetime.now(dt.UTC).date().isoformat()}\n")
    buffer.write("#" + "\t".join(COLUMNS) + "\n")
    for row in ordered:
        buffer.write(f"{row.hgnc_id}\t{row.symbol}\t{row.ensembl_gene_id}\t{row.ncbi_gene_id}\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime 0: the same input gives the same bytes (a reproducible package file).
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(buffer.getvalue().encode("utf-8"))
    return len(ordered)


def read_hgnc_download(path: Path) -> list[HgncRow]:
    """Rows from HGNC's complete set: ``hgnc_complete_set.txt`` (TSV with a header naming
    ``hgnc_id``, ``symbol``, ``status``, ``entrez_id``, ``ensembl_gene_id``) or the ``.json``
    (``response.docs``). Approved entries keep their symbol; withdrawn ones only their gene ids
    (as in ELLA's tables)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise InputError(f"cannot read ({error})", file=str(path), expected="HGNC's complete set") from None
    if text.lstrip().startswith("{"):
        docs = json.loads(text).get("response", {}).get("docs", [])
        return list(_rows(path, ({k: _text(v) for k, v in doc.items()} for doc in docs)))
    return list(_rows(path, csv.DictReader(io.StringIO(text), delimiter="\t")))


def _text(value: object) -> str:
    return str(value) if not isinstance(value, list) else ",".join(map(str, value))


def _rows(path: Path, records: Iterable[dict[str, str]]) -> Iterator[HgncRow]:
    for number, record in enumerate(records, 2):
        identifier = (record.get("hgnc_id") or "").removeprefix("HGNC:")
        if not identifier.isdigit():
            raise InputError(
                f"hgnc_id {record.get('hgnc_id')!r}",
                file=str(path),
                line=number,
                expected="HGNC's complete set with columns hgnc_id, symbol, status, entrez_id, "
                "ensembl_gene_id",
            )
        approved = (record.get("status") or "Approved") == "Approved"
        yield HgncRow(
            int(identifier),
            record.get("symbol", "") if approved else "",
            record.get("ensembl_gene_id") or "",
            record.get("entrez_id") or "",
        )
