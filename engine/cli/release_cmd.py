"""``annostream reanalyse`` and ``annostream reannotate``: re-annotate stored alleles (docs/reanalysis.md)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from engine.reannotate.runs import RunProgress


def reanalyse_command(
    analysis: Annotated[str, typer.Option("--analysis", help="Name of a stored analysis.")],
    bundle: Annotated[str | None, typer.Option(
        "--bundle", help="Bundle version (default: the active bundle).")] = None,
) -> None:
    """Request a reanalysis: the worker re-annotates the analysis's alleles with the bundle."""
    import getpass

    from engine.db import migrate
    from engine.db.session import session_scope
    from engine.events import default_producer
    from engine.kafka import EventPublisher
    from engine.reannotate.publish import request_reanalysis
    from engine.runtime import cli_settings

    settings, _runtime = cli_settings()
    migrate.require_current(settings.database_url)
    with (session_scope(settings.database_url) as session,
          EventPublisher(settings, client_id="annostream-cli", command="reanalyse") as publisher):
        event = request_reanalysis(session, publisher, analysis, bundle, producer=default_producer("cli"),
                                   requested_by=f"cli@{getpass.getuser()}")
    typer.echo(f"reanalysis of {analysis} with bundle {event.bundle} requested: event {event.event_id}")
    typer.echo(f"follow it with: GET /api/v1/reanalyses/{event.event_id}")


def reannotate_command(
    bundle: Annotated[str | None, typer.Option(
        "--bundle", help="Bundle version (default: the active bundle).")] = None,
    analysis: Annotated[list[str] | None, typer.Option(
        "--analysis",
        help="Only the alleles of this analysis (repeatable); default: every stored allele.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Alleles per batch event.")] = 50_000,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Return once the batches are published.")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Stop waiting after this many seconds (the run goes on).")] = None,
) -> None:
    """Re-annotate stored alleles with a bundle (a data release), in batches the workers share."""
    from engine.db import migrate
    from engine.db.session import session_scope
    from engine.events import default_producer
    from engine.kafka import EventPublisher
    from engine.reannotate.publish import start_reannotation
    from engine.runtime import cli_settings

    settings, _runtime = cli_settings()
    migrate.require_current(settings.database_url)
    with (session_scope(settings.database_url) as session,
          EventPublisher(settings, client_id="annostream-cli", command="reannotate") as publisher):
        progress = start_reannotation(session, publisher, bundle=bundle, analyses=analysis or None,
                                      batch_size=batch_size, producer=default_producer("cli"))
    typer.echo(f"reannotation run {progress.id} ({progress.run_id}): {progress.total_alleles} alleles in "
               f"{progress.total_batches} batches with bundle {progress.bundle_version}")
    if no_wait or progress.total_batches == 0:
        typer.echo(f"follow it with: GET /api/v1/reannotations/{progress.id}")
        return
    final = wait_for_run(settings.database_url, progress.id, timeout)
    if not final.finished:
        typer.echo(f"still running after {timeout} s: "
                   f"{final.done_batches}/{final.total_batches} batches done")
        raise typer.Exit(3)
    typer.echo(f"{final.status}: {final.done_batches}/{final.total_batches} batches, "
               f"{final.alleles_done} alleles: {final.created} new annotations, "
               f"{final.superseded} superseded, "
               f"{final.unchanged} unchanged")
    for failure in final.failures:
        typer.echo(f"  failed {failure}", err=True)
    if final.failed_batches:
        raise typer.Exit(1)


def wait_for_run(db_url: str, run_id: int, timeout_s: float | None, interval_s: float = 0.5) -> RunProgress:
    """Poll the run's batches, showing a progress bar, until all are done or failed."""
    from tqdm import tqdm

    from engine.db.models import ReannotationRun
    from engine.db.session import session_scope
    from engine.reannotate.runs import run_progress

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with session_scope(db_url) as session:
        progress = run_progress(session, session.get(ReannotationRun, run_id))  # type: ignore[arg-type]
    with tqdm(total=progress.total_batches, unit="batch", desc="reannotate") as bar:
        while True:
            with session_scope(db_url) as session:
                progress = run_progress(session, session.get(ReannotationRun, run_id))  # type: ignore[arg-type]
            bar.update(progress.done_batches + progress.failed_batches - bar.n)
            bar.set_postfix(alleles=progress.alleles_done, failed=progress.failed_batches)
            if progress.finished or (deadline is not None and time.monotonic() >= deadline):
                return progress
            time.sleep(interval_s)


def register(app: typer.Typer) -> None:
    app.command("reanalyse")(reanalyse_command)
    app.command("reannotate")(reannotate_command)
