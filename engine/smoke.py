"""A smoke test of the live pipeline (``annostream smoke``).

Drops the shipped demo analysis (``engine/demo/analyses/Demo-Single``) into ANALYSES_INCOMING
under a unique name, READY last, and polls the read API until the analysis is visible or its
import job FAILED. Reports the time of each stage from the job's history, then removes
everything it created: the analysis, its import job, its folder (wherever it ended up), its work
directory, and the demo gene panel if the smoke test had to deposit it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.config import Settings
from engine.db import migrate
from engine.db.models import Analysis, Genepanel, ImportJob, genepanel_phenotype, genepanel_transcript
from engine.db.session import session_scope
from engine.deposit.genepanel import deposit_genepanel, read_genepanel_folder
from engine.deposit.writer import delete_analysis
from engine.errors import SmokeFailed
from engine.folders import READY_FILE

DEMO = Path(__file__).parent / "demo"
DEMO_ANALYSIS = DEMO / "analyses" / "Demo-Single"
DEMO_PANEL = DEMO / "genepanels" / "HBOC_v1.0.0"
PANEL = ("HBOC", "v1.0.0")
POLL_INTERVAL_S = 0.25


StageTime = tuple[str, str | None, float]  # status, stage, seconds after the folder was dropped


@dataclass
class SmokeResult:
    name: str
    passed: bool = False
    reason: str | None = None
    stages: list[StageTime] = field(default_factory=list)  # from the job's history
    visible_after_s: float | None = None
    total_s: float = 0.0
    cleaned: list[str] = field(default_factory=list)
    cleanup_errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "reason": self.reason,
            "stages": [{"status": s, "stage": g, "after_s": round(t, 3)} for s, g, t in self.stages],
            "visible_after_s": self.visible_after_s,
            "total_s": round(self.total_s, 3),
            "cleaned": self.cleaned,
            "cleanup_errors": self.cleanup_errors,
        }


class ApiClient:
    """A minimal JSON GET client on the standard library: the smoke test runs from a plain
    install (no test extras), so it must not need httpx."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 5.0):
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({key: value for key, value in params.items() if value is not None})
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, headers={**self.headers, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read().decode("utf-8", "replace")[:200]
            raise SmokeFailed(f"GET {url} answered {error.code}: {body}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise SmokeFailed(f"cannot reach the API at {self.base_url}: {reason}") from None

    def close(self) -> None:
        """Nothing to release: every request opens and closes its own connection."""


def smoke_name(now: dt.datetime | None = None) -> str:
    moment = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S")
    return f"Smoke-{moment}-{uuid.uuid4().hex[:6]}"


def run_smoke(
    settings: Settings,
    api_url: str,
    *,
    timeout_s: float = 180.0,
    token: str | None = None,
    name: str | None = None,
) -> SmokeResult:
    """Run one demo analysis through the live pipeline; always cleans up what it created."""
    result = SmokeResult(name=name or smoke_name())
    api = ApiClient(api_url, token)
    started = time.monotonic()
    added_panel = False
    try:
        api.get("/healthz")
        migrate.require_current(settings.database_url)
        added_panel = _ensure_panel(settings.database_url)
        dropped_at = dt.datetime.now(dt.UTC)
        drop_folder(settings.analyses_incoming, result.name)
        job = _wait_for_import(api, result.name, started, timeout_s)
        result.visible_after_s = round(time.monotonic() - started, 3)
        result.stages = _stage_times(job.get("history", []), dropped_at)
        result.passed = True
    except SmokeFailed as failure:
        result.reason = str(failure)
    except Exception as error:  # report anything (a broken DB, a config error) as a failed smoke test
        result.reason = f"{type(error).__name__}: {error}"
    finally:
        result.total_s = time.monotonic() - started
        api.close()
        cleanup(settings, result, remove_panel=added_panel)
    return result


def drop_folder(incoming: Path, name: str) -> Path:
    """Copy the demo analysis into ``incoming/name`` renamed to ``name``; READY is written last."""
    folder = incoming / name
    shutil.copytree(DEMO_ANALYSIS, folder)
    (folder / READY_FILE).unlink(missing_ok=True)
    analysis_file = folder / f"{DEMO_ANALYSIS.name}.analysis"
    document = json.loads(analysis_file.read_text())
    document["name"] = name
    analysis_file.write_text(json.dumps(document, indent=2))
    (folder / READY_FILE).touch()
    return folder


def _ensure_panel(url: str) -> bool:
    """Deposit the demo HBOC v1.0.0 panel unless it is stored; True if this call added it."""
    with session_scope(url) as session:
        if session.get(Genepanel, PANEL) is not None:
            return False
        deposit_genepanel(session, read_genepanel_folder(DEMO_PANEL))
    return True


def _wait_for_import(api: ApiClient, name: str, started: float, timeout_s: float) -> dict[str, Any]:
    """The DONE job's details once the analysis is visible; SmokeFailed on FAILED or timeout."""
    last_status = None
    while time.monotonic() - started < timeout_s:
        jobs = api.get("/api/v1/import/jobs", analysis=name)["items"]
        if jobs:
            job = jobs[0]
            last_status = f"{job['status']} (stage {job['stage']})"
            if job["status"] == "FAILED":
                raise SmokeFailed(f"import job {job['id']} FAILED in stage {job['stage']}: {job['message']}")
            if job["status"] == "DONE" and _visible(api, name):
                detail: dict[str, Any] = api.get(f"/api/v1/import/jobs/{job['id']}")
                return detail
        time.sleep(POLL_INTERVAL_S)
    where = (
        f"its import job is still {last_status}"
        if last_status
        else "no import job appeared (is the watcher running and ANALYSES_INCOMING the one it watches?)"
    )
    raise SmokeFailed(f"{name} was not imported within {timeout_s:.0f} s: {where}")


def _visible(api: ApiClient, name: str) -> bool:
    items = api.get("/api/v1/analyses", name=name)["items"]
    return any(item["name"] == name for item in items)


def _stage_times(history: list[dict[str, Any]], dropped_at: dt.datetime) -> list[StageTime]:
    times = []
    for entry in history:
        at = dt.datetime.fromisoformat(str(entry["at"]))
        at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at
        times.append((str(entry["status"]), entry.get("stage"), round((at - dropped_at).total_seconds(), 3)))
    return times


# --- cleanup ------------------------------------------------------------------------------------


def cleanup(settings: Settings, result: SmokeResult, *, remove_panel: bool) -> None:
    """Remove the smoke analysis from the database and the file system (each step on its own,
    so one failing step does not leave the others undone)."""
    steps = [
        ("database rows", lambda: _remove_rows(settings.database_url, result)),
        ("folders", lambda: _remove_folders(settings, result)),
    ]
    if remove_panel:
        steps.append(("gene panel", lambda: _remove_panel(settings.database_url, result)))
    for what, step in steps:
        try:
            step()
        except Exception as error:
            result.cleanup_errors.append(f"{what}: {type(error).__name__}: {error}")


def _remove_rows(url: str, result: SmokeResult) -> None:
    with session_scope(url) as session:
        job_ids = list(session.scalars(sa.select(ImportJob.id).where(ImportJob.analysis_name == result.name)))
        session.execute(sa.delete(ImportJob).where(ImportJob.id.in_(job_ids)))
        jobs = len(job_ids)
        analysis_id = session.scalar(sa.select(Analysis.id).where(Analysis.name == result.name))
        if analysis_id is not None:
            delete_analysis(session, analysis_id)
            result.cleaned.append(f"analysis {analysis_id}")
    if jobs:
        result.cleaned.append(f"{jobs} import job(s)")


def _remove_folders(settings: Settings, result: SmokeResult) -> None:
    places = (settings.analyses_incoming, settings.analyses_path, settings.analyses_failed, settings.work_dir)
    for place in places:
        # A taken destination name gets a timestamp suffix (engine.folders): NAME.20240502T...
        for folder in [place / result.name, *place.glob(f"{result.name}.*")]:
            if folder.is_dir():
                shutil.rmtree(folder)
                result.cleaned.append(str(folder))


def _remove_panel(url: str, result: SmokeResult) -> None:
    name, version = PANEL
    with session_scope(url) as session:
        in_use = session.scalar(
            sa.select(sa.func.count())
            .select_from(Analysis)
            .where(Analysis.genepanel_name == name, Analysis.genepanel_version == version)
        )
        if in_use:
            result.cleanup_errors.append(f"gene panel {name} {version} kept: {in_use} analyses use it")
            return
        for table in (genepanel_transcript, genepanel_phenotype):
            session.execute(
                sa.delete(table).where(table.c.genepanel_name == name, table.c.genepanel_version == version)
            )
        session.execute(sa.delete(Genepanel).where(Genepanel.name == name, Genepanel.version == version))
    result.cleaned.append(f"gene panel {name} {version}")


def render(result: SmokeResult) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    lines = [f"smoke {verdict}: {result.name}" + (f": {result.reason}" if result.reason else "")]
    previous = 0.0
    for status, stage, after in result.stages:
        lines.append(f"  {status:<11} {stage or '':<9} +{after:7.2f} s  (step {after - previous:6.2f} s)")
        previous = after
    if result.visible_after_s is not None:
        lines.append(f"  visible in the API after {result.visible_after_s:.2f} s")
    lines.append(f"  total {result.total_s:.2f} s")
    lines.append("cleanup: " + (", ".join(result.cleaned) if result.cleaned else "nothing to remove"))
    lines.extend(f"cleanup problem: {problem}" for problem in result.cleanup_errors)
    return "\n".join(lines)
