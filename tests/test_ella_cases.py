"""Every ELLA deposit case (tests/data/ella-cases: inputs and what ELLA 1.17.2's own code stores
for them) imported through Annostream's real stages into PostgreSQL, every stored row compared.

A case matches ELLA exactly unless it is listed in ``DELIBERATE``: there the listed parts must
differ (and only those), for the reason given, which docs/deposit.md repeats.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import ConfigError, Settings, load_settings
from engine.db.session import get_engine
from engine.events import Topics
from engine.kafka import EventProducer, ensure_topics
from tests.support.ella_cases import (
    CASES,
    case_names,
    comparable,
    deposit_panel,
    import_analysis,
    load_expected,
    steps,
)

# case -> (parts of the result that differ from ELLA's, why). Everything else must match.
DELIBERATE: dict[str, tuple[tuple[str, ...], str]] = {
    "non-parsimonious-alleles": (
        ("alleles", "genotypes", "annotations", "annotation_rows"),
        "alleles are stored as ella-anno's normalisation (vt normalize) makes them before ELLA's deposit: "
        "vcf_pos/vcf_ref/vcf_alt trimmed of shared padding bases",
    ),
    "undecomposed-multiallelic-compound": (
        ("alleles", "genotypes", "annotations", "annotation_rows"),
        "a multi-ALT line is decomposed (vt decompose) before the deposit, so a 1/2 proband is imported as a "
        "compound genotype; ELLA's deposit on the raw line silently imports nothing",
    ),
    "undecomposed-multiallelic-het": (
        ("error",),
        "a multi-ALT line is decomposed before the deposit; ELLA's deposit on the raw line rejects it",
    ),
    "star-allele": (
        ("alleles", "genotypes", "annotations", "annotation_rows"),
        "'*' ALTs are dropped by the normalisation (as ella-anno does); ELLA's deposit stores them as SNPs",
    ),
    "info-float-precision": (
        ("annotations",),
        "INFO Float values are the exact text (0.05), not 32-bit float artefacts",
    ),
    "analysis-file-priority-string": (
        ("error",),
        'lenient input: a priority written as a string ("2") is read as the integer',
    ),
    "analysis-file-date-with-time": (
        ("error",),
        "lenient input: date_requested may carry a time (ISO 8601); ELLA's strptime rejects it",
    ),
    "info-missing-required-int": (
        ("error",),
        "INFO '.' is stored as null (ELLA stores null too when target_type_throw is false); "
        "ELLA rejects the whole analysis when the int cast throws",
    ),
    "cnv-end-without-svlen": (
        ("error",),
        "lenient input: a CNV without SVLEN uses END - POS; ELLA fails with KeyError",
    ),
    "cnv-haploid-nocall-dup": (
        ("alleles", "genotypes", "annotations", "annotation_rows"),
        "lenient input: a haploid '.' proband on a duplication is treated like './.' (carried)",
    ),
    "watcher-hidden-folder": (
        ("imported_analyses", "folders_in_dest", "folders_left_in_incoming"),
        "folders whose name starts with '.' are work in progress (staging) and never published",
    ),
}


@pytest.fixture
def case_settings(tmp_path: Path, pg_url: str) -> Iterator[Settings]:
    from engine.db.migrate import upgrade

    root = tmp_path / "data"
    settings = load_settings(
        ANNOSTREAM_DATA_DIR=root,
        DB_URL=pg_url,
        ANALYSES_INCOMING=root / "incoming",
        ANALYSES_PATH=root / "imported",
        ANALYSES_FAILED=root / "failed",
        ANNOSTREAM_TOPIC_PREFIX="t.",
    )
    settings.ensure_folders()
    upgrade(pg_url)
    assert "error" not in deposit_panel(settings, CASES / "_genepanels" / "AUDIT_v01")
    yield settings
    get_engine.cache_clear()


def with_env(settings: Settings, **env: Any) -> Settings:
    return settings.model_copy(update=env)


def run_steps(name: str, settings: Settings) -> list[dict[str, Any]]:
    from engine.db.session import session_scope
    from engine.deposit.annotation_config import store_annotation_config

    results = []
    for step in steps(name):
        if step["kind"] == "analysis":
            flagged = with_env(settings, enable_cnv=bool(step.get("cnv_feature_flag", False)))
            results.append(import_analysis(flagged, CASES / name / step["folder"]))
        elif step["kind"] == "genepanel":
            results.append(deposit_panel(settings, CASES / name / step["folder"]))
        else:
            with session_scope(settings.database_url) as session:
                store_annotation_config(session, CASES / name / step["file"])
    return results


def expected_parts(expected: dict[str, Any]) -> dict[str, Any]:
    if "error" in expected:
        return {"error": True}
    parts = {k: v for k, v in expected.items() if k != "analysis_config_data"}
    if "analysis" in parts:
        parts["properties"] = None  # ELLA writes no analysis.properties
    return comparable(parts)


def actual_parts(actual: dict[str, Any]) -> dict[str, Any]:
    return {"error": True} if "error" in actual else comparable(actual)


def differing(expected: dict[str, Any], actual: dict[str, Any]) -> set[str]:
    if "error" in expected or "error" in actual:
        return set() if ("error" in expected) == ("error" in actual) else {"error"}
    return {key for key in expected.keys() | actual.keys() if expected.get(key) != actual.get(key)}


# Cases whose rule another change owns; strict: once it lands, the case passes and this entry
# must go.
PENDING: dict[str, str] = {}

DEPOSIT_CASES = [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=PENDING[n])) if n in PENDING else n
    for n in case_names()
    if not n.startswith("watcher-")
]


@pytest.mark.parametrize("name", DEPOSIT_CASES)
def test_deposit_case(name: str, case_settings: Settings) -> None:
    case = load_expected(name)
    expected_list = case["expected"] if isinstance(case["expected"], list) else [case["expected"]]
    results = run_steps(name, case_settings)
    assert len(results) == len(expected_list)
    for expected, actual in zip(expected_list, results, strict=True):
        want, got = expected_parts(expected), actual_parts(actual)
        if name in DELIBERATE:
            parts, _reason = DELIBERATE[name]
            assert differing(want, got) == set(parts), (name, actual.get("error"))
            continue
        assert "error" not in got or "error" in want, actual.get("error")
        for key in want.keys() | got.keys():
            assert got.get(key) == want.get(key), f"{name}: {key} differs from ELLA"


WATCHER_CASES = [n for n in case_names() if n.startswith("watcher-")]


def _watcher_pass(
    name: str, settings: Settings, broker_servers: str, topic_prefix: str, tmp_path: Path
) -> dict[str, Any]:
    """One pass of the watcher over the case's incoming folders, then the pipeline on every event
    it published (what ELLA's watcher does in one ``check_and_import``)."""
    import json

    from engine.events import encode
    from engine.pipeline import Pipeline
    from producers.watcher import Watcher

    case = CASES / name
    options = json.loads((case / "watcher.json").read_text())["ella"]
    env: dict[str, Any] = {"kafka_bootstrap_servers": broker_servers, "topic_prefix": topic_prefix}
    if "blacklistfile" in options:
        env["analyses_deny_file"] = case / options["blacklistfile"]
    settings = with_env(settings, **env)
    for folder in sorted((case / "incoming").iterdir()):
        shutil.copytree(folder, settings.analyses_incoming / folder.name)
    if (case / "imported").is_dir():
        for folder in (case / "imported").iterdir():
            shutil.copytree(folder, settings.analyses_path / folder.name)
    topics = Topics.from_settings(settings)
    ensure_topics(broker_servers, topics.all(), partitions=1)
    imported = []
    with EventProducer(broker_servers) as producer:
        try:
            watcher = Watcher(
                settings,
                producer,
                producer_name="ella-cases",
                whitelist=options.get("whitelist"),
                blacklist=options.get("blacklist"),
            )
        except ConfigError:
            events = []  # the watcher refuses to start (see test_watcher_rules); nothing is published
        else:
            events = watcher.scan()
    pipeline = Pipeline(settings)
    for event in events:
        forward = [m for m in pipeline.annotate(encode(event)) if m.topic == topics.annotated]
        if forward and any(m.topic == topics.imported for m in pipeline.persist(forward[0].value)):
            imported.append(event.analysis)
    return {
        "imported_analyses": sorted(imported),
        "folders_in_dest": sorted(p.name for p in settings.analyses_path.iterdir()),
        "folders_left_in_incoming": sorted(p.name for p in settings.analyses_incoming.iterdir()),
    }


@pytest.mark.parametrize("name", WATCHER_CASES)
def test_watcher_case(
    name: str, case_settings: Settings, broker: Any, topic_prefix: str, tmp_path: Path
) -> None:
    expected = load_expected(name)["expected"]
    actual = _watcher_pass(name, case_settings, broker.bootstrap_servers, topic_prefix, tmp_path)
    if name in DELIBERATE:
        assert differing(expected, actual) == set(DELIBERATE[name][0])
    else:
        assert actual == expected


def test_every_case_is_run() -> None:
    deposit = {c if isinstance(c, str) else c.values[0] for c in DEPOSIT_CASES}
    assert deposit | set(WATCHER_CASES) == set(case_names())
    assert set(DELIBERATE) <= set(case_names())
