"""Folder moves between incoming, imported and failed: atomic, never overwriting."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from engine.config import Settings, load_settings
from engine.errors import DestinationExistsError, InputError
from engine.folders import (
    move_folder,
    move_to_failed,
    move_to_imported,
    relative_to_incoming,
    resolve_in_incoming,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        ANALYSES_INCOMING=tmp_path / "incoming",
        ANALYSES_PATH=tmp_path / "imported",
        ANALYSES_FAILED=tmp_path / "failed",
        ANNOSTREAM_DATA_DIR=tmp_path / "data",
    )


def analysis(settings: Settings, name: str, content: str = "vcf") -> Path:
    folder = settings.analyses_incoming / name
    folder.mkdir(parents=True)
    (folder / f"{name}.vcf").write_text(content)
    (folder / "READY").touch()
    return folder


def test_move_to_imported_is_a_rename(settings: Settings) -> None:
    folder = analysis(settings, "Diag-1")
    inode = folder.stat().st_ino
    moved = move_to_imported(folder, settings)
    assert moved == settings.analyses_path / "Diag-1"
    assert not folder.exists()
    assert moved.stat().st_ino == inode
    assert (moved / "Diag-1.vcf").read_text() == "vcf"


def test_taken_destination_in_analyses_path_leaves_the_folder_in_incoming(settings: Settings) -> None:
    # ELLA's AnalysisWatcher.check_and_import: "<name> already exists in <dest>. Skipping." and the
    # folder stays in incoming; it is never renamed (ELLA's IGV reads ANALYSES_PATH/<name>/tracks).
    first = move_to_imported(analysis(settings, "Diag-1", "first"), settings)
    second = analysis(settings, "Diag-1", "second")
    with pytest.raises(DestinationExistsError, match="already has a folder named Diag-1") as raised:
        move_to_imported(second, settings)
    assert raised.value.file == str(settings.analyses_path / "Diag-1")
    assert "annostream publish" in (raised.value.expected or "")
    assert (second / "Diag-1.vcf").read_text() == "second"
    assert (first / "Diag-1.vcf").read_text() == "first"
    assert sorted(p.name for p in settings.analyses_path.iterdir()) == ["Diag-1"]


def test_taken_name_in_failed_gets_a_suffix(settings: Settings) -> None:
    error = {"stage": "persist", "message": "bad"}
    first = move_to_failed(analysis(settings, "Diag-1", "first"), settings, error)
    second = move_to_failed(analysis(settings, "Diag-1", "second"), settings, error)
    assert first.name == "Diag-1" and second.name.startswith("Diag-1.")
    assert [(p / "Diag-1.vcf").read_text() for p in (first, second)] == ["first", "second"]


def test_an_empty_directory_at_the_destination_is_not_replaced(settings: Settings) -> None:
    # rename(2) would silently replace an empty directory; the move must not.
    squatter = settings.analyses_path / "Diag-1"
    squatter.mkdir(parents=True)
    folder = analysis(settings, "Diag-1")
    with pytest.raises(DestinationExistsError):
        move_to_imported(folder, settings)
    assert folder.is_dir()
    assert squatter.is_dir() and not any(squatter.iterdir())


def test_move_to_failed_writes_error_json_then_moves(settings: Settings) -> None:
    folder = analysis(settings, "Diag-2")
    error = InputError("no PED for a multi-sample VCF", "Diag-2.vcf", 12, "a .ped file").to_dict()
    moved = move_to_failed(folder, settings, {"stage": "import", **error, "event_id": str(uuid.uuid4())})
    assert moved == settings.analyses_failed / "Diag-2"
    written = orjson.loads((moved / "error.json").read_bytes())
    assert written["stage"] == "import"
    assert written["file"] == "Diag-2.vcf" and written["line"] == 12 and written["expected"] == "a .ped file"
    assert written["message"].startswith("Diag-2.vcf:12: no PED")
    assert written["time"].endswith("Z") and written["event_id"]
    assert [p.name for p in moved.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_concurrent_moves_of_same_named_folders_lose_nothing(settings: Settings) -> None:
    # Twelve movers race for one name in ANALYSES_PATH: exactly one wins, the others stay where
    # they were (DestinationExistsError), nothing is overwritten or lost.
    sources = []
    for number in range(12):
        folder = settings.analyses_incoming / f"batch{number}" / "Diag-3"
        folder.mkdir(parents=True)
        (folder / "n.txt").write_text(str(number))
        sources.append(folder)
    start = threading.Barrier(len(sources))
    results: list[Path] = []
    refused: list[Path] = []

    def move(folder: Path) -> None:
        start.wait()
        try:
            results.append(move_to_imported(folder, settings))
        except DestinationExistsError:
            refused.append(folder)

    threads = [threading.Thread(target=move, args=(folder,)) for folder in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [settings.analyses_path / "Diag-3"] and len(refused) == 11
    assert all(folder.is_dir() for folder in refused)
    winner = int((results[0] / "n.txt").read_text())
    assert sorted([winner, *(int((f / "n.txt").read_text()) for f in refused)]) == list(range(12))


@pytest.fixture
def other_filesystem() -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(Path.cwd()).st_dev:
        pytest.skip("no second file system to move across")
    target = shm / f"annostream-test-{uuid.uuid4().hex}"
    yield target
    shutil.rmtree(target, ignore_errors=True)


def test_move_across_file_systems_copies_then_removes(settings: Settings, other_filesystem: Path) -> None:
    folder = analysis(settings, "Diag-4", "across")
    (other_filesystem / "Diag-4").mkdir(parents=True)  # taken: a suffix is needed there too
    moved = move_folder(folder, other_filesystem)
    assert moved.parent == other_filesystem and moved.name.startswith("Diag-4.")
    assert (moved / "Diag-4.vcf").read_text() == "across"
    assert not folder.exists()
    assert sorted(p.name for p in other_filesystem.iterdir() if p.name.startswith(".")) == []


def test_moving_a_missing_folder_is_an_input_error(settings: Settings) -> None:
    with pytest.raises(InputError, match="does not exist"):
        move_to_imported(settings.analyses_incoming / "gone", settings)


def test_paths_relative_to_incoming(settings: Settings, tmp_path: Path) -> None:
    folder = analysis(settings, "Diag-5")
    incoming = settings.analyses_incoming
    assert relative_to_incoming(folder, incoming) == "Diag-5"
    assert resolve_in_incoming("Diag-5", incoming) == folder.resolve()
    with pytest.raises(InputError, match="not inside"):
        relative_to_incoming(tmp_path, incoming)
    (incoming / "escape").symlink_to(tmp_path)
    with pytest.raises(InputError, match="outside"):
        resolve_in_incoming("escape", incoming)
    for bad in ("../x", "/abs", "a/../../x"):
        with pytest.raises(InputError):
            resolve_in_incoming(bad, incoming)
