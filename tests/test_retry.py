"""Retry of a failed import against a live stack: refused while the folder is still broken (the
new error with file and line, nothing moves), re-imported once fixed, linked to the failed job,
idempotent, refused when the folder is gone; over the API (token) and from the CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.stack import Stack, make_stack, wait_until
from tests.test_e2e import GENEPANEL, TEST_ANALYSIS, analysis_named

TOKEN = "retry-test-token"


@pytest.fixture
def stack(tmp_path: Path, pg_url: str, broker, topic_prefix: str) -> Iterator[Stack]:
    running = make_stack(tmp_path, db_url=pg_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    running.env["ANNOSTREAM_API_TOKENS"] = TOKEN
    running.cli("db", "upgrade")
    running.cli("deposit", "genepanel", "--folder", str(GENEPANEL))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def drop_broken(stack: Stack, name: str) -> int:
    """A folder whose VCF has a bad POS on its second record; returns the 1-based line."""
    folder = stack.drop(TEST_ANALYSIS, name, ready=False)
    (folder / "TestAnalysis-001.analysis").write_text(
        json.dumps({"params": {"genepanel": "HBOC_v1.0.0"}, "name": name, "priority": "1"})
    )
    vcf = folder / "TestAnalysis-001.vcf"
    lines = vcf.read_text().splitlines()
    body = next(i for i, line in enumerate(lines) if line.startswith("#CHROM")) + 1
    fields = lines[body + 1].split("\t")
    fields[1] = "not-a-number"
    lines[body + 1] = "\t".join(fields)
    vcf.write_text("\n".join(lines) + "\n")
    (folder / "READY").touch()
    return body + 2


def failed_job(stack: Stack, name: str) -> dict:
    return wait_until(
        lambda: next(iter(stack.get("/api/v1/import/jobs", analysis=name, status="FAILED")["items"]), None),
        timeout_s=90,
        what=f"{name} FAILED",
        on_timeout=stack.log_tail,
    )


def post_retry(stack: Stack, job_id: int, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{stack.api}/api/v1/import/jobs/{job_id}/retry", headers=headers, timeout=30)


def test_retry_over_the_api(stack: Stack) -> None:
    line = drop_broken(stack, "Broken-R1")
    job = failed_job(stack, "Broken-R1")
    failed_folder = wait_until(
        lambda: next(stack.failed.glob("Broken-R1*/error.json"), None), timeout_s=30, what="error.json"
    ).parent

    assert post_retry(stack, job["id"], token=None).status_code == 401
    still = post_retry(stack, job["id"])
    assert still.status_code == 422, still.text
    message = still.json()["message"]
    assert "Broken-R1 still fails" in message and f"TestAnalysis-001.vcf:{line}:" in message
    assert "POS" in message
    assert (failed_folder / "error.json").is_file(), "a refused retry moves nothing"

    shutil.copy(TEST_ANALYSIS / "TestAnalysis-001.vcf", failed_folder / "TestAnalysis-001.vcf")
    answer = post_retry(stack, job["id"])
    assert answer.status_code == 202, answer.text
    retried = answer.json()
    assert retried["failed_job"] == job["id"] and not retried["already"]
    assert not failed_folder.exists()
    wait_until(
        lambda: analysis_named(stack, "Broken-R1"),
        timeout_s=90,
        what="Broken-R1 imported",
        on_timeout=stack.log_tail,
    )
    new_job = stack.get(f"/api/v1/import/jobs/{retried['job']}")
    wait_until(
        lambda: stack.get(f"/api/v1/import/jobs/{retried['job']}")["status"] == "DONE",
        timeout_s=30,
        what="the retry job DONE",
    )
    assert new_job["retry_of"] == job["id"]
    imported = stack.imported / "Broken-R1"
    assert imported.is_dir() and not (imported / "error.json").exists()

    again = post_retry(stack, job["id"])
    assert again.status_code == 202 and again.json() == {**retried, "already": True}
    jobs = stack.get("/api/v1/import/jobs", analysis="Broken-R1")["items"]
    assert len(jobs) == 2, "an idempotent retry publishes nothing new"
    cli = stack.cli("retry", "Broken-R1")
    assert f"already retried as import job {retried['job']}" in cli.stdout

    assert post_retry(stack, retried["job"]).status_code == 409  # DONE: nothing to retry
    assert post_retry(stack, 999_999).status_code == 404


def test_retry_from_the_cli_and_a_folder_that_is_gone(stack: Stack) -> None:
    drop_broken(stack, "Broken-R2")
    drop_broken(stack, "Broken-R3")
    job2 = failed_job(stack, "Broken-R2")
    failed_job(stack, "Broken-R3")
    folders = {
        name: wait_until(
            lambda name=name: next(stack.failed.glob(f"{name}*/error.json"), None),
            timeout_s=30,
            what=f"{name} in failed/",
        ).parent
        for name in ("Broken-R2", "Broken-R3")
    }
    shutil.rmtree(folders["Broken-R2"])
    shutil.copy(TEST_ANALYSIS / "TestAnalysis-001.vcf", folders["Broken-R3"] / "TestAnalysis-001.vcf")

    result = stack.cli("retry", "--all-failed", "--since", "1h", check=False)
    assert result.returncode == 1
    assert "Broken-R3: import job" in result.stdout and "retried as import job" in result.stdout
    assert f"the folder of Broken-R2 (import job {job2['id']}" in result.stderr
    assert "is no longer in" in result.stderr
    wait_until(
        lambda: analysis_named(stack, "Broken-R3"),
        timeout_s=90,
        what="Broken-R3 imported",
        on_timeout=stack.log_tail,
    )
    assert post_retry(stack, job2["id"]).status_code == 409

    usage = stack.cli("retry", check=False)
    assert usage.returncode == 2 and "NAME or --all-failed" in usage.stderr
