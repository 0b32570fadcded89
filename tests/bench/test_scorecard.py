"""The scorecard's pieces without a server: the shipped alerts evaluated by promtool on made-up scrapes, the
parsing of promtool's report, and the faults' rows."""

from __future__ import annotations

import numpy as np
import pytest

from bench.scorecard.alerts import STEP_MINUTES, Firing, Scrape, Series, evaluate, input_series, parse_failures
from bench.scorecard.report import held_steps
from bench.scorecard.run import PhaseRun
from bench.scorecard.signals import detections, margins
from bench.scorecard.traffic import (
    FAULTS,
    Model,
    class_prior_shift,
    covariate_shift,
    missing_values,
    out_of_range,
    tilted_weights,
)

MODEL = "m"
ROWS_PER_STEP = 100


def key(name: str, **labels: str) -> Series:
    return name, frozenset(labels.items())


def data_quality_scrapes(steps: int, faulty_from: int, faulty_share: float) -> list[Scrape]:
    """`ROWS_PER_STEP` rows a step; from `faulty_from` on, `faulty_share` of them miss feature `f1`."""
    scrapes, missing = [], 0.0
    for step in range(steps):
        if step > faulty_from:
            missing += faulty_share * ROWS_PER_STEP
        samples = {
            key("classifier_rows_total", model=MODEL, outcome="accepted"): float(step * ROWS_PER_STEP),
            key("classifier_input_issues_total", model=MODEL, feature="f1", kind="missing"): missing,
            key("classifier_model_trained_timestamp_seconds", model=MODEL): 1_000_000.0 + step,
        }
        scrapes.append(Scrape(samples, taken_at=1_000_060.0 + step))
    return scrapes


def test_the_shipped_data_quality_alert_holds_then_fires_after_its_for() -> None:
    evaluation = evaluate(data_quality_scrapes(steps=30, faulty_from=5, faulty_share=0.2))
    held = sorted({f.step for f in evaluation.pending if f.alert == "ClassifierDataQuality"})
    fired = sorted({f.step for f in evaluation.firing if f.alert == "ClassifierDataQuality"})
    # rate() averages the 15-minute window, against 0.05 + z * sqrt(0.05 * 0.95 / rows): 60 faulty of 800 rows at
    # step 8 (7.5 %, under 8.8 %), 80 of 900 at step 9 (8.9 %, over 8.4 %)
    assert held and held[0] == 9
    assert fired and fired[0] == held[0] + 5 // STEP_MINUTES  # `for: 5m`
    (labels,) = {f.labels for f in evaluation.firing if f.alert == "ClassifierDataQuality"}
    assert dict(labels) == {"model": MODEL, "feature": "f1", "kind": "missing"}
    assert not [f for f in evaluation.pending if f.alert != "ClassifierDataQuality"]


def test_faults_under_the_threshold_hold_nothing() -> None:
    evaluation = evaluate(data_quality_scrapes(steps=20, faulty_from=5, faulty_share=0.04))
    assert evaluation.pending == [] and evaluation.firing == []


def test_timestamp_gauges_keep_their_age_in_virtual_time() -> None:
    (stamp,) = [s for s in input_series(data_quality_scrapes(3, 0, 0.0)) if "timestamp" in s["series"]]
    # trained 60 s before each scrape: virtual time 0, 60, 120 s minus 60
    assert [float(v) for v in stamp["values"].split()] == [-60.0, 0.0, 60.0]


