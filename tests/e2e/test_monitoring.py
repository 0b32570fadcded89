"""Fault-injection scenarios against a running service with two workers: each silent failure moves its signal.

The tests run in file order against one server: held-out replay first (every drift value must stay low), then
the faults. Request counts are bounded; drift is read from the windows both workers share.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from models.catalog import CATALOG, evaluation_rows
from tests.e2e.conftest import TIMEOUT, Samples, increased, matching, scrape, scrape_when, value

pytestmark = pytest.mark.e2e

# A fixed level these tests judge one instance's PSI gauges by, not the alerts' (their thresholds depend on the
# window's rows: service/monitoring/thresholds.py).
PSI_ALERT = 0.25
BATCH = 50


def post(url: str, model: str, rows: Any, expect: int = 200) -> httpx.Response:
    response = httpx.post(f"{url}/predict", json={"model": model, "instances": rows}, timeout=TIMEOUT)
    assert response.status_code == expect, response.text
    return response


def send(url: str, model: str, X: np.ndarray) -> None:
    for start in range(0, len(X), BATCH):
        post(url, model, X[start : start + BATCH].tolist())


def model_card(url: str, model: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/models/{model}", timeout=TIMEOUT).json())


def drift_window_grew(url: str, before: Samples, rows: dict[str, int]) -> Samples:
    """The first scrape whose drift windows and row counters hold `rows` more rows per model than `before`: another
    worker observes its model calls up to 0.1 s after answering them, and writes its counters up to
    `CLF_METRICS_FLUSH_SECONDS` later. Waiting for both keeps one test's late counts out of the next test's deltas."""
    grew = [
        check
        for model, n in rows.items()
        for check in (
            increased(before, "classifier_drift_window_rows", n, model=model),
            increased(before, "classifier_rows_total", n, model=model, outcome="accepted"),
            increased(before, "classifier_prediction_confidence_count", n, model=model),
        )
    ]
    return scrape_when(url, lambda samples: all(check(samples) for check in grew), "every worker's rows")


def test_held_out_replay_stays_under_every_drift_threshold(monitored_server: str) -> None:
    before = scrape(monitored_server)
    for model in CATALOG:
        send(monitored_server, model, evaluation_rows(model)[0])
    samples = drift_window_grew(monitored_server, before, {model: len(evaluation_rows(model)[0]) for model in CATALOG})
    for model in CATALOG:
        assert value(samples, "classifier_drift_window_rows", model=model) == len(evaluation_rows(model)[0])  # no more
        features = matching(samples, "classifier_feature_drift_psi", model=model)
        assert len(features) == len(model_card(monitored_server, model)["monitored_features"])
        assert all(np.isfinite(v) and v < PSI_ALERT for v in features.values()), (model, features)
        prediction = value(samples, "classifier_prediction_drift_psi", model=model)
        assert np.isfinite(prediction) and prediction < PSI_ALERT, (model, prediction)


def test_shifting_one_feature_raises_its_psi_alone(monitored_server: str) -> None:
    card = model_card(monitored_server, "breast_cancer")
    shifted_feature = card["monitored_features"][0]
    column = card["features"]["names"].index(shifted_feature)
    X = np.tile(evaluation_rows("breast_cancer")[0], (4, 1))
    X[:, column] += 3 * X[:, column].std()
    before = scrape(monitored_server)
    send(monitored_server, "breast_cancer", X)
    samples = drift_window_grew(monitored_server, before, {"breast_cancer": len(X)})
    series = matching(samples, "classifier_feature_drift_psi", model="breast_cancer")
    psi = {dict(labels)["feature"]: v for labels, v in series.items()}
    assert psi.pop(shifted_feature) > PSI_ALERT
    assert max(psi.values()) < PSI_ALERT, psi


def test_one_digit_over_and_over_raises_prediction_drift(monitored_server: str) -> None:
    samples = scrape(monitored_server)
    before = value(samples, "classifier_prediction_drift_psi", model="digits")
    three = evaluation_rows("digits")[0][[3]]
    send(monitored_server, "digits", np.repeat(three, 600, axis=0))
    after = value(
        drift_window_grew(monitored_server, samples, {"digits": 600}), "classifier_prediction_drift_psi", model="digits"
    )
    assert before < PSI_ALERT < after


def test_out_of_range_and_missing_values_move_data_quality_counters(monitored_server: str) -> None:
    card = model_card(monitored_server, "digit_attributes")  # a forest: accepts missing values
    assert card["features"]["allows_missing"]
    feature = card["monitored_features"][0]
    column = card["features"]["names"].index(feature)
    before = scrape(monitored_server)
    rows = evaluation_rows("digit_attributes")[0][:17].tolist()
    for row in rows[:10]:
        row[column] = None
    for row in rows[10:]:
        row[column] = 100.0  # digits pixels are 0..16
    post(monitored_server, "digit_attributes", rows)

    cancer = model_card(monitored_server, "breast_cancer")  # logistic regression: no missing values
    cancer_feature = cancer["monitored_features"][0]
    cancer_rows = evaluation_rows("breast_cancer")[0][:5].tolist()
    for row in cancer_rows:
        row[cancer["features"]["names"].index(cancer_feature)] = None
    post(monitored_server, "breast_cancer", cancer_rows, expect=400)
    nan_body = '{"model": "breast_cancer", "instances": [[NaN' + ", 1.0" * 29 + "]]}"
    httpx.post(f"{monitored_server}/predict", content=nan_body, timeout=TIMEOUT)

    rejected = increased(before, "classifier_rows_total", 6, model="breast_cancer", outcome="rejected")
    accepted = increased(before, "classifier_rows_total", 17, model="digit_attributes", outcome="accepted")
    after = scrape_when(monitored_server, lambda s: rejected(s) and accepted(s), "both workers' row counts")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    issues = "classifier_input_issues_total"
    assert delta(issues, model="digit_attributes", feature=feature, kind="missing") == 10
    assert delta(issues, model="digit_attributes", feature=feature, kind="out_of_range") == 7
    assert delta(issues, model="breast_cancer", feature=cancer_feature, kind="missing") == 5
    first_feature = cancer["features"]["names"][0]
    expected_label = first_feature if first_feature in cancer["monitored_features"] else "other"
    assert delta(issues, model="breast_cancer", feature=expected_label, kind="non_finite") == 1
    assert delta("classifier_rows_total", model="breast_cancer", outcome="rejected") == 6
    assert delta("classifier_rows_total", model="digit_attributes", outcome="accepted") == 17


def test_noisy_inputs_lower_live_confidence_below_the_baseline(monitored_server: str) -> None:
    model = "digits"
    before = scrape(monitored_server)
    rng = np.random.default_rng(0)
    X = evaluation_rows(model)[0]
    send(monitored_server, model, np.clip(X + rng.normal(0, 6, X.shape), 0, 16))
    estimated = increased(before, "classifier_estimated_rows_total", len(X), model=model)
    observed = increased(before, "classifier_prediction_confidence_count", len(X), model=model)
    after = scrape_when(monitored_server, lambda s: estimated(s) and observed(s), "both workers' decisions")
    total = value(after, "classifier_prediction_confidence_sum", model=model) - value(
        before, "classifier_prediction_confidence_sum", model=model
    )
    count = value(after, "classifier_prediction_confidence_count", model=model) - value(
        before, "classifier_prediction_confidence_count", model=model
    )
    assert count == len(X)
    baseline = value(after, "classifier_validation_mean_confidence", model=model)
    assert total / count < baseline - 0.05
