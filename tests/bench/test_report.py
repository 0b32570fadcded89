"""The report's ratios, targets and tables, on made-up measurements (no server, no wrk)."""

from __future__ import annotations

import pytest

from bench.config import SCENARIO_BY_KEY, VARIANT_BY_KEY
from bench.machine import Machine
from bench.report import (
    FAIL,
    PASS,
    UNKNOWN,
    Run,
    Target,
    feedback_table,
    on_off_table,
    pair_table,
    render,
    targets,
    v2_table,
)
from bench.results import FeedbackResult, FloorResult, ModelQuality, Point
from bench.wrk import WrkResult

MACHINE = Machine(
    cpus=2, cpu_model="Test CPU", ram_gb=24.0, python="3.11.7", packages={"bentoml": "1.4.40"},
    wrk="wrk 4.1.0", commit="abc1234", changed=("service/app.py",), date="2026-01-01 00:00",
    load_before="0.10 / 0.10 / 0.10",
)  # fmt: skip


def point(
    variant: str, model: str, scenario: str, rps: float, p50: float = 1.0, p99: float = 2.0, p999: float = 4.0
) -> Point:
    result = WrkResult(
        requests=int(rps * 3), duration_s=3.0, req_per_s=rps, p50_ms=p50, p99_ms=p99, p999_ms=p999, non_2xx=0,
        socket_errors={"connect": 0, "read": 0, "write": 0, "timeout": 0},
    )  # fmt: skip
    return Point(VARIANT_BY_KEY[variant], model, SCENARIO_BY_KEY[scenario], result, cpu_ms_per_request=1.0, rss_mb=400)


def good_run() -> list[Point]:
    """Every target met: tails at 2x, the log 4 % at most, the service 1.1x fastapi_fold, 2.2x MLServer; its V2 route
    2.1x MLServer at 1x16, 1.58x at 64x4, 0.95x /predict."""
    points = []
    for model in ("breast_cancer", "digits"):
        for scenario in ("1x1", "1x16", "64x4"):
            points += [
                point("default", model, scenario, 1000),
                point("log_off", model, scenario, 1040),  # 3.8 % fewer with the log on
                point("workers2", model, scenario, 1500),
                point("workers2_log_off", model, scenario, 1560),
            ]
        for scenario in ("1x16", "64x4"):
            points += [point("fastapi_fold", model, scenario, 900), point("fastapi_proba", model, scenario, 600)]
            points.append(point("v2", model, scenario, 950))
        points += [point("mlserver", model, "1x16", 450), point("floor", model, "1x16", 10_000)]
        points.append(point("mlserver", model, "64x4", 600))
    points += [
        point("batching_off", "digits", "1x16", 250),
        point("monitoring_off", "breast_cancer", "1x16", 1040),
    ]
    return points


def replace(points: list[Point], new: Point) -> list[Point]:
    key = (new.variant.key, new.model, new.scenario.key)
    return [new if (p.variant.key, p.model, p.scenario.key) == key else p for p in points]


def fed(
    database: str, items: int, relabels: int = 0, failed: int = 0, refused: int = 0, first_error: str | None = None
) -> FeedbackResult:
    """A 10 s feedback run that had `items` label items accepted, in 100-item requests."""
    return FeedbackResult(
        database, "1.0", items_per_request=100, connections=4, predictions=100_000, write_wait_s=7.5,
        duration_s=10.0, requests=items // 100, failed_requests=failed, items=items, item_errors=refused,
        fresh_items=items - relabels, relabel_items=relabels, p50_ms=20.0, p99_ms=45.0,
        server_cpu_ms_per_request=30.0, database_cpu_ms_per_request=None if database == "sqlite" else 10.0,
        client_cpu_ms_per_request=0.5, rss_mb=500.0, first_error=first_error,
    )  # fmt: skip


def good_feedback() -> list[FeedbackResult]:
    return [fed("sqlite", 60_000), fed("postgresql", 80_000, relabels=30_000)]


TAIL = "p99 / p50, every catalog point, monitoring and log on (1 and 2 workers)"
LOG = "prediction log on vs off, every catalog point (1 and 2 workers)"


def by_name(found: list[Target]) -> dict[str, Target]:
    return {t.name.split(":")[-1].strip() if ":" in t.name else t.name: t for t in found}


def test_every_target_passes_on_a_good_run() -> None:
    found = targets(good_run(), good_feedback(), startup_s=6.0)
    assert [t.status for t in found] == [PASS] * 7 + ["reported", PASS, PASS, PASS] + [PASS] * 4
    assert "worst 2.00x" in found[0].measured and "0 of 12 points over" in found[0].measured
    assert "worst 3.8 % fewer" in found[1].measured and "0 of 12 points over" in found[1].measured
    assert "breast_cancer: 1,000 vs 900 req/s = 1.11x" in found[2].measured
    assert "64,000 vs 57,600 rows/s = 1.11x" in found[3].measured  # 64 rows: rows/s
    assert "1,000 vs 450 req/s = 2.22x" in found[6].measured
    assert "1,000 vs 10,000 req/s = 0.10x" in found[7].measured
    assert found[8].measured == "6.0 s (median)"


