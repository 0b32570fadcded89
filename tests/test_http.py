"""In-process HTTP tests: every endpoint and every error row of CONTRACT.md, through the real service."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from service.serving import ModelRegistry
from tests.helpers import cancer_rows, digits_rows

ERROR_KEYS = {"code", "message"}


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert ERROR_KEYS <= set(error) <= ERROR_KEYS | {"field"}
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert error.get("field") == field
    return error


def digits_body(n: int = 2, **extra: Any) -> dict[str, Any]:
    return {"model": "digits", "instances": digits_rows(n)[0].tolist(), **extra}


# --- endpoints ---------------------------------------------------------------------------------------


def test_probes_answer_when_every_model_loaded(api: TestClient) -> None:
    assert api.get("/livez").status_code == 200
    assert api.get("/readyz").status_code == 200


def test_predict_echoes_request_id_and_gives_unique_ids(api: TestClient) -> None:
    first = api.post("/predict", json=digits_body(3, request_id="req-42")).json()
    second = api.post("/predict", json=digits_body(3)).json()
    assert first["request_id"] == "req-42" and second["request_id"] is None
    assert (first["model"], first["task"]) == ("digits", "multiclass")
    ids = [p["id"] for p in first["predictions"] + second["predictions"]]
    assert len(set(ids)) == 6


def test_binary_prediction_fields(api: TestClient) -> None:
    X, _ = cancer_rows(4)
    body = api.post("/predict", json={"model": "breast_cancer", "instances": X.tolist()}).json()
    default = body["predictions"][0]["threshold"]
    assert 0 < default < 1
    for p in body["predictions"]:
        assert set(p) == {"id", "label", "score", "threshold"}
        assert p["label"] == ("malignant" if p["score"] >= default else "benign")
    low = api.post("/predict", json={"model": "breast_cancer", "instances": X.tolist(), "options": {"threshold": 0.0}})
    assert {p["label"] for p in low.json()["predictions"]} == {"malignant"}


def test_binary_rows_by_feature_name(api: TestClient) -> None:
    X, names = cancer_rows(2)
    as_lists = api.post("/predict", json={"model": "breast_cancer", "instances": X.tolist()}).json()
    as_objects = [dict(reversed(list(zip(names, row, strict=True)))) for row in X.tolist()]
    by_name = api.post("/predict", json={"model": "breast_cancer", "instances": as_objects}).json()
    assert [p["score"] for p in by_name["predictions"]] == [p["score"] for p in as_lists["predictions"]]


def test_multiclass_top_k_and_abstention(api: TestClient) -> None:
    body = api.post("/predict", json=digits_body(3, options={"top_k": 3, "min_confidence": 1.0})).json()
    for p in body["predictions"]:
        assert set(p) == {"id", "label", "confidence", "abstained", "top_k"}
        scores = [item["score"] for item in p["top_k"]]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3
        assert p["confidence"] == scores[0]
        assert p["abstained"] == (p["confidence"] < 1.0)
        assert (p["label"] is None) == p["abstained"]


def test_multilabel_fields(api: TestClient) -> None:
    for model in ("digit_attributes", "digit_attributes_ovr"):
        body = api.post("/predict", json={**digits_body(5), "model": model, "options": {"top_k": 2}}).json()
        assert body["task"] == "multilabel"
        for p in body["predictions"]:
            assert set(p) == {"id", "labels", "scores"}
            assert set(p["scores"]) == {"even", "prime", "large", "loop"}
            assert len(p["labels"]) == 2
            assert [p["scores"][label] for label in p["labels"]] == sorted(
                (p["scores"][label] for label in p["labels"]), reverse=True
            )


def test_hierarchical_fields(api: TestClient) -> None:
    body = api.post("/predict", json={**digits_body(4), "model": "digit_groups", "options": {"top_k": 2}}).json()
    for p in body["predictions"]:
        assert set(p) == {"id", "label", "path", "complete", "top_k"}
        assert [step["level"] for step in p["path"]] == [0, 1] and p["complete"]
        assert p["path"][0]["label"] in {"round", "straight", "curvy"}
        assert p["label"] == p["path"][-1]["label"]
        assert p["path"][1]["confidence"] == pytest.approx(p["path"][0]["score"] * p["path"][1]["score"])
        assert len(p["top_k"]) == 2 and p["top_k"][0]["confidence"] >= p["top_k"][1]["confidence"]


@pytest.mark.parametrize("top_k", ["11", "10000"])
@pytest.mark.parametrize(("model", "count"), [("digits", 10), ("digit_attributes", 4), ("digit_groups", 10)])
def test_top_k_is_capped_at_what_the_model_has(api: TestClient, model: str, count: int, top_k: str) -> None:
    """Every class (label, leaf path) once, best first, for any `top_k` up to the schema's bound."""
    rows = orjson.dumps(digits_rows(2)[0].tolist()).decode()
    body = f'{{"model": "{model}", "instances": {rows}, "options": {{"top_k": {top_k}}}}}'
    response = api.post("/predict", content=body)
    assert response.status_code == 200, response.text
    for p in response.json()["predictions"]:
        if model == "digit_attributes":  # multilabel: exactly k labels, highest score first
            scores = [p["scores"][label] for label in p["labels"]]
        else:  # a label's score, a path's confidence
            scores = [entry.get("score", entry.get("confidence")) for entry in p["top_k"]]
        assert len(scores) == count and scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("top_k", ["10001", "1000000000", "1" + "0" * 400])
