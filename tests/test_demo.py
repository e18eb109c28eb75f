"""`annostream up --demo` shows the whole engine: the synthetic demo bundle is added and activated,
and the demo analyses carry engine annotation (gnomAD-like frequencies, ClinVar-like classes),
visible in the API and on the web page. The bundle is labelled synthetic and adding it again
changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from engine.config import load_settings
from engine.db.migrate import upgrade
from engine.demo_bundle import DEMO_BUNDLE_VERSION, build_demo_bundle, demo_variants, install_demo_bundle
from tests.support.stack import make_stack, wait_until


def test_demo_bundle_is_synthetic_deterministic_and_idempotent(tmp_path: Path) -> None:
    first, second = build_demo_bundle(tmp_path / "a"), build_demo_bundle(tmp_path / "b")
    for path in (
        "sources.json",
        "vcfanno_config.toml",
        "variantDBs/gnomad_synthetic/gnomad_synthetic.vcf.gz",
    ):
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
    sources = json.loads((first / "sources.json").read_text())
    assert set(sources) == {"gnomad_synthetic", "clinvar_synthetic"}
    assert all(
        entry["synthetic"] is True and "SYNTHETIC" in entry["description"] for entry in sources.values()
    )
    assert len(demo_variants()) == 6

    settings = load_settings(data_dir=tmp_path / "data")
    settings.ensure_folders()
    upgrade(settings.database_url)
    assert install_demo_bundle(settings) == f"demo bundle {DEMO_BUNDLE_VERSION} (synthetic) active"
    assert install_demo_bundle(settings) == f"demo bundle {DEMO_BUNDLE_VERSION} (synthetic) active"


def test_up_demo_annotates_the_demo_analyses(tmp_path: Path, pg_url: str, broker, topic_prefix: str) -> None:
    stack = make_stack(tmp_path, db_url=pg_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    stack.env["ANNOSTREAM_LOG_FORMAT"] = "json"
    stack.start("--demo")
    try:
        analyses = wait_until(
            lambda: (found := stack.get("/api/v1/analyses")["items"]) and len(found) == 2 and found,
            timeout_s=120,
            what="the two demo analyses",
            on_timeout=stack.log_tail,
        )
        assert stack.get("/api/v1/bundles")["active_version"] == DEMO_BUNDLE_VERSION
        for analysis in analyses:
            alleles = stack.get(f"/api/v1/analyses/{analysis['id']}/alleles")["items"]
            assert len(alleles) == 6
            for allele in alleles:
                annotation = allele["annotation"]
                assert annotation["bundle_version"] == DEMO_BUNDLE_VERSION
                document = annotation["annotations"]
                frequency = document["frequencies"]["GNOMAD_GENOMES"]
                assert 0 < frequency["freq"]["G"] < 0.05 and frequency["num"]["G"] >= 150_000
                clinvar = document["external"]["CLINVAR"]
                assert clinvar["items"][0]["submitter"] == "annostream demo (synthetic)"
                assert document["transcripts"], "VEP transcripts from the VCF are kept"
        page = httpx.get(f"{stack.api}/ui/analyses/{analyses[0]['id']}", timeout=30).text
        assert "GNOMAD_GENOMES" in page and DEMO_BUNDLE_VERSION in page
        assert any(cls in page for cls in ("Pathogenic", "Benign", "Uncertain significance"))
    finally:
        stack.stop()
    log = stack.log_tail(2000)
    assert f"demo bundle {DEMO_BUNDLE_VERSION} (synthetic) active" in log
    assert "web page:  http://localhost:" in log  # the banner
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    names = {analysis["name"] for analysis in analyses}
    about = [r for r in records if r.get("analysis") in names]
    assert {r["analysis"] for r in about} == names
    assert any(r["logger"].startswith("engine.") and r.get("event_id") for r in about), (
        "worker lines carry both"
    )
    assert all(r.get("event_id") for r in about if r["logger"].startswith("engine.pipeline"))
    assert not [r for r in records if r["logger"].startswith(("faust", "mode")) and r["level"] == "INFO"]