def test_the_tail_target_holds_every_log_on_point_of_1_and_2_workers() -> None:
    at_limit = replace(good_run(), point("workers2", "digits", "64x4", 1500, p50=2.0, p99=6.0))
    assert by_name(targets(at_limit))[TAIL].status == PASS  # exactly 3x
    over = replace(good_run(), point("workers2", "digits", "64x4", 1500, p50=2.0, p99=6.1, p999=40.0))
    tail = by_name(targets(over))[TAIL]
    assert tail.status == FAIL and "worst 3.05x (service 2 workers, digits, 64 rows, 4 conns; p99.9 40.0 ms)" in (
        tail.measured
    )
    assert "1 of 12 points over" in tail.measured


def test_log_off_variants_and_peers_are_not_held_to_the_tail_target() -> None:
    points = [
        *good_run(),
        point("log_off", "digits", "1x1", 1040, p50=1.0, p99=50.0),
        point("fastapi_proba", "digits", "1x1", 100, p50=1.0, p99=50.0),
        point("default", "flat_1000", "1x1", 100, p50=1.0, p99=50.0),  # not a catalog model
    ]
    assert by_name(targets(points))[TAIL].status == PASS


def test_the_log_target_compares_each_worker_count_with_its_own_twin() -> None:
    at_limit = replace(good_run(), point("workers2_log_off", "breast_cancer", "1x1", 1000 / 0.95))
    assert by_name(targets(at_limit))[LOG].status == PASS  # exactly 5 % fewer
    over = replace(good_run(), point("workers2_log_off", "breast_cancer", "1x1", 1600))
    log = by_name(targets(over))[LOG]
    assert log.status == FAIL and "6.2 % fewer (service 2 workers, breast_cancer, 1 row, 1 conn)" in log.measured


def test_peer_targets_take_the_lowest_model_and_rows_per_second() -> None:
    slow = replace(good_run(), point("default", "digits", "64x4", 890))  # 0.99x fastapi_fold's 900
    found = targets(slow)
    assert found[3].status == FAIL and "digits: 56,960 vs 57,600 rows/s = 0.99x" in found[3].measured
    assert found[5].status == FAIL and "= 1.48x" in found[5].measured  # and 1.5x fastapi_proba's 600
    exactly = replace(good_run(), point("fastapi_proba", "breast_cancer", "1x16", 1000 / 1.5))
    assert targets(exactly)[4].status == PASS
    below = replace(good_run(), point("mlserver", "digits", "1x16", 501))
    assert targets(below)[6].status == FAIL


def test_targets_without_measurements_are_not_applicable() -> None:
    assert [t.status for t in targets([])] == [UNKNOWN] * 15
    assert targets([], startup_s=8.5)[8].status == FAIL
    assert targets([], startup_s=8.0)[8].status == PASS


def test_on_off_tables_give_the_change_of_throughput() -> None:
    text = on_off_table(good_run(), "monitoring_off", "monitoring")
    row = next(line for line in text.splitlines() if line.startswith("| breast_cancer"))
    assert row == "| breast_cancer | 1 row, 16 conns | 1,000 | 1,040 | 0.96x | -3.8 % |"
    text = on_off_table(good_run(), "batching_off", "batching")
    assert "| digits | 1 row, 16 conns | 1,000 | 250 | 4.00x | +300.0 % |" in text
    text = on_off_table(good_run(), "workers2_log_off", "prediction log", on_variant="workers2")
    assert "| digits | 64 rows, 4 conns | 1,500 | 1,560 | 0.96x | -3.8 % |" in text


def test_feedback_targets_per_database() -> None:
    found = by_name(targets(good_run(), [fed("sqlite", 40_000), fed("postgresql", 80_000, relabels=30_000)]))
    sqlite = found["POST /feedback, 100-item label batches, SQLite"]
    postgres = found["POST /feedback, 100-item label batches, PostgreSQL"]
    assert sqlite.required == "≥ 5,000 items/s"
    assert sqlite.status == FAIL and sqlite.measured == "4,000 items/s (40.0 req/s; all first labels)"
    assert postgres.status == PASS
    assert postgres.measured == "8,000 items/s (80.0 req/s; 50,000 first labels, 30,000 relabels)"


def test_a_feedback_database_not_measured_is_not_applicable() -> None:
    failed = FeedbackResult("postgresql", error="no PostgreSQL server binaries")
    found = by_name(targets(good_run(), [fed("sqlite", 60_000, relabels=60_000), failed]))
    assert "all relabels" in found["POST /feedback, 100-item label batches, SQLite"].measured
    assert found["POST /feedback, 100-item label batches, PostgreSQL"].status == UNKNOWN


