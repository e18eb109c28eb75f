"""``annostream retry``: re-import failed analyses once their folders are fixed (engine/retry.py)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer


def retry(
    name: Annotated[str | None, typer.Argument(help="Analysis name whose latest failure to retry.")] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Retry every FAILED import job not retried yet.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="With --all-failed: only jobs that failed since then (ISO 8601 or 30m/2h/1d ago)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Move a failed analysis folder back from ANALYSES_FAILED (after you fixed it), clear its
    error.json and publish it again; the new import job links to the failed one. A folder that
    still fails is left where it is and the new error is printed. Exit 1 if anything was refused."""
    from engine.db import migrate
    from engine.errors import RetryRefused
    from engine.events import default_producer
    from engine.replay import parse_moment
    from engine.retry import RetryResult, failed_jobs, retry_analysis, retry_job
    from engine.runtime import cli_settings

    if (name is None) == (not all_failed):
        raise typer.BadParameter("give an analysis NAME or --all-failed (not both)")
    if since is not None and not all_failed:
        raise typer.BadParameter("--since only goes with --all-failed")
    settings, _runtime = cli_settings()
    migrate.require_current(settings.database_url)
    producer = default_producer("retry")
    results: list[RetryResult] = []
    refused: list[str] = []
    if name is not None:
        attempts = [lambda: retry_analysis(settings, name, producer=producer)]
    else:
        start = parse_moment(since, option="--since") if since is not None else None
        attempts = [
            lambda job_id=job_id: retry_job(settings, job_id, producer=producer)  # type: ignore[misc]
            for job_id in failed_jobs(settings, since=start)
        ]
    for attempt in attempts:
        try:
            results.append(attempt())
        except RetryRefused as error:
            refused.append(str(error))
    if as_json:
        typer.echo(
            json.dumps({"retried": [result.to_dict() for result in results], "refused": refused}, indent=2)
        )
    else:
        for result in results:
            typer.echo(result.describe())
        if all_failed and not attempts:
            typer.echo("no failed import jobs to retry")
    for message in refused:
        print(f"annostream retry: {message}", file=sys.stderr)
    if refused:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("retry")(retry)
