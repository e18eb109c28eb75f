"""The folder watcher: publishes ``analysis.ready`` for every analysis folder in
ANALYSES_INCOMING that holds a ``READY`` marker (pipelines write it last).

- Folders already present at start are published (the initial scan runs after the file
  system watch is armed, so nothing written in between is missed).
- A folder that fails the minimum check (``load_analysis_folder``) is moved to
  ANALYSES_FAILED with ``error.json`` (stage ``watch``) and an ``analysis.failed`` event.
- The same folder content (fingerprint) is published once per run; changed content is
  published again. Downstream stages are idempotent, so a restart that republishes is safe.
- Allow/deny regexes are ELLA's whitelist/blacklist: ``re.match`` (a prefix match) on the
  *analysis name* (``AnalysisWatcher.check_and_import``). They come from ANALYSES_ALLOW/ANALYSES_DENY,
  ``--whitelist``/``--blacklist`` and the files ANALYSES_ALLOW_FILE/ANALYSES_DENY_FILE (ELLA's
  ELLA_WATCHER_WHITELISTFILE/ELLA_WATCHER_BLACKLISTFILE); the files are re-read when they change.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from watchfiles._rust_notify import RustNotify

from engine import metrics
from engine.config import Settings
from engine.errors import BrokerUnavailable, ConfigError, EventRejected, InputError
from engine.events import ReadyEvent, Topics, build_ready_event, default_producer, encode, failed_event
from engine.folders import READY_FILE, fail_folder
from engine.kafka import EventProducer, ensure_engine_topics
from engine.logs import log_context
from producers.publish import apply_spec, check_folder, send_ready

log = logging.getLogger(__name__)

# File system events are grouped until STEP_MS pass without a new one (at most DEBOUNCE_MS),
# which keeps READY -> published latency in the tens of milliseconds.
DEBOUNCE_MS = 200
STEP_MS = 20
# How often the loop wakes without file events: retry failed publishes, re-read list files.
TICK_MS = 1000
# With WATCHFILES_FORCE_POLLING: how often the folder is polled for changes.
POLL_DELAY_MS = 300


# --- allow / deny lists -----------------------------------------------------------------------


@dataclass
class PatternList:
    """Regexes from an inline comma-separated value, or a command-line list, plus an optional
    file (one per line). Matching is ELLA's: ``re.match``, a prefix match on the analysis name.

    ELLA reads a blank line of its list file as the empty pattern, which matches every name (a
    blank line in a blacklist stops every import, in a whitelist allows every analysis). Annostream
    rejects such a file instead, naming the line: at start the watcher does not start; a file
    that becomes invalid while running pauses publishing (nothing is published until it is
    fixed), so a mistaken edit can never let through what the list was meant to hold back.
    """

    variable: str
    inline: str = ""
    path: Path | None = None
    patterns: tuple[re.Pattern[str], ...] = ()
    command_line: tuple[str, ...] | None = None  # --whitelist/--blacklist: replaces the file, as in ELLA
    invalid: str | None = None  # why the file is currently unusable (publishing paused)
    _file_state: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def file_variable(self) -> str:
        return f"{self.variable}_FILE"

    def load(self) -> None:
        """Compile everything now; ConfigError names the variable (and file line) of a bad entry."""
        if self.command_line is not None:
            if self.path is not None:
                log.warning(
                    "%s given on the command line: ignoring %s=%s (as ELLA's watcher does)",
                    self.variable,
                    self.file_variable,
                    self.path,
                )
            self.patterns = tuple(_compile(item, self.variable) for item in self.command_line)
            return
        inline = (item.strip() for item in self.inline.split(","))
        patterns = [_compile(item, self.variable) for item in inline if item]
        if self.path is not None:
            try:
                self._file_state = _file_state(self.path)
                text = self.path.read_text(encoding="utf-8")
            except OSError as error:
                raise ConfigError(
                    f"{self.file_variable}={self.path}: cannot read ({error.strerror})"
                ) from None
            patterns += _file_patterns(text, f"{self.file_variable}={self.path}")
        self.patterns = tuple(patterns)

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the list (or its validity) changed."""
        if self.path is None or self.command_line is not None:
            return False
        try:
            state = _file_state(self.path)
        except OSError:
            state = None
        if state == self._file_state:
            return False
        before = [pattern.pattern for pattern in self.patterns]
        was_invalid = self.invalid
        try:
            self.load()
        except ConfigError as error:
            self._file_state = state
            self.invalid = str(error)
            log.error("%s; publishing nothing until the file is fixed", error)
            return was_invalid != self.invalid
        self.invalid = None
        log.info("re-read %s %s: %d patterns", self.file_variable, self.path, len(self.patterns))
        return was_invalid is not None or before != [pattern.pattern for pattern in self.patterns]

    def matches(self, name: str) -> bool:
        return any(pattern.match(name) for pattern in self.patterns)


