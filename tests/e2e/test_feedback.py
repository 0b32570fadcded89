"""The feedback loop against real `bentoml serve` servers with two workers.

Feedback is sent at once after the predictions, so a worker that did not issue an id waits for the other one's
writer; relabels move the realized figures; a restart keeps the log; a `kill -9` after a 200 loses nothing
acknowledged, only the predictions still queued; a log whose database is down drops and counts instead of blocking
predictions.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from models.catalog import evaluation_rows
from service.feedback.ids import new_key, prediction_id
from tests.e2e.conftest import SERVERS, TIMEOUT, Samples, scrape, serving, stop, value

pytestmark = pytest.mark.e2e

MODEL = "breast_cancer"


def predict(url: str, X: np.ndarray, **options: Any) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{url}/predict", json={"model": MODEL, "instances": X.tolist(), "options": options}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


def feedback(url: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    response = httpx.post(f"{url}/feedback", json={"feedback": items}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def realized(samples: Samples, name: str, **labels: str) -> float:
    (found,) = [v for (sample, key), v in samples.items() if sample == name and set(labels.items()) <= key]
    return found


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loop_server(
    request: pytest.FixtureRequest, e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Two workers logging to SQLite, or to a PostgreSQL that replicas would share."""
    settings = {"workers": "2", "models": MODEL}
    if request.param == "postgresql":
        settings["database_url"] = request.getfixturevalue("postgres_server")
    with serving(e2e_env, tmp_path_factory.mktemp(f"serve-feedback-{request.param}"), **settings) as url:
        yield url


def test_labels_and_outcomes_become_realized_figures_and_take_rate(loop_server: str) -> None:
    X, y = evaluation_rows(MODEL)
    answers = [p for start in range(0, 100, 25) for p in predict(loop_server, X[start : start + 25])]
    labels = [str(t) for t in y[:100]]
    before = scrape(loop_server)
    items = [{"prediction_id": p["id"], "label": t} for p, t in zip(answers, labels, strict=True)]
    items += [{"prediction_id": p["id"], "outcome": "clicked"} for p in answers[::4]]
    assert feedback(loop_server, items) == {"accepted": len(items), "errors": []}  # sent at once: some wait

    after = scrape(loop_server)
    version = httpx.get(f"{loop_server}/models/{MODEL}", timeout=TIMEOUT).json()["version"]
    right = sum(p["label"] == t for p, t in zip(answers, labels, strict=True))
    assert realized(after, "classifier_realized_labelled", model=MODEL, version=version) == 100
    assert realized(after, "classifier_realized_accuracy", model=MODEL, version=version) == right / 100

    def delta(name: str, **labels: str) -> float:
        return value(after, name, model=MODEL, **labels) - value(before, name, model=MODEL, **labels)

    assert delta("classifier_feedback_items_total", kind="label", result="accepted") == 100
    assert delta("classifier_feedback_items_total", kind="outcome", result="accepted") == 25
    assert delta("classifier_outcomes_total", outcome="clicked") == 25
    assert delta("classifier_label_delay_seconds_count") == 100
    performance = httpx.get(f"{loop_server}/models/{MODEL}/performance", timeout=TIMEOUT).json()
    (figures,) = performance["versions"]
    (clicked,) = figures["outcomes"]
    assert (clicked["count"], clicked["take_rate"]) == (25, 25 / figures["predictions"])

    # relabel five predictions the model got right to a wrong label, then back: the figures follow
    flipped = [(p, t) for p, t in zip(answers, labels, strict=True) if p["label"] == t][:5]
    other = {"malignant": "benign", "benign": "malignant"}
    feedback(loop_server, [{"prediction_id": p["id"], "label": other[t]} for p, t in flipped])
    relabelled = scrape(loop_server)
    assert realized(relabelled, "classifier_realized_accuracy", model=MODEL, version=version) == (right - 5) / 100
    assert realized(relabelled, "classifier_realized_labelled", model=MODEL, version=version) == 100
    assert value(relabelled, "classifier_label_delay_seconds_count", model=MODEL) == value(
        after, "classifier_label_delay_seconds_count", model=MODEL
    )  # a relabel is not a first label
    feedback(loop_server, [{"prediction_id": p["id"], "label": t} for p, t in flipped])
    restored = scrape(loop_server)
    assert realized(restored, "classifier_realized_accuracy", model=MODEL, version=version) == right / 100
    history = httpx.get(f"{loop_server}/predictions/{flipped[0][0]['id']}", timeout=TIMEOUT).json()["label_history"]
    assert [h["label"] for h in history] == [flipped[0][1], other[flipped[0][1]], flipped[0][1]]