def test_detections_name_the_faults_alerts_and_when() -> None:
    scrapes = data_quality_scrapes(steps=25, faulty_from=3, faulty_share=0.5)
    (missing,) = [f for f in FAULTS if f.key == "missing"]
    phase = PhaseRun(missing, ROWS_PER_STEP, scrapes, {MODEL: None})  # type: ignore[dict-item]
    (found,) = detections(phase, evaluate(scrapes))
    assert found.held == {"ClassifierDataQuality": 4}
    assert found.fired == {"ClassifierDataQuality": 4 + 5 // STEP_MINUTES}  # `for: 5m`
    assert found.first == 4 and found.others == ()
    issues = [m for m in margins(phase, MODEL) if m.signal.startswith("rows with one fault")]
    assert issues[0].largest == pytest.approx(0.5)


def test_conditions_held_are_named_with_their_model_level_and_steps() -> None:
    def held(step: int, alert: str, **labels: str) -> Firing:
        return Firing(step, alert, frozenset(labels.items()))

    pending = [
        held(3, "ClassifierFeatureDrift", model="a", feature="x"),
        held(2, "ClassifierFeatureDrift", model="a", feature="y"),
        held(4, "ClassifierPredictionDrift", model="h", level="1"),
        held(9, "ClassifierPredictionDrift", model="h", level="1"),
        held(5, "ClassifierPredictionDrift", model="h", level="1"),
    ]
    assert held_steps(pending) == [
        "ClassifierFeatureDrift/a (steps 2–3)",
        "ClassifierPredictionDrift/h level 1 (steps 4–9, 3 of them)",
    ]


def test_parse_failures_reads_promtools_report() -> None:
    report = """Unit Testing:  test.yml
  FAILED:
    alertname: ClassifierFeatureDrift, time: 1h40m0s,
        exp:[],
        got:[
            0:
              Labels:{alertname="ClassifierFeatureDrift", feature="mean \\"radius\\"", model="b", severity="ticket"}
              Annotations:{}
            ]
    alertname: ClassifierClassCollapse, time: 7m,
        exp:[],
        got:[
            0:
              Labels:{alertname="ClassifierClassCollapse", label="x", model="b", severity="page"}
              Annotations:{}
            ]
"""
    first, second = parse_failures(report)
    assert (first.step, first.alert, first.label("feature"), first.label("model")) == (
        100, "ClassifierFeatureDrift", 'mean "radius"', "b"
    )  # fmt: skip
    assert (second.step, second.alert, second.label("label"), second.label("severity")) == (
        7, "ClassifierClassCollapse", "x", None
    )  # fmt: skip


def made_up_model() -> Model:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(1.0, 3.0, 400), rng.normal(5.0, 1.0, 400)])
    groups = np.where(X[:, 1] > 5.0, "high", "low")
    groups[:40] = "rare"
    return Model(MODEL, X, [str(g) for g in groups], important=0, groups=groups)


def test_covariate_shift_moves_the_mean_by_drawing_rows_not_by_changing_them() -> None:
    model = made_up_model()
    rows, truth = covariate_shift(model, np.random.default_rng(1), 5000)
    shifted = np.asarray(rows)
    target = min(1.5 * model.X[:, 0].mean(), np.quantile(model.X[:, 0], 0.95))
    assert shifted[:, 0].mean() == pytest.approx(target, rel=0.03)
    originals = {tuple(row): label for row, label in zip(model.X.tolist(), model.truth, strict=True)}
    assert all(originals[tuple(row)] == label for row, label in zip(rows, truth, strict=True))


def test_tilted_weights_hit_the_mean_asked_for() -> None:
    values = np.arange(10.0)
    assert tilted_weights(values, 7.0) @ values == pytest.approx(7.0)
    assert tilted_weights(values, values.mean()) @ values == pytest.approx(values.mean())


def test_missing_out_of_range_and_class_prior_faults() -> None:
    model = made_up_model()
    rng = np.random.default_rng(2)
    rows, _ = missing_values(model, rng, 50)
    assert all(row[0] is None and row[1] is not None for row in rows)
    rows, _ = out_of_range(model, rng, 50)
    assert all(row[0] is not None and row[0] > model.X[:, 0].max() for row in rows)
    _, truth = class_prior_shift(model, rng, 50)
    assert set(truth) == {"rare"}  # the least common class