def test_feedback_table_gives_rates_errors_and_where_the_database_cpu_is() -> None:
    text = feedback_table(
        [
            fed("sqlite", 60_000),
            fed("postgresql", 50_000, failed=2, refused=3, first_error="unknown_prediction: never issued"),
            FeedbackResult("postgresql", error="no PostgreSQL server binaries"),
        ]
    )
    lines = text.splitlines()
    assert lines[2] == (
        "| SQLite 1.0 | 6,000 | 60.0 | 20.0 | 45.0 | 0 | 60,000 | 0 | 30.0 | in the server's | 0.5 | 500 |"
    )
    assert lines[3].startswith("| PostgreSQL 1.0 | 5,000 | 50.0 |")
    assert "| 5 (failed requests 2, refused items 3) |" in lines[3] and "| 10.0 |" in lines[3]
    assert lines[4] == "| PostgreSQL | " + " | ".join(["—"] * 11) + " |"
    assert "- PostgreSQL: first error: unknown_prediction: never issued" in text
    assert "- PostgreSQL: not measured: no PostgreSQL server binaries" in text


def test_a_feedback_only_run_has_no_load_sections() -> None:
    run = Run(
        machine=MACHINE, command="python -m bench --feedback-only", duration_s=10.0, warmup_s=1.0, points=[],
        floor=[], feedback=good_feedback(),
    )  # fmt: skip
    text = render(run)
    assert "## Feedback (`POST /feedback`)" in text and "## Notes" in text
    assert "## Ratios" not in text and "## breast_cancer" not in text
    assert "100,000 predictions readable 7.5 s after the first /predict, on SQLite" in text
    assert "predictions of 100 different requests (row by row across the 100 created)" in text
    assert "own SQLite file" not in text  # no service load point: nothing about their logs


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
        settings_support={"workers": True, "monitoring": False, "batching": True, "log_sample_rate": True},
        process_counts={"default": 2},
        load_after="1.00 / 1.00 / 1.00",
        feedback=good_feedback(),
    )  # fmt: skip
    text = render(run)
    headings = [
        "## Machine and command", "## Targets", "## breast_cancer", "## digits", "## flat_1000", "## Raw floor",
        "## The peers: what each does", "### Service vs its peers, measured in this run", "### Batching on vs off",
        "### Monitoring on vs off", "### Prediction log on vs off (1 worker)",
        "### Prediction log on vs off (2 workers)", "### p99 / p50 and p99.9 / p50 per scenario",
        "## Feedback (`POST /feedback`)", "## Notes",
    ]  # fmt: skip
    for heading in headings:
        assert heading in text
    assert "`python -m bench --quick`" in text
    assert "not measured, service 1 worker, 1 row, 1 conn: preflight HTTP 500" in text
    assert "`CLF_MONITORING` was passed" in text and "`CLF_BATCHING` was passed" not in text
    assert "'service 1 worker, monitoring off' variant ran with the default" in text
    assert "`CLF_LOG_SAMPLE_RATE` was passed" not in text
    assert "wrote its prediction log to a SQLite file of its own" in text
    assert "| breast_cancer | 1 row, 16 conns | 1,000 | 1,040 | 0.96x | -3.8 % |" in text
    assert (
        "| 1,000 | 600 | 1.67x | 900 | 1.11x | 450 | 2.22x | 10,000 | 0.10x |" in text
    )  # each peer, then service / it
    assert "| 2.00x / 4.00x |" in text  # p99 / p50 and p99.9 / p50
    assert "| MLServer (scikit-learn runtime) (`mlserver`) | `predict_proba`" in text
    assert "MLServer req/s (reference)" not in text
    assert "| SQLite 1.0 | 6,000 |" in text
    assert "coordinated omission" in text
    assert "| load average after the run | 1.00 / 1.00 / 1.00 |" in text
    assert "abc1234 + uncommitted changes in 1 paths (service/app.py)" in text
    assert "The working tree was dirty when the run started (1 paths differ from commit abc1234)" in text
    assert "Of those, the served code: service/app.py." in text
    assert "flat_1000 with 64 rows: 16,000 µs per call with the 2-thread BLAS pool" in text
    assert "breast_cancer with 1 rows" not in text  # no single-thread figure to compare with
    assert "| breast_cancer | `task.score` | 1 | 2 | 250.0 | 300.0 | 1,000 | 4,000 |" in text


@pytest.mark.parametrize("scenario", ["1x1", "1x16", "64x4"])
def test_rows_per_second_is_requests_times_rows(scenario: str) -> None:
    p = point("default", "digits", scenario, 100)
    assert p.rows_per_s == pytest.approx(100 * SCENARIO_BY_KEY[scenario].rows)


