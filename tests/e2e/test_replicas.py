"""Two replicas behind one Prometheus: the shipped rules' drift and estimate over both are one instance's on all of it.

Two independent `bentoml serve` (own ports, homes and multiprocess folders) log to one PostgreSQL; a Prometheus with
the shipped rules scrapes both every second. Shifted traffic is split 60/40 between them; the expected figures are
computed in-process from the same rows by the service's own monitor code, as one instance serving all of it would.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from bench.postgres import fresh_database
from models.catalog import evaluation_rows
from service.monitoring.metrics import Metrics
from service.monitoring.monitor import ModelMonitor
from service.settings import MonitoringConfig
from service.store import LoadedModel, load_model
from tests.e2e import conftest as e2e

pytestmark = pytest.mark.e2e

MODEL = "digits"
BATCH_ROWS = 15
SHARE_OF_FIRST = 0.6
# Prometheus extrapolates each series' increase by up to half a scrape interval at each end of its samples, by a
# factor of the samples' span that differs between the two replicas (their scrapes are not aligned), so the rules
# weigh one replica's counts a little more than the other's. Over a 30-minute window that is a fraction of a
# percent; here the samples span only what the test waits for: at least `SPAN_SCRAPES` scrapes of each replica
# before the shift keep the extrapolation, and the weights' error, to a few percent, below the sampling error of a
# PSI on a few hundred rows. (Over 10 s of samples the rules counted 20 % more rows than were sent, and one
# feature's PSI came out 0.012 off.)
SPAN_SCRAPES = 40
PSI_TOLERANCE = {"rel": 0.05, "abs": 0.01}
ESTIMATE_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def replicas(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, postgres_server: str
) -> Iterator[list[str]]:
    """Base URLs of two servers of `MODEL`, one worker each, sharing one PostgreSQL database."""
    with fresh_database(postgres_server) as database, contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                e2e.serving(e2e_env, tmp_path_factory.mktemp(f"replica-{n}"), models=MODEL, database_url=database)
            )
            for n in "ab"
        ]


def predict(url: str, rows: np.ndarray) -> list[str]:
    response = httpx.post(f"{url}/predict", json={"model": MODEL, "instances": rows.tolist()}, timeout=e2e.TIMEOUT)
    assert response.status_code == 200, response.text
    return [p["label"] for p in response.json()["predictions"]]


def accepted(url: str, rows: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The first scrape of `url` whose accepted rows of `MODEL` reached `rows` (the worker flushed its writes)."""
    return e2e.scrape_when(
        url,
        lambda s: e2e.value(s, "classifier_rows_total", model=MODEL, outcome="accepted") >= rows,
        f"{url} to count {rows} accepted rows",
    )


def one_instance(model: LoadedModel, X: np.ndarray, folder: Path) -> tuple[int, dict[str, float], float]:
    """`ModelMonitor.drift()` of one instance that served the rows `X`: (rows, PSI per feature, prediction PSI)."""
    metrics = Metrics.create(CollectorRegistry())
    monitor = ModelMonitor(MODEL, model.version, model.card, metrics, MonitoringConfig(), folder)
    monitor.observe_accepted(X)
    scores = model.task.score(X)
    monitor.observe_prediction(model.task.observe(scores, model.task.expected_correct(scores)))
    return monitor.drift()


