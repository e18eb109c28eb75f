"""ANNOSTREAM_LOG_FORMAT: JSON lines or text, every line inside an event's context carries the
analysis name and event id, and faust/mode start-up chatter shows only at DEBUG."""

from __future__ import annotations

import json
import logging

import pytest

from engine.logs import configure, event_context, log_context


def test_json_lines_carry_the_analysis_and_event(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "json")
    log = logging.getLogger("annostream.test")
    with log_context(**event_context(b'{"analysis": "Diag-1", "event_id": "e-42", "x": 1}')):
        log.info("annotated %d variants", 7)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("stage failed")
    log.warning("outside", extra={"analysis": "Other"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["annotated 7 variants", "stage failed", "outside"]
    assert lines[0]["analysis"] == "Diag-1" and lines[0]["event_id"] == "e-42" and lines[0]["level"] == "INFO"
    assert "ValueError: boom" in lines[1]["exc"] and lines[1]["event_id"] == "e-42"
    assert lines[2]["analysis"] == "Other" and "event_id" not in lines[2]
    assert event_context(b"not json") == {} and event_context(b"[1]") == {}
    annotated = b'{"analysis": "Diag-1", "event_id": "a-1", "ready": {"event_id": "e-42"}}'
    assert event_context(annotated) == {"analysis": "Diag-1", "event_id": "e-42"}


def test_text_lines_and_chatter(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "text")
    with log_context(analysis="Diag-2", event_id="e-7"):
        logging.getLogger("engine.pipeline").info("persisted")
    logging.getLogger("faust.worker").info("[^Worker]: Starting...")
    logging.getLogger("mode.services").info("Recovery: starting")
    logging.getLogger("faust.transport").warning("rebalance took long")
    err = capsys.readouterr().err
    assert "INFO engine.pipeline: persisted [analysis=Diag-2 event=e-7]" in err
    assert "Starting" not in err and "Recovery" not in err
    assert "WARNING faust.transport: rebalance took long" in err

    configure("DEBUG", "text")
    logging.getLogger("faust.worker").info("[^Worker]: Starting...")
    assert "Starting" in capsys.readouterr().err
    configure("INFO", "text")
