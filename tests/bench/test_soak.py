"""The soak's computing parts on made-up records, without a server: slices and percentiles, RSS growth and the
verdicts, the alerts read from a range query, the retargeted Prometheus config, the traffic's bodies, the log's
completeness (on a real SQLite log written by the service's store), and the report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bench.machine import Machine
from bench.scorecard.traffic import Model
from bench.soak import completeness, prometheus, traffic
from bench.soak.figures import (
    ARBITER,
    WORKER,
    Alert,
    Call,
    Completeness,
    Criterion,
    Outcome,
    ProcessSample,
    Sample,
    criteria,
    exit_code,
    rss_growth,
    slices,
)
from bench.soak.report import SoakRun, render
from service.database.engine import create_database_engine, migrate
from service.feedback.feedback_store import LabelWrite, OutcomeWrite
from service.feedback.stores import LogStores
from service.settings import Settings
from tests.deploy.test_prometheus_rules import assert_ok, promtool
from tests.feedback.helpers import T0, feedback, logged, prediction, request_record

MB = 2**20
ARBITER_PID, W1, W2 = 100, 101, 102


def sample(at: float, w1_mb: float = 300, w2_mb: float = 300, fds: int = 30, pids: Sequence[int] = (W1, W2)) -> Sample:
    rss = {W1: w1_mb, W2: w2_mb}
    workers = tuple(ProcessSample(pid, WORKER, int(rss.get(pid, 300) * MB), fds) for pid in pids)
    return Sample(at, (ProcessSample(ARBITER_PID, ARBITER, 200 * MB, 16), *workers), 20, 10 * MB)


def flat_samples(minutes: float = 30, every_s: float = 10) -> list[Sample]:
    return [sample(i * every_s) for i in range(int(minutes * 60 / every_s) + 1)]


# --- slices and percentiles ----------------------------------------------------------------------------------------


def test_slices_count_statuses_and_take_percentiles_per_group() -> None:
    # sent from 0 to 250 s, latencies 1..100 ms ten times each
    calls = [Call(at=i * 0.25, group="predict", status=200, seconds=(i % 100 + 1) / 1000) for i in range(1000)]
    calls += [Call(300 + i, "feedback", 200, 0.010) for i in range(10)]
    calls += [Call(301, "reads", 404, 0.002), Call(302, "reads", 503, 0.5), Call(303, "predict", 0, 120.0)]
    samples = [sample(0, w1_mb=280), sample(290, w1_mb=310, fds=41), sample(310, w1_mb=305), sample(601, w1_mb=330)]

    first, second = slices(calls, samples, slice_s=300, duration_s=600)

    assert (first.start, first.end, second.start, second.end) == (0, 300, 300, 600)
    assert first.statuses == {"2xx": 1000, "4xx": 0, "5xx": 0, "no answer": 0}
    assert second.statuses == {"2xx": 10, "4xx": 1, "5xx": 1, "no answer": 1}
    # nearest rank
    assert first.latency["predict"].count == 1000
    assert first.latency["predict"].p50 == pytest.approx(0.050)
    assert first.latency["predict"].p99 == pytest.approx(0.099)
    assert first.latency["feedback"].count == 0 and first.latency["feedback"].p50 is None
    # a call without an answer has no latency; a 404 and a 503 have theirs
    assert second.latency["predict"].count == 0
    assert second.latency["reads"].count == 2 and second.latency["reads"].p99 == pytest.approx(0.5)
    # the largest sample of each slice; the final sample, taken after the end, belongs to the last slice
    assert first.rss[W1] == 310 * MB and first.fds[W1] == 41
    assert second.rss[W1] == 330 * MB and second.rss[ARBITER_PID] == 200 * MB


def test_a_run_shorter_than_a_slice_is_one_slice_and_the_last_slice_ends_with_the_run() -> None:
    assert [(s.start, s.end) for s in slices([], [], 300, 180)] == [(0, 180)]
    assert [(s.start, s.end) for s in slices([], [], 300, 420)] == [(0, 300), (300, 420)]


# --- RSS growth and the verdicts -----------------------------------------------------------------------------------


def test_rss_growth_is_the_trend_after_warm_up_not_the_noise_or_one_spike() -> None:
    samples = flat_samples()
    noise = np.random.default_rng(0).normal(0.0, 10.0, len(samples))  # MB: an allocator's ups and downs
    # worker 1: grows during warm-up (not counted), then flat with noise and one spike of 100 MB
    # worker 2: leaks 10 % between the end of warm-up and the end, under the same noise
    for i, s in enumerate(samples):
        w1 = (250 + s.at / 6 if s.at < 300 else 300.0) + noise[i] + (100 if i == 40 else 0)
        w2 = 300 * (1 + 0.10 * max(0.0, s.at - 300) / 1500) + noise[i]
        samples[i] = sample(s.at, w1_mb=w1, w2_mb=w2)

    growth = {g.pid: g for g in rss_growth(samples, warmup_s=300)}

    ratio = growth[W1].ratio
    assert ratio is not None and abs(ratio) < 0.03 and growth[W1].ok
    assert growth[W1].baseline == pytest.approx(300 * MB, rel=0.02)
    assert growth[W2].ratio == pytest.approx(0.10, abs=0.015) and not growth[W2].ok
    assert growth[ARBITER_PID].role == ARBITER and growth[ARBITER_PID].ratio == pytest.approx(0.0)


def test_a_worker_missing_at_the_end_has_no_growth_figure_and_fails() -> None:
    samples = [sample(s.at, pids=(W1, W2) if s.at < 900 else (W1, 103)) for s in flat_samples()]
    growth = {g.pid: g for g in rss_growth(samples, warmup_s=300)}
    assert growth[W2].end is None and growth[W2].ratio is None and not growth[W2].ok
    assert growth[103].baseline is None and not growth[103].ok


def complete() -> Completeness:
    return Completeness(1000, 1000, 100, 100, 50, 50)


def outcome(**changes: Any) -> Outcome:
    fields: dict[str, Any] = {
        "completeness": complete(), "alerts": [], "refused_items": 0, "stopped_gracefully": True,
        "stop_detail": "SIGTERM, exited in 2.0 s with status 0",
    }  # fmt: skip
    return Outcome(**{**fields, **changes})


def verdicts(
    calls: Sequence[Call] = (), samples: Sequence[Sample] | None = None, **changes: Any
) -> dict[str, Criterion]:
    samples = flat_samples() if samples is None else samples
    found = criteria(calls, samples, rss_growth(samples, 300), outcome(**changes), workers=2)
    return {c.what: c for c in found}


def failed(found: dict[str, Criterion]) -> list[str]:
    return [what for what, c in found.items() if not c.ok]


def test_a_clean_flat_complete_run_meets_every_criterion() -> None:
    found = verdicts([Call(1, "predict", 200, 0.01), Call(2, "reads", 200, 0.01)])
    assert failed(found) == []
    assert exit_code(list(found.values())) == 0
    assert found["RSS of worker 1 (pid 101) after warm-up"].measured == "+0.0% (300.0 MB → 300.0 MB)"


def test_each_failed_criterion_is_named_and_fails_the_exit_code() -> None:
    assert failed(verdicts([Call(1, "predict", 500, 0.01)])) == ["5xx answers"]
    assert failed(verdicts([Call(1, "predict", 0, 120)])) == [
        "requests without an answer (connection error, client timeout)"
    ]
    assert failed(verdicts([Call(1, "predict", 400, 0.01)])) == [
        "4xx answers and refused feedback items (the traffic is valid)"
    ]
    assert failed(verdicts(refused_items=1)) == ["4xx answers and refused feedback items (the traffic is valid)"]
    assert failed(verdicts(completeness=Completeness(1000, 999, 100, 100, 50, 50))) == [
        "every prediction answered 200 is in the log"
    ]
    assert failed(verdicts(completeness=Completeness(1000, 1000, 100, 100, 50, 49))) == [
        "every acknowledged feedback item is stored (labels; outcomes)"
    ]
    assert failed(verdicts(stopped_gracefully=False)) == ["graceful stop (SIGTERM): the server exits by itself"]
    assert failed(verdicts(unmeasured=["the alerts (timeout)"])) == ["the alerts (timeout)"]
    found = verdicts([Call(1, "predict", 500, 0.01)])
    assert exit_code(list(found.values())) == 1


def test_a_firing_alert_fails_and_a_pending_one_does_not() -> None:
    pending = Alert("ClassifierFeatureDrift", "pending", (("model", "digits"),), 10.0, 20.0)
    firing = Alert("ClassifierHighLatencyP99", "firing", (), 700.0, 900.0)
    assert failed(verdicts(alerts=[pending])) == []
    found = verdicts(alerts=[pending, firing])
    assert failed(found) == ["alerts fired (clean traffic)"]
    assert found["alerts fired (clean traffic)"].measured == "ClassifierHighLatencyP99"


def test_a_restarted_worker_fails_its_growth_and_the_same_workers_criterion() -> None:
    samples = [sample(s.at, pids=(W1, W2) if s.at < 900 else (W1, 103)) for s in flat_samples()]
    assert failed(verdicts(samples=samples)) == [
        "RSS of worker 2 (pid 102) after warm-up",
        "RSS of worker 3 (pid 103) after warm-up",
        "the same workers throughout (none died or was restarted)",
    ]


# --- Prometheus ----------------------------------------------------------------------------------------------------


def test_alerts_are_read_from_a_range_query_with_their_first_and_last_evaluation() -> None:
    start = 1_700_000_000.0
    matrix = [
        {
            "metric": {"__name__": "ALERTS", "alertname": "ClassifierFeatureDrift", "alertstate": "pending",
                       "severity": "ticket", "model": "digits", "feature": "pixel_3"},
            "values": [[start + 15, "1"], [start + 20, "1"], [start + 25, "1"]],
        },
        {
            "metric": {"__name__": "ALERTS", "alertname": "ClassifierWorkerLost", "alertstate": "firing",
                       "severity": "page", "pid": "7"},
            "values": [[start + 600, "1"]],
        },
    ]  # fmt: skip
    found = prometheus.alerts_seen(matrix, start)
    assert found == [
        Alert("ClassifierWorkerLost", "firing", (("pid", "7"),), 600.0, 600.0),
        Alert("ClassifierFeatureDrift", "pending", (("feature", "pixel_3"), ("model", "digits")), 15.0, 25.0),
    ]


def test_the_shipped_config_is_retargeted_and_promtool_accepts_it(tmp_path: Path) -> None:
    rules = sorted((prometheus.SHIPPED / "rules").glob("*.yml"))
    config = prometheus.config(["127.0.0.1:41234", "127.0.0.1:41235"], 5.0, rules)
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "5s"
    (job,) = config["scrape_configs"]
    assert job["job_name"] == prometheus.JOB and job["static_configs"] == [
        {"targets": ["127.0.0.1:41234", "127.0.0.1:41235"]}
    ]
    assert config["rule_files"] == [str(path) for path in rules] and len(rules) == 2
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    assert_ok(promtool("check", "config", str(path)))


# --- the traffic's bodies ------------------------------------------------------------------------------------------


def served(task: str, options: tuple[str, ...], classes: int = 4, hierarchy: dict[str, list[str]] | None = None,
           truth: list[Any] | None = None) -> traffic.Served:  # fmt: skip
    X = np.arange(30, dtype=float).reshape(10, 3)
    model = Model(f"m_{task}", X, truth or ["a"] * 10, (0,), np.zeros(10), allows_missing=True)
    description = {
        "task": task, "features": {"names": ["f0", "f1", "f2"]}, "options": list(options),
        "classes": {"count": classes}, "decision": {"hierarchy": hierarchy} if hierarchy else {},
    }  # fmt: skip
    return traffic.served(model, description)


def test_predict_bodies_hold_held_out_rows_as_lists_or_objects_and_only_the_models_options() -> None:
    rng = np.random.default_rng(0)
    multilabel = served("multilabel", ("return_probabilities", "threshold", "top_k"), classes=4)
    binary = served("binary", ("return_probabilities", "threshold"), classes=2)
    forms = set()
    for _ in range(300):
        for model in (multilabel, binary):
            body, rows = traffic.predict_body(model, rng)
            assert body["model"] == model.name and 1 <= len(rows) <= traffic.MAX_ROWS
            for instance, row in zip(body["instances"], rows, strict=True):
                expected = model.model.X[row].tolist()
                if isinstance(instance, dict):
                    assert list(instance) == model.features and list(instance.values()) == expected
                else:
                    assert instance == expected
                forms.add(type(instance))
            options = body.get("options", {})
            assert set(options) <= set(model.options)
            assert not {"top_k", "threshold"} <= set(options)  # the multilabel task refuses both at once
            assert 1 <= options.get("top_k", 1) <= min(3, model.classes)
            assert 0 < options.get("threshold", 0.5) < 1
    assert forms == {list, dict}


def test_feedback_items_carry_the_true_label_in_the_tasks_form() -> None:
    rng = np.random.default_rng(1)
    groups = {"__root__": ["round", "straight"], "round": ["0", "6"], "straight": ["1", "7"]}
    hierarchical = served("hierarchical", ("top_k",), hierarchy=groups, truth=["6"] * 10)
    multilabel = served("multilabel", ("top_k",), truth=[["even", "loop"]] * 10)
    forms: set[str] = set()
    for _ in range(200):
        for model in (hierarchical, multilabel):
            issued = traffic.Issued(0.0, 0, "v1", "k-0", row=3)
            item, ack = traffic.feedback_item(model, issued, rng)
            assert item["prediction_id"] == "k-0" and ack.version == "v1"
            if ack.truth is not None:
                forms |= set(ack.truth)
                assert {k: item[k] for k in ack.truth} == ack.truth
            assert ack.truth is not None or ack.outcome is not None
            if ack.outcome is not None:
                assert item["outcome"] == ack.outcome in traffic.OUTCOMES
                assert item.get("value", 1.0) == ack.value
    assert forms == {"label", "path", "labels"}
    assert traffic.ground_truth(hierarchical, "6", np.random.default_rng(3)) in ({"label": "6"},
                                                                                 {"path": ["round", "6"]})  # fmt: skip
    assert traffic.ground_truth(multilabel, ["even", "loop"], rng) == {"labels": ["even", "loop"]}


# --- completeness, on a log written by the service's store ---------------------------------------------------------


def test_completeness_finds_what_the_log_holds_and_names_what_it_lacks(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=None)
    engine = create_database_engine(settings.log_database_url)
    migrate(engine)
    stores = LogStores.over(engine)
    metadata = {"classes": ["0", "1", "2"], "features": {"names": ["f0"]}}
    stores.rollout.remember_version("digits", "v1", "multiclass", metadata, T0)
    written = request_record()
    logged(stores.predictions, written)
    lost = request_record(at=T0 + timedelta(seconds=1))  # answered, never written
    first = prediction(stores.predictions, written.key, 0)
    feedback(stores.feedback, [LabelWrite("2", first)], [OutcomeWrite("clicked", 3.0, first)], T0)
    engine.dispose()

    def ack(row: int, truth: dict[str, Any] | None, outcome: str | None = None, value: float = 1.0) -> Any:
        return traffic.Acknowledged(f"{written.key}-{row}", "digits", "v1", truth, outcome, value)

    found = completeness.check(
        settings,
        {written.key: ("digits", "v1", 3), lost.key: ("digits", "v1", 2)},
        [
            ack(0, {"label": "2"}, "clicked", 3.0),  # stored as sent
            ack(1, {"label": "1"}),  # never stored
            ack(0, None, "clicked", 4.0),  # stored with another value
        ],
    )
    assert (found.predictions_expected, found.predictions_found) == (5, 3)
    assert (found.labels_expected, found.labels_found) == (2, 1)
    assert (found.outcomes_expected, found.outcomes_found) == (2, 1)
    assert not found.complete
    assert found.missing == (
        f"prediction {lost.key}-0 is not in the log",
        f"prediction {lost.key}-1 is not in the log",
        f"label of {written.key}-1: sent {{'label': '1'}}, stored None",
        f"outcome clicked of {written.key}-0: sent 4.0, stored 3.0",
    )


# --- the report ----------------------------------------------------------------------------------------------------

MACHINE = Machine(
    cpus=2, cpu_model="Test CPU", ram_gb=24.0, python="3.11.7", packages={"bentoml": "1.4.40"},
    wrk="httpx 0.29.0, 4 threads, open loop", commit="abc1234", changed=(), date="2026-01-01 00:00",
    load_before="0.10 / 0.10 / 0.10",
)  # fmt: skip


def soak_run(calls: list[Call], alerts: Sequence[Alert] = (), **changes: Any) -> SoakRun:
    fields: dict[str, Any] = {
        "machine": MACHINE, "command": "python -m bench.soak", "duration_s": 1800.0, "rate": 100.0, "threads": 4,
        "workers": 2, "models": ("breast_cancer", "digits"), "warmup_s": 300.0, "slice_s": 300.0,
        "sample_s": 10.0, "scrape_s": 5.0, "prometheus": "2.42.0", "scrapes": 360, "lowest_up": 1.0,
        "calls": calls, "samples": flat_samples(), "outcome": outcome(alerts=list(alerts)),
    }  # fmt: skip
    return SoakRun(**{**fields, **changes})


def test_the_report_gives_the_verdicts_a_row_per_slice_and_the_alerts() -> None:
    calls = [Call(i * 0.5, ("predict", "feedback", "reads")[i % 3], 200, 0.005) for i in range(3600)]
    pending = Alert("ClassifierFeatureDrift", "pending", (("model", "digits"),), 75.0, 130.0)
    text = render(soak_run(calls, [pending]))

    assert "Every criterion met: yes (exit status 0)." in text
    assert "| 5xx answers | 0 | 0 | pass |" in text
    slice_rows = [line for line in text.splitlines() if line.startswith(("| 0–5 |", "| 5–10 |", "| 25–30 |"))]
    assert len(slice_rows) == 3
    assert slice_rows[0].startswith("| 0–5 | 600 | 2.0 | 600 | 0 | 0 | 0 | 5.0 / 5.0 | 5.0 / 5.0 | 5.0 / 5.0 |")
    assert "| worker 2 | 102 | 300.0 | 300.0 | +0.00% | pass |" in text
    assert "| ClassifierFeatureDrift | pending | model=digits | 1:15 | 2:10 |" in text
    assert "None fired: pending only." in text
    assert "Answers other than 200" not in text


def test_the_report_marks_failures_and_lists_the_answers_other_than_200() -> None:
    firing = Alert("ClassifierHighLatencyP99", "firing", (), 700.0, 900.0)
    text = render(soak_run([Call(1, "predict", 503, 0.2)], [firing], unexpected={'predict 503: {"error": ...}': 1}))
    assert "Every criterion met: **no** (exit status 1)." in text
    assert "| 5xx answers | 0 | 1 | **FAIL** |" in text
    assert "| alerts fired (clean traffic) | none | ClassifierHighLatencyP99 | **FAIL** |" in text
    assert "An alert fired on clean traffic" in text
    assert "## Answers other than 200 (1; the 1 most frequent)" in text


def test_processes_are_named_arbiter_first_then_workers_in_order_of_appearance() -> None:
    samples = [sample(s.at, pids=(W2, W1) if s.at < 900 else (W2, W1, 103)) for s in flat_samples()]
    run = soak_run([], samples=samples)
    assert run.names() == {ARBITER_PID: "arbiter", W2: "worker 1", W1: "worker 2", 103: "worker 3"}
    assert [g.pid for g in run.growth()] == [ARBITER_PID, W2, W1, 103]
