"""``/api/v1/genepanels`` on PostgreSQL and SQLite, through the real router and error handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from api.routes import genepanels
from engine.db.migrate import upgrade
from engine.db.session import session_factory, session_scope
from engine.deposit.genepanel import deposit_genepanel, read_genepanel_folder
from tests.support.genepanels import HBOC_FOLDER, copy_panel, synthetic_panel


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    upgrade(db_url)
    folders = [
        HBOC_FOLDER,
        copy_panel(
            tmp_path,
            "HBOC_v2.0.0",
            edit_transcripts=lambda lines: lines[:3],
            edit_phenotypes=lambda lines: [lines[1], *lines[5:]],
        ),
        synthetic_panel(tmp_path, "Alpha_v1", genes=3, transcripts_per_gene=2, phenotypes_per_gene=1),
    ]
    for folder in folders:
        with session_scope(db_url) as session:
            deposit_genepanel(session, read_genepanel_folder(folder))
    app = FastAPI()
    app.state.sessions = session_factory(db_url)
    install_error_handlers(app)
    app.include_router(genepanels.router)
    with TestClient(app) as test_client:
        yield test_client


def test_list_genepanels_with_counts(client: TestClient) -> None:
    response = client.get("/api/v1/genepanels")

    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["page"], body["per_page"]) == (3, 1, 100)
    summaries = {(item["name"], item["version"]): item for item in body["items"]}
    assert [(item["name"], item["version"]) for item in body["items"]] == [
        ("Alpha", "v1"),
        ("HBOC", "v1.0.0"),
        ("HBOC", "v2.0.0"),
    ]
    hboc = summaries[("HBOC", "v1.0.0")]
    assert (hboc["gene_count"], hboc["transcript_count"], hboc["phenotype_count"]) == (2, 2, 8)
    assert (hboc["genome_reference"], hboc["official"]) == ("GRCh37", True)
    # v2.0.0 keeps only BRCA2 (line 3) and the phenotypes from line 6 on (all BRCA2's).
    v2 = summaries[("HBOC", "v2.0.0")]
    assert (v2["gene_count"], v2["transcript_count"], v2["phenotype_count"]) == (1, 1, 5)
    alpha = summaries[("Alpha", "v1")]
    assert (alpha["gene_count"], alpha["transcript_count"], alpha["phenotype_count"]) == (3, 6, 3)


def test_list_genepanels_paginates(client: TestClient) -> None:
    second = client.get("/api/v1/genepanels", params={"page": 2, "per_page": 2}).json()
    assert second["total"] == 3
    assert [(item["name"], item["version"]) for item in second["items"]] == [("HBOC", "v2.0.0")]
    assert client.get("/api/v1/genepanels", params={"page": 3, "per_page": 2}).json()["items"] == []

    invalid = client.get("/api/v1/genepanels", params={"per_page": 0})
    assert invalid.status_code == 422
    assert "per_page" in invalid.json()["message"]


def test_read_genepanel_returns_genes_with_transcripts_and_phenotypes(client: TestClient) -> None:
    response = client.get("/api/v1/genepanels/HBOC/v1.0.0")

    assert response.status_code == 200
    panel = response.json()
    assert (panel["name"], panel["version"], panel["gene_count"]) == ("HBOC", "v1.0.0", 2)
    assert [gene["hgnc_symbol"] for gene in panel["genes"]] == ["BRCA1", "BRCA2"]
    brca1 = panel["genes"][0]
    assert brca1["hgnc_id"] == 1100
    [transcript] = brca1["transcripts"]
    assert {
        key: transcript[key]
        for key in (
            "transcript_name",
            "chromosome",
            "tx_start",
            "tx_end",
            "strand",
            "cds_start",
            "cds_end",
            "inheritance",
            "type",
        )
    } == {
        "transcript_name": "NM_007294.3",
        "chromosome": "17",
        "tx_start": 41196311,
        "tx_end": 41277500,
        "strand": "-",
        "cds_start": 41197694,
        "cds_end": 41276113,
        "inheritance": "AD",
        "type": "RefSeq",
    }
    assert len(transcript["exon_starts"]) == len(transcript["exon_ends"]) == 23
    assert transcript["exon_starts"][0] == 41196311
    phenotypes = {(p["description"], p["inheritance"], p["omim_id"]) for p in brca1["phenotypes"]}
    assert phenotypes == {
        ("{Breast-ovarian cancer, familial, 1}", "AD", 604370),
        ("Fanconi anemia, complementation group S", "AR", 617883),
        ("{Pancreatic cancer, susceptibility to, 4}", "N/A", 614320),
    }
    assert len(panel["genes"][1]["phenotypes"]) == 5


def test_read_genepanel_shows_only_that_panels_links(client: TestClient) -> None:
    panel = client.get("/api/v1/genepanels/HBOC/v2.0.0").json()
    assert [gene["hgnc_symbol"] for gene in panel["genes"]] == ["BRCA2"]
    assert [t["transcript_name"] for t in panel["genes"][0]["transcripts"]] == ["NM_000059.3"]


def test_unknown_genepanel_is_a_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/genepanels/HBOC/v9.9.9")

    assert response.status_code == 404
    assert response.json() == {"message": "gene panel HBOC_v9.9.9 not found"}
