"""A real Prometheus, with the shipped scrape config and rules, scraping the service run by two workers."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from models.catalog import CATALOG, DIGIT_ATTRIBUTES, evaluation_rows
from tests.deploy.test_grafana_dashboard import DASHBOARD, query_panels
from tests.e2e.conftest import (
    TIMEOUT,
    WAIT_S,
    increased,
    prometheus_scraping,
    query,
    scrape,
    scrape_when,
    value,
    wait_until,
)

pytestmark = pytest.mark.e2e

TAKE_RATE_MODEL = "breast_cancer"  # no other test of this module sends it traffic before the dashboard's
ESTIMATE_MODEL = "digit_groups"  # likewise


@pytest.fixture(scope="module")
def prometheus(monitored_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a Prometheus on loopback: the shipped config, pointed at the server, scraping every second."""
    # every series exists before the first scrape, so that rate() over the test's window sees its traffic whole.
    # The estimate's counters exist at 0 from the start: primed, their first samples would not be 0, and rate()
    # extrapolates each counter back towards its zero by its first sample's share of its increase (0.96 / 383 and
    # 1 / 360 here), which puts the ratio 2.3e-4 off until the samples span 8 minutes.
    for model in (name for name in CATALOG if name != ESTIMATE_MODEL):
        rows = evaluation_rows(model)[0][:1].tolist()
        response = httpx.post(f"{monitored_server}/predict", json={"model": model, "instances": rows}, timeout=TIMEOUT)
        assert response.status_code == 200
        if model == TAKE_RATE_MODEL:
            item = {"prediction_id": response.json()["predictions"][0]["id"], "outcome": "clicked"}
            answered = httpx.post(f"{monitored_server}/feedback", json={"feedback": [item]}, timeout=TIMEOUT)
            assert answered.status_code == 200
    with prometheus_scraping([monitored_server], tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def test_scraped_values_and_recording_rules_match_the_service(monitored_server: str, prometheus: str) -> None:
    model = ESTIMATE_MODEL
    before = scrape(monitored_server)
    # noisy rows: the estimate moves away from the validation accuracy
    X = evaluation_rows(model)[0]
    X = np.clip(X + np.random.default_rng(1).normal(0, 4, X.shape), 0, 16)
    for start in range(0, len(X), 150):
        rows = X[start : start + 150].tolist()
        response = httpx.post(f"{monitored_server}/predict", json={"model": model, "instances": rows}, timeout=TIMEOUT)
        assert response.status_code == 200
    decided = increased(before, "classifier_estimated_rows_total", len(X), model=model)
    answered = increased(before, "classifier_requests_total", 3, model=model, endpoint="/predict", code="ok")
    after = scrape_when(monitored_server, lambda s: decided(s) and answered(s), "both workers' requests and decisions")

    ok_requests = value(after, "classifier_requests_total", model=model, endpoint="/predict", code="ok")
    counter = f'sum(classifier_requests_total{{model="{model}",endpoint="/predict",code="ok"}})'
    wait_until(lambda: query(prometheus, counter) == [ok_requests], f"Prometheus to see {ok_requests} requests")

    # every worker's heartbeat is scraped, and the recording rule counts them alive
    assert len(query(prometheus, "classifier_worker_heartbeat_timestamp_seconds")) == 2
    wait_until(lambda: query(prometheus, "classifier:workers_alive") == [2.0], "classifier:workers_alive == 2")

    # the label-free estimate: this traffic's mean calibrated confidence, below the validation accuracy (noisy rows)
    def delta(name: str) -> float:
        return value(after, name, model=model) - value(before, name, model=model)

    assert delta("classifier_estimated_rows_total") == len(X)
    expected = delta("classifier_estimated_correct_total") / len(X)
    assert expected < value(after, "classifier_validation_accuracy", model=model) - 0.01
    estimate = f'classifier:estimated_accuracy:rate1h{{model="{model}"}}'
    wait_until(lambda: _close(query(prometheus, estimate), expected), f"{estimate} == {expected}")

    # the drift gauges computed at scrape time reach Prometheus as the service renders them
    service_psi = value(scrape(monitored_server), "classifier_prediction_drift_psi", model=model)
    scraped_psi = query(prometheus, f'classifier_prediction_drift_psi{{model="{model}"}}')
    assert len(scraped_psi) == 1 and np.isfinite(scraped_psi[0]) and np.isclose(scraped_psi[0], service_psi)


def _close(values: list[float], expected: float) -> bool:
    # rate() extrapolates the two counters to the range ends by slightly different factors (they start at
    # different values), so the ratio is exact to about 1e-5, far below the distance being checked
    return len(values) == 1 and bool(np.isclose(values[0], expected, rtol=0, atol=2e-4))


def test_take_rate_and_realized_accuracy_through_the_recording_rules(monitored_server: str, prometheus: str) -> None:
    """Outcomes over logged predictions, summed over both workers; realized figures taken once across workers."""
    model = TAKE_RATE_MODEL
    X, y = (np.concatenate([part, part]) for part in evaluation_rows(model))  # 120 rows are sent, of 114: twice over
    before = scrape(monitored_server)
    answers = []
    for start in range(0, 120, 40):
        response = httpx.post(
            f"{monitored_server}/predict", json={"model": model, "instances": X[start : start + 40].tolist()}
        )
        assert response.status_code == 200
        answers += response.json()["predictions"]
    items = [{"prediction_id": a["id"], "label": str(t)} for a, t in zip(answers, y[:120], strict=True)]
    items += [{"prediction_id": a["id"], "outcome": "clicked"} for a in answers[::3]]
    response = httpx.post(f"{monitored_server}/feedback", json={"feedback": items}, timeout=TIMEOUT)
    assert response.status_code == 200 and response.json()["accepted"] == len(items)
    # every prediction was written before its feedback was taken; a writer counts its rows just after the commit
    written_all = increased(before, "classifier_prediction_log_rows_total", 120, model=model, result="written")
    after = scrape_when(monitored_server, written_all, "the log writers to count 120 written rows")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, model=model, **labels) - value(before, name, model=model, **labels)

    written = delta("classifier_prediction_log_rows_total", result="written")
    assert written == 120
    expected = delta("classifier_outcomes_total", outcome="clicked") / written
    assert expected == 40 / 120
    take_rate = f'classifier:take_rate:rate1h{{model="{model}",outcome="clicked"}}'
    wait_until(lambda: _close(query(prometheus, take_rate), expected), f"{take_rate} == {expected}")

    version = httpx.get(f"{monitored_server}/models/{model}", timeout=TIMEOUT).json()["version"]
    accuracy = value(scrape(monitored_server), "classifier_realized_accuracy", model=model, version=version)
    right = sum(a["label"] == str(t) for a, t in zip(answers, y[:120], strict=True))
    assert accuracy == pytest.approx(right / 120)  # the labelled predictions: these 120
    recorded = f'classifier:realized_accuracy:max{{model="{model}",version="{version}"}}'
    wait_until(lambda: query(prometheus, recorded) == [accuracy], f"{recorded} == {accuracy}")
    # the same labels by arrival time, from the counters summed over both workers (what ClassifierRealizedAccuracyLow
    # reads); their series exist at 0 from start-up, so rate() sees these labels whole
    arrived = f'classifier:realized_accuracy:rate10m{{model="{model}",version="{version}"}}'
    wait_until(lambda: _close(query(prometheus, arrived), right / 120), f"{arrived} == {right / 120}")


