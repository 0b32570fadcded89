"""Feedback through the in-process service: labels and outcomes in, realized figures out, every error answered.

The service logs to its SQLite file (tests/conftest.py sets CLF_DATA_DIR); feedback sent right after a prediction
waits for the writer thread's next flush, as it would on any worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import f1_score
from starlette.testclient import TestClient

from models.catalog import CATALOG, DIGIT_ATTRIBUTES, catalog_split, evaluation_rows
from service.auth.keys import Scope, create_key
from service.database.engine import create_database_engine, migrate
from service.feedback.__main__ import main as feedback_cli
from service.feedback.feedback_store import LABEL_HISTORY_LENGTH
from service.feedback.ids import new_key, prediction_id
from service.feedback.log import PredictionLog
from service.feedback.loop import FeedbackLoop
from service.schemas import MAX_OUTCOME_VALUE
from service.serving import ModelRegistry
from service.store import load_model
from tests.feedback.test_log import wait_for
from tests.helpers import cancer_rows, digits_rows
from tests.test_http import assert_error
from tests.volumes import ext4_volume, fail_volume, fill, make_writable, read_only_view, small_disk

LABELS = list(DIGIT_ATTRIBUTES)
# options a client may send that change the answer, never the model: realized figures must not move with them
CLIENT_OPTIONS: dict[str, dict[str, Any]] = {
    "breast_cancer": {"threshold": 0.0},
    "digits": {"min_confidence": 0.99, "top_k": 3},
    "digit_attributes": {"top_k": 1},
    "digit_attributes_ovr": {"threshold": 0.9},
    "digit_groups": {"min_confidence": 0.999},
}


def training_digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n training rows of the catalog's digits models and their labels: the forest is right on every one,
    so a test can tell each label it changes in the realized figures."""
    split = catalog_split("digits")
    return split.rows(split.train[:n])


def predict(api: TestClient, model: str, X: np.ndarray, **options: Any) -> list[str]:
    """The prediction ids of `X`'s rows."""
    response = api.post("/predict", json={"model": model, "instances": X.tolist(), "options": options})
    assert response.status_code == 200, response.text
    return [p["id"] for p in response.json()["predictions"]]