def test_top_k_beyond_the_schema_bound_is_a_400(api: TestClient, top_k: str) -> None:
    """A 401-digit `top_k` was answered 200, and its request then failed the log's whole batch (issue 17)."""
    rows = orjson.dumps(digits_rows(1)[0].tolist()).decode()
    body = f'{{"model": "digits", "instances": {rows}, "options": {{"top_k": {top_k}}}}}'
    error = assert_error(api.post("/predict", content=body), 400, "invalid_input", "options.top_k")
    assert "10000" in error["message"]


def test_models_lists_every_served_model(api: TestClient, catalog: dict[str, str]) -> None:
    models = {m["name"]: m for m in api.get("/models").json()["models"]}
    assert set(models) == set(catalog)
    digits = models["digits"]
    assert digits["task"] == "multiclass" and f"digits:{digits['version']}" == catalog["digits"]
    assert digits["classes"] == {"count": 10, "names": [str(d) for d in range(10)]}
    assert digits["features"]["count"] == 64 and digits["features"]["names"][0] == "pixel_0"
    assert {"accuracy", "macro_f1", "log_loss"} <= set(digits["metrics"])
    assert models["breast_cancer"]["decision"]["positive_class"] == "malignant"
    assert all(model["ignored_columns"] == [] for model in models.values())  # trained on their features alone
    assert api.get("/models/digits").json() == digits


def test_pinned_version_is_served(api: TestClient, catalog: dict[str, str]) -> None:
    response = api.post("/predict", json={**digits_body(1), "model": catalog["digits"]})
    assert response.status_code == 200 and response.json()["model"] == "digits"


# --- the error table ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "digits", "instances": "rows"}, "instances"),
        ({"model": 7, "instances": [[0] * 64]}, "model"),
        ({"model": "digits", "instances": [[0] * 64], "extra": 1}, "extra"),
        ({"model": "digits", "instances": [[0] * 64], "options": {"topk": 1}}, "options.topk"),
        ({"model": "digits", "instances": [[0] * 64], "options": {"top_k": 0}}, "options.top_k"),
        ({"model": "digits", "instances": [[0] * 64], "options": {"top_k": "3"}}, "options.top_k"),
        ({"model": "breast_cancer", "instances": [[0] * 30], "options": {"threshold": 1.5}}, "options.threshold"),
        ({"model": "digits", "instances": [[0] * 64], "options": {"min_confidence": -0.1}}, "options.min_confidence"),
        ({"model": "digits", "instances": [[0] * 64], "options": {"threshold": 0.5}}, "options.threshold"),
        ({"model": "digits", "instances": []}, "instances"),
        ({"instances": [[0] * 64]}, "model"),
        ({"model": "digits", "instances": [[0] * 64, [0] * 63]}, "instances[1]"),
        ({"model": "digits", "instances": [[0] * 64, [0] * 63 + ["x"]]}, "instances[1].pixel_63"),
        ({"model": "breast_cancer", "instances": [[None] + [0] * 29]}, "instances[0].mean radius"),
        ({"model": "breast_cancer", "instances": [{"mean radius": 1}]}, "instances[0].mean texture"),
        ({"model": "digits", "instances": [[0.5] * 63 + [True]]}, "instances[0].pixel_63"),
        ({"model": "digits", "instances": [[0] * 64], "request_id": "r" * 257}, "request_id"),
        ({"model": "digits", "instances": [[0] * 64], "request_id": "a\x00b"}, "request_id"),
        ({"model": "digits", "instances": [[0] * 64], "request_id": "line\nbreak"}, "request_id"),
    ],
)
def test_invalid_input(api: TestClient, body: dict[str, Any], field: str) -> None:
    assert_error(api.post("/predict", json=body), 400, "invalid_input", field)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'{"model": "digits", "instances": [[1e999]]}'])
def test_malformed_body(api: TestClient, raw: bytes) -> None:
    assert_error(api.post("/predict", content=raw), 400, "invalid_input")


@pytest.mark.parametrize(
    ("option", "value"),
    [("threshold", b"NaN"), ("threshold", b"Infinity"), ("threshold", b"1" + b"0" * 400), ("min_confidence", b"NaN")],
)
def test_a_non_finite_option_is_a_400(api: TestClient, option: str, value: bytes) -> None:
    model = b"breast_cancer" if option == "threshold" else b"digits"
    rows = orjson.dumps(cancer_rows(1)[0].tolist() if option == "threshold" else digits_rows(1)[0].tolist())
    body = b'{"model": "%s", "instances": %s, "options": {"%s": %s}}' % (model, rows, option.encode(), value)
    assert_error(api.post("/predict", content=body), 400, "invalid_input", f"options.{option}")


