"""The start-up table reads the line each worker logs, and replaces only its own section of the report."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psutil
import pytest

from bench.startup import HEADING, Startup, phases, section, write_section
from service.monitoring.workers import log_startup


def test_phases_are_read_from_the_line_the_worker_logs(caplog: pytest.LogCaptureFixture) -> None:
    init_began = time.time() - 0.25
    with caplog.at_level(logging.INFO, logger="service.monitoring.workers"):
        log_startup(init_began)
    imports_s, init_s = phases("\n".join(["noise", caplog.text, "more noise"]))
    assert imports_s == pytest.approx(init_began - psutil.Process().create_time(), abs=1e-3)
    assert init_s >= 0.25


def test_a_log_without_the_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="start-up line"):
        phases("Service classifier-service initialized")


def test_the_section_replaces_its_previous_self_and_nothing_else(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\n## digits\n\nrows\n\n## Notes\n\n- a note\n")
    first = section([Startup(1.0, 4.0, 2.0, 1.5), Startup(3.0, 6.0, 2.5, 1.0)], "1.00")
    write_section(report, first)
    text = report.read_text()
    assert text.index("## digits") < text.index(HEADING) < text.index("## Notes")
    second = section([Startup(0.5, 3.0, 1.0, 0.5)], "2.00")
    write_section(report, second)
    text = report.read_text()
    assert text.count(HEADING) == 1 and second in text and first not in text
    assert "## digits\n\nrows" in text and text.endswith(second + "\n## Notes\n\n- a note\n")
    assert "| `bentoml serve` launch to `/readyz` 200 | 3.0 s (3.0–3.0) |" in second
