"""Long-running services: ``annostream worker`` and ``annostream up``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer

from engine.config import Settings, configure_logging, get_settings

DEMO_ROOT = Path(__file__).resolve().parent.parent / "demo"


def worker() -> None:
    """Run the faust worker (annotate and persist stages)."""
    from consumers.worker import run_worker
    from engine.db.migrate import require_current
    from engine.kafka import require_bootstrap

    settings = get_settings()
    configure_logging(settings)
    require_bootstrap(settings, "worker")
    require_current(settings.database_url)
    settings.ensure_folders()
    run_worker(settings)


def up(
    demo: bool = typer.Option(False, "--demo", help="Load a demo gene panel and drop two demo analyses."),
    no_api: bool = typer.Option(False, "--no-api", help="Do not start the read API."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=64, help="Worker processes to run (default ANNOSTREAM_WORKERS, 1)."
    ),
) -> None:
    """Run everything: embedded broker (unless KAFKA_BOOTSTRAP_SERVERS), migrations, watcher,
    worker and API, as one supervised process tree. Ctrl-C stops it cleanly."""
    from engine.db.migrate import upgrade
    from engine.runtime import read_runtime, runtime_path
    from engine.supervisor import Supervisor, default_children

    settings = get_settings()
    configure_logging(settings)
    running = read_runtime(settings.data_dir)
    if running is not None:
        typer.echo(
            f"annostream: `annostream up` is already running for {running.data_dir} (pid "
            f"{running.supervisor_pid}, {runtime_path(settings.data_dir)}); stop it or set another "
            "ANNOSTREAM_DATA_DIR",
            err=True,
        )
        raise typer.Exit(2)
    settings.ensure_folders()
    upgrade(settings.database_url)
    if demo:
        from engine.demo_bundle import install_demo_bundle

        load_demo_genepanels(settings)
        demo_bundle = install_demo_bundle(settings)

    def announce(_env: dict[str, str]) -> None:
        if demo:
            typer.echo(demo_bundle)
            for name in drop_demo_analyses(settings):
                typer.echo(f"demo analysis dropped: {name}")
        typer.echo(where_to_look(settings, with_api=not no_api))

    children = default_children(settings, with_api=not no_api, workers=workers)
    api_url = None if no_api else f"http://localhost:{settings.port}"
    raise typer.Exit(Supervisor(settings, children, on_ready=announce, api_url=api_url).run())


def where_to_look(settings: Settings, *, with_api: bool) -> str:
    """The one banner `up` prints once everything is started."""
    from engine.runtime import runtime_path

    broker = settings.kafka_bootstrap_servers or "embedded (memory only)"
    lines = ["Annostream is running. Ctrl-C stops it."]
    if with_api:
        base = f"http://localhost:{settings.port}"
        lines += [
            f"  web page:  {base}/",
            f"  API:       {base}/api/v1/analyses   docs: {base}/docs",
            f"  metrics:   {base}/metrics",
        ]
    lines += [
        f"  broker:    {broker}",
        f"  database:  {settings.database_url}",
        f"  incoming:  {settings.analyses_incoming.resolve()}  (drop folders here, READY last)",
        f"  imported:  {settings.analyses_path.resolve()}",
        f"  failed:    {settings.analyses_failed.resolve()}  (error.json says why; annostream retry)",
        f"  other terminals find this stack in {runtime_path(settings.data_dir)}",
        "  (annostream status | smoke | retry | replay | reanalyse | reannotate need no settings)",
    ]
    width = max(len(line) for line in lines)
    rule = "=" * min(width, 110)
    return "\n".join(["", rule, *lines, rule, ""])


def load_demo_genepanels(settings: Settings) -> None:
    from engine.db.session import session_scope
    from engine.deposit.genepanel import deposit_genepanel, read_genepanel_folder

    for folder in sorted((DEMO_ROOT / "genepanels").iterdir()):
        with session_scope(settings.database_url) as session:
            deposit_genepanel(session, read_genepanel_folder(folder))


def drop_demo_analyses(settings: Settings) -> list[str]:
    """Copy the shipped demo analyses into incoming under fresh names, READY written last."""
    import orjson

    stamp = time.strftime("%Y%m%d-%H%M%S")
    names = []
    for source in sorted((DEMO_ROOT / "analyses").iterdir()):
        name = f"{source.name}-{stamp}"
        staging = settings.analyses_incoming / f".{name}.tmp"
        shutil.copytree(source, staging)
        config = staging / f"{source.name}.analysis"
        document = orjson.loads(config.read_bytes())
        document["name"] = name
        config.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        target = settings.analyses_incoming / name
        staging.rename(target)
        (target / "READY").touch()
        names.append(name)
    return names


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("up")(up)
