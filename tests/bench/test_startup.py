"""The start-up table reads the line each worker logs, and replaces only its own section of the report."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import psutil
import pytest

from bench.startup import HEADING, Startup, WorkerStart, phases, section, write_section
from service.monitoring.workers import log_startup


def test_phases_are_read_from_the_line_the_worker_logs(caplog: pytest.LogCaptureFixture) -> None:
    init_began = time.time() - 0.25
    with caplog.at_level(logging.INFO, logger="service.monitoring.workers"):
        log_startup(init_began, 0.125, 0.0625)
    worker = phases("\n".join(["noise", caplog.text, "more noise"]))
    assert worker.pid == os.getpid()
    assert worker.imports_s == pytest.approx(init_began - psutil.Process().create_time(), abs=1e-3)
    assert worker.init_s >= 0.25
    assert (worker.log_s, worker.models_s) == (0.125, 0.062)  # as logged, to the millisecond


def test_the_line_of_a_commit_that_did_not_log_the_init_s_parts_reads_without_them() -> None:
    """`--startup-baseline` starts older commits, whose line ends in `__init__ N s (models)`."""
    old = "worker 7 started: imports 7.200 s (process start to the service's __init__), __init__ 0.900 s (models)"
    assert phases(old) == WorkerStart(7, 7.2, 0.9, None, None)


def test_a_log_without_the_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="start-up line"):
        phases("Service classifier-service initialized")


def test_the_section_replaces_its_previous_self_and_nothing_else(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\n## digits\n\nrows\n\n## Notes\n\n- a note\n")
    first = section({"this tree": [Startup(1.0, 4.0, 0.5, 2.0, 1.5), Startup(3.0, 6.0, 0.5, 2.5, 1.0)]}, "1.00")
    write_section(report, first)
    text = report.read_text()
    assert text.index("## digits") < text.index(HEADING) < text.index("## Notes")
    second = section({"this tree": [Startup(0.5, 3.0, 0.5, 1.0, 0.5)]}, "2.00")
    write_section(report, second)
    text = report.read_text()
    assert text.count(HEADING) == 1 and second in text and first not in text
    assert "## digits\n\nrows" in text and text.endswith(second + "\n## Notes\n\n- a note\n")
    assert "| `bentoml serve` launch to `/readyz` 200 | 3.0 s (3.0–3.0) |" in second


def test_the_section_has_a_column_per_source_and_the_phases_add_up() -> None:
    results = {
        "baseline `main`": [Startup(6.0, 14.0, 5.0, 7.0, 1.0), Startup(6.5, 15.0, 5.0, 8.0, 1.0)],
        "this tree": [Startup(1.0, 6.0, 1.5, 2.0, 2.0, 0.25, 1.5, ensure_cpu_s=0.5, worker_cpu_s=3.0)],
    }
    text = section(results, "1.00", "python -m bench --startup-only")
    assert "| phase | baseline `main` | this tree |" in text
    assert "| `make serve`, installed: the two rows below | 20.8 s (20.0–21.5) | 7.0 s (7.0–7.0) |" in text
    assert "(uvicorn, poll) | 1.0 s (1.0–1.0) | 0.5 s (0.5–0.5) |" in text  # launch to ready less the phases
    assert "| · · of which the prediction log opened | not logged | 0.2 s (0.2–0.2) |" in text
    assert "| CPU: `models ensure` | not logged | 0.5 s (0.5–0.5) |" in text
    assert "| CPU: the worker, to `/readyz` 200 | not logged | 3.0 s (3.0–3.0) |" in text
    assert "`python -m bench --startup-only`" in text