def _file_state(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return (stat.st_mtime_ns, stat.st_size)


def _file_patterns(text: str, where: str) -> list[re.Pattern[str]]:
    """One regex per line; ``#`` lines are comments; a blank line is an error (see PatternList)."""
    patterns = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        if not line.strip():
            raise ConfigError(
                f"{where}: line {number} is blank; ELLA's watcher reads a blank line as the empty pattern, "
                "which matches every analysis name (remove the line, or write '.*' to mean every name)"
            )
        patterns.append(_compile(line.strip(), f"{where}: line {number}"))
    return patterns


def _compile(pattern: str, variable: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"{variable}: invalid regular expression {pattern!r}: {error}") from None


class NameFilter:
    """Which analysis names are published: deny wins; an empty allow list allows all."""

    def __init__(self, allow: PatternList, deny: PatternList):
        self.allow = allow
        self.deny = deny
        allow.load()
        deny.load()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        whitelist: Sequence[str] | None = None,
        blacklist: Sequence[str] | None = None,
    ) -> NameFilter:
        """``whitelist``/``blacklist``: ELLA's ``--whitelist``/``--blacklist`` (replace the files)."""
        return cls(
            PatternList(
                "ANALYSES_ALLOW",
                settings.analyses_allow,
                settings.analyses_allow_file,
                command_line=None if whitelist is None else tuple(whitelist),
            ),
            PatternList(
                "ANALYSES_DENY",
                settings.analyses_deny,
                settings.analyses_deny_file,
                command_line=None if blacklist is None else tuple(blacklist),
            ),
        )

    @property
    def paused(self) -> str | None:
        """Why nothing may be published now (a list file became invalid), or None."""
        return self.allow.invalid or self.deny.invalid

    def allows(self, name: str) -> bool:
        if self.paused is not None or self.deny.matches(name):
            return False
        return not self.allow.patterns or self.allow.matches(name)

    def restricts(self) -> bool:
        return bool(self.allow.patterns or self.deny.patterns) or self.paused is not None

    def refresh(self) -> bool:
        changed_allow = self.allow.refresh()
        changed_deny = self.deny.refresh()
        return changed_allow or changed_deny


# --- the watcher ------------------------------------------------------------------------------


