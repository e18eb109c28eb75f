"""Shared fixtures: a real PostgreSQL server and a real Kafka-protocol broker, over sockets."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.broker import EmbeddedBroker
from engine.config import Settings
from tests.support.env import engine_settings, prepare_database
from tests.support.pgcluster import ThrowawayCluster

DATA = Path(__file__).parent / "data"

#: Fixtures that start a real service; tests using them are marked ``services`` (make test-fast skips them).
SERVICE_FIXTURES = frozenset({"pg_server_url", "pg_url", "broker"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs PostgreSQL or the broker, before ``-m`` selects."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if fixtures & SERVICE_FIXTURES or params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of the PostgreSQL server's maintenance database (throwaway unless TEST_DATABASE_URL)."""
    existing = os.environ.get("TEST_DATABASE_URL")
    if existing:
        yield existing
        return
    cluster = ThrowawayCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from engine.db.session import get_engine

        get_engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'annostream.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once on PostgreSQL and once on SQLite."""
    fixture = "pg_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (embedded Tansu) for the whole test session."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix so tests sharing the broker never see each other's events."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Iterator[Settings]:
    """Settings for running pipeline stages directly: temp folders, a migrated database (PostgreSQL
    and SQLite) with the HBOC_v1.0.0 test panel, topic prefix ``t.``."""
    from engine.db.session import get_engine

    configured = engine_settings(tmp_path / "data", db_url=db_url)
    prepare_database(db_url)
    yield configured
    get_engine.cache_clear()
