"""``annostream status``, ``annostream replay`` and ``annostream smoke``: operating the event flow."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Annotated

import typer

from engine.cli.produce import one_line_errors
from engine.config import Settings
from engine.errors import ConfigError
from engine.runtime import Runtime, cli_settings

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")]


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("replay")(replay)
    app.command("smoke")(smoke)


def status(
    as_json: JsonOption = False,
    max_count: Annotated[
        int, typer.Option("--max-count", min=1, help="Stop counting a partition's lag here (shown as ≥N).")
    ] = 10_000,
) -> None:
    """Pipeline health: consumer lag of the worker (ANNOSTREAM_APP_ID) on analysis.ready and
    analysis.annotated, folders waiting in incoming, failures in the last hour, jobs in flight,
    the active annotation bundle and the database revision. Exit 1 if a part is unreachable."""
    from engine.status import collect_health, render

    settings = _settings()
    health = collect_health(settings, max_count=max_count)
    typer.echo(json.dumps(health.to_dict(), indent=2) if as_json else render(health))
    if not health.ok:
        raise typer.Exit(1)


def replay(
    since: Annotated[
        str, typer.Option("--since", help="From this time: ISO 8601 (naive = UTC) or 30m/2h/1d ago.")
    ] = "30d",
    until: Annotated[str | None, typer.Option("--until", help="Up to (not including) this time.")] = None,
    topic: Annotated[
        str, typer.Option("--topic", help="Topic name without ANNOSTREAM_TOPIC_PREFIX.")
    ] = "analysis.ready",
    analysis: Annotated[
        str | None, typer.Option("--analysis", help="Only this analysis (the message key).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be replayed; publish nothing.")
    ] = False,
    from_ledger: Annotated[
        bool,
        typer.Option(
            "--from-ledger",
            help="Read the events from the database's work ledger instead of the broker "
            "(after a broker restart or expired retention); same filters.",
        ),
    ] = False,
) -> None:
    """Re-publish past events (exact key and bytes) to the same topic, to re-drive them through
    the pipeline. Finished work is recognised and not repeated. Finds the broker in
    KAFKA_BOOTSTRAP_SERVERS or the runtime file of a running `annostream up`."""
    from engine.kafka import require_bootstrap
    from engine.replay import parse_moment, republish, select

    with one_line_errors():
        settings = _settings()
        bootstrap = require_bootstrap(settings, "replay")
        start = parse_moment(since, option="--since")
        end = parse_moment(until, option="--until") if until is not None else None
        if from_ledger:
            _replay_from_ledger(settings, bootstrap, topic, start, end, analysis, dry_run)
            return
        selected = select(bootstrap, settings.topic(topic), since=start, until=end, analysis=analysis)
        for message in selected:
            typer.echo(message.describe())
        if dry_run:
            typer.echo(f"{len(selected)} message(s) would be replayed (dry run)")
            return
        count = republish(bootstrap, selected, timeout_s=settings.kafka_timeout_s)
        typer.echo(f"replayed {count} message(s)")


def _replay_from_ledger(
    settings: Settings,
    bootstrap: str,
    topic: str,
    start: dt.datetime,
    end: dt.datetime | None,
    analysis: str | None,
    dry_run: bool,
) -> None:
    from engine.db.session import session_scope
    from engine.kafka import publish_messages
    from engine.ledger import pending

    with session_scope(settings.database_url) as session:
        recorded = pending(
            session, silent_for_s=0, analysis=analysis, since=start, until=end, include_finished=True
        )
        entries = [entry for entry in recorded if entry.topic == settings.topic(topic)]
        messages = [(entry.topic, entry.key, entry.value) for entry in entries]
        for entry in entries:
            typer.echo(
                f"{entry.topic} {entry.event_id} {entry.analysis or '-'} {entry.state} "
                f"recorded {entry.date_created.isoformat()}"
            )
    if dry_run:
        typer.echo(f"{len(messages)} ledger event(s) would be replayed (dry run)")
        return
    publish_messages(settings, messages, client_id="annostream-replay", command="replay")
    typer.echo(f"replayed {len(messages)} ledger event(s)")


def smoke(
    api: Annotated[
        str | None, typer.Option("--api", help="Read API base URL (default http://localhost:$PORT).")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the import.")
    ] = 180.0,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="ANNOSTREAM_SMOKE_TOKEN", help="API bearer token, if reads need one."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Import the demo analysis through the live pipeline under a unique name, report the time
    of each stage, and remove everything it created. Exit 0 on pass, 1 on failure."""
    from engine.smoke import render, run_smoke

    settings, runtime = _settings_and_runtime()
    api_url = api or (runtime.api_url if runtime and runtime.api_url else f"http://localhost:{settings.port}")
    result = run_smoke(settings, api_url, timeout_s=timeout, token=token)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else render(result))
    if not result.passed or result.cleanup_errors:
        raise typer.Exit(1)


def _settings() -> Settings:
    return _settings_and_runtime()[0]


def _settings_and_runtime() -> tuple[Settings, Runtime | None]:
    """The environment first, then the runtime file of a running `annostream up`."""
    try:
        return cli_settings()
    except ConfigError as error:
        print(f"annostream: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
