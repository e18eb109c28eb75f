"""``annostream watch`` and ``annostream publish``: the producers' command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from engine.config import configure_logging, load_settings
from engine.errors import AnnostreamError, ConfigError

ProducerOption = Annotated[
    str | None, typer.Option("--producer", help="Producer name written into events (default ROLE@HOST).")
]


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)
    app.command("publish")(publish)


PatternsOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Regex (ELLA's re.match: a prefix match on the analysis name); repeat for several. "
        "Replaces the list file, as in ELLA's watcher."
    ),
]


def watch(
    producer: ProducerOption = None, whitelist: PatternsOption = None, blacklist: PatternsOption = None
) -> None:
    """Watch ANALYSES_INCOMING; publish analysis.ready for each folder with a READY marker.

    Needs KAFKA_BOOTSTRAP_SERVERS. Stops cleanly on SIGTERM/SIGINT.
    """
    from producers.watcher import run_watcher

    with one_line_errors():
        settings = load_settings()
        configure_logging(settings)
        run_watcher(settings, producer_name=producer, whitelist=whitelist, blacklist=blacklist)


def publish(
    folder: Annotated[Path, typer.Argument(help="Analysis folder inside ANALYSES_INCOMING.")],
    producer: ProducerOption = None,
) -> None:
    """Check FOLDER and publish one analysis.ready event for it; prints the event id.

    Needs KAFKA_BOOTSTRAP_SERVERS. No READY marker needed: running this says the folder is complete.
    """
    from producers.publish import publish_folder

    with one_line_errors():
        settings = load_settings()
        event = publish_folder(folder, settings, producer_name=producer)
    typer.echo(event.event_id)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """User-facing errors become one line on stderr and exit status 1 (no traceback)."""
    from engine.errors import EventRejected

    try:
        yield
    except (ConfigError, AnnostreamError, EventRejected) as error:
        print(f"annostream: {error}", file=sys.stderr)
        raise typer.Exit(1) from None
