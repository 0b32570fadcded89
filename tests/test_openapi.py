"""`GET /docs.json`: a valid OpenAPI 3.1 document of every route, whose schemas describe the real answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from models.catalog import CATALOG, evaluation_rows
from service.app import api as routes_app
from service.schemas import MAX_OUTCOME_VALUE, MAX_TOP_K

OPTIONS = {
    "breast_cancer": [{}, {"threshold": 0.3, "return_probabilities": True}],
    "digits": [{}, {"top_k": 3, "return_probabilities": True}, {"min_confidence": 0.999}],
    "digit_attributes": [{}, {"top_k": 2, "return_probabilities": True}, {"threshold": 0.9}],
    "digit_attributes_ovr": [{}, {"top_k": 1}],
    "digit_groups": [{}, {"top_k": 3, "return_probabilities": True}, {"min_confidence": 0.999}],
}


@pytest.fixture(scope="module")
def document(api: TestClient) -> dict[str, Any]:
    response = api.get("/docs.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def conforms(document: dict[str, Any]) -> Callable[[str, str, int, Any], None]:
    """Asserts that a body is what the document declares for (method, path, status)."""

    def check(method: str, path: str, status: int, body: Any) -> None:
        declared = document["paths"][path][method.lower()]["responses"][str(status)]
        schema = declared["content"]["application/json"]["schema"]
        validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
        errors = [str(error) for error in validator.iter_errors(body)]
        assert errors == [], (method, path, status, errors[:3], body)

    return check


def test_the_document_is_valid_openapi_3_1_and_describes_every_route(document: dict[str, Any]) -> None:
    validate(document)  # raises on an invalid document
    assert document["openapi"] == "3.1.0"
    served = {
        (method.lower(), route.path)
        for route in routes_app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(method, path) for path, methods in document["paths"].items() for method in methods}
    assert served <= described
    assert {("get", "/livez"), ("get", "/readyz"), ("get", "/metrics")} <= described


def test_the_request_schemas_state_every_bound(document: dict[str, Any]) -> None:
    """What a client may send is bounded in the document as in the service (issue 17): a value past a bound is a
    400, not a 200 whose log entry cannot be written."""
    schemas = document["components"]["schemas"]
    options, predict, item = (
        schemas[name]["properties"] for name in ("PredictOptions", "PredictRequest", "FeedbackItem")
    )
    top_k = next(s for s in options["top_k"]["anyOf"] if s.get("type") == "integer")
    assert (top_k["minimum"], top_k["maximum"]) == (1, MAX_TOP_K)
    request_id = next(s for s in predict["request_id"]["anyOf"] if s.get("type") == "string")
    assert request_id["maxLength"] == 256 and "pattern" in request_id
    assert (item["value"]["minimum"], item["value"]["maximum"]) == (0, MAX_OUTCOME_VALUE)


def test_every_error_status_comes_with_the_error_body(document: dict[str, Any]) -> None:
    """CONTRACT.md's error body everywhere but on the Open Inference Protocol's routes, which answer its own."""
    for path, methods in document["paths"].items():
        body = "V2Error" if path.startswith("/v2") else "ErrorBody"
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": f"#/components/schemas/{body}"}, (method, path, status)


@pytest.mark.parametrize("model", sorted(CATALOG))
def test_predictions_and_cards_of_every_task_conform(
    api: TestClient, conforms: Callable[[str, str, int, Any], None], model: str
) -> None:
    rows = evaluation_rows(model)[0][:3].tolist()
    for options in OPTIONS[model]:
        response = api.post("/predict", json={"model": model, "instances": rows, "options": options})
        assert response.status_code == 200, response.text
        conforms("POST", "/predict", 200, response.json())
    conforms("GET", "/models/{name}", 200, api.get(f"/models/{model}").json())


def test_the_feedback_loop_answers_conform(api: TestClient, conforms: Callable[[str, str, int, Any], None]) -> None:
    conforms("GET", "/models", 200, api.get("/models").json())
    answer = api.post(
        "/predict", json={"model": "digits", "instances": evaluation_rows("digits")[0][:2].tolist()}
    ).json()
    first = answer["predictions"][0]["id"]
    items = [{"prediction_id": first, "label": "3", "outcome": "clicked"}, {"prediction_id": "x", "label": "1"}]
    feedback = api.post("/feedback", json={"feedback": items})
    assert feedback.status_code == 200 and feedback.json()["errors"], feedback.text
    conforms("POST", "/feedback", 200, feedback.json())
    logged = api.get(f"/predictions/{first}")
    assert logged.status_code == 200, logged.text
    conforms("GET", "/predictions/{id}", 200, logged.json())
    performance = api.get("/models/digits/performance", params={"since": "1d"})
    assert performance.status_code == 200 and performance.json()["versions"], performance.text
    conforms("GET", "/models/{name}/performance", 200, performance.json())


@pytest.mark.parametrize(
    ("method", "path", "url", "body", "status"),
    [
        ("POST", "/predict", "/predict", {"model": "digits", "instances": [[1.0]]}, 400),
        ("POST", "/predict", "/predict", {"model": "nope", "instances": [[1.0]]}, 404),
        ("GET", "/models/{name}", "/models/nope", None, 404),
        ("GET", "/predictions/{id}", "/predictions/nope", None, 404),
        ("GET", "/models/{name}/performance", "/models/digits/performance?since=soon", None, 400),
        ("POST", "/feedback", "/feedback", {"feedback": []}, 400),
        ("POST", "/admin/models/{name}/promote", "/admin/models/digits/promote", {"version": "x"}, 403),
    ],
)
def test_error_answers_conform_and_are_declared(
    api: TestClient,
    conforms: Callable[[str, str, int, Any], None],
    method: str,
    path: str,
    url: str,
    body: Any,
    status: int,
) -> None:
    response = api.request(method, url, json=body)
    assert response.status_code == status, response.text
    conforms(method, path, status, response.json())


def test_the_docs_page_loads_nothing_and_links_this_document(api: TestClient) -> None:
    """BentoML's page at `/` loaded a third-party script (Google Tag Manager); ours is one static page that runs no
    script and links `docs.json`, and its Content-Security-Policy would stop anything it tried to load."""
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text.lower() and "://" not in page.text  # nothing from another site
    assert 'href="docs.json"' in page.text
    assert page.headers["content-security-policy"] == "default-src 'none'"
    assert api.head("/").status_code == 200