def test_rules_compute_drift_and_estimate_over_both_replicas_as_one_instance_would(
    replicas: list[str], catalog: dict[str, str], tmp_path: Path
) -> None:
    clean, digit = evaluation_rows(MODEL)
    # a shift of the inputs (noise) and of the population (mostly 0 to 3): inputs, decided labels and the estimate all
    # move away from the training and validation baselines
    kept = clean[(digit.astype(int) < 4) | (np.arange(len(digit)) % 4 == 0)]
    shifted = np.clip(kept + np.random.default_rng(11).normal(0, 4, kept.shape), 0, 16)

    # every decided label's counter exists on both replicas before Prometheus' first scrape, so that the increase of
    # each holds the shifted traffic whole (a counter first seen at 5 would lose those 5)
    for url in replicas:
        for start in range(0, len(clean), 150):
            predict(url, clean[start : start + 150])
    before = {url: accepted(url, len(clean)) for url in replicas}
    for url, samples in before.items():
        labels = {dict(key)["label"] for (name, key) in samples if name == "classifier_predictions_total"}
        assert len(labels) == 10, f"{url} decided only {sorted(labels)} on the clean rows"

    instance = {url: url.removeprefix("http://") for url in replicas}  # Prometheus' `instance` label of each
    with e2e.prometheus_scraping(replicas, tmp_path / "prometheus") as prometheus:
        for url in replicas:
            scrapes = f'count_over_time(up{{instance="{instance[url]}"}}[10m])'
            e2e.wait_until(
                lambda q=scrapes: (e2e.query(prometheus, q) or [0])[0] >= SPAN_SCRAPES,
                f"Prometheus to scrape {url} {SPAN_SCRAPES} times before the shifted traffic",
            )
        batches = [shifted[start : start + BATCH_ROWS] for start in range(0, len(shifted), BATCH_ROWS)]
        first = round(len(batches) * SHARE_OF_FIRST)
        split = {replicas[0]: batches[:first], replicas[1]: batches[first:]}
        answered = {url: [label for batch in part for label in predict(url, batch)] for url, part in split.items()}

        # Prometheus holds both replicas' last counts, and the rules have run on them
        for url, part in split.items():
            rows = sum(len(batch) for batch in part)
            after = e2e.scrape_when(
                url,
                e2e.increased(before[url], "classifier_estimated_rows_total", rows, model=MODEL),
                f"{url} to count its {rows} rows",
            )
            total = e2e.value(after, "classifier_rows_total", model=MODEL, outcome="accepted")
            scraped = f'sum(classifier_rows_total{{model="{MODEL}", outcome="accepted", instance="{instance[url]}"}})'
            e2e.wait_until(
                lambda q=scraped, t=total: e2e.query(prometheus, q) == [t], f"Prometheus to scrape {total} rows"
            )
        seen = time.time()
        recorded = f'timestamp(classifier:feature_drift_psi:increase30m{{model="{MODEL}"}})'
        e2e.wait_until(
            lambda: min(e2e.query(prometheus, recorded) or [0]) > seen + 2, "the rules to run on the last scrape"
        )

        rule_features = {
            dict(labels)["feature"]: v
            for labels, v in e2e.query_series(
                prometheus, f'classifier:feature_drift_psi:increase30m{{model="{MODEL}"}}'
            ).items()
        }
        (rule_prediction,) = e2e.query(prometheus, f'classifier:prediction_drift_psi:increase30m{{model="{MODEL}"}}')
        (rule_estimate,) = e2e.query(prometheus, f'classifier:estimated_accuracy:rate1h{{model="{MODEL}"}}')
        (rule_rows,) = e2e.query(prometheus, f'classifier:drift_window_rows:increase30m{{model="{MODEL}"}}')
        per_instance = {
            url: e2e.value(e2e.scrape(url), "classifier_prediction_drift_psi", model=MODEL) for url in replicas
        }

    # one instance on all of the shifted rows: the service's own monitor, of the same model (the recipe is seeded);
    # and, to show the rules count both replicas, one on the first replica's rows only
    model = load_model(catalog[MODEL])
    scores = model.task.score(shifted)
    observed = model.task.observe(scores, model.task.expected_correct(scores))
    assert list(observed.drift_labels) == answered[replicas[0]] + answered[replicas[1]], "not the served model"
    rows, features, prediction = one_instance(model, shifted, tmp_path / "all")
    _, first_features, first_prediction = one_instance(model, np.concatenate(split[replicas[0]]), tmp_path / "first")
    estimate = float(np.mean(model.task.expected_correct(scores)))

    worst = sorted(features, key=lambda f: -features[f])[:5]
    print(f"\n{MODEL}: {len(shifted)} shifted rows, {first} of {len(batches)} requests to the first replica")
    print(f"{'figure':28s} {'rules, 2 replicas':>18s} {'1 instance, all':>16s} {'first replica only':>19s}")
    print(f"{'window rows':28s} {rule_rows:18.1f} {rows:16d}")
    print(f"{'prediction PSI':28s} {rule_prediction:18.4f} {prediction:16.4f} {first_prediction:19.4f}")
    for feature in worst:
        print(
            f"{'feature PSI ' + feature:28s} {rule_features[feature]:18.4f} {features[feature]:16.4f}"
            f" {first_features[feature]:19.4f}"
        )
    off = {name: np.mean([abs(rule_features[f] - psi[f]) for f in features]) for name, psi in
           (("all", features), ("first", first_features))}  # fmt: skip
    print(f"mean |rules - expected| over the {len(features)} features: {off['all']:.4f} (all rows),"
          f" {off['first']:.4f} (first replica's rows)")  # fmt: skip
    print(f"{'estimated accuracy':28s} {rule_estimate:18.4f} {estimate:16.4f}")
    own = ", ".join(f"{v:.4f}" for v in per_instance.values())
    print(f"validation accuracy {model.card.validation.accuracy:.4f}")
    print(f"each replica's own prediction PSI gauge (its window, clean warm-up rows included): {own}")

    assert rows == len(shifted)
    assert rule_rows >= rows - 1e-6  # increase() extrapolates a little past the first and last scrapes, never short
    assert prediction > 0.25 and rule_prediction == pytest.approx(prediction, **PSI_TOLERANCE)
    assert rule_features.keys() == features.keys()
    for feature, expected in features.items():
        assert rule_features[feature] == pytest.approx(expected, **PSI_TOLERANCE), feature
    assert max(features.values()) > 0.25
    assert off["all"] < off["first"] / 2  # the rules' PSI is the sum's, not one replica's
    assert estimate < model.card.validation.accuracy - 0.05
    assert rule_estimate == pytest.approx(estimate, abs=ESTIMATE_TOLERANCE)