def test_the_flat_and_hierarchical_pair_table() -> None:
    quality = [ModelQuality("flat_1000", 0.81, 0.80), ModelQuality("hier_40x25", 0.84, 0.83, [0.99, 0.85])]
    floor = [
        FloorResult("hier_40x25", 64, 2, 1000.0, 1200.0, 200),
        FloorResult("hier_40x25", 64, 1, 640.0, 700.0, 200),  # the fastest median of the row count counts
        FloorResult("hier_40x25", 1, 1, 70.0, 80.0, 200),
        FloorResult("hier_40x25", 64, 2, 64.0, 70.0, 200, call="predict_proba"),  # not the service's cost
    ]
    points = [point("default", "hier_40x25", "64x4", 100.0)]
    lines = pair_table(quality, floor, points).splitlines()
    flat = next(line for line in lines if line.startswith("| flat_1000"))
    hier = next(line for line in lines if line.startswith("| hier_40x25"))
    assert "| 0.810 | 0.800 | — | — | — | — |" in flat
    assert "| 0.840 | 0.830 | 0.990, 0.850 | 70.0 | 10.0 | 6,400 |" in hier


V2_HEAD = "| V2 req/s | V2 rows/s | MLServer req/s | MLServer rows/s | V2 / MLServer | target | result | /predict req/s"


def v2_names(found: list[Target]) -> dict[str, Target]:
    return {t.name: t for t in found if t.name.startswith("service 1 worker, V2 vs ")}


def test_the_v2_table_holds_the_v2_route_against_mlserver_and_predict() -> None:
    text = v2_table(good_run())
    assert V2_HEAD in text
    # 950 vs MLServer's 450 at 1 row (target 2x), 950 x 64 rows vs 600 x 64 at 64 rows (target 1.5x), 0.95x /predict
    assert (
        "| breast_cancer | 1 row, 16 conns | 950 | 950 | 450 | 450 | 2.11x | ≥ 2.0x | met "
        "| 1,000 | 0.95x | ≥ 0.90x | met | 1.00 | 1.00 | 1.00 |"  # then server CPU ms/req: V2, /predict, MLServer
    ) in text
    assert (
        "| digits | 64 rows, 4 conns | 950 | 60,800 | 600 | 38,400 | 1.58x | ≥ 1.5x | met "
        "| 1,000 | 0.95x | ≥ 0.90x | met |"
    ) in text
    assert len(text.splitlines()) == 2 + 4  # 2 models x 2 scenarios; 1x1 is not held


def test_the_v2_targets_are_met_at_their_limits_and_not_below() -> None:
    slow = good_run()
    for new in (
        point("v2", "digits", "1x16", 899),
        point("v2", "digits", "64x4", 899),
        point("mlserver", "digits", "1x16", 440),
    ):
        slow = replace(slow, new)
    text = v2_table(slow)
    # 899 / 1,000 prints 0.90x but is below 0.90; 899 / 600 prints 1.50x but is 1.498
    assert (
        "| digits | 1 row, 16 conns | 899 | 899 | 440 | 440 | 2.04x | ≥ 2.0x | met "
        "| 1,000 | 0.90x | ≥ 0.90x | **not met** |"
    ) in text
    assert "| 1.50x | ≥ 1.5x | **not met** | 1,000 | 0.90x | ≥ 0.90x | **not met** |" in text
    found = v2_names(targets(slow))
    assert [t.status for t in found.values()] == [PASS, FAIL, FAIL, FAIL]
    predict = found["service 1 worker, V2 vs service 1 worker, 1 row, 16 conns"]
    assert predict.required == "≥ 0.9x" and "digits: 899 vs 1,000 req/s = 0.90x" in predict.measured
    at_limit = replace(good_run(), point("v2", "breast_cancer", "1x16", 900))  # exactly 0.90x /predict, 2.0x MLServer
    assert [t.status for t in v2_names(targets(at_limit)).values()] == [PASS] * 4


def test_the_v2_section_is_rendered_only_when_the_v2_route_was_measured() -> None:
    def page(points: list[Point]) -> str:
        return render(
            Run(machine=MACHINE, command="python -m bench", duration_s=3.0, warmup_s=1.0, points=points, floor=[])
        )

    assert "## Open Inference Protocol (V2 REST)" in page(good_run())
    assert V2_HEAD in page(good_run())
    assert "## Open Inference Protocol" not in page([p for p in good_run() if p.variant.key != "v2"])
    unmeasured = [p for p in good_run() if (p.variant.key, p.model) != ("mlserver", "digits")]
    assert "| digits | 64 rows, 4 conns | 950 | 60,800 | — | — | — | ≥ 1.5x | — | 1,000 | 0.95x |" in v2_table(
        unmeasured
    )
