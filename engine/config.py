"""Runtime configuration from environment variables (ELLA's names where ELLA has one).

Every service calls :func:`load_settings` once at start-up. An invalid value raises
:class:`ConfigError` whose message is one line naming the variable and what is wrong,
so ``annostream`` can print it and exit instead of dumping a traceback.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


KAFKA_SESSION_TIMEOUT_S = 45.0
KAFKA_REBALANCE_TIMEOUT_S = 300.0
#: What `annostream up` and the tests use with the embedded broker.
EMBEDDED_GROUP_TIMEOUT_S = 6.0


class GroupTimeouts(NamedTuple):
    session_s: float
    rebalance_s: float
    heartbeat_s: float


def default_api_workers() -> int:
    """Half the CPU cores this process may use, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


class Settings(BaseSettings):
    """All settings; field aliases are the environment variable names."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    data_dir: Path = Field(Path("./data"), alias="ANNOSTREAM_DATA_DIR")
    db_url: str = Field("", alias="DB_URL")
    analyses_incoming: Path = Field(Path("./data/analyses/incoming"), alias="ANALYSES_INCOMING")
    analyses_path: Path = Field(Path("./data/analyses/imported"), alias="ANALYSES_PATH")
    analyses_failed: Path = Field(Path("./data/analyses/failed"), alias="ANALYSES_FAILED")
    kafka_bootstrap_servers: str | None = Field(None, alias="KAFKA_BOOTSTRAP_SERVERS")
    port: int = Field(3114, alias="PORT", ge=1, le=65535)
    topic_prefix: str = Field("", alias="ANNOSTREAM_TOPIC_PREFIX", pattern=r"^[A-Za-z0-9._-]*$")
    log_level: LogLevel = Field("INFO", validation_alias=AliasChoices("LOG_LEVEL", "ANNOSTREAM_LOG_LEVEL"))
    log_format: Literal["text", "json"] = Field("text", alias="ANNOSTREAM_LOG_FORMAT")
    # Consumer-group timeouts. Unset, they are Kafka's own defaults (see ``group_timeouts``);
    # `annostream up` sets short ones for its embedded broker (Tansu waits the full rebalance
    # timeout on every group join), so they never leak into a deployment on real Kafka.
    kafka_session_timeout_s: float | None = Field(
        None, alias="ANNOSTREAM_KAFKA_SESSION_TIMEOUT", gt=0, le=3600
    )
    kafka_rebalance_timeout_s: float | None = Field(
        None, alias="ANNOSTREAM_KAFKA_REBALANCE_TIMEOUT", gt=0, le=3600
    )
    # faust hard-codes a 1.5 s fetch wait; Kafka answers a fetch as soon as data arrives, but
    # Tansu (embedded) lets it run out, which adds up to the wait to every pipeline hop.
    kafka_fetch_max_wait_ms: int = Field(100, alias="ANNOSTREAM_KAFKA_FETCH_MAX_WAIT_MS", ge=1, le=30000)
    # How long a producer waits for the broker (connect, acknowledgement) and topic creation
    # waits for the admin API, before BrokerUnavailable names the broker.
    kafka_timeout_s: float = Field(15.0, alias="ANNOSTREAM_KAFKA_TIMEOUT", gt=0, le=600)
    topic_partitions: int = Field(4, alias="ANNOSTREAM_TOPIC_PARTITIONS", ge=1, le=1024)
    topic_replication_factor: int = Field(1, alias="ANNOSTREAM_TOPIC_REPLICATION_FACTOR", ge=1, le=16)
    worker_name: str = Field("annostream", alias="ANNOSTREAM_APP_ID", pattern=r"^[A-Za-z0-9._-]+$")
    # How many worker processes `annostream up` runs (`--workers` overrides); more machines can
    # add `annostream worker` processes of their own.
    workers: int = Field(1, alias="ANNOSTREAM_WORKERS", ge=1, le=64)
    # Names this worker process (its faust data directory); `up` sets worker-1..N.
    worker_id: str = Field("", alias="ANNOSTREAM_WORKER_ID", pattern=r"^[A-Za-z0-9._-]*$")
    # Events a worker buffers per stage and lane: the backlog stays in Kafka, not in memory.
    worker_buffer: int = Field(16, alias="ANNOSTREAM_WORKER_BUFFER", ge=1, le=4096)
    # Default: half the cores, at least one. The API shares its machine with PostgreSQL (and, under
    # `up`, the workers): on 2 cores, two API processes plus the database's backends made requests
    # wait 1-2 s to be scheduled under load, one process did not (docs/api.md "Performance").
    api_workers: int = Field(default_factory=default_api_workers, alias="ANNOSTREAM_API_WORKERS", ge=1, le=64)
    # Which analysis names the watcher publishes: comma-separated regexes, and/or files with
    # one regex per line (re-read on change). Deny wins; an empty allow list allows all.
    analyses_allow: str = Field("", alias="ANALYSES_ALLOW")
    analyses_deny: str = Field("", alias="ANALYSES_DENY")
    # ELLA's analyses-watcher reads the same lists from ELLA_WATCHER_WHITELISTFILE/BLACKLISTFILE.
    analyses_allow_file: Path | None = Field(
        None, validation_alias=AliasChoices("ANALYSES_ALLOW_FILE", "ELLA_WATCHER_WHITELISTFILE")
    )
    analyses_deny_file: Path | None = Field(
        None, validation_alias=AliasChoices("ANALYSES_DENY_FILE", "ELLA_WATCHER_BLACKLISTFILE")
    )
    # ELLA's `cnv` feature flag (app.feature_flags.cnv from ENABLE_CNV, off by default): when off,
    # an analysis whose proband carries a record with INFO/SVTYPE is rejected, as ELLA does.
    enable_cnv: bool = Field(False, alias="ENABLE_CNV")
    # HGNC table for VEP entries without HGNC_ID (default: the packaged one; `annostream hgnc build`).
    hgnc_table: Path | None = Field(None, alias="ANNOSTREAM_HGNC_TABLE")
    # Reference genome (.fai-indexed FASTA) for normalisation: REF check and indel left-alignment.
    reference_fasta: Path | None = Field(None, alias="ANNOSTREAM_REFERENCE_FASTA")
    # Where `annotate` keeps compiled source indexes; unset: .annostream-cache/ next to each source.
    cache_dir: Path | None = Field(None, alias="ANNOSTREAM_CACHE_DIR")
    # The watcher polls instead of using inotify (network file systems without change events).
    # watchfiles' own variable name, so existing deployments keep working.
    watch_force_polling: bool = Field(False, alias="WATCHFILES_FORCE_POLLING")
    # API write endpoints need a bearer token: comma-separated tokens and/or a file, one per line.
    api_tokens: str = Field("", alias="ANNOSTREAM_API_TOKENS")
    api_tokens_file: Path | None = Field(None, alias="ANNOSTREAM_API_TOKENS_FILE")
    api_read_auth: bool = Field(False, alias="ANNOSTREAM_API_READ_AUTH")  # reads need a token too
    # ELLA's IGV data folder (tracks/ and track_config.json); bundles' IGV tracks are put there.
    igv_data: Path | None = Field(None, alias="IGV_DATA")
    # Reliability (docs/reliability.md). A stage gives up on an event after this many starts
    # that crashed or hit an unexpected error; infrastructure errors are retried without limit,
    # with exponential backoff (and jitter) capped at retry_max_delay_s.
    max_attempts: int = Field(5, alias="ANNOSTREAM_MAX_ATTEMPTS", ge=1, le=100)
    retry_max_delay_s: float = Field(30.0, alias="ANNOSTREAM_RETRY_MAX_DELAY", gt=0, le=3600)
    # Work recorded in the ledger but not finished and silent this long is published again.
    reconcile_after_s: float = Field(300.0, alias="ANNOSTREAM_RECONCILE_AFTER", gt=0)
    reconcile_every_s: float = Field(30.0, alias="ANNOSTREAM_RECONCILE_EVERY", gt=0)
    # Bounds on hostile input: each breach is an InputError naming the file.
    max_vcf_bytes: int = Field(20 * 2**30, alias="ANNOSTREAM_MAX_VCF_BYTES", ge=1)  # decompressed
    max_line_bytes: int = Field(16 * 2**20, alias="ANNOSTREAM_MAX_LINE_BYTES", ge=1024)
    max_samples: int = Field(1000, alias="ANNOSTREAM_MAX_SAMPLES", ge=1)
    max_analysis_file_bytes: int = Field(2**20, alias="ANNOSTREAM_MAX_ANALYSIS_FILE_BYTES", ge=1024)
    max_json_depth: int = Field(32, alias="ANNOSTREAM_MAX_JSON_DEPTH", ge=2, le=500)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "cache_dir",
        "reference_fasta",
        "analyses_allow_file",
        "analyses_deny_file",
        "api_tokens_file",
        mode="before",
    )
    @classmethod
    def _blank_path_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kafka_bootstrap_servers", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def database_url(self) -> str:
        """``DB_URL``, or the embedded SQLite file under the data directory."""
        if self.db_url:
            # ELLA's DB_URL is a plain postgresql:// URL; SQLAlchemy 2.1 would read that as
            # psycopg 3, while we ship psycopg2.
            for plain in ("postgresql://", "postgres://"):
                if self.db_url.startswith(plain):
                    return "postgresql+psycopg2://" + self.db_url[len(plain) :]
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'annostream.db').resolve()}"

    @property
    def embedded_broker(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def work_dir(self) -> Path:
        """Where stages keep per-event artifacts (e.g. the annotated VCF)."""
        return self.data_dir / "work"

    @property
    def group_timeouts(self) -> GroupTimeouts:
        """Session, rebalance and heartbeat seconds of the worker's consumer group.

        Defaults are Apache Kafka's own (session.timeout.ms 45 s, the rebalance timeout of the
        Java client = max.poll.interval.ms 300 s, heartbeat.interval.ms 3 s): a worker busy with a
        large analysis during a rebalance keeps its membership. The session timeout is how long a
        crashed worker's partitions wait before the others take them over.
        """
        session = self.kafka_session_timeout_s or KAFKA_SESSION_TIMEOUT_S
        rebalance = self.kafka_rebalance_timeout_s or max(session, KAFKA_REBALANCE_TIMEOUT_S)
        if self.kafka_rebalance_timeout_s and not self.kafka_session_timeout_s:
            session = min(session, rebalance)  # one short value (the embedded broker's) sets both
        return GroupTimeouts(session, rebalance, max(0.5, min(3.0, session / 6)))

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def ensure_folders(self) -> None:
        for folder in (
            self.data_dir,
            self.analyses_incoming,
            self.analyses_path,
            self.analyses_failed,
            self.work_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    info = Settings.model_fields.get(field)
    variable = info.alias if info and isinstance(info.alias, str) else field.upper()
    if info and isinstance(info.validation_alias, AliasChoices):
        variable = str(info.validation_alias.choices[0])
    return f"invalid {variable}={first.get('input')!r}: {first['msg']}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ConfigError with a one-line reason."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (read once)."""
    return load_settings()


def configure_logging(settings: Settings) -> None:
    """ANNOSTREAM_LOG_FORMAT (text or json) at LOG_LEVEL; see engine/logs.py."""
    from engine.logs import configure

    configure(settings.log_level, settings.log_format)
