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
from engine.errors import InputError
from engine.folders import (
    move_folder,
    move_to_failed,
    move_to_imported,
    relative_to_incoming,
    resolve_in_incoming,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(ANALYSES_INCOMING=tmp_path / "incoming", ANALYSES_PATH=tmp_path / "imported",
                         ANALYSES_FAILED=tmp_path / "failed", ANNOSTREAM_DATA_DIR=tmp_path / "data")


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


def test_taken_destination_gets_a_suffix_and_is_not_touched(settings: Settings) -> None:
    first = move_to_imported(analysis(settings, "Diag-1", "first"), settings)
    second = move_to_imported(analysis(settings, "Diag-1", "second"), settings)
    third = move_to_imported(analysis(settings, "Diag-1", "third"), settings)
    assert first.name == "Diag-1"
    assert second.name.startswith("Diag-1.") and third.name.startswith("Diag-1.")
    assert len({first, second, third}) == 3
    assert [(p / "Diag-1.vcf").read_text() for p in (first, second, third)] == ["first", "second", "third"]


def test_an_empty_directory_at_the_destination_is_not_replaced(settings: Settings) -> None:
    # rename(2) would silently replace an empty directory; the move must not.
    squatter = settings.analyses_path / "Diag-1"
    squatter.mkdir(parents=True)
    moved = move_to_imported(analysis(settings, "Diag-1"), settings)
    assert moved != squatter
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
    sources = []
    for number in range(12):
        folder = settings.analyses_incoming / f"batch{number}" / "Diag-3"
        folder.mkdir(parents=True)
        (folder / "n.txt").write_text(str(number))
        sources.append(folder)
    start = threading.Barrier(len(sources))
    results: list[Path] = []

    def move(folder: Path) -> None:
        start.wait()
        results.append(move_to_imported(folder, settings))

    threads = [threading.Thread(target=move, args=(folder,)) for folder in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 12
    assert sorted(int((p / "n.txt").read_text()) for p in results) == list(range(12))
    assert not any(folder.exists() for folder in sources)


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
