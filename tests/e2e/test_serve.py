"""A real `bentoml serve`: every catalog model answers per CONTRACT.md, errors are objects, metrics scrape."""

from __future__ import annotations

import httpx
import pytest

from service.settings import DEFAULT_CATALOG
from tests.e2e.conftest import SERVERS, TIMEOUT, increased, scrape, scrape_when, serving, value, wait_until
from tests.helpers import catalog_rows, digits_rows

pytestmark = pytest.mark.e2e

FIELDS = {
    "binary": {"id", "label", "score", "threshold"},
    "multiclass": {"id", "label", "confidence", "abstained"},
    "multilabel": {"id", "labels", "scores"},
    "hierarchical": {"id", "label", "path", "complete"},
}


def test_every_catalog_model_answers(server: str) -> None:
    models = httpx.get(f"{server}/models", timeout=TIMEOUT).json()["models"]
    assert sorted(m["name"] for m in models) == sorted(DEFAULT_CATALOG)
    for model in models:
        rows = catalog_rows(model["name"], 5).tolist()
        response = httpx.post(
            f"{server}/predict", json={"model": model["name"], "instances": rows, "request_id": "e2e"}, timeout=TIMEOUT
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model"], body["version"], body["request_id"]) == (model["name"], model["version"], "e2e")
        assert len(body["predictions"]) == 5
        assert all(set(p) == FIELDS[model["task"]] for p in body["predictions"])


def test_digits_classifies_through_the_server(server: str) -> None:
    X, y = digits_rows(500)
    body = httpx.post(f"{server}/predict", json={"model": "digits", "instances": X.tolist()}, timeout=TIMEOUT).json()
    correct = sum(p["label"] == str(t) for p, t in zip(body["predictions"], y.tolist(), strict=True))
    assert correct / len(y) >= 0.95


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/predict", b"{oops", 400, "invalid_input"),
        ("POST", "/predict", b'{"model": "nope", "instances": [[1]]}', 404, "unknown_model"),
        ("GET", "/predict", None, 405, "method_not_allowed"),
        ("GET", "/nowhere", None, 404, "not_found"),
    ],
)
def test_errors_are_one_json_object(
    server: str, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    response = httpx.request(method, f"{server}{path}", content=body, timeout=TIMEOUT)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_metrics_are_the_services_own(server: str) -> None:
    before = scrape(server)
    httpx.post(f"{server}/predict", json={"model": "digits", "instances": digits_rows(1)[0].tolist()}, timeout=TIMEOUT)
    ok = {"model": "digits", "endpoint": "/predict", "code": "ok"}
    after = scrape_when(server, increased(before, "classifier_requests_total", 1, **ok), "the request's count")
    assert value(after, "classifier_requests_total", **ok) == value(before, "classifier_requests_total", **ok) + 1
    # BentoML's own request metrics (labelled by raw path) are switched off: /metrics is the service's
    assert not [name for name, _ in after if name.startswith("bentoml_")]


def test_two_servers_on_one_store_keep_their_own_metrics_and_share_the_log(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 23: BentoML empties its home's Prometheus folder when a server starts, so a second server on one
    checkout deleted the first one's metric files. Each server has its own folder now; the prediction log (SQLite
    in the home's data folder) is shared, as replicas share theirs."""
    home = tmp_path_factory.mktemp("serve-twice")
    rows = {"model": "digits", "instances": digits_rows(2)[0].tolist()}
    ok = {"model": "digits", "endpoint": "/predict", "code": "ok"}
    with serving(e2e_env, home, models="digits") as first:
        made = [httpx.post(f"{first}/predict", json=rows, timeout=TIMEOUT).json() for _ in range(3)]
        scrape_when(first, lambda s: value(s, "classifier_requests_total", **ok) == 3, "the first server's 3 requests")
        with serving(e2e_env, home, models="digits") as second:
            assert httpx.post(f"{first}/predict", json=rows, timeout=TIMEOUT).status_code == 200
            scrape_when(first, lambda s: value(s, "classifier_requests_total", **ok) == 4, "4 requests on the first")
            assert value(scrape(second), "classifier_requests_total", **ok) == 0
            folders = sorted(p.name for p in (home / "prometheus_multiproc_dir").iterdir())
            assert folders == sorted(f"server-{SERVERS[url].pid}" for url in (first, second))
            logged = made[0]["predictions"][0]["id"]
            wait_until(
                lambda: httpx.get(f"{second}/predictions/{logged}", timeout=TIMEOUT).status_code == 200,
                "the second server to read the first one's prediction from the shared log",
            )
