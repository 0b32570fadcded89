"""The report's ratios, targets and tables, on made-up measurements (no server, no wrk)."""

from __future__ import annotations

import pytest

from bench.config import SCENARIO_BY_KEY, VARIANT_BY_KEY
from bench.machine import Machine
from bench.report import FAIL, PASS, UNKNOWN, Run, Target, on_off_table, render, targets
from bench.results import FloorResult, Point
from bench.wrk import WrkResult

MACHINE = Machine(
    cpus=2, cpu_model="Test CPU", ram_gb=24.0, python="3.11.7", packages={"bentoml": "1.4.40"},
    wrk="wrk 4.1.0", commit="abc1234", changed=("service/app.py",), date="2026-01-01 00:00",
    load_before="0.10 / 0.10 / 0.10",
)  # fmt: skip


def point(variant: str, model: str, scenario: str, rps: float, p50: float = 1.0, p99: float = 2.0) -> Point:
    result = WrkResult(
        requests=int(rps * 3), duration_s=3.0, req_per_s=rps, p50_ms=p50, p99_ms=p99, non_2xx=0,
        socket_errors={"connect": 0, "read": 0, "write": 0, "timeout": 0},
    )  # fmt: skip
    return Point(VARIANT_BY_KEY[variant], model, SCENARIO_BY_KEY[scenario], result, cpu_ms_per_request=1.0, rss_mb=400)


def good_run() -> list[Point]:
    return [
        point("default", "breast_cancer", "1x16", 2500),
        point("default", "breast_cancer", "64x4", 2000),
        point("default", "digits", "1x16", 900),
        point("baseline", "breast_cancer", "1x16", 2000),
        point("batching_off", "digits", "1x16", 250),
        point("monitoring_off", "breast_cancer", "1x16", 2600),  # 3.8 % fewer with monitoring on
        point("monitoring_off", "digits", "1x16", 920),
    ]


def by_name(found: list[Target]) -> dict[str, Target]:
    return {t.name.split(":")[-1].strip() if ":" in t.name else t.name: t for t in found}


def test_every_target_passes_on_a_good_run() -> None:
    found = targets(good_run())
    assert [t.status for t in found] == [PASS] * 5
    assert "2,500 req/s = 1.11x" in found[0].measured
    assert "1.25x" in found[1].measured
    assert "3.60x" in found[2].measured


def test_targets_fail_on_slow_tails_and_costly_monitoring() -> None:
    points = good_run()
    points[2] = point("default", "digits", "1x16", 900, p50=10.0, p99=70.0)
    points[5] = point("monitoring_off", "breast_cancer", "1x16", 3000)  # 16.7 % fewer with monitoring on
    found = by_name(targets(points))
    assert found["p99 / p50 at every service point"].status == FAIL
    assert "7.00x" in found["p99 / p50 at every service point"].measured
    monitoring = found["monitoring on vs off, every point measured both ways"]
    assert monitoring.status == FAIL and "16.7 % fewer" in monitoring.measured and "1 of 2" in monitoring.measured


def test_the_baseline_is_not_held_to_the_tail_target() -> None:
    points = [*good_run(), point("baseline", "digits", "1x1", 100, p50=1.0, p99=50.0)]
    assert targets(points)[3].status == PASS


def test_targets_without_measurements_are_not_applicable() -> None:
    assert [t.status for t in targets([])] == [UNKNOWN] * 5
    below = [point("default", "breast_cancer", "1x16", 1000)]
    assert targets(below)[0].status == FAIL


def test_on_off_tables_give_the_change_of_throughput() -> None:
    text = on_off_table(good_run(), "monitoring_off", "monitoring")
    row = next(line for line in text.splitlines() if line.startswith("| breast_cancer"))
    assert row == "| breast_cancer | 1 row, 16 conns | 2,500 | 2,600 | 0.96x | -3.8 % |"
    text = on_off_table(good_run(), "batching_off", "batching")
    assert "| digits | 1 row, 16 conns | 900 | 250 | 3.60x | +260.0 % |" in text


def test_render_has_every_section_and_notes_ignored_settings() -> None:
    failed = Point(VARIANT_BY_KEY["default"], "flat_1000", SCENARIO_BY_KEY["1x1"], error="preflight HTTP 500: b'x'")
    run = Run(
        machine=MACHINE, command="python -m bench --quick", duration_s=3.0, warmup_s=1.0,
        points=[*good_run(), failed],
        floor=[
            FloorResult("breast_cancer", 1, 2, 250.0, 300.0, 1000),
            FloorResult("flat_1000", 64, 2, 16000.0, 17000.0, 200),
            FloorResult("flat_1000", 64, 1, 600.0, 700.0, 1000),
        ],
        settings_support={"workers": True, "monitoring": False, "batching": True},
        process_counts={"default": 2},
        load_after="1.00 / 1.00 / 1.00",
    )  # fmt: skip
    text = render(run)
    headings = [
        "## Machine and command", "## Targets", "## breast_cancer", "## digits", "## flat_1000", "## Raw floor",
        "### Service vs FastAPI baseline", "### Service vs MLServer reference", "### Batching on vs off",
        "### Monitoring on vs off", "### p99 / p50 per scenario", "## Notes",
    ]  # fmt: skip
    for heading in headings:
        assert heading in text
    assert "`python -m bench --quick`" in text
    assert "not measured, service 1 worker, 1 row, 1 conn: preflight HTTP 500" in text
    assert "`CLF_MONITORING` was passed" in text and "`CLF_BATCHING` was passed" not in text
    assert "coordinated omission" in text
    assert "| load average after the run | 1.00 / 1.00 / 1.00 |" in text
    assert "abc1234 + uncommitted changes in 1 paths (service/app.py)" in text
    assert "differed from its commit in the served code (service/app.py)" in text
    assert "flat_1000 with 64 rows: 16,000 µs per call with the 2-thread BLAS pool" in text
    assert "breast_cancer with 1 rows" not in text  # no single-thread figure to compare with
    assert "| breast_cancer | 1 | 2 | 250.0 | 300.0 | 1,000 | 4,000 |" in text


@pytest.mark.parametrize("scenario", ["1x1", "1x16", "64x4"])
def test_rows_per_second_is_requests_times_rows(scenario: str) -> None:
    p = point("default", "digits", scenario, 100)
    assert p.rows_per_s == pytest.approx(100 * SCENARIO_BY_KEY[scenario].rows)