# What Grafana puts in the dashboard's variables: every model and route (the variables' `allValue`), and for
# $__rate_interval the least it gives with a Prometheus data source's default 15 s scrape interval (4 x 15 s).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": ".*", "$endpoint": ".*"}
PANEL_ROWS = 40  # rows per request: a few rounds put the 100 rows the drift panels need into each model's window
# A round's requests per model: the model's defaults ({}) and options; these min_confidence values leave some
# held-out rows without a label (digits) or a full path (digit_groups): what the abstention panels plot.
PANEL_OPTION_SETS: dict[str, list[dict[str, Any]]] = {
    "breast_cancer": [{}, {"threshold": 0.3, "return_probabilities": True}],
    "digits": [{}, {"min_confidence": 0.99}, {"top_k": 3}],
    "digit_attributes": [{}, {"threshold": 0.6}],
    "digit_attributes_ovr": [{}, {"top_k": 2}],
    "digit_groups": [{}, {"min_confidence": 0.999}, {"top_k": 2}],
}


def test_every_dashboard_panel_shows_data(monitored_server: str, prometheus: str) -> None:
    """Every query of every panel of the dashboard, run as Grafana runs it (all models and routes) on the Prometheus
    of the shipped rules, returns a finite value while mixed traffic flows: every catalog model at its defaults and
    with options (min_confidence that abstains among them), feedback with labels and outcomes, rejected rows.

    No panel is exempt. A rate over 1h or 1d extrapolates over the samples it has, so it has a value a few scrapes
    after its series exist; the drift panels need 100 accepted rows per model in their 30 min window, which a few
    rounds send. This test runs last in the module: its traffic reaches every model, and the tests above compare
    1h rates with their own traffic alone."""
    panels = query_panels(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    assert [panel["title"] for panel in panels if not panel.get("targets")] == []  # a panel without a query
    targets = {
        (panel["title"], target["refId"]): grafana_query(target["expr"])
        for panel in panels
        for target in panel["targets"]
    }
    assert len(targets) == sum(len(panel["targets"]) for panel in panels), "two panels have the same title"
    empty = dict(targets)
    deadline = time.monotonic() + WAIT_S
    with httpx.Client(base_url=monitored_server, timeout=TIMEOUT) as client:
        while empty and time.monotonic() < deadline:
            send_mixed_traffic(client)
            for key, promql in list(empty.items()):
                if any(math.isfinite(v) for v in query(prometheus, promql)):
                    del empty[key]
    assert not empty, f"{len(empty)} of {len(targets)} panel queries returned no finite value in {WAIT_S:.0f} s:\n" + (
        "\n".join(f"{title} [{ref}]: {promql}" for (title, ref), promql in sorted(empty.items()))
    )


def grafana_query(expr: str) -> str:
    """A panel's query with the dashboard's variables replaced as Grafana replaces them."""
    for variable, replacement in GRAFANA_VARIABLES.items():  # $__rate_interval first: no prefix of another name
        expr = expr.replace(variable, replacement)
    assert "$" not in expr, f"a Grafana variable this test does not set: {expr}"
    return expr


def send_mixed_traffic(client: httpx.Client) -> None:
    """One round of what the dashboard watches: every model's held-out rows at its defaults and with options, the
    true labels of the defaults' answers and an outcome for every third, a row of nulls (rejected: missing values)
    and a row of values far outside the training range (accepted, out of range)."""
    feedback: list[dict[str, Any]] = []
    for model, option_sets in PANEL_OPTION_SETS.items():
        X, y = evaluation_rows(model)
        for options in option_sets:
            body = {"model": model, "instances": X[:PANEL_ROWS].tolist(), "options": options}
            response = client.post("/predict", json=body)
            assert response.status_code == 200, response.text
            if not options:
                ids = [answer["id"] for answer in response.json()["predictions"]]
                feedback += [{"prediction_id": i, **truth(model, t)} for i, t in zip(ids, y[:PANEL_ROWS], strict=True)]
                feedback += [{"prediction_id": i, "outcome": "clicked"} for i in ids[::3]]
    response = client.post("/feedback", json={"feedback": feedback})
    assert response.status_code == 200 and response.json()["accepted"] == len(feedback), response.text
    X = evaluation_rows("breast_cancer")[0]
    nulls = client.post("/predict", json={"model": "breast_cancer", "instances": [[None] * X.shape[1]]})
    assert nulls.status_code == 400, nulls.text
    far = client.post("/predict", json={"model": "breast_cancer", "instances": (X[:1] * 100).tolist()})
    assert far.status_code == 200, far.text


def truth(model: str, y: Any) -> dict[str, Any]:
    """A feedback item's ground truth for one held-out label in the model's form (multilabel: a 0/1 row)."""
    if model in ("digit_attributes", "digit_attributes_ovr"):
        return {"labels": [name for name, on in zip(DIGIT_ATTRIBUTES, y.tolist(), strict=True) if on]}
    return {"label": str(y)}
