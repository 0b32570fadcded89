"""The Open Inference Protocol's routes, in-process through the real service: the same answers as `/predict` for
every task kind, both input forms, the protocol's error body on every refusal, and the rest of `/predict`'s path
(the log and `/feedback`, request metrics, API keys)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from service.settings import DEFAULT_CATALOG
from service.v2.codec import DEFAULT_OUTPUTS
from tests.helpers import CATALOG_TASKS, cancer_rows, catalog_rows, register_colors_model, scrape
from tests.rollout.test_promotion import two_versions


def tensor_body(model: str, rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    data = rows.ravel().tolist()
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": data}], **extra}


def outputs(answer: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each output of a V2 answer as an array of its shape."""
    return {o["name"]: np.array(o["data"], dtype=object).reshape(o["shape"]) for o in answer["outputs"]}


def infer(api: TestClient, model: str, body: dict[str, Any], path: str = "") -> dict[str, Any]:
    response = api.post(f"/v2/models/{model}{path}/infer", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_v2_error(response: Any, status: int, code: str, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    assert body["error"].startswith(f"{code}: ")
    for word in words:
        assert word in body["error"], body["error"]
    return str(body["error"])


def test_server_metadata_and_health(api: TestClient) -> None:
    assert api.get("/v2").json() == {"name": "classifier-service", "version": api.get("/v2").json()["version"],
                                     "extensions": []}  # fmt: skip
    assert api.get("/v2/health/live").json() == {"live": True}
    assert api.get("/v2/health/ready").json() == {"ready": True}


def test_the_health_routes_follow_the_probes_rules(api: TestClient, reconfigure: Callable[..., None]) -> None:
    reconfigure(models=("digits", "ghost"))
    why = api.get("/readyz").json()["error"]["message"]
    assert "ghost" in why
    assert_v2_error(api.get("/v2/health/ready"), 503, "unavailable", why)
    assert api.get("/v2/health/live").json() == {"live": True}


@pytest.mark.parametrize("model", DEFAULT_CATALOG)
def test_model_metadata_lists_the_inputs_outputs_and_the_class_order(api: TestClient, model: str) -> None:
    card = api.get(f"/models/{model}").json()
    metadata = api.get(f"/v2/models/{model}").json()
    assert metadata["name"] == model and metadata["versions"] == [card["version"]]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, card["features"]["count"]]}]
    assert metadata["parameters"]["classes"] == card["classes"]["names"]
    assert metadata["parameters"]["features"] == card["features"]["names"]
    names = [output["name"] for output in metadata["outputs"]]
    assert set(DEFAULT_OUTPUTS[CATALOG_TASKS[model]]) <= set(names)
    assert ("predict_proba" in names) == (CATALOG_TASKS[model] != "hierarchical")
    assert api.get(f"/v2/models/{model}/ready").json() == {"name": model, "ready": True}
    versioned = f"/v2/models/{model}/versions/{card['version']}"
    assert api.get(versioned).json() == metadata
    assert api.get(f"{versioned}/ready").status_code == 200


@pytest.mark.parametrize("model", DEFAULT_CATALOG)
def test_infer_answers_what_predict_answers(api: TestClient, model: str) -> None:
    rows = catalog_rows(model, 5)
    predicted = api.post("/predict", json={"model": model, "instances": rows.tolist(),
                                           "options": {"return_probabilities": True}}).json()  # fmt: skip
    classes = api.get(f"/v2/models/{model}").json()["parameters"]["classes"]
    asked = ["predict"] + (["predict_proba"] if CATALOG_TASKS[model] != "hierarchical" else ["path", "path_confidence"])
    answer = infer(api, model, tensor_body(model, rows, outputs=[{"name": name} for name in asked]))
    assert (answer["model_name"], answer["model_version"]) == (model, predicted["version"])
    assert answer["parameters"]["task"] == CATALOG_TASKS[model]
    got = outputs(answer)
    records = predicted["predictions"]
    if CATALOG_TASKS[model] == "multilabel":
        decided = [[int(name in p["labels"]) for name in classes] for p in records]
        assert got["predict"].tolist() == decided
    else:
        assert got["predict"][:, 0].tolist() == [p["label"] for p in records]
    if CATALOG_TASKS[model] == "hierarchical":
        assert got["path"].tolist() == [[node["label"] for node in p["path"]] for p in records]
        assert got["path_confidence"].tolist() == [[node["confidence"] for node in p["path"]] for p in records]
    else:
        expected = [[p["probabilities"][name] for name in classes] for p in records]
        assert np.allclose(got["predict_proba"].astype(float), expected, rtol=0, atol=1e-12)
    # nested data, as the protocol also allows, is the same request
    nested = tensor_body(model, rows) | {"inputs": [{"name": "x", "shape": [5, rows.shape[1]], "datatype": "FP32",
                                                     "data": rows.tolist()}]}  # fmt: skip
    assert outputs(infer(api, model, nested))["predict"].tolist() == got["predict"].tolist()