def test_each_bad_item_and_body_gets_its_error(loop_server: str) -> None:
    (answer,) = predict(loop_server, evaluation_rows(MODEL)[0][:1])
    never = prediction_id(new_key(True, time.time() - 3600), 0)
    result = feedback(
        loop_server,
        [
            {"prediction_id": never, "label": "benign"},
            {"prediction_id": answer["id"], "label": "cancer"},
            {"prediction_id": answer["id"], "outcome": "clicked"},
        ],
    )
    assert result["accepted"] == 1
    assert [(e["index"], e["code"], e["field"]) for e in result["errors"]] == [
        (0, "unknown_prediction", "feedback[0].prediction_id"),
        (1, "invalid_input", "feedback[1].label"),
    ]
    malformed = httpx.post(f"{loop_server}/feedback", content=b'{"feedback": [', timeout=TIMEOUT)
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_input"
    unknown = httpx.get(f"{loop_server}/predictions/{never}", timeout=TIMEOUT)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_prediction"


def test_a_restart_keeps_the_log_and_a_kill_loses_nothing_acknowledged(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home: Path = tmp_path_factory.mktemp("serve-restart")
    X, y = evaluation_rows(MODEL)
    settings = {"workers": "2", "models": MODEL, "log_flush_seconds": "30"}  # only the stop writes these
    with serving(e2e_env, home, **settings) as url:
        queued = predict(url, X[:20])
    # a graceful stop wrote what was queued; the restarted server finds it
    with serving(e2e_env, home, **settings) as url:
        for answer in queued:
            logged = httpx.get(f"{url}/predictions/{answer['id']}", timeout=TIMEOUT)
            assert logged.status_code == 200, logged.text
            assert logged.json()["prediction"] == answer
        # acknowledged feedback survives a kill -9 of every process the moment the 200 arrives
        items = [{"prediction_id": a["id"], "label": str(t)} for a, t in zip(queued, y[:20], strict=True)]
        assert feedback(url, items)["accepted"] == 20
        (unwritten,) = predict(url, X[20:21])  # queued for the flush 30 s away: what a kill -9 loses
        stop(SERVERS[url], signal.SIGKILL)
    with serving(e2e_env, home, **settings) as url:
        # not found: 404 once the writers' grace for a recent id is over, a 504 while the lookup still waits for it
        lost = httpx.get(f"{url}/predictions/{unwritten['id']}", timeout=TIMEOUT)
        assert (lost.status_code, lost.json()["error"]["code"]) in {(404, "unknown_prediction"), (504, "timeout")}
        for answer, truth in zip(queued, y[:20], strict=True):
            assert httpx.get(f"{url}/predictions/{answer['id']}", timeout=TIMEOUT).json()["label"] == {
                "label": str(truth)
            }
        (figures,) = httpx.get(f"{url}/models/{MODEL}/performance", timeout=TIMEOUT).json()["versions"]
        assert figures["labelled"] == 20


def test_a_log_that_cannot_write_drops_and_counts_and_predictions_go_on(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = {
        "workers": "2",
        "models": MODEL,
        "database_url": "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2",  # nothing listens
        "log_queue_rows": "30",
    }
    with serving(e2e_env, tmp_path_factory.mktemp("serve-log-down"), **settings) as url:
        X = np.tile(evaluation_rows(MODEL)[0], (2, 1))  # 140 rows to send, of 114
        started = time.monotonic()
        for start in range(0, 140, 10):
            predict(url, X[start : start + 10])
        assert time.monotonic() - started < 120  # no request waited on the database
        samples = scrape(url)
        dropped = value(samples, "classifier_prediction_log_rows_total", model=MODEL, result="dropped")
        queued = value(samples, "classifier_prediction_log_queue_rows")
        assert queued <= 60 and dropped >= 140 - 60  # each worker holds at most 30 rows
        assert dropped + queued == 140
        assert value(samples, "classifier_prediction_log_rows_total", model=MODEL, result="written") == 0
        refused = httpx.post(
            f"{url}/feedback", json={"feedback": [{"prediction_id": "x", "outcome": "clicked"}]}, timeout=TIMEOUT
        )
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "unavailable"
        assert httpx.get(f"{url}/readyz", timeout=TIMEOUT).status_code == 200
