"""The ``annostream`` command line: the composition root that wires engine, producers,
consumers and API together. Each command group lives in its own module and imports heavy
dependencies lazily so ``annostream --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from engine.config import ConfigError
from engine.errors import AnnostreamError

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
)


def register_commands() -> None:
    """Attach every command module's commands to ``app`` (imported here, not at module load)."""
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)


def main(argv: list[str] | None = None) -> None:
    register_commands()
    try:
        app(args=argv, standalone_mode=True)
    except (ConfigError, AnnostreamError) as error:
        print(f"annostream: {error}", file=sys.stderr)
        sys.exit(2)
