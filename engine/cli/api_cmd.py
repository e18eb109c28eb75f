"""``annostream api``: serve the read API with gunicorn and uvicorn workers."""

from __future__ import annotations

import typer


def api(
    host: str = typer.Option("0.0.0.0", "--host", help="Interface to listen on."),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port to listen on (default: PORT, 3114)."
    ),
) -> None:
    """Serve the read API (workers: ANNOSTREAM_API_WORKERS). Refuses to start unless the
    database is at the latest migration (run 'annostream db upgrade')."""
    from api.server import serve
    from engine.config import configure_logging, get_settings

    settings = get_settings()
    configure_logging(settings)
    serve(settings, host=host, port=port)


def register(app: typer.Typer) -> None:
    app.command("api")(api)
