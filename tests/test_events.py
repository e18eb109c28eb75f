"""The event contract: schemas, building, encoding and validated decoding."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

import schemas
from engine.errors import EventRejected, InputError
from engine.events import (
    AnnotatedEvent,
    FailedEvent,
    Genepanel,
    ImportedEvent,
    ReadyEvent,
    annotated_event,
    build_ready_event,
    decode,
    encode,
    failed_event,
    imported_event,
    verify_files,
)


@pytest.fixture
def incoming(tmp_path: Path) -> Path:
    root = tmp_path / "incoming"
    folder = root / "Diag-1"
    (folder / "sub").mkdir(parents=True)
    (folder / "Diag-1.vcf").write_bytes(b"##fileformat=VCFv4.1\n")
    (folder / "Diag-1.analysis").write_text('{"name": "Diag-1"}')
    (folder / "sub" / "extra.txt").write_text("x" * 1000)
    (folder / "READY").touch()
    (folder / "error.json").write_text("{}")
    return root


def ready(incoming: Path) -> ReadyEvent:
    return build_ready_event(
        incoming / "Diag-1",
        incoming,
        producer="test@host",
        genepanel=Genepanel(name="HBOC", version="v1.0.0"),
        priority=2,
    )


def rejected(raw: bytes, incoming: Path) -> str:
    with pytest.raises(EventRejected) as caught:
        decode(raw, incoming=incoming)
    return caught.value.reason


def mutated(event: ReadyEvent, **changes: object) -> bytes:
    document = orjson.loads(encode(event))
    document.update(changes)
    return orjson.dumps(document)


def test_every_schema_file_is_a_valid_2020_12_schema() -> None:
    from jsonschema import Draft202012Validator

    assert set(schemas.available()) >= {
        "analysis.ready",
        "analysis.annotated",
        "analysis.imported",
        "analysis.failed",
        "analysis.status",
    }
    for name, versions in schemas.available().items():
        for version in versions:
            Draft202012Validator.check_schema(schemas.load_schema(name, version))


def test_ready_event_lists_content_files_with_streamed_checksums(incoming: Path) -> None:
    event = ready(incoming)
    folder = incoming / "Diag-1"
    assert event.folder == "Diag-1"
    assert event.analysis == "Diag-1"
    assert [entry.path for entry in event.files] == ["Diag-1.analysis", "Diag-1.vcf", "sub/extra.txt"]
    for entry in event.files:
        data = (folder / entry.path).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.size == len(data)
    # fingerprint = sha256 over sorted "PATH NUL SHA256 LF" lines, as documented for pipelines
    lines = b"".join(f"{e.path}\0{e.sha256}\n".encode() for e in sorted(event.files, key=lambda e: e.path))
    assert event.fingerprint == hashlib.sha256(lines).hexdigest()


def test_fingerprint_follows_content_not_time(incoming: Path) -> None:
    first, second = ready(incoming), ready(incoming)
    assert first.event_id != second.event_id
    assert first.fingerprint == second.fingerprint
    (incoming / "Diag-1" / "READY").write_text("touched")  # markers are not content
    assert ready(incoming).fingerprint == first.fingerprint
    (incoming / "Diag-1" / "Diag-1.vcf").write_bytes(b"##fileformat=VCFv4.2\n")
    assert ready(incoming).fingerprint != first.fingerprint


def test_every_event_kind_round_trips(incoming: Path, tmp_path: Path) -> None:
    event = ready(incoming)
    work = tmp_path / "work"
    (work / event.event_id).mkdir(parents=True)
    artifact = work / event.event_id / "annotated.vcf"
    artifact.write_bytes(b"##fileformat=VCFv4.1\n#CHROM\n")
    annotated = annotated_event(
        event, [artifact], work, producer="annotate@host", annotation={"bundle_version": "2024.1"}
    )
    imported = imported_event(
        event, analysis_id=7, counts={"alleles": 12, "samples": 3}, producer="import@host"
    )
    failed = failed_event(
        encode(event),
        stage="import",
        error=InputError("bad", "x.vcf", 3, "a number"),
        producer="import@host",
        attempt=2,
    )
    for original in (event, annotated, imported, failed):
        raw = encode(original)
        assert raw.startswith(b'{"schema":"' + original.SCHEMA.encode() + b'","version":1,')
        assert decode(raw, incoming=incoming) == original
    assert isinstance(decode(encode(annotated), incoming=incoming), AnnotatedEvent)
    assert annotated.artifacts[0].path == f"{event.event_id}/annotated.vcf"
    assert isinstance(decode(encode(imported), incoming=incoming), ImportedEvent)
    assert failed.analysis == "Diag-1"
    assert failed.error == {
        "message": "x.vcf:3: bad (expected a number)",
        "file": "x.vcf",
        "line": 3,
        "expected": "a number",
    }


def test_dead_letter_keeps_non_json_original_as_text() -> None:
    failed = failed_event(
        b"\xffnot json", stage="decode", error=ValueError("not valid JSON"), producer="worker@host"
    )
    assert isinstance(failed, FailedEvent)
    assert failed.original == "\ufffdnot json"
    assert failed.analysis is None
    decoded = decode(encode(failed), incoming=Path("/nonexistent"))
    assert decoded == failed


def test_decode_rejects_invalid_json_and_non_objects(incoming: Path) -> None:
    assert rejected(b"{not json", incoming).startswith("not valid JSON")
    assert "expected an object" in rejected(b"[1, 2]", incoming)
    assert "'schema'/'version'" in rejected(b'{"version": 1}', incoming)


def test_decode_rejects_unknown_schema_name_and_version(incoming: Path) -> None:
    event = ready(incoming)
    assert "unknown event schema 'analysis.exploded'" in rejected(
        mutated(event, schema="analysis.exploded"), incoming
    )
    reason = rejected(mutated(event, version=2), incoming)
    assert "unknown event schema 'analysis.ready' version 2" in reason


def test_decode_reason_names_the_offending_field(incoming: Path) -> None:
    event = ready(incoming)
    document = orjson.loads(encode(event))
    document["files"][1]["sha256"] = "not-a-checksum"
    assert "field files[1].sha256" in rejected(orjson.dumps(document), incoming)
    del document["files"][1]["sha256"]
    assert "field files[1].sha256: is required but missing" in rejected(orjson.dumps(document), incoming)
    assert "field priority" in rejected(mutated(event, priority="high"), incoming)
    assert "field genepanel" in rejected(mutated(event, genepanel={"name": "HBOC"}), incoming)
    assert "field event_id" in rejected(mutated(event, event_id="123"), incoming)
    assert "field time" in rejected(mutated(event, time="yesterday"), incoming)


@pytest.mark.parametrize("folder", ["../elsewhere", "Diag-1/../../elsewhere", "/etc", "", "."])
def test_decode_rejects_folders_outside_incoming(incoming: Path, folder: str) -> None:
    reason = rejected(mutated(ready(incoming), folder=folder), incoming)
    assert "field folder" in reason


def test_decode_rejects_symlink_escaping_incoming(incoming: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (incoming / "sneaky").symlink_to(outside)
    reason = rejected(mutated(ready(incoming), folder="sneaky"), incoming)
    assert "field folder" in reason and "outside" in reason


def test_decode_rejects_file_paths_leaving_the_folder(incoming: Path) -> None:
    document = orjson.loads(encode(ready(incoming)))
    document["files"][0]["path"] = "../Other/secret.vcf"
    assert "field files[0].path" in rejected(orjson.dumps(document), incoming)


def test_encode_refuses_an_event_that_violates_its_schema(incoming: Path) -> None:
    import dataclasses

    with pytest.raises(EventRejected, match="field priority"):
        encode(dataclasses.replace(ready(incoming), priority=9))


def test_verify_files_names_the_changed_file(incoming: Path) -> None:
    event = ready(incoming)
    verify_files(event, incoming)
    vcf = incoming / "Diag-1" / "Diag-1.vcf"
    vcf.write_bytes(vcf.read_bytes().replace(b"4.1", b"4.2"))  # same size, other content
    with pytest.raises(InputError) as caught:
        verify_files(event, incoming)
    assert caught.value.file == str(vcf.resolve())
    assert "sha256" in str(caught.value)
    vcf.unlink()
    with pytest.raises(InputError, match="missing"):
        verify_files(event, incoming)


def test_build_refuses_symlinks_out_of_the_folder(incoming: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.vcf"
    secret.write_text("x")
    (incoming / "Diag-1" / "linked.vcf").symlink_to(secret)
    with pytest.raises(InputError, match="symlink points outside"):
        ready(incoming)


def test_build_refuses_folders_outside_incoming(tmp_path: Path, incoming: Path) -> None:
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "a.vcf").write_text("x")
    with pytest.raises(InputError, match="not inside ANALYSES_INCOMING"):
        build_ready_event(stray, incoming, producer="test")
