"""The ``annostream`` command line: the composition root that wires engine, producers,
consumers and API together. Each command group lives in its own module and imports heavy
dependencies lazily so ``annostream --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from engine.errors import AnnostreamError, is_database_outage

app = typer.Typer(
    name="annostream",
    help="Event-driven import and annotation engine for ELLA.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


COMMAND_MODULES = (
    "engine.cli.db",  # db upgrade | current
    "engine.cli.produce",  # watch, publish
    "engine.cli.services",  # worker, up
    "engine.cli.api_cmd",  # api
    "engine.cli.annotate_cmd",  # annotate
    "engine.cli.normalise_cmd",  # normalise
    "engine.cli.bundle_cmd",  # bundle add | list | activate
    "engine.cli.annotationconfig",  # annotationconfig update
    "engine.cli.deposit",  # deposit genepanel
    "engine.cli.ops_cmd",  # status, replay, smoke
    "engine.cli.release_cmd",  # reanalyse, reannotate
    "engine.cli.hgnc_cmd",  # hgnc build | info
    "engine.cli.retry_cmd",  # retry
    "engine.cli.parked_cmd",  # parked list | retry | drop
)


def register_commands() -> None:
    """Attach every command module's commands to ``app`` (imported here, not at module load)."""
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)


def main(argv: list[str] | None = None) -> None:
    register_commands()
    try:
        app(args=argv, standalone_mode=True)
    except Exception as error:
        sys.exit(exit_code(error))


#: EX_TEMPFAIL: infrastructure trouble, trying again later may work (sysexits.h).
EXIT_RETRY_LATER = 75
EXIT_USER_ERROR = 2


def exit_code(error: Exception) -> int:
    """The one translation of errors at the command line: a one-line message and an exit code.

    Errors meant for users print their message (2: fix the input or setting; 75: infrastructure,
    try again later); anything else is a bug and keeps its traceback.
    """
    if isinstance(error, AnnostreamError):
        print(f"annostream: {error}", file=sys.stderr)
        return EXIT_RETRY_LATER if error.retriable else EXIT_USER_ERROR
    if is_database_outage(error):
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"annostream: database unavailable: {first_line}", file=sys.stderr)
        return EXIT_RETRY_LATER
    raise error
