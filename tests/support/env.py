"""The one builder of a test's engine environment: variables, Settings, subprocess env, database.

Every test that needs folders, a database URL, a broker or a topic prefix builds them here, so a
new setting or folder is added in one place. Layout under ``root`` (the data directory):
``incoming/``, ``imported/``, ``failed/``, ``work/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.config import EMBEDDED_GROUP_TIMEOUT_S, Settings, load_settings
from engine.events import Topics

DATA = Path(__file__).resolve().parent.parent / "data"
TEST_GENEPANEL = DATA / "genepanels" / "HBOC_v1.0.0"


def engine_env(
    root: Path,
    *,
    db_url: str | None = None,
    bootstrap: str | None = None,
    topic_prefix: str = "t.",
    app_id: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The engine's environment variables for one test (``extra``: more variables by name)."""
    env = {
        "ANNOSTREAM_DATA_DIR": str(root),
        "ANALYSES_INCOMING": str(root / "incoming"),
        "ANALYSES_PATH": str(root / "imported"),
        "ANALYSES_FAILED": str(root / "failed"),
        "ANNOSTREAM_TOPIC_PREFIX": topic_prefix,
        "ANNOSTREAM_APP_ID": app_id or f"annostream-{topic_prefix.strip('.') or 'test'}",
    }
    if db_url is not None:
        env["DB_URL"] = db_url
    if bootstrap is not None:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        # The session's broker is the embedded one: its short group timeouts, as `up` sets them.
        env["ANNOSTREAM_KAFKA_SESSION_TIMEOUT"] = str(EMBEDDED_GROUP_TIMEOUT_S)
        env["ANNOSTREAM_KAFKA_REBALANCE_TIMEOUT"] = str(EMBEDDED_GROUP_TIMEOUT_S)
    env.update(extra)
    return env


def engine_settings(
    root: Path,
    *,
    db_url: str | None = None,
    bootstrap: str | None = None,
    topic_prefix: str = "t.",
    app_id: str | None = None,
    **extra: str,
) -> Settings:
    """Settings from :func:`engine_env` (same keywords), with the folders created."""
    variables = engine_env(
        root, db_url=db_url, bootstrap=bootstrap, topic_prefix=topic_prefix, app_id=app_id, **extra
    )
    settings = load_settings(**variables)
    settings.ensure_folders()
    return settings


def subprocess_env(variables: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``variables``, for running ``annostream`` as a child.

    PROMETHEUS_MULTIPROC_DIR is dropped: a child must not write into the test runner's metrics.
    """
    inherited = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    return {**inherited, **variables}


def prepare_database(url: str, *, genepanel: bool = True) -> None:
    """Migrate the database at ``url`` and (by default) store the HBOC_v1.0.0 test gene panel."""
    from engine.db.migrate import upgrade
    from engine.db.session import session_scope
    from engine.deposit.genepanel import deposit_genepanel, read_genepanel_folder

    upgrade(url)
    if genepanel:
        with session_scope(url) as session:
            deposit_genepanel(session, read_genepanel_folder(TEST_GENEPANEL))


def topics_for(topic_prefix: str = "t.") -> Topics:
    """The registry's topic names under ``topic_prefix`` (tests never spell a topic name)."""
    return Topics.from_settings(load_settings(ANNOSTREAM_TOPIC_PREFIX=topic_prefix))