def test_error_message_says_expected_and_arrived(api: TestClient) -> None:
    error = assert_error(api.post("/predict", json={"model": "digits", "instances": [[0] * 63]}), 400, "invalid_input")
    assert "63" in error["message"] and "64" in error["message"]


def test_too_many_instances(api: TestClient, reconfigure: Callable[..., None]) -> None:
    reconfigure(max_batch_rows=3)
    assert api.post("/predict", json=digits_body(3)).status_code == 200
    error = assert_error(api.post("/predict", json=digits_body(4)), 400, "invalid_input", "instances")
    assert "4 rows" in error["message"] and "at most 3" in error["message"]


@pytest.mark.parametrize("ref", ["nope", "digits:no-such-version"])
def test_unknown_model(api: TestClient, ref: str) -> None:
    error = assert_error(api.post("/predict", json={**digits_body(1), "model": ref}), 404, "unknown_model", "model")
    assert "digits" in error["message"] and "breast_cancer" in error["message"]


def test_unknown_model_card(api: TestClient) -> None:
    assert_error(api.get("/models/nope"), 404, "unknown_model")


def test_payload_too_large(api: TestClient, reconfigure: Callable[..., None]) -> None:
    reconfigure(max_body_bytes=2048)
    body = orjson.dumps(digits_body(10))
    assert len(body) > 2048
    assert_error(api.post("/predict", content=body), 413, "payload_too_large")
    chunked = api.post("/predict", content=iter([body[:1500], body[1500:]]))  # no Content-Length
    assert_error(chunked, 413, "payload_too_large")
    assert api.post("/predict", json=digits_body(1)).status_code == 200


def test_model_that_fails_to_load_is_unavailable_and_others_serve(
    api: TestClient, reconfigure: Callable[..., None]
) -> None:
    reconfigure(models=("digits", "ghost"))
    assert_error(api.post("/predict", json={**digits_body(1), "model": "ghost"}), 503, "model_unavailable", "model")
    assert api.post("/predict", json=digits_body(1)).status_code == 200
    assert_error(api.get("/readyz"), 503, "unavailable")
    assert api.get("/livez").status_code == 200


def test_internal_error_hides_details_and_logs_them(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: ModelRegistry, request: Any, **_: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(ModelRegistry, "predict", broken)
    with caplog.at_level(logging.ERROR, logger="service.app"):
        error = assert_error(api.post("/predict", json=digits_body(1)), 500, "internal")
    assert "secret" not in error["message"]
    error_id = error["message"].split()[2].rstrip(";")
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None and logged[0].exc_info[0] is RuntimeError


def traffic_timeout(api: TestClient) -> Any:
    """The running service's BentoML TimeoutMiddleware (answers 504 `timeout` past `traffic.timeout`)."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    assert api.get("/livez").status_code == 200  # the middleware stack is built on the first request
    node = api.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(node, TimeoutMiddleware):
        node = node.app
    return node


def test_a_request_that_times_out_is_answered_504_and_counted(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler that never answers (a model call stuck here) is cancelled at the traffic timeout, lowered for the
    test: 504 `timeout`, counted in `classifier_requests_total` and the duration histogram like any answer."""
    import asyncio

    from tests.test_signals_http import model_series, scrape

    async def stuck(self: ModelRegistry, request: Any, **_: Any) -> Any:
        await asyncio.Event().wait()

    before = scrape(api)
    monkeypatch.setattr(traffic_timeout(api), "timeout", 0.5)
    monkeypatch.setattr(ModelRegistry, "predict", stuck)
    error = assert_error(api.post("/predict", json=digits_body(1)), 504, "timeout")
    assert "0.5 s" in error["message"]
    monkeypatch.undo()  # the scrapes take the usual timeout: late in a session, one can take longer than 0.5 s
    after = scrape(api)
    requests = model_series(before, after, "classifier_requests_total", "digits")
    assert requests == {frozenset({("endpoint", "/predict"), ("code", "timeout")}): 1.0}
    durations = model_series(before, after, "classifier_request_duration_seconds_count", "digits")
    assert durations == {frozenset({("endpoint", "/predict")}): 1.0}
    seconds = model_series(before, after, "classifier_request_duration_seconds_sum", "digits")
    # the timeout's clock (the event loop's) and the histogram's (perf_counter) may differ by microseconds
    assert sum(seconds.values()) >= 0.49


def test_client_errors_log_no_traceback(api: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        api.post("/predict", json={"model": "digits", "instances": [[0] * 3]})
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/path", 404, "not_found"),
        ("GET", "/predict", 405, "method_not_allowed"),
    ],
)
def test_framework_errors_are_error_objects(api: TestClient, method: str, path: str, status: int, code: str) -> None:
    assert_error(api.request(method, path), status, code)


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/models/", "/models"),  # our routes
        ("/models/digits/?x=1", "/models/digits?x=1"),
        ("/readyz/", "/readyz"),  # BentoML's
    ],
)
def test_a_trailing_slash_redirect_stays_on_this_host(api: TestClient, url: str, location: str) -> None:
    """Starlette builds its redirect from the `Host` header: any client could make it point elsewhere."""
    response = api.get(url, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == location
