"""``annostream reanalyse`` and ``annostream reannotate``: re-annotate stored alleles (docs/reanalysis.md)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.config import Settings
    from engine.events import Event
    from engine.reannotate.runs import RunProgress


def reanalyse_command(
    analysis: Annotated[str, typer.Option("--analysis", help="Name of a stored analysis.")],
    bundle: Annotated[
        str | None, typer.Option("--bundle", help="Bundle version (default: the active bundle).")
    ] = None,
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
    with (
        session_scope(settings.database_url) as session,
        EventPublisher(settings, client_id="annostream-cli", command="reanalyse") as publisher,
    ):
        event = request_reanalysis(
            session,
            publisher,
            analysis,
            bundle,
            producer=default_producer("cli"),
            requested_by=f"cli@{getpass.getuser()}",
        )
    typer.echo(f"reanalysis of {analysis} with bundle {event.bundle} requested: event {event.event_id}")
    typer.echo(f"follow it with: GET /api/v1/reanalyses/{event.event_id}")


def reannotate_command(
    bundle: Annotated[
        str | None, typer.Option("--bundle", help="Bundle version (default: the active bundle).")
    ] = None,
    analysis: Annotated[
        list[str] | None,
        typer.Option(
            "--analysis", help="Only the alleles of this analysis (repeatable); default: every stored allele."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Alleles per batch event.")] = 50_000,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once the batches are published.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Stop waiting after this many seconds (the run goes on)."),
    ] = None,
    everything: Annotated[
        bool,
        typer.Option("--all", help="Re-annotate every selected allele, not only what the release changed."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print what would be re-annotated, per dataset, and change nothing."),
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Republish the batches of run RUN (id or run id) that are not done.",
        ),
    ] = None,
) -> None:
    """Re-annotate stored alleles with a bundle (a data release), in batches the workers share.

    By default only the alleles whose annotation the release can change: per dataset whose
    checksums changed, the stored alleles its added, removed or changed records touch."""
    from engine.config import configure_logging
    from engine.db import migrate
    from engine.db.session import session_scope
    from engine.events import Topics, default_producer
    from engine.reannotate.publish import resume_reannotation, start_reannotation
    from engine.reannotate.runs import preview_run
    from engine.runtime import cli_settings

    settings, _runtime = cli_settings()
    # The plan's timing and the run's progress are logged like every command's (LOG_LEVEL).
    configure_logging(settings)
    migrate.require_current(settings.database_url)
    if dry_run:
        if everything or resume is not None:
            raise typer.BadParameter(
                "--dry-run describes the incremental selection; it takes no --all or --resume"
            )
        with session_scope(settings.database_url) as session:
            plan = preview_run(session, bundle=bundle, analyses=analysis or None)
        for line in plan.describe():
            typer.echo(line)
        return
    topics = Topics.from_settings(settings)
    with session_scope(settings.database_url) as session:
        if resume is not None:
            if everything or analysis:
                raise typer.BadParameter("--resume takes no --all or --analysis (the run has them)")
            progress, events = resume_reannotation(session, topics, resume, producer=default_producer("cli"))
        else:
            started = start_reannotation(
                session,
                topics,
                bundle=bundle,
                analyses=analysis or None,
                batch_size=batch_size,
                producer=default_producer("cli"),
                full=everything,
            )
            if started is None:
                typer.echo(
                    "nothing to re-annotate: no stored allele is touched by what changed "
                    "(see --dry-run for the details)"
                )
                return
            progress, events = started
    if events:
        _publish(settings, events)
    republished = len(events)
    if resume is not None:
        typer.echo(
            f"reannotation run {progress.id} ({progress.run_id}): republished {republished} "
            f"of {progress.total_batches} batches"
        )
    typer.echo(
        f"reannotation run {progress.id} ({progress.run_id}): {progress.total_alleles} alleles in "
        f"{progress.total_batches} batches with bundle {progress.bundle_version}"
    )
    if no_wait or progress.total_batches == 0 or republished == 0:
        typer.echo(f"follow it with: GET /api/v1/reannotations/{progress.id}")
        return
    final = wait_for_run(settings.database_url, progress.id, timeout)
    if not final.finished:
        typer.echo(
            f"still running after {timeout} s: {final.done_batches}/{final.total_batches} batches done"
        )
        raise typer.Exit(3)
    typer.echo(
        f"{final.status}: {final.done_batches}/{final.total_batches} batches, "
        f"{final.alleles_done} alleles: {final.created} new annotations, "
        f"{final.superseded} superseded, "
        f"{final.unchanged} unchanged"
    )
    for failure in final.failures:
        typer.echo(f"  failed {failure}", err=True)
    if final.failed_batches:
        raise typer.Exit(1)


def _publish(settings: Settings, events: Sequence[Event]) -> None:
    """Publish recorded events; the broker connection (and the Kafka client) only now."""
    from engine.kafka import EventPublisher
    from engine.reannotate.publish import publish_recorded

    with EventPublisher(settings, client_id="annostream-cli", command="reannotate") as publisher:
        publish_recorded(publisher, events)


def wait_for_run(db_url: str, run_id: int, timeout_s: float | None, interval_s: float = 0.2) -> RunProgress:
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


release_app = typer.Typer(help="Data releases: what a reannotation run changed.", no_args_is_help=True)


@release_app.command("changes")
def changes_command(
    run: Annotated[str, typer.Argument(help="Reannotation run: its id or run id.")],
    analysis: Annotated[str | None, typer.Option("--analysis", help="Only alleles of this analysis.")] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="Only targets starting with this dotted path, e.g. external.CLINVAR."),
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """The change report: per allele and analysis, the owned targets whose value changed."""
    import csv
    import sys

    import orjson

    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope
    from engine.errors import InputError
    from engine.reannotate.changes import list_changes
    from engine.reannotate.runs import find_run

    if output not in ("table", "csv", "json"):
        raise typer.BadParameter(f"--format {output!r}: expected table, csv or json")
    url = get_settings().database_url
    migrate.require_current(url)
    with session_scope(url) as session:
        found = find_run(session, run)
        if found is None:
            raise InputError(
                f"no reannotation run {run!r}", expected="an id or run id from GET /api/v1/reannotations"
            )
        total, rows = list_changes(session, found, analysis=analysis, target=target)
    items = [row.as_dict() for row in rows]
    if output == "json":
        document = {"run": run, "total": total, "items": items}
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    columns = ["allele_id", "chromosome", "vcf_pos", "vcf_ref", "vcf_alt", "target", "old", "new", "analyses"]

    def cell(item: dict[str, object], column: str) -> str:
        value = item[column]
        if column == "analyses":
            return ",".join(value)  # type: ignore[arg-type]
        if column in ("old", "new"):
            if value is None:
                return ""
            return value if isinstance(value, str) else orjson.dumps(value).decode()
        return str(value)

    if output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([cell(item, column) for column in columns] for item in items)
        return
    table = [columns, *([cell(item, column) for column in columns] for item in items)]
    widths = [max(len(row[k]) for row in table) for k in range(len(columns))]
    for row in table:
        typer.echo("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
    typer.echo(f"{total} change(s)")


def register(app: typer.Typer) -> None:
    app.command("reanalyse")(reanalyse_command)
    app.command("reannotate")(reannotate_command)
    app.add_typer(release_app, name="release")