def test_default_outputs_and_decision_parameters(api: TestClient) -> None:
    rows = catalog_rows("breast_cancer", 8)
    default = outputs(infer(api, "breast_cancer", tensor_body("breast_cancer", rows)))
    assert set(default) == set(DEFAULT_OUTPUTS["binary"])
    strict = outputs(infer(api, "breast_cancer", tensor_body("breast_cancer", rows, parameters={"threshold": 1.0})))
    assert set(strict["threshold"][:, 0]) == {1.0}
    predicted = api.post("/predict", json={"model": "breast_cancer", "instances": rows.tolist(),
                                           "options": {"threshold": 1.0}}).json()  # fmt: skip
    assert strict["predict"][:, 0].tolist() == [p["label"] for p in predicted["predictions"]]

    digits = catalog_rows("digits", 3)
    ranked = outputs(
        infer(api, "digits", tensor_body("digits", digits, parameters={"top_k": 3, "min_confidence": 1.0}))
    )
    assert ranked["top_k_labels"].shape == (3, 3) and ranked["top_k_scores"].shape == (3, 3)
    assert ranked["abstained"][:, 0].tolist() == [True] * 3 and ranked["predict"][:, 0].tolist() == [""] * 3

    paths = infer(api, "digit_groups", tensor_body("digit_groups", digits, parameters={"top_k": 2}))
    assert outputs(paths)["top_k_paths"].shape == (3, 2, 2)


def test_the_pandas_form_takes_one_column_per_feature(api: TestClient, catalog: dict[str, str]) -> None:
    digits = catalog_rows("digits", 4)
    names = api.get("/v2/models/digits").json()["parameters"]["features"]
    columns = [{"name": name, "shape": [4], "datatype": "FP64", "data": digits[:, i].tolist()}
               for i, name in enumerate(names)]  # fmt: skip
    by_column = outputs(infer(api, "digits", {"parameters": {"content_type": "pd"}, "inputs": columns[::-1]}))
    assert (
        by_column["predict"].tolist()
        == outputs(infer(api, "digits", tensor_body("digits", digits)))["predict"].tolist()
    )


def test_a_model_with_a_categorical_column_takes_bytes_in_the_pandas_form(
    api: TestClient, reconfigure: Callable[..., None]
) -> None:
    tag = register_colors_model("v2_colors")
    reconfigure(models=tag.partition(":")[0])
    metadata = api.get("/v2/models/v2_colors").json()
    assert metadata["parameters"]["content_type"] == "pd"
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {"color": "BYTES", "size": "FP64"}
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": "color", "shape": [2, 1], "datatype": "BYTES", "data": ["red", "blue"]},
            {"name": "size", "shape": [2, 1], "datatype": "FP64", "data": [0.0, 0.0]},
        ],
    }
    assert outputs(infer(api, "v2_colors", body))["predict"][:, 0].tolist() == ["yes", "no"]


