"""engine.metrics in multiprocess mode: separate processes' counts merge into one exposition."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

RECORD = textwrap.dedent("""
    import sys
    from engine import metrics

    metrics.EVENTS_CONSUMED.labels(topic="analysis.submitted").inc()
    metrics.EVENTS_PRODUCED.labels(topic="analysis.annotated").inc(2)
    metrics.VARIANTS_IMPORTED.inc(int(sys.argv[1]))
    metrics.WATCHER_FOLDERS_SEEN.inc()
    with metrics.observe_stage("persist"):
        pass
    try:
        with metrics.observe_stage("annotate"):
            raise RuntimeError("annotation failed")
    except RuntimeError:
        pass
""")

RENDER = textwrap.dedent("""
    import sys
    from engine.metrics import render_metrics

    body, content_type = render_metrics()
    sys.stdout.write(content_type + "\\n" + body.decode())
""")


def run_python(code: str, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    return result.stdout


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in:\n{text}")


def test_counts_from_several_processes_are_merged(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run_python(RECORD, env, "5")
    run_python(RECORD, env, "7")
    output = run_python(RENDER, env)
    content_type, _, text = output.partition("\n")
    assert content_type.startswith("text/plain")
    assert sample(text, 'annostream_events_consumed_total{topic="analysis.submitted"}') == 2
    assert sample(text, 'annostream_events_produced_total{topic="analysis.annotated"}') == 4
    assert sample(text, "annostream_variants_imported_total") == 12
    assert sample(text, "annostream_watcher_folders_seen_total") == 2
    assert sample(text, 'annostream_stage_duration_seconds_count{stage="persist"}') == 2
    assert sample(text, 'annostream_stage_duration_seconds_count{stage="annotate"}') == 2
    assert sample(text, 'annostream_stage_failures_total{stage="annotate"}') == 2
    assert 'annostream_stage_failures_total{stage="persist"}' not in text


def test_without_multiprocess_dir_a_process_sees_only_its_own(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    output = run_python(RECORD + RENDER, env, "3")
    assert sample(output, "annostream_variants_imported_total") == 3
    assert "python_gc_objects_collected_total" in output  # the default registry's collectors
    assert not list(tmp_path.iterdir())