class Watcher:
    """Watches ANALYSES_INCOMING and publishes ready folders through ``producer``."""

    def __init__(
        self,
        settings: Settings,
        producer: EventProducer,
        *,
        producer_name: str | None = None,
        whitelist: Sequence[str] | None = None,
        blacklist: Sequence[str] | None = None,
    ):
        self.settings = settings
        self.producer = producer
        self.producer_name = producer_name or default_producer("watcher")
        self.incoming = settings.analyses_incoming.resolve()
        self.topics = Topics.from_settings(settings)
        self.names = NameFilter.from_settings(settings, whitelist=whitelist, blacklist=blacklist)
        self._published: dict[str, str] = {}  # folder (relative) -> fingerprint
        self._retry: set[str] = set()  # ready folders whose publish must be retried
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once watching (and the initial scan is done)

    # public API

    def run(self) -> None:
        """Scan, then watch until :meth:`stop` is called."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        with RustNotify(
            [str(self.incoming)], False, self.settings.watch_force_polling, POLL_DELAY_MS, True, False
        ) as notify:
            self.scan()  # after arming the watch: a READY written meanwhile is seen twice, not never
            self.ready.set()
            log.info("watching %s", self.incoming)
            while not self._stop.is_set():
                changes = notify.watch(DEBOUNCE_MS, STEP_MS, TICK_MS, self._stop)
                if changes == "stop":
                    break
                self._handle(changes)
        log.info("watcher stopped")

    def stop(self) -> None:
        self._stop.set()

    def scan(self) -> list[ReadyEvent]:
        """Consider every folder in ANALYSES_INCOMING; returns the events published."""
        published = []
        for folder in sorted(self._folders()):
            event = self.consider(folder)
            if event is not None:
                published.append(event)
        return published

    def consider(self, folder: Path) -> ReadyEvent | None:
        """Publish ``folder`` if it is ready, allowed, valid and not yet published as is."""
        with log_context(analysis=folder.name):
            return self._consider(folder)

    def _consider(self, folder: Path) -> ReadyEvent | None:
        key = folder.name
        if key.startswith(".") or folder.is_symlink():
            # Hidden folders are staging areas (write there, then rename into place); a
            # symlinked folder could point anywhere, so it is never published or moved.
            return None
        if not folder.is_dir():
            self._forget(key)
            return None
        if not (folder / READY_FILE).is_file() or self.names.paused is not None:
            return None
        try:
            return self._publish_if_new(folder, key)
        except (InputError, EventRejected) as error:
            if self.names.restricts() and not self.names.allows(folder.name):
                # The lists apply to the analysis name, which a broken folder does not give; one
                # whose folder name the lists hold back is probably not ours: leave it (as ELLA does).
                log.warning(
                    "%s cannot be read (%s) and its folder name is not allowed by the "
                    "allow/deny lists; leaving it in incoming",
                    key,
                    error,
                )
                self._retry.discard(key)
                return None
            self._fail(folder, key, error)
        except BrokerUnavailable as error:
            log.error("%s; will retry %s", error, key)
            self._retry.add(key)
        except FileNotFoundError as error:
            log.info("%s changed while reading it (%s); waiting for the next change", key, error)
        except OSError as error:
            self._fail(folder, key, InputError(f"cannot read: {error.strerror}", file=error.filename))
        except Exception as error:
            # A bug must not stop the watcher for every other folder; park this one visibly.
            log.exception("internal error while checking %s", key)
            self._fail(folder, key, InputError(f"internal error ({type(error).__name__}): {error}"))
        return None

    # internals

    def _publish_if_new(self, folder: Path, key: str) -> ReadyEvent | None:
        event = build_ready_event(folder, self.incoming, producer=self.producer_name)
        if self._published.get(key) == event.fingerprint:
            return None
        spec = check_folder(folder)
        if not self.names.allows(spec.name):
            log.info(
                "%s: analysis %s is not allowed by the allow/deny lists; leaving it in incoming",
                key,
                spec.name,
            )
            return None
        event = apply_spec(event, spec)
        metrics.WATCHER_FOLDERS_SEEN.inc()
        send_ready(event, self.producer, self.topics, self.settings)
        self._published[key] = event.fingerprint
        self._retry.discard(key)
        return event

    def _fail(self, folder: Path, key: str, problem: InputError | EventRejected) -> None:
        error = problem if isinstance(problem, InputError) else InputError(problem.reason)
        dead_letter = failed_event(
            {"folder": key, "analysis": folder.name},
            stage="watch",
            error=error,
            producer=self.producer_name,
            analysis=folder.name,
        )
        try:
            moved = fail_folder(
                folder, self.settings, stage="watch", error=error, event_id=dead_letter.event_id
            )
        except OSError as move_error:
            log.error("%s failed the check (%s) and could not be moved: %s", key, error, move_error)
            return
        self._forget(key)
        log.warning("%s failed the check, moved to %s: %s", key, moved, error)
        try:
            self.producer.send(self.topics.failed, dead_letter.key, encode(dead_letter))
        except BrokerUnavailable as error:
            # The folder and its error.json in ANALYSES_FAILED are the durable record; the
            # dead letter is the notification, and losing it must at least be visible.
            metrics.WATCHER_DEAD_LETTERS_UNSENT.inc()
            log.error(
                "%s: could not publish its dead letter %s (%s); error.json in %s has the details",
                key,
                dead_letter.event_id,
                error,
                moved,
            )

    def _handle(self, changes: set[tuple[int, str]] | str) -> None:
        if self.names.refresh():
            self.scan()  # a list changed: folders may have become (un)publishable
            return
        if not isinstance(changes, set):  # timeout or signal: retry what failed to publish
            for key in sorted(self._retry):
                self.consider(self.incoming / key)
            return
        for key in sorted(self._affected(path for _, path in changes)):
            self.consider(self.incoming / key)

    def _affected(self, paths: Iterable[str]) -> set[str]:
        keys = set()
        for raw in paths:
            path = Path(raw)
            if not path.is_relative_to(self.incoming) or path == self.incoming:
                continue
            keys.add(path.relative_to(self.incoming).parts[0])
        return keys

    def _folders(self) -> Iterable[Path]:
        with os.scandir(self.incoming) as entries:
            return [
                Path(entry.path)
                for entry in entries
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
            ]

    def _forget(self, key: str) -> None:
        self._published.pop(key, None)
        self._retry.discard(key)


def run_watcher(
    settings: Settings,
    *,
    producer_name: str | None = None,
    whitelist: Sequence[str] | None = None,
    blacklist: Sequence[str] | None = None,
) -> None:
    """Entry point of ``annostream watch``: runs until SIGTERM or SIGINT."""
    bootstrap = ensure_engine_topics(settings, command="watch")
    with EventProducer(
        bootstrap, client_id="annostream-watcher", timeout_s=settings.kafka_timeout_s
    ) as producer:
        watcher = Watcher(
            settings, producer, producer_name=producer_name, whitelist=whitelist, blacklist=blacklist
        )
        restore = _stop_on_signals(watcher.stop)
        try:
            watcher.run()
        finally:
            restore()


def _stop_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


__all__ = ["NameFilter", "PatternList", "Watcher", "run_watcher"]
