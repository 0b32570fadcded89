"""Rows the model cannot score: whatever a model raises on a request's rows, or a NaN or infinite score, is that
request's 400 `invalid_input`, with batching on and off, and monitoring counts its rows as rejected."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from models.catalog import CATALOG
from tests.helpers import catalog_rows, register_colors_model
from tests.test_http import assert_error
from tests.test_signals_http import model_series, scrape, total

pytestmark = pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")


@pytest.fixture(scope="module")
def strict_colors() -> str:
    """A user model whose encoder refuses a category it never saw (scikit-learn's default): its name."""
    return register_colors_model("strict_colors", handle_unknown="error").split(":")[0]


def far_out_rows(model: str) -> list[list[float]]:
    """Three rows of the model's own kind, the second with every value at 1e308: finite, valid JSON, and far
    beyond anything the model was trained on."""
    rows = catalog_rows(model, 3).tolist()
    rows[1] = [1e308] * len(rows[1])
    return rows


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("model", sorted(CATALOG))
def test_values_that_overflow_the_model_are_a_400_naming_the_model(
    api: TestClient, reconfigure: Callable[..., None], model: str, batching: bool
) -> None:
    """Some catalog models raise on such rows (a forest's float32 input check), the others compute NaN: either
    way a 400, never a 500 nor a 200 with a null score."""
    reconfigure(batching=batching)
    response = api.post("/predict", json={"model": model, "instances": far_out_rows(model)})
    error = assert_error(response, 400, "invalid_input")
    assert f"model '{model}'" in error["message"]
    assert error["field"] in ("instances", "instances[1]")  # raised: the request; non-finite: the row
    assert api.post("/predict", json={"model": model, "instances": catalog_rows(model, 3).tolist()}).status_code == 200


def test_a_non_finite_score_names_its_row(api: TestClient) -> None:
    response = api.post("/predict", json={"model": "breast_cancer", "instances": far_out_rows("breast_cancer")})
    error = assert_error(response, 400, "invalid_input", "instances[1]")
    assert "row 1" in error["message"] and "NaN or infinite score" in error["message"]


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "unbatched"])
def test_a_category_the_encoder_never_saw_is_a_400_logged_once_as_a_warning(
    api: TestClient,
    reconfigure: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    strict_colors: str,
    batching: bool,
) -> None:
    reconfigure(models=(strict_colors,), batching=batching)
    assert api.post("/predict", json={"model": strict_colors, "instances": [["red", 0.5]]}).status_code == 200
    with caplog.at_level(logging.INFO):
        response = api.post("/predict", json={"model": strict_colors, "instances": [["red", 0.5], ["purple", 1.0]]})
    error = assert_error(response, 400, "invalid_input", "instances")
    assert f"model '{strict_colors}' could not score the rows" in error["message"]
    assert "ValueError: Found unknown categories ['purple']" in error["message"]
    assert "Traceback" not in error["message"] and "\n" not in error["message"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "service.serving"]
    assert len(warnings) == 1 and warnings[0].exc_info is not None and warnings[0].exc_info[0] is ValueError
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_integers_too_large_for_a_double_are_a_400_naming_row_and_feature(api: TestClient) -> None:
    values = ",".join(["1" + "0" * 400] + ["1"] * 29)
    response = api.post("/predict", content=f'{{"model": "breast_cancer", "instances": [[{values}]]}}')
    error = assert_error(response, 400, "invalid_input", "instances[0].mean radius")
    assert "row 0" in error["message"] and "too large for a double" in error["message"]


@pytest.mark.parametrize("depth", [5_000, 100_000])
@pytest.mark.parametrize("inner", [b"1", b"NaN"])
def test_deeply_nested_json_is_a_400(api: TestClient, depth: int, inner: bytes) -> None:
    """Nested deeper than either JSON parser goes (the fallback one, which reads NaN, included)."""
    body = b'{"model": "digits", "instances": ' + b"[" * depth + inner + b"]" * depth + b"}"
    assert_error(api.post("/predict", content=body), 400, "invalid_input")


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "unbatched"])
def test_rows_the_model_could_not_score_are_rejected_rows_not_predictions(
    api: TestClient, reconfigure: Callable[..., None], batching: bool
) -> None:
    """Their decisions are not counted as predictions; the rows are counted as rejected, with the faults their
    inputs show (every value out of the training range)."""
    reconfigure(batching=batching)
    before = scrape(api)
    response = api.post("/predict", json={"model": "breast_cancer", "instances": far_out_rows("breast_cancer")})
    assert response.status_code == 400
    after = scrape(api)
    assert model_series(before, after, "classifier_predictions_total", "breast_cancer") == {}
    assert model_series(before, after, "classifier_rows_total", "breast_cancer") == {
        frozenset({("outcome", "rejected")}): 3.0
    }
    issues = model_series(before, after, "classifier_input_issues_total", "breast_cancer")
    assert total(issues) == 30  # row 1's every feature, above its training maximum
    assert {dict(labels)["kind"] for labels in issues} == {"out_of_range"}