def test_v2_predictions_are_logged_and_take_feedback(api: TestClient) -> None:
    answer = infer(api, "breast_cancer", tensor_body("breast_cancer", catalog_rows("breast_cancer", 2), id="v2-req"))
    assert answer["id"] == "v2-req"
    ids = answer["parameters"]["prediction_ids"]
    assert len(ids) == 2
    result = api.post("/feedback", json={"feedback": [{"prediction_id": ids[0], "label": "benign"}]})
    assert result.status_code == 200 and result.json()["accepted"] == 1, result.text
    logged = api.get(f"/predictions/{ids[0]}").json()
    assert (logged["model"], logged["request_id"], logged["label"]) == ("breast_cancer", "v2-req", {"label": "benign"})


def test_requests_are_counted_under_the_routes_template(api: TestClient) -> None:
    infer(api, "digits", tensor_body("digits", catalog_rows("digits", 1)))
    samples = scrape(api)
    endpoints = {dict(labels).get("endpoint") for (name, labels) in samples if name == "classifier_requests_total"}
    assert "/v2/models/{name}/infer" in endpoints


ROWS = catalog_rows("digits", 1).ravel().tolist()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}, ("64 features",)),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": ROWS[:10]}]}, ("10 values",)),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "BOOL", "data": [True] * 64}]}, ("BOOL",)),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "BYTES", "data": ["a"] * 64}]}, ("BYTES", "pd")),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": ["a"] * 64}]}, ("pixel_0",)),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": ROWS}], "outputs": [{"name": "nope"}]},
         ("'nope'", "predict_proba")),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": ROWS}],
          "outputs": [{"name": "top_k_labels"}]}, ("top_k",)),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": ROWS}],
          "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]}, ("binary_data",)),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": ROWS}], "parameters": {"k": 1}},
         ("parameters.k",)),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": ROWS}], "extra": 1}, ("extra",)),
        ({"inputs": []}, ("inputs",)),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": ROWS}],
          "parameters": {"threshold": 0.5}}, ("threshold",)),
    ],
)  # fmt: skip
def test_every_refusal_is_a_400_with_the_protocols_error_body(
    api: TestClient, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    assert_v2_error(api.post("/v2/models/digits/infer", json=body), 400, "invalid_input", *words)


def test_malformed_json_and_unknown_models_and_versions(api: TestClient) -> None:
    assert_v2_error(api.post("/v2/models/digits/infer", content=b"{"), 400, "invalid_input")
    body = tensor_body("digits", catalog_rows("digits", 1))
    assert_v2_error(api.post("/v2/models/nope/infer", json=body), 404, "unknown_model", "nope")
    assert_v2_error(api.post("/v2/models/digits/versions/v0/infer", json=body), 404, "unknown_model", "v0")
    assert_v2_error(api.get("/v2/models/nope"), 404, "unknown_model")
    assert_v2_error(api.get("/v2/models/digits/versions/v0/ready"), 404, "unknown_model")


def test_a_version_route_serves_the_served_version_or_its_shadow(
    api: TestClient, reconfigure: Callable[..., None]
) -> None:
    name, v1, v2 = two_versions()
    reconfigure(models=name, shadow=f"{name}:{v2}")
    rows = cancer_rows(6)[0]
    predicted = api.post("/predict", json={"model": name, "instances": rows.tolist()}).json()
    for version in (v1, v2):
        assert api.get(f"/v2/models/{name}/versions/{version}/ready").json() == {"name": name, "ready": True}
    served = infer(api, name, tensor_body(name, rows), f"/versions/{v1}")
    assert served["model_version"] == v1
    assert outputs(served)["score"][:, 0].tolist() == [p["score"] for p in predicted["predictions"]]
    shadow = infer(api, name, tensor_body(name, rows), f"/versions/{v2}")
    assert shadow["model_version"] == v2
    assert outputs(shadow)["score"][:, 0].tolist() != outputs(served)["score"][:, 0].tolist()
    logged = api.get(f"/predictions/{shadow['parameters']['prediction_ids'][0]}").json()
    assert logged["version"] == v2
    unknown = api.post(f"/v2/models/{name}/versions/v0/infer", json=tensor_body(name, rows))
    assert_v2_error(unknown, 404, "unknown_model")
