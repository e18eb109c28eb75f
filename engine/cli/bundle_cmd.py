"""``annostream bundle``: add, list and activate annotation data bundles (see docs/bundles.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from engine.bundles import BundleInfo
    from engine.config import Settings

bundle_app = typer.Typer(
    help="Annotation data bundles (ANNOSTREAM_DATA_DIR/bundles, DB_URL).", no_args_is_help=True
)


@bundle_app.command("add")
def add_command(
    folder: Annotated[
        Path, typer.Argument(help="Bundle folder: vcfanno_config.toml, sources.json, version and the data.")
    ],
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy files even where hard links are possible.")
    ] = False,
) -> None:
    """Verify a bundle's checksums and store it under ANNOSTREAM_DATA_DIR/bundles/<version>/ (not active)."""
    from engine.bundles import add_bundle
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope

    settings = get_settings()
    migrate.require_current(settings.database_url)
    with session_scope(settings.database_url) as session:
        info, created = add_bundle(session, folder, settings.data_dir, link=not copy)
    state = "added" if created else "already added"
    typer.echo(f"bundle {info.version} {state}: {info.path}")
    _compare_ahead(settings.database_url, info)
    if created:
        typer.echo(f"activate it with: annostream bundle activate {info.version}")


def _compare_ahead(url: str, info: BundleInfo) -> None:
    """Compare the new bundle with the bundles the stored annotations came from now, so the
    release (``reannotate``) reads the differences instead of computing them."""
    from engine.db.session import session_scope
    from engine.reannotate.select import compare_ahead

    started = time.perf_counter()
    with session_scope(url) as session:
        differences = compare_ahead(session, info)
    for difference in differences:
        if not difference.comparable:
            typer.echo(
                f"compared with {difference.old}: {difference.reason} (a release re-annotates in full)"
            )
            continue
        records = sum(block.added + block.removed + block.changed for block in difference.changed_blocks)
        changed = [dataset.name for dataset in difference.datasets if dataset.status != "unchanged"]
        datasets = ", ".join(changed) or "no dataset"
        typer.echo(f"compared with {difference.old}: {records} records differ in {datasets}")
    if differences:
        typer.echo(f"compared in {time.perf_counter() - started:.1f} s (kept for 'annostream reannotate')")


@bundle_app.command("list")
def list_command() -> None:
    """List the stored bundles; the active one is marked with '*'."""
    from engine.bundles import list_bundles
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope

    url = get_settings().database_url
    migrate.require_current(url)
    with session_scope(url) as session:
        bundles = list_bundles(session)
    if not bundles:
        typer.echo("no annotation bundles (add one with 'annostream bundle add DIR')")
        return
    for bundle in bundles:
        datasets = ", ".join(f"{name} {version}" for name, version in bundle.datasets.items())
        added = bundle.date_added.strftime("%Y-%m-%d %H:%M")
        removed = f"\tremoved {bundle.date_removed:%Y-%m-%d %H:%M}" if bundle.date_removed else ""
        typer.echo(f"{'*' if bundle.active else ' '} {bundle.version}\tadded {added}\t{datasets}{removed}")


@bundle_app.command("activate")
def activate_command(
    version: Annotated[str, typer.Argument(help="Version of a stored bundle.")],
) -> None:
    """Make VERSION the active bundle for new analyses (analyses in flight keep theirs).
    Rolling back is activating the previous version."""
    from engine.bundles import activate_bundle, active_bundle
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope

    url = get_settings().database_url
    migrate.require_current(url)
    settings = get_settings()
    with session_scope(url) as session:
        previous = active_bundle(session)
        info = activate_bundle(session, version)
    typer.echo(f"bundle {info.version} is active")
    follow_tracks(settings, info, previous.version if previous else None)


def follow_tracks(settings: Settings, info: BundleInfo, previous: str | None) -> None:
    """Announce the activation (``bundle.activated``: the worker's tracks stage updates the IGV
    tracks); without Kafka, update them here."""
    from engine.events import BundleActivated, default_producer
    from engine.kafka import EventPublisher
    from engine.tracks import apply_tracks

    if settings.kafka_bootstrap_servers:
        event = BundleActivated(producer=default_producer("cli"), bundle=info.version, previous=previous)
        with EventPublisher(settings, client_id="annostream-cli", command="bundle activate") as publisher:
            publisher.publish([event])
        typer.echo(
            f"published bundle.activated: the worker updates the IGV tracks in "
            f"{settings.igv_data or '(IGV_DATA not set)'}"
        )
        return
    result = apply_tracks(info, settings.igv_data)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(result.summary())


@bundle_app.command("deactivate")
def deactivate_command() -> None:
    """Make no bundle active: new analyses are normalised but not annotated until one is activated."""
    from engine.bundles import deactivate_bundle
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope

    url = get_settings().database_url
    migrate.require_current(url)
    with session_scope(url) as session:
        info = deactivate_bundle(session)
    typer.echo(f"bundle {info.version} deactivated: no bundle is active" if info else "no bundle was active")


@bundle_app.command("remove")
def remove_command(
    version: Annotated[str, typer.Argument(help="Version of a stored, inactive bundle.")],
) -> None:
    """Delete a bundle's folder to free disk space; the database keeps its record. Refused while
    it is active or a reannotation run still needs it."""
    import sqlalchemy as sa

    from engine.bundles import remove_bundle
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope

    url = get_settings().database_url
    migrate.require_current(url)
    with session_scope(url) as session:
        info = remove_bundle(session, version)
        still = session.scalar(
            sa.text("SELECT COUNT(*) FROM annotation WHERE date_superceeded IS NULL AND bundle_version = :v"),
            {"v": version},
        )
    typer.echo(f"bundle {info.version} removed ({info.path}); its record stays")
    if still:
        typer.echo(
            f"note: {still} current annotation(s) still come from {version}: the next release "
            "re-annotates them in full (they cannot be compared with a removed bundle)"
        )


@bundle_app.command("diff")
def diff_command(
    old: Annotated[str, typer.Argument(help="Version of a stored bundle.")],
    new: Annotated[str, typer.Argument(help="Version of another stored bundle.")],
) -> None:
    """What changed between two bundles: datasets by checksum, records added/removed/changed."""
    from engine.bundles import resolve_bundle
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope
    from engine.reannotate.diff import diff_bundles

    url = get_settings().database_url
    migrate.require_current(url)
    with session_scope(url) as session:
        before, after = resolve_bundle(session, old), resolve_bundle(session, new)
    difference = diff_bundles(before, after)
    typer.echo(f"bundle {old} -> {new}")
    if not difference.comparable:
        typer.echo(f"  {difference.reason}: records are not compared")
    for dataset in difference.datasets:
        versions = f"{dataset.old_version} -> {dataset.new_version}"
        typer.echo(f"  dataset {dataset.name} ({versions}): {dataset.status}")
        for block in dataset.blocks:
            typer.echo(
                f"    {block.file}: {block.added} added, {block.removed} removed, "
                f"{block.changed} changed records"
            )


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
