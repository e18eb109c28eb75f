"""Storing gene panels on PostgreSQL and SQLite: create, idempotent re-deposit, --replace, sharing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.db.migrate import upgrade
from engine.db.models import Gene, Genepanel, Phenotype, Transcript, genepanel_phenotype, genepanel_transcript
from engine.db.session import get_engine, session_scope
from engine.deposit.genepanel import (
    DepositResult,
    PhenotypeRow,
    deposit_genepanel,
    genepanel_exists,
    read_genepanel_folder,
    require_genepanel,
)
from engine.errors import MissingGenepanelError
from tests.support.genepanels import HBOC_FOLDER, copy_panel, replace_field, synthetic_panel

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(db_url: str) -> str:
    upgrade(db_url)
    return db_url


def deposit(url: str, folder: Path, *, replace: bool = False) -> DepositResult:
    data = read_genepanel_folder(folder)
    with session_scope(url) as session:
        return deposit_genepanel(session, data, replace=replace)


def row_counts(url: str) -> dict[str, int]:
    tables = {
        "gene": Gene.__table__,
        "transcript": Transcript.__table__,
        "phenotype": Phenotype.__table__,
        "genepanel": Genepanel.__table__,
        "genepanel_transcript": genepanel_transcript,
        "genepanel_phenotype": genepanel_phenotype,
    }
    with get_engine(url).connect() as connection:
        return {
            name: connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0
            for name, table in tables.items()
        }


def panel_links(url: str, name: str, version: str) -> tuple[set[tuple[str, str]], set[tuple[int, str, str]]]:
    """(transcript name, inheritance) and (HGNC id, phenotype, inheritance) linked to the panel."""
    gt, gp = genepanel_transcript, genepanel_phenotype
    with get_engine(url).connect() as connection:
        transcripts = set(
            connection.execute(
                sa.select(Transcript.transcript_name, gt.c.inheritance)
                .join(gt, gt.c.transcript_id == Transcript.id)
                .where(gt.c.genepanel_name == name, gt.c.genepanel_version == version)
            )
        )
        phenotypes = set(
            connection.execute(
                sa.select(Phenotype.gene_id, Phenotype.description, Phenotype.inheritance)
                .join(gp, gp.c.phenotype_id == Phenotype.id)
                .where(gp.c.genepanel_name == name, gp.c.genepanel_version == version)
            )
        )
    return transcripts, phenotypes


def test_deposit_stores_genes_transcripts_phenotypes_and_links(url: str) -> None:
    result = deposit(url, HBOC_FOLDER)

    assert (result.outcome, result.genes, result.transcripts, result.phenotypes) == ("created", 2, 2, 8)
    assert (result.genes_created, result.transcripts_created, result.phenotypes_created) == (2, 2, 8)
    assert row_counts(url) == {
        "gene": 2,
        "transcript": 2,
        "phenotype": 8,
        "genepanel": 1,
        "genepanel_transcript": 2,
        "genepanel_phenotype": 8,
    }
    with session_scope(url) as session:
        panel = session.get(Genepanel, ("HBOC", "v1.0.0"))
        assert panel is not None and (panel.genome_reference, panel.official) == ("GRCh37", True)
        assert session.get(Gene, 1100).hgnc_symbol == "BRCA1"  # type: ignore[union-attr]
        brca2 = session.scalars(
            sa.select(Transcript).where(Transcript.transcript_name == "NM_000059.3")
        ).one()
        assert (brca2.gene_id, brca2.type, brca2.chromosome, brca2.strand) == (1101, "RefSeq", "13", "+")
        assert (brca2.tx_start, brca2.tx_end, brca2.cds_start, brca2.cds_end) == (
            32889616,
            32973809,
            32890597,
            32972907,
        )
        assert brca2.exon_starts[:3] == [32889616, 32890558, 32893213] and len(brca2.exon_starts) == 27
        assert brca2.exon_ends[-1] == 32973809
        assert brca2.tags is None
        omim = session.scalar(
            sa.select(Phenotype.omim_id).where(
                Phenotype.description == "Fanconi anemia, complementation group D1"
            )
        )
        assert omim == 605724
    transcripts, phenotypes = panel_links(url, "HBOC", "v1.0.0")
    assert transcripts == {("NM_000059.3", "AD"), ("NM_007294.3", "AD")}
    assert (1101, "{Pancreatic cancer 2}", "N/A") in phenotypes and len(phenotypes) == 8


def test_redeposit_of_the_same_panel_changes_nothing(url: str) -> None:
    deposit(url, HBOC_FOLDER)
    before = row_counts(url)

    again = deposit(url, HBOC_FOLDER)

    assert (again.outcome, again.differs_from_stored) == ("already_present", False)
    assert "already in the database with the same content" in again.summary()
    assert row_counts(url) == before


def _changed_panel(tmp_path: Path, prefix: str = "HBOC_v1.0.0") -> Path:
    """HBOC without BRCA2, BRCA1 now AD/AR with a new coding start, and one more BRCA1 phenotype."""

    def transcripts(lines: list[str]) -> list[str]:
        brca1 = replace_field(replace_field(lines[3], 9, "AD/AR"), 10, "41197695")
        return [*lines[:2], brca1]

    def phenotypes(lines: list[str]) -> list[str]:
        kept = [line for line in lines[2:] if line.startswith("1100\t")]
        return [*lines[:2], *kept, "1100\tBRCA1\tAR\t\tA made-up phenotype\t\t\t"]

    return copy_panel(tmp_path, prefix, edit_transcripts=transcripts, edit_phenotypes=phenotypes)


def test_redeposit_with_other_content_reports_the_difference_and_keeps_the_stored_panel(
    url: str,
    tmp_path: Path,
) -> None:
    deposit(url, HBOC_FOLDER)
    before = (row_counts(url), panel_links(url, "HBOC", "v1.0.0"))

    result = deposit(url, _changed_panel(tmp_path))

    assert (result.outcome, result.differs_from_stored) == ("already_present", True)
    assert "use --replace" in result.summary()
    assert (row_counts(url), panel_links(url, "HBOC", "v1.0.0")) == before


def test_replace_swaps_the_panel_links_and_updates_shared_rows(url: str, tmp_path: Path) -> None:
    deposit(url, HBOC_FOLDER)

    result = deposit(url, _changed_panel(tmp_path), replace=True)

    assert (result.outcome, result.transcripts, result.phenotypes) == ("replaced", 1, 4)
    assert (result.transcripts_created, result.transcripts_updated, result.phenotypes_created) == (0, 1, 1)
    transcripts, phenotypes = panel_links(url, "HBOC", "v1.0.0")
    assert transcripts == {("NM_007294.3", "AD/AR")}
    assert {gene_id for gene_id, _, _ in phenotypes} == {1100}
    assert (1100, "A made-up phenotype", "AR") in phenotypes and len(phenotypes) == 4
    counts = row_counts(url)
    # BRCA2's rows stay: genes, transcripts and phenotypes are shared by all panels.
    assert (counts["transcript"], counts["phenotype"], counts["gene"]) == (2, 9, 2)
    assert (counts["genepanel_transcript"], counts["genepanel_phenotype"]) == (1, 4)
    with session_scope(url) as session:
        brca1 = session.scalars(
            sa.select(Transcript).where(Transcript.transcript_name == "NM_007294.3")
        ).one()
        assert brca1.cds_start == 41197695


def test_replace_of_one_panel_leaves_other_panels_alone(url: str, tmp_path: Path) -> None:
    deposit(url, HBOC_FOLDER)
    second = deposit(url, copy_panel(tmp_path / "copy", "HBOC_v1.1.0"))
    assert (second.outcome, second.genes_created, second.transcripts_created, second.phenotypes_created) == (
        "created",
        0,
        0,
        0,
    )
    assert row_counts(url)["transcript"] == 2 and row_counts(url)["genepanel_transcript"] == 4
    original = panel_links(url, "HBOC", "v1.0.0")

    deposit(url, _changed_panel(tmp_path / "changed", "HBOC_v1.1.0"), replace=True)

    assert panel_links(url, "HBOC", "v1.0.0") == original
    assert panel_links(url, "HBOC", "v1.1.0")[0] == {("NM_007294.3", "AD/AR")}


def test_a_failing_replace_rolls_back_and_keeps_the_old_links(url: str) -> None:
    deposit(url, HBOC_FOLDER)
    before = (row_counts(url), panel_links(url, "HBOC", "v1.0.0"))
    data = read_genepanel_folder(HBOC_FOLDER)
    # Bypasses the reader's checks: a phenotype for a gene that is not stored fails in the database
    # after the old links were already deleted in the same transaction.
    broken = dataclasses.replace(data, phenotypes=[*data.phenotypes, PhenotypeRow(999999, "NOPE", "x", "AD")])

    with pytest.raises(sa.exc.IntegrityError), session_scope(url) as session:
        deposit_genepanel(session, broken, replace=True)

    assert (row_counts(url), panel_links(url, "HBOC", "v1.0.0")) == before


def test_a_renamed_gene_takes_the_newest_symbol(url: str, tmp_path: Path) -> None:
    deposit(url, HBOC_FOLDER)

    def rename(lines: list[str]) -> list[str]:
        return [line.replace("\tBRCA1\t", "\tBRCA1NEW\t") for line in lines]

    result = deposit(
        url, copy_panel(tmp_path, "HBOC_v2.0.0", edit_transcripts=rename, edit_phenotypes=rename)
    )

    assert result.genes_renamed == 1
    assert "gene HGNC:1100 renamed from BRCA1 to BRCA1NEW" in result.warnings
    with session_scope(url) as session:
        assert session.get(Gene, 1100).hgnc_symbol == "BRCA1NEW"  # type: ignore[union-attr]


def test_a_shared_transcript_with_other_values_is_kept_unless_replace(url: str, tmp_path: Path) -> None:
    deposit(url, HBOC_FOLDER)

    def move_brca2(lines: list[str]) -> list[str]:
        return [*lines[:2], replace_field(lines[2], 10, "32890598"), lines[3]]

    result = deposit(url, copy_panel(tmp_path, "HBOC_v2.0.0", edit_transcripts=move_brca2))

    assert result.transcripts_updated == 0
    assert any("NM_000059.3" in warning and "--replace" in warning for warning in result.warnings)
    with session_scope(url) as session:
        cds_start = session.scalar(
            sa.select(Transcript.cds_start).where(Transcript.transcript_name == "NM_000059.3")
        )
    assert cds_start == 32890597


def test_genepanel_exists_and_the_missing_panel_message(url: str) -> None:
    with session_scope(url) as session:
        assert not genepanel_exists(session, "HBOC", "v1.0.0")
        with pytest.raises(MissingGenepanelError) as caught:
            require_genepanel(session, "HBOC", "v1.0.0", file="/in/TestAnalysis-001.analysis")
    assert str(caught.value) == (
        "/in/TestAnalysis-001.analysis: gene panel HBOC_v1.0.0 is not in the database: "
        "deposit it with `annostream deposit genepanel --folder DIR`"
    )

    deposit(url, HBOC_FOLDER)

    with session_scope(url) as session:
        assert genepanel_exists(session, "HBOC", "v1.0.0")
        assert not genepanel_exists(session, "HBOC", "v1.0.1")
        require_genepanel(session, "HBOC", "v1.0.0")


def test_large_panel_is_written_in_batches(url: str, tmp_path: Path) -> None:
    genes = 3000
    folder = synthetic_panel(tmp_path, "Big_v1", genes=genes, transcripts_per_gene=2, phenotypes_per_gene=2)
    data = read_genepanel_folder(folder)
    statements: list[str] = []
    engine = get_engine(url)

    def count(_conn, _cursor, statement, _params, _context, _executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        started = time.perf_counter()
        with session_scope(url) as session:
            result = deposit_genepanel(session, data)
        elapsed = time.perf_counter() - started
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)

    assert (result.genes_created, result.transcripts_created, result.phenotypes_created) == (3000, 6000, 6000)
    assert row_counts(url)["genepanel_transcript"] == 6000
    # 21,000 rows; row-by-row writing would take over 20,000 round trips.
    assert len(statements) < 200, len(statements)
    print(
        f"\n{url.split(':')[0]}: deposited 3000 genes / 6000 transcripts / 6000 phenotypes "
        f"in {elapsed:.2f} s with {len(statements)} statements"
    )


def _annostream(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DB_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_deposit_genepanel(url: str, tmp_path: Path) -> None:
    first = _annostream(url, "deposit", "genepanel", "--folder", str(HBOC_FOLDER))
    assert first.returncode == 0, first.stderr
    assert "created gene panel HBOC_v1.0.0: 2 genes (2 new, 0 renamed), 2 transcripts" in first.stdout

    again = _annostream(url, "deposit", "genepanel", "--folder", str(HBOC_FOLDER))
    assert again.returncode == 0, again.stderr
    assert "HBOC_v1.0.0 is already in the database with the same content" in again.stdout

    replaced = _annostream(
        url, "deposit", "genepanel", "--folder", str(_changed_panel(tmp_path)), "--replace"
    )
    assert replaced.returncode == 0, replaced.stderr
    assert "replaced gene panel HBOC_v1.0.0: 1 genes" in replaced.stdout
    assert panel_links(url, "HBOC", "v1.0.0")[0] == {("NM_007294.3", "AD/AR")}

    bad = copy_panel(
        tmp_path / "bad", edit_transcripts=lambda lines: [*lines[:3], lines[3].replace("\t-\t", "\t?\t")]
    )
    failed = _annostream(url, "deposit", "genepanel", "--folder", str(bad))
    assert failed.returncode == 2
    assert f"{bad / 'HBOC_v1.0.0_genes_transcripts.tsv'}:4: column 'strand'" in failed.stderr