def feedback(api: TestClient, *items: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/feedback", json={"feedback": list(items)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def truth(model: str, y: Any) -> dict[str, Any]:
    """A held-out label in the model's own form."""
    if model in ("digit_attributes", "digit_attributes_ovr"):
        return {"labels": [name for name, on in zip(LABELS, y, strict=True) if on]}
    if model == "digit_groups":  # half as a leaf, half as a path: both forms mean the same
        return {"label": str(y)} if int(y) % 2 else {"path": [_group(str(y)), str(y)]}
    return {"label": str(y)}


def _group(digit: str) -> str:
    from models.catalog import DIGIT_GROUPS

    return next(group for group, leaves in DIGIT_GROUPS.items() if digit in leaves)


def performance(api: TestClient, model: str, since: datetime) -> dict[str, Any]:
    response = api.get(f"/models/{model}/performance", params={"since": since.isoformat()})
    assert response.status_code == 200, response.text
    (version,) = response.json()["versions"]
    return dict(version)


def metric(api: TestClient, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(api.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


def metadata(model: str) -> dict[str, Any]:
    service = bentoml.get_current_service()
    return service.registry.served[model].model.card.to_metadata()


# --- realized figures --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(CATALOG))
def test_calibration_labels_realize_the_validation_figures_whatever_the_options(
    api: TestClient, catalog: dict[str, str], model: str
) -> None:
    """The calibration rows are registration's validation set: labelled, they give back its accuracy, F1 and
    per-level figures, and the label-free estimate on them is the served model's calibrated confidence in its
    default decisions (the map is cross-fitted, so not their accuracy by construction), though every request
    carried options that change the answers."""
    since = datetime.now(UTC)
    split = catalog_split(model)
    X, y = split.rows(split.calibration)
    ids = predict(api, model, X, **CLIENT_OPTIONS[model])
    result = feedback(api, *({"prediction_id": i, **truth(model, label)} for i, label in zip(ids, y, strict=True)))
    assert result == {"accepted": len(ids), "errors": []}
    figures = performance(api, model, since)
    validation = metadata(model)["metrics"]
    assert figures["predictions"] == figures["labelled"] == len(ids)
    assert figures["accuracy"] == pytest.approx(validation["accuracy"], abs=1e-12)
    task = load_model(catalog[model]).task
    assert figures["estimated_accuracy"] == pytest.approx(task.expected_correct(task.score(X)).mean(), abs=1e-9)
    if model == "breast_cancer":
        assert set(figures["f1"]) == {"binary"}  # its value: test_binary_f1_is_the_positive_class_f1
    else:
        assert set(figures["f1"]) == {"macro", "micro"}
        assert figures["f1"]["macro"] == pytest.approx(validation["macro_f1"], abs=1e-12)
    if model == "digit_groups":
        assert figures["level_accuracy"] == pytest.approx(validation["per_level_accuracy"], abs=1e-12)


def test_binary_f1_is_the_positive_class_f1(api: TestClient) -> None:
    since = datetime.now(UTC)
    X, y = evaluation_rows("breast_cancer")
    response = api.post("/predict", json={"model": "breast_cancer", "instances": X.tolist()}).json()
    decided = [p["label"] for p in response["predictions"]]
    feedback(
        api, *({"prediction_id": p["id"], "label": str(t)} for p, t in zip(response["predictions"], y, strict=True))
    )
    figures = performance(api, "breast_cancer", since)
    expected = f1_score(list(y), decided, pos_label="malignant", average="binary")
    assert figures["f1"]["binary"] == pytest.approx(expected, abs=1e-12)
    by_class = {c["class"]: c for c in figures["classes"]}
    assert by_class["malignant"]["support"] == int((np.array(y) == "malignant").sum())


def test_relabeling_moves_the_figures_and_keeps_the_history(api: TestClient) -> None:
    since = datetime.now(UTC)
    X, y = training_digits(20)  # the fewest labelled predictions /performance gives figures of
    ids = predict(api, "digits", X)
    feedback(api, *({"prediction_id": i, "label": str(t)} for i, t in zip(ids, y, strict=True)))
    assert performance(api, "digits", since)["accuracy"] == 1.0  # the forest knows its own training rows
    wrong = str((int(y[0]) + 1) % 10)
    feedback(api, {"prediction_id": ids[0], "label": wrong})
    assert performance(api, "digits", since)["accuracy"] == 0.95
    feedback(api, {"prediction_id": ids[0], "label": str(y[0])})
    figures = performance(api, "digits", since)
    assert (figures["accuracy"], figures["labelled"]) == (1.0, 20)
    logged = api.get(f"/predictions/{ids[0]}").json()
    assert logged["label"] == {"label": str(y[0])}
    assert [h["label"] for h in logged["label_history"]] == [str(y[0]), wrong, str(y[0])]


def test_a_prediction_keeps_the_last_labels_of_its_history_only(api: TestClient) -> None:
    """1,000 labels of one prediction in a request added 1,000 history rows (issue 17); now its last
    `LABEL_HISTORY_LENGTH`, whatever the number of requests that send them."""
    (prediction,) = predict(api, "digits", digits_rows(1)[0])
    sent = [str(i % 10) for i in range(1000)]
    assert feedback(api, *({"prediction_id": prediction, "label": label} for label in sent))["accepted"] == 1000
    logged = api.get(f"/predictions/{prediction}").json()
    assert [h["label"] for h in logged["label_history"]] == sent[-LABEL_HISTORY_LENGTH:]
    assert logged["label"] == {"label": sent[-1]}
    feedback(api, {"prediction_id": prediction, "label": "7"})
    logged = api.get(f"/predictions/{prediction}").json()
    assert [h["label"] for h in logged["label_history"]] == [*sent[-LABEL_HISTORY_LENGTH + 1 :], "7"]


def test_realized_gauges_on_metrics_follow_the_labels(api: TestClient) -> None:
    X, y = cancer_rows(40)
    model = "breast_cancer"
    version = bentoml.get_current_service().registry.served[model].model.version
    before = metric(api, "classifier_realized_labelled", model=model, version=version) or 0.0
    ids = predict(api, model, X)
    names = np.array(["malignant", "benign"])
    labels = names[(np.arange(len(ids)) % 2)]  # half of them wrong, whatever the model says
    feedback(api, *({"prediction_id": i, "label": str(t)} for i, t in zip(ids, labels, strict=True)))
    assert metric(api, "classifier_realized_labelled", model=model, version=version) == before + len(ids)
    assert metric(api, "classifier_realized_predictions", model=model, version=version) >= len(ids)  # type: ignore[operator]
    window = performance(api, model, datetime.now(UTC) - timedelta(days=1))
    assert metric(api, "classifier_realized_accuracy", model=model, version=version) == pytest.approx(
        window["accuracy"]
    )
    assert metric(api, "classifier_realized_f1", model=model, version=version, average="binary") == pytest.approx(
        window["f1"]["binary"]
    )


# --- outcomes and counters ---------------------------------------------------------------------------------------


def test_a_resent_outcome_is_counted_once_and_replaces_its_value(api: TestClient) -> None:
    since = datetime.now(UTC)
    ids = predict(api, "digits", digits_rows(20)[0])  # the fewest predictions /performance gives outcomes of
    count_before = metric(api, "classifier_outcomes_total", model="digits", outcome="played") or 0.0
    value_before = metric(api, "classifier_outcome_value_total", model="digits", outcome="played") or 0.0
    feedback(api, {"prediction_id": ids[0], "outcome": "played", "value": 30})
    feedback(api, {"prediction_id": ids[0], "outcome": "played", "value": 30})  # a client's retry
    feedback(
        api, {"prediction_id": ids[0], "outcome": "played", "value": 45}, {"prediction_id": ids[1], "outcome": "played"}
    )
    assert metric(api, "classifier_outcomes_total", model="digits", outcome="played") == count_before + 2
    assert metric(api, "classifier_outcome_value_total", model="digits", outcome="played") == value_before + 31
    (played,) = [o for o in performance(api, "digits", since)["outcomes"] if o["outcome"] == "played"]
    assert played == {"outcome": "played", "count": 2, "value": 46.0, "take_rate": pytest.approx(2 / 20)}
    logged = api.get(f"/predictions/{ids[0]}").json()
    assert [(o["outcome"], o["value"]) for o in logged["outcomes"]] == [("played", 45.0)]


def test_outcome_values_are_bounded_so_their_sum_stays_finite(api: TestClient) -> None:
    """Two outcomes of 1.7e308 left `classifier_outcome_value_total` at +Inf for good (issue 17)."""
    ids = predict(api, "digits", digits_rows(2)[0])
    before = metric(api, "classifier_outcome_value_total", model="digits", outcome="accepted") or 0.0
    huge = [{"prediction_id": i, "outcome": "accepted", "value": 1.7e308} for i in ids]
    error = assert_error(api.post("/feedback", json={"feedback": huge}), 400, "invalid_input", "feedback[0].value")
    assert "1000000000" in error["message"]
    assert feedback(api, {"prediction_id": ids[0], "outcome": "accepted", "value": MAX_OUTCOME_VALUE})["accepted"] == 1
    assert metric(api, "classifier_outcome_value_total", model="digits", outcome="accepted") == before + 1e9


def test_outcome_names_outside_the_configured_ones_share_the_series_other(api: TestClient) -> None:
    ids = predict(api, "digits", digits_rows(1)[0])
    before = metric(api, "classifier_outcomes_total", model="digits", outcome="other") or 0.0
    feedback(api, {"prediction_id": ids[0], "outcome": "added_to_cart_42"})
    assert metric(api, "classifier_outcomes_total", model="digits", outcome="other") == before + 1
    assert api.get(f"/predictions/{ids[0]}").json()["outcomes"][0]["outcome"] == "added_to_cart_42"


def test_label_delay_is_observed_at_the_first_label_only(api: TestClient) -> None:
    ids = predict(api, "digits", digits_rows(2)[0])
    before = metric(api, "classifier_label_delay_seconds_count", model="digits") or 0.0
    feedback(api, {"prediction_id": ids[0], "label": "0"}, {"prediction_id": ids[1], "label": "1"})
    feedback(api, {"prediction_id": ids[0], "label": "3"})
    assert metric(api, "classifier_label_delay_seconds_count", model="digits") == before + 2


@pytest.mark.parametrize(
    ("model", "label"),
    [
        ("digits", {"label": "3"}),
        ("digit_attributes", {"labels": LABELS[:1]}),
        ("digit_groups", {"path": ["curvy", "3"]}),
    ],
)
def test_labelled_predictions_are_counted_right_or_wrong_at_their_first_label(
    api: TestClient, model: str, label: dict[str, Any]
) -> None:
    """The counter behind classifier:realized_accuracy:rate10m judges by the realized figures' own truth rules (the
    same set, the same leaf): its correct share is /performance's accuracy on the same predictions."""
    since = datetime.now(UTC)
    version = bentoml.get_current_service().registry.served[model].model.version
    ids = predict(api, model, digits_rows(40)[0])

    def counted() -> dict[str, float]:
        results = ("correct", "wrong")
        name = "classifier_labelled_predictions_total"
        return {r: metric(api, name, model=model, version=version, result=r) or 0.0 for r in results}

    before = counted()
    feedback(api, *({"prediction_id": i, **label} for i in ids))
    feedback(api, *({"prediction_id": i, **label} for i in ids[:5]))  # labelled again: not a first label
    after = counted()
    correct, wrong = after["correct"] - before["correct"], after["wrong"] - before["wrong"]
    assert correct + wrong == len(ids)  # each prediction once, at its first label
    assert correct == pytest.approx(performance(api, model, since)["accuracy"] * len(ids))


def test_items_are_counted_by_kind_and_result(api: TestClient) -> None:
    (good,) = predict(api, "digits", digits_rows(1)[0])
    counted = {
        (kind, result): metric(api, "classifier_feedback_items_total", model=model, kind=kind, result=result) or 0.0
        for model, kind, result in [("digits", "label", "accepted"), ("digits", "outcome", "accepted"),
                                    ("digits", "label", "invalid_input"), ("none", "outcome", "unknown_prediction")]
    }  # fmt: skip
    feedback(
        api,
        {"prediction_id": good, "label": "4", "outcome": "clicked"},
        {"prediction_id": good, "label": "not a digit"},
        {"prediction_id": "nope", "outcome": "clicked"},
    )
    assert metric(api, "classifier_feedback_items_total", model="digits", kind="label", result="accepted") == (
        counted[("label", "accepted")] + 1
    )
    assert metric(api, "classifier_feedback_items_total", model="digits", kind="outcome", result="accepted") == (
        counted[("outcome", "accepted")] + 1
    )
    assert metric(api, "classifier_feedback_items_total", model="digits", kind="label", result="invalid_input") == (
        counted[("label", "invalid_input")] + 1
    )
    assert metric(
        api, "classifier_feedback_items_total", model="none", kind="outcome", result="unknown_prediction"
    ) == (counted[("outcome", "unknown_prediction")] + 1)


# --- item errors -------------------------------------------------------------------------------------------------


def test_valid_items_are_kept_when_others_fail(api: TestClient) -> None:
    ids = predict(api, "digits", digits_rows(2)[0])
    key = ids[0].split("-")[0]
    never = new_key(True, time.time() - 3600)  # a well-formed id an hour old that no request had
    result = feedback(
        api,
        {"prediction_id": ids[0], "label": "0"},
        {"prediction_id": "not-an-id", "label": "0"},
        {"prediction_id": prediction_id(never, 0), "outcome": "clicked"},
        {"prediction_id": prediction_id(key, 2), "label": "0"},  # the request had 2 rows
        {"prediction_id": ids[1], "label": "10"},
        {"prediction_id": ids[1], "labels": ["1"]},
        {"prediction_id": ids[1], "outcome": "clicked"},
    )
    assert result["accepted"] == 2
    errors = {e["index"]: (e["code"], e["field"]) for e in result["errors"]}
    assert errors == {
        1: ("unknown_prediction", "feedback[1].prediction_id"),
        2: ("unknown_prediction", "feedback[2].prediction_id"),
        3: ("unknown_prediction", "feedback[3].prediction_id"),
        4: ("invalid_input", "feedback[4].label"),
        5: ("invalid_input", "feedback[5].labels"),
    }
    assert all(e["message"] for e in result["errors"])
    assert api.get(f"/predictions/{ids[0]}").json()["label"] == {"label": "0"}
    assert api.get(f"/predictions/{ids[1]}").json()["label"] is None


@pytest.mark.parametrize(
    ("model", "item", "field"),
    [
        ("breast_cancer", {"label": "cancer"}, "label"),
        ("breast_cancer", {"path": ["benign"]}, "path"),
        ("digits", {"labels": ["3"]}, "labels"),
        ("digit_attributes", {"label": "even"}, "label"),
        ("digit_attributes", {"labels": ["even", "odd"]}, "labels[1]"),
        ("digit_attributes", {"labels": ["even", "even"]}, "labels[1]"),
        ("digit_groups", {"label": "round"}, "label"),  # an inner node
        ("digit_groups", {"label": "42"}, "label"),
        ("digit_groups", {"path": ["round", "3"]}, "path[1]"),
        ("digit_groups", {"path": ["3"]}, "path[0]"),
        ("digit_groups", {"path": ["curvy"]}, "path"),  # stops above the leaves
        ("digit_groups", {"label": "5", "path": ["curvy", "3"]}, "label"),  # disagree
        ("digit_groups", {"labels": ["3"]}, "labels"),
    ],
)
def test_a_label_that_does_not_fit_the_model_is_an_item_error(
    api: TestClient, model: str, item: dict[str, Any], field: str
) -> None:
    X = cancer_rows(1)[0] if model == "breast_cancer" else digits_rows(1)[0]
    (prediction,) = predict(api, model, X)
    result = feedback(api, {"prediction_id": prediction, **item})
    assert result["accepted"] == 0
    (error,) = result["errors"]
    assert (error["index"], error["code"], error["field"]) == (0, "invalid_input", f"feedback[0].{field}")
    assert model in error["message"]


def test_hierarchical_labels_as_leaf_path_or_both(api: TestClient) -> None:
    ids = predict(api, "digit_groups", digits_rows(3)[0])
    result = feedback(
        api,
        {"prediction_id": ids[0], "label": "3"},
        {"prediction_id": ids[1], "path": ["curvy", "3"]},
        {"prediction_id": ids[2], "label": "3", "path": ["curvy", "3"]},
    )
    assert result == {"accepted": 3, "errors": []}
    for i in ids:
        assert api.get(f"/predictions/{i}").json()["label"] == {"label": "3", "path": ["curvy", "3"]}


def test_an_empty_label_set_is_a_multilabel_label(api: TestClient) -> None:
    (prediction,) = predict(api, "digit_attributes", digits_rows(1)[0])
    assert feedback(api, {"prediction_id": prediction, "labels": []})["accepted"] == 1
    assert api.get(f"/predictions/{prediction}").json()["label"] == {"labels": []}


def test_an_id_past_retention_is_unknown(api: TestClient) -> None:
    days = bentoml.get_current_service().settings.log_retention_days
    old = prediction_id(new_key(True, time.time() - (days + 1) * 86400), 0)
    (error,) = feedback(api, {"prediction_id": old, "label": "0"})["errors"]
    assert error["code"] == "unknown_prediction" and "retention" in error["message"]
    assert_error(api.get(f"/predictions/{old}"), 404, "unknown_prediction", "id")


# --- malformed bodies: the whole request is a 400 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", None),
        (b"[]", None),
        (b'{"feedback": {}}', "feedback"),
        (b'{"feedback": []}', "feedback"),
        (b'{"items": []}', "feedback"),  # required first, then unknown
        (b'{"feedback": [{"label": "0"}]}', "feedback[0].prediction_id"),
        (b'{"feedback": [{"prediction_id": "x"}]}', "feedback[0]"),
        (b'{"feedback": [{"prediction_id": "x", "value": 2}]}', "feedback[0]"),
        (b'{"feedback": [{"prediction_id": "x", "outcome": "clicked", "value": -1}]}', "feedback[0].value"),
        (b'{"feedback": [{"prediction_id": "x", "outcome": "clicked", "value": NaN}]}', "feedback[0].value"),
        (b'{"feedback": [{"prediction_id": "x", "outcome": "clicked", "value": true}]}', "feedback[0].value"),
        (b'{"feedback": [{"prediction_id": "x", "outcome": "clicked", "value": "1"}]}', "feedback[0].value"),
        (
            b'{"feedback": [{"prediction_id": "x", "outcome": "clicked", "value": 1' + b"0" * 400 + b"}]}",
            "feedback[0].value",
        ),
        (b'{"feedback": [{"prediction_id": "x", "outcome": "clicked", "value": 1.7e308}]}', "feedback[0].value"),
        (b'{"feedback": [{"prediction_id": "x", "outcome": "clicked", "value": 1000000001}]}', "feedback[0].value"),
        (b'{"feedback": [{"prediction_id": "x", "outcome": "' + b"a" * 65 + b'"}]}', "feedback[0].outcome"),
        (b'{"feedback": [{"prediction_id": "x", "label": "' + b"a" * 257 + b'"}]}', "feedback[0].label"),
        (b'{"feedback": [{"prediction_id": "x", "outcome": "Clicked!"}]}', "feedback[0].outcome"),
        (b'{"feedback": [{"prediction_id": "x", "label": 3}]}', "feedback[0].label"),
        (b'{"feedback": [{"prediction_id": "x", "labels": "even"}]}', "feedback[0].labels"),
        (b'{"feedback": [{"prediction_id": "x", "path": []}]}', "feedback[0].path"),
        (b'{"feedback": [{"prediction_id": 7, "label": "0"}]}', "feedback[0].prediction_id"),
        (b'{"feedback": [{"prediction_id": "x", "label": "0", "weight": 1}]}', "feedback[0].weight"),
        (b'{"feedback": [{"prediction_id": "' + b"x" * 200 + b'", "label": "0"}]}', "feedback[0].prediction_id"),
        (b'{"feedback": [' + b"[" * 5000 + b"]" * 5000 + b"]}", None),  # deeper than any JSON parser goes
    ],
)
def test_a_malformed_body_is_one_400(api: TestClient, body: bytes, field: str | None) -> None:
    response = api.post("/feedback", content=body, headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_input", field)


def test_more_than_1000_items_is_a_400(api: TestClient) -> None:
    items = [{"prediction_id": "x", "outcome": "clicked"}] * 1001
    assert_error(api.post("/feedback", json={"feedback": items}), 400, "invalid_input", "feedback")


def test_an_oversized_body_is_a_413(api: TestClient) -> None:
    limit = bentoml.get_current_service().settings.max_body_bytes
    body = orjson.dumps({"feedback": [{"prediction_id": "x" * limit, "outcome": "clicked"}]})
    assert_error(api.post("/feedback", content=body), 413, "payload_too_large")


# --- GET /predictions/{id} and /models/{name}/performance ---------------------------------------------------------


def test_a_logged_prediction_shows_what_was_asked_and_answered(api: TestClient) -> None:
    X = digits_rows(2)[0]
    response = api.post(
        "/predict", json={"model": "digits", "instances": X.tolist(), "options": {"top_k": 2}, "request_id": "r-7"}
    ).json()
    answer = response["predictions"][1]
    logged = api.get(f"/predictions/{answer['id']}").json()
    assert logged["id"] == answer["id"]
    assert (logged["model"], logged["version"], logged["task"]) == ("digits", response["version"], "multiclass")
    assert (logged["request_id"], logged["options"]) == ("r-7", {"top_k": 2})
    assert logged["prediction"] == answer
    assert logged["inputs"] == {f"pixel_{j}": float(v) for j, v in enumerate(X[1])}
    predicted_at = datetime.fromisoformat(logged["predicted_at"])
    assert abs((datetime.now(UTC) - predicted_at).total_seconds()) < 600
    assert (logged["label"], logged["labelled_at"], logged["label_history"], logged["outcomes"]) == (None, None, [], [])


@pytest.mark.parametrize("text", ["nope", "0" * 32 + "-0", "x" * 5000, "%00", "01a2-0"])
def test_an_unknown_prediction_is_a_404(api: TestClient, text: str) -> None:
    assert_error(api.get(f"/predictions/{text}"), 404, "unknown_prediction", "id")


def test_performance_errors(api: TestClient) -> None:
    assert_error(api.get("/models/nope/performance"), 404, "unknown_model", "name")
    assert_error(api.get("/models/digits/performance", params={"since": "yesterday"}), 400, "invalid_input", "since")
    assert_error(
        api.get("/models/digits/performance", params={"until": "9" * 400 + "d"}), 400, "invalid_input", "until"
    )
    assert_error(
        api.get("/models/digits/performance", params={"since": "1h", "until": "2h"}), 400, "invalid_input", "since"
    )
    assert_error(api.get("/models/digits/performance", params={"from": "1h"}), 400, "invalid_input", "from")
    early = api.get("/models/digits/performance", params={"until": "0001-01-01T00:00:01"})
    assert early.status_code == 200  # the window starts at the earliest time there is, not before it
    assert (early.json()["since"], early.json()["versions"]) == ("0001-01-01T00:00:00+00:00", [])
    response = api.get("/models/digits/performance", params={"since": "2026-01-01T00:00:00", "until": "2026-01-02"})
    assert response.status_code == 200
    assert response.json()["versions"] == []


# --- the prediction log: one request cannot take another's predictions with it -----------------------------------


def test_a_hostile_request_between_normal_ones_loses_none_of_theirs(api: TestClient) -> None:
    """One `top_k` of 401 digits a second made the writer fail the batch of every client of its model version:
    150 of 156 normal predictions were lost (issue 17). Now it is a 400, and every normal prediction is logged."""
    version = bentoml.get_current_service().registry.served["digits"].model.version
    labels = {"model": "digits", "version": version, "result": "failed"}
    failed = metric(api, "classifier_prediction_log_rows_total", **labels) or 0.0
    rows = orjson.dumps(digits_rows(1)[0].tolist()).decode()
    hostile = f'{{"model": "digits", "instances": {rows}, "options": {{"top_k": 1{"0" * 400}}}}}'
    ids = []
    for _ in range(5):
        ids += predict(api, "digits", digits_rows(2)[0])
        assert_error(api.post("/predict", content=hostile), 400, "invalid_input", "options.top_k")
        ids += predict(api, "digits", digits_rows(2)[0], top_k=3)
    for prediction in ids:
        assert api.get(f"/predictions/{prediction}").status_code == 200, prediction
    assert (metric(api, "classifier_prediction_log_rows_total", **labels) or 0.0) == failed


def test_a_range_of_fewer_predictions_than_the_minimum_withholds_their_figures(api: TestClient) -> None:
    """`since=t&until=t+1s` around one prediction would give its decision, its label and its outcome."""
    since = datetime.now(UTC)
    X, y = training_digits(20)
    (first,) = predict(api, "digits", X[:1])
    feedback(api, {"prediction_id": first, "label": str(y[0]), "outcome": "clicked"})
    predicted_at = datetime.fromisoformat(api.get(f"/predictions/{first}").json()["predicted_at"])
    one_second = {"since": predicted_at.isoformat(), "until": (predicted_at + timedelta(seconds=1)).isoformat()}
    response = api.get("/models/digits/performance", params=one_second)
    assert response.status_code == 200
    (figures,) = response.json()["versions"]
    assert (figures["predictions"], figures["labelled"]) == (1, 1)
    assert (figures["accuracy"], figures["estimated_accuracy"], figures["classes"], figures["outcomes"]) == (
        None, None, [], []
    )  # fmt: skip
    assert set(figures["f1"]) == {"macro", "micro"} and set(figures["f1"].values()) == {None}
    assert "CLF_PERFORMANCE_MIN_PREDICTIONS" in figures["withheld"] and "20" in figures["withheld"]

    others = predict(api, "digits", X[1:])
    feedback(api, *({"prediction_id": i, "label": str(t)} for i, t in zip(others, y[1:], strict=True)))
    figures = performance(api, "digits", since)
    assert (figures["withheld"], figures["labelled"], figures["accuracy"]) == (None, 20, 1.0)
    assert [(o["outcome"], o["count"]) for o in figures["outcomes"]] == [("clicked", 1)]


# --- provenance: who sent a prediction or a label ----------------------------------------------------------------


@pytest.fixture
def callers(api: TestClient, reconfigure: Callable[..., None], tmp_path: Path) -> dict[str, dict[str, str]]:
    """Serves `digits` behind API keys: `app` predicts, `honest` and `mallory` send feedback, `analyst` reads
    figures. Their headers, by name."""
    path = tmp_path / "keys.json"
    granted: dict[str, tuple[Scope, ...]] = {
        "app": ("predict",), "honest": ("feedback",), "mallory": ("feedback",), "analyst": ("feedback",)
    }  # fmt: skip
    headers = {name: {"X-API-Key": create_key(path, name, scopes)} for name, scopes in granted.items()}
    reconfigure(models="digits", api_keys_file=path)
    return headers


def keyed_predict(api: TestClient, headers: dict[str, str], X: np.ndarray) -> list[str]:
    response = api.post("/predict", json={"model": "digits", "instances": X.tolist()}, headers=headers)
    assert response.status_code == 200, response.text
    return [p["id"] for p in response.json()["predictions"]]


def keyed_feedback(api: TestClient, headers: dict[str, str], *items: dict[str, Any]) -> None:
    response = api.post("/feedback", json={"feedback": list(items)}, headers=headers)
    assert response.status_code == 200 and response.json()["accepted"] == len(items), response.text


def test_the_log_keeps_the_key_that_sent_each_prediction_label_and_outcome(
    api: TestClient, callers: dict[str, dict[str, str]]
) -> None:
    (keyed,) = keyed_predict(api, callers["app"], digits_rows(1)[0])
    keyed_feedback(api, callers["honest"], {"prediction_id": keyed, "label": "0", "outcome": "clicked"})
    store = bentoml.get_current_service().log.stores.predictions
    key, row = keyed.split("-")
    found = store.prediction(key, int(row))
    assert found is not None
    assert found["request"]["caller"] == "app"
    assert (found["label"]["caller"], [h["caller"] for h in found["history"]]) == ("honest", ["honest"])
    assert [o["caller"] for o in found["outcomes"]] == ["honest"]


def test_without_keys_the_caller_is_none(api: TestClient) -> None:
    (open_id,) = predict(api, "digits", digits_rows(1)[0])
    feedback(api, {"prediction_id": open_id, "label": "0"})
    key, row = open_id.split("-")
    found = bentoml.get_current_service().log.stores.predictions.prediction(key, int(row))
    assert found is not None
    assert (found["request"]["caller"], found["label"]["caller"]) == (None, None)


def test_voiding_a_caller_s_labels_takes_them_out_of_the_realized_figures(
    api: TestClient, callers: dict[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    since = datetime.now(UTC)
    X, y = training_digits(20)
    ids = keyed_predict(api, callers["app"], X)
    keyed_feedback(
        api, callers["honest"], *({"prediction_id": i, "label": str(t)} for i, t in zip(ids, y, strict=True))
    )
    poisoned = [{"prediction_id": i, "label": str((int(t) + 1) % 10)} for i, t in zip(ids[:5], y, strict=False)]
    keyed_feedback(api, callers["mallory"], *poisoned)

    def accuracy() -> float:
        response = api.get(
            "/models/digits/performance", params={"since": since.isoformat()}, headers=callers["analyst"]
        )
        (figures,) = response.json()["versions"]
        return float(figures["accuracy"])

    assert accuracy() == 0.75
    capsys.readouterr()
    assert feedback_cli(["void", "--caller", "mallory", "--since", since.isoformat()]) == 0
    assert "voided 5 labels of 'mallory'" in capsys.readouterr().out
    assert accuracy() == 1.0  # back to the honest labels
    logged = api.get(f"/predictions/{ids[0]}", headers=callers["analyst"]).json()
    assert logged["label"] == {"label": str(y[0])}
    assert [h["voided_at"] is not None for h in logged["label_history"]] == [False, True]


# --- the log's database down, sampling ---------------------------------------------------------------------------


@pytest.fixture
def with_log(api: TestClient) -> Iterator[Callable[..., PredictionLog]]:
    """Serve with a prediction log of other settings (restored after the test)."""
    service = bentoml.get_current_service()
    saved = service.log, service.registry, service.loop
    created: list[PredictionLog] = []

    def apply(**overrides: Any) -> PredictionLog:
        log = PredictionLog(service.settings.model_copy(update=overrides), service.metrics)
        created.append(log)
        service.registry = ModelRegistry.load(service.settings, service.metrics, log)
        log.start()
        service.log = log
        service.loop = FeedbackLoop(
            log, service.metrics, service.settings.outcomes, 86400.0, service.settings.performance_min_predictions
        )
        return log

    yield apply
    service.log, service.registry, service.loop = saved
    for log in created:
        log.close(timeout=5)


def test_predictions_go_on_while_the_database_is_down_and_feedback_says_503(
    api: TestClient, with_log: Callable[..., PredictionLog]
) -> None:
    with_log(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    ids = predict(api, "digits", digits_rows(3)[0])
    assert len(ids) == 3
    error = assert_error(api.post("/feedback", json={"feedback": [{"prediction_id": ids[0], "label": "0"}]}), 503,
                         "unavailable")  # fmt: skip
    assert "database" in error["message"]
    assert_error(api.get(f"/predictions/{ids[0]}"), 503, "unavailable")
    assert_error(api.get("/models/digits/performance"), 503, "unavailable")
    assert api.get("/metrics").status_code == 200


def test_feedback_on_an_unsampled_prediction_says_so(api: TestClient, with_log: Callable[..., PredictionLog]) -> None:
    with_log(log_sample_rate=0.0)
    before = metric(api, "classifier_prediction_log_rows_total", model="digits", result="unsampled") or 0.0
    (prediction,) = predict(api, "digits", digits_rows(1)[0])
    (error,) = feedback(api, {"prediction_id": prediction, "label": "0"})["errors"]
    assert error["code"] == "unknown_prediction" and "not sampled" in error["message"]
    assert metric(api, "classifier_prediction_log_rows_total", model="digits", result="unsampled") == before + 1


# --- the log's database going away mid-traffic, and coming back ---------------------------------------------------

QUEUE_ROWS = 30  # each worker holds this many predictions for a database that is away; the rest are dropped


def log_rows(api: TestClient, result: str) -> float:
    return metric(api, "classifier_prediction_log_rows_total", model="digits", result=result) or 0.0


def written_once_back(api: TestClient, away: Callable[[], None], back: Callable[[], None]) -> None:
    """Traffic while the log's database is `away`, then `back`: predictions answer throughout, what the queue cannot
    hold is dropped and counted, feedback is refused 503 rather than acknowledged, and the queued predictions are
    written once the database is back."""
    X = digits_rows(60)[0]
    written, dropped = log_rows(api, "written"), log_rows(api, "dropped")
    before = predict(api, "digits", X[:10])
    wait_for(lambda: log_rows(api, "written") == written + 10, "the first predictions to be written")
    assert feedback(api, {"prediction_id": before[0], "label": "0"})["accepted"] == 1

    away()
    during = [predict(api, "digits", X[start : start + 10]) for start in range(10, 60, 10)]  # 50 rows
    assert log_rows(api, "dropped") == dropped + 50 - QUEUE_ROWS  # the queue holds the first three requests
    refused = api.post("/feedback", json={"feedback": [{"prediction_id": before[1], "label": "0"}]})
    assert "database" in assert_error(refused, 503, "unavailable")["message"]
    assert api.get("/readyz").status_code == 200 and api.get("/metrics").status_code == 200

    back()
    wait_for(lambda: log_rows(api, "written") == written + 10 + QUEUE_ROWS, "the queued predictions to be written")
    assert log_rows(api, "dropped") == dropped + 50 - QUEUE_ROWS
    assert api.get(f"/predictions/{during[0][0]}").status_code == 200  # queued while away, written once back
    lost = api.get(f"/predictions/{during[-1][0]}")
    assert "lost before it was written" in assert_error(lost, 404, "unknown_prediction")["message"]
    accepted = feedback(api, {"prediction_id": before[1], "label": "0"}, {"prediction_id": during[2][0], "label": "0"})
    assert accepted == {"accepted": 2, "errors": []}


def test_postgresql_stopped_mid_traffic_then_started(api: TestClient, with_log: Callable[..., PredictionLog]) -> None:
    from bench.postgres import restartable_cluster

    with restartable_cluster(fsync=False) as cluster:
        with_log(database_url=cluster.url, log_queue_rows=QUEUE_ROWS)
        written_once_back(api, cluster.stop, cluster.start)


def test_sqlite_on_a_disk_that_fills_up_then_has_room_again(
    api: TestClient, with_log: Callable[..., PredictionLog], tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", "8m") as disk:
        with_log(database_url=f"sqlite:///{disk / 'predictions.db'}", log_queue_rows=QUEUE_ROWS)
        fillers: list[Path] = []
        written_once_back(api, lambda: fillers.append(fill(disk)), lambda: fillers.pop().unlink())


def test_sqlite_on_a_read_only_volume_then_writable(
    api: TestClient, with_log: Callable[..., PredictionLog], tmp_path: Path
) -> None:
    source = tmp_path / "data"
    engine = create_database_engine(f"sqlite:///{source / 'predictions.db'}")
    migrate(engine)  # a log written before, on a volume now mounted read-only
    engine.dispose()
    with read_only_view(source, tmp_path / "read-only") as data:
        X = digits_rows(50)[0]
        written, dropped = log_rows(api, "written"), log_rows(api, "dropped")
        log = with_log(database_url=f"sqlite:///{data / 'predictions.db'}", log_queue_rows=QUEUE_ROWS)
        during = [predict(api, "digits", X[start : start + 10]) for start in range(0, 50, 10)]
        assert log_rows(api, "dropped") == dropped + 50 - QUEUE_ROWS
        refused = api.post("/feedback", json={"feedback": [{"prediction_id": during[0][0], "label": "0"}]})
        assert "Read-only file system" in assert_error(refused, 503, "unavailable")["message"]

        make_writable(data)
        wait_for(lambda: log_rows(api, "written") == written + QUEUE_ROWS, "the queued predictions to be written")
        assert feedback(api, {"prediction_id": during[0][0], "label": "0"})["accepted"] == 1
        log.close()  # before the volume goes


def test_sqlite_on_a_volume_that_turns_read_only_mid_traffic(
    api: TestClient, with_log: Callable[..., PredictionLog], tmp_path: Path
) -> None:
    # the repair (unmount, fsck, mount) needs the service to let go of the log: a restart, not tested here
    with ext4_volume(tmp_path / "volume") as volume:
        X = digits_rows(60)[0]
        written, dropped = log_rows(api, "written"), log_rows(api, "dropped")
        log = with_log(database_url=f"sqlite:///{volume / 'predictions.db'}", log_queue_rows=QUEUE_ROWS)
        before = predict(api, "digits", X[:10])
        wait_for(lambda: log_rows(api, "written") == written + 10, "the first predictions to be written")

        fail_volume(volume)
        for start in range(10, 60, 10):
            predict(api, "digits", X[start : start + 10])
        assert log_rows(api, "dropped") == dropped + 50 - QUEUE_ROWS
        refused = api.post("/feedback", json={"feedback": [{"prediction_id": before[0], "label": "0"}]})
        assert_error(refused, 503, "unavailable")
        assert log_rows(api, "written") == written + 10
        log.close(timeout=1)  # the 30 queued rows cannot be written: counted failed
        assert log_rows(api, "failed") >= QUEUE_ROWS
