"""``annostream parked list|retry|drop``: events whose failure could not be recorded."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from engine.cli.produce import one_line_errors

parked_app = typer.Typer(
    help="Events parked because even recording their failure failed.", no_args_is_help=True
)
IdsArgument = Annotated[list[int] | None, typer.Argument(help="Parked event ids (see 'parked list').")]
AllOption = Annotated[bool, typer.Option("--all", help="Every parked event.")]


def register(app: typer.Typer) -> None:
    app.add_typer(parked_app, name="parked")


@parked_app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every parked event: id, stage, topic, analysis, when, and why it was parked."""
    from engine.db.session import session_scope
    from engine.parked import list_parked
    from engine.runtime import cli_settings

    with one_line_errors():
        settings, _runtime = cli_settings()  # env first, then the runtime file of `up`
        with session_scope(settings.database_url) as session:
            rows = [
                {
                    "id": p.id,
                    "stage": p.stage,
                    "topic": p.topic,
                    "key": p.key,
                    "analysis": p.analysis,
                    "event_id": p.event_id,
                    "parked": p.date_parked.isoformat(),
                    "reason": p.reason,
                    "bytes": len(p.value),
                }
                for p in list_parked(session)
            ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no parked events")
    for row in rows:
        typer.echo(
            f"{row['id']}  {row['parked']}  {row['stage']}  {row['topic']}  "
            f"{row['analysis'] or '-'}  {row['reason']}"
        )


@parked_app.command("retry")
def retry_command(ids: IdsArgument = None, every: AllOption = False) -> None:
    """Publish parked events again (exact bytes, same topic) once their cause is fixed."""
    from engine.db.session import session_scope
    from engine.kafka import require_bootstrap
    from engine.ledger import Message
    from engine.parked import retry_parked
    from engine.runtime import cli_settings

    with one_line_errors():
        settings, _runtime = cli_settings()  # env first, then the runtime file of `up`
        require_bootstrap(settings, "parked retry")  # fail before anything is changed

        def publish(messages: list[Message]) -> None:
            from engine.kafka import publish_messages

            publish_messages(settings, messages, client_id="annostream-parked", command="parked retry")

        _need_choice(ids, every)
        with session_scope(settings.database_url) as session:
            count = retry_parked(session, ids or [], publish, every=every)
    typer.echo(f"published {count} parked event(s) again")


@parked_app.command("drop")
def drop_command(ids: IdsArgument = None, every: AllOption = False) -> None:
    """Give up on parked events: their import jobs become CANCELLED."""
    from engine.db.session import session_scope
    from engine.parked import drop_parked
    from engine.runtime import cli_settings

    with one_line_errors():
        settings, _runtime = cli_settings()  # env first, then the runtime file of `up`
        _need_choice(ids, every)
        with session_scope(settings.database_url) as session:
            count = drop_parked(session, ids or [], every=every)
    typer.echo(f"dropped {count} parked event(s)")


def _need_choice(ids: list[int] | None, every: bool) -> None:
    if not ids and not every:
        from engine.errors import ConfigError

        raise ConfigError("name parked event ids, or --all")
