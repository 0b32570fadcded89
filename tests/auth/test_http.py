"""API keys over HTTP, in-process: each route's scope, the error bodies, the request accounting, rotation without a
restart, and logs that never hold a key."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from service.auth.keys import SCOPES, Scope, new_key, revoke_key
from tests.auth.conftest import Keys
from tests.helpers import digits_rows
from tests.test_http import assert_error

# (method, path, JSON body, the scope docs/operations.md's table gives it)
ROUTES: list[tuple[str, str, Any, Scope]] = [
    ("POST", "/predict", {"model": "digits", "instances": digits_rows(2)[0].tolist()}, "predict"),
    ("GET", "/models", None, "predict"),
    ("GET", "/models/digits", None, "predict"),
    ("GET", "/models/digits/performance", None, "feedback"),
    ("POST", "/feedback", {"feedback": [{"prediction_id": "0" * 32 + "-0", "label": "1"}]}, "feedback"),
    ("GET", "/predictions/" + "0" * 32 + "-0", None, "feedback"),
    ("POST", "/admin/models/digits/promote", {"version": "nosuchversion"}, "admin"),
    ("PUT", "/admin/models/digits/shadow", {"version": "nosuchversion"}, "admin"),
    ("DELETE", "/admin/models/digits/shadow", None, "admin"),
    ("GET", "/metrics", None, "metrics"),
]
OPEN_ROUTES = ["/livez", "/readyz", "/healthz", "/docs.json", "/schema.json", "/"]  # BentoML's own


def call(api: TestClient, method: str, path: str, body: Any = None, key: str | None = None) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return api.request(method, path, json=body, headers=headers)


def outcome(response: httpx.Response) -> tuple[int, str]:
    """The status and the error code (`ok` for a success)."""
    if response.status_code < 400:
        return response.status_code, "ok"
    return response.status_code, response.json()["error"]["code"]


def requests_counted(api: TestClient, key: str | None = None) -> dict[tuple[str, str, str], float]:
    """`classifier_requests_total` by (model, endpoint, code), summed over versions."""
    counted: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(call(api, "GET", "/metrics", key=key).text):
        for sample in family.samples:
            if sample.name == "classifier_requests_total":
                labels = (sample.labels["model"], sample.labels["endpoint"], sample.labels["code"])
                counted[labels] = counted.get(labels, 0.0) + sample.value
    return counted


def test_every_route_takes_a_key_with_its_scope_and_then_answers_as_without_keys(
    api: TestClient, reconfigure: Callable[..., None], keyed: Callable[..., Keys]
) -> None:
    reconfigure(models="digits", admin=True)
    without_keys = {(method, path): outcome(call(api, method, path, body)) for method, path, body, _ in ROUTES}
    only = {scope: f"only_{scope}" for scope in SCOPES}
    all_but = {scope: f"all_but_{scope}" for scope in SCOPES}
    keys = keyed(
        admin=False,  # with keys, the `admin` scope decides, whatever CLF_ADMIN says
        **{only[scope]: (scope,) for scope in SCOPES},
        **{all_but[scope]: tuple(other for other in SCOPES if other != scope) for scope in SCOPES},
    )
    for method, path, body, scope in ROUTES:
        route = f"{method} {path}"
        missing = call(api, method, path, body)
        assert_error(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"].startswith("Bearer"), route
        assert_error(call(api, method, path, body, new_key()), 401, "unauthorized")
        lacking = assert_error(call(api, method, path, body, keys.issued[all_but[scope]]), 403, "forbidden")
        assert f"scope '{scope}'" in lacking["message"], route
        right = call(api, method, path, body, keys.issued[only[scope]])
        assert outcome(right) == without_keys[(method, path)], (route, right.text)
    for path in OPEN_ROUTES:
        assert api.get(path).status_code == 200, path


def test_x_api_key_is_accepted_too(keyed: Callable[..., Keys], api: TestClient) -> None:
    keys = keyed(client=("predict",))
    assert api.get("/models", headers={"X-API-Key": keys.issued["client"]}).status_code == 200
    assert_error(api.get("/models", headers={"X-API-Key": new_key()}), 401, "unauthorized")


def test_metrics_take_a_key_whenever_keys_are_on(keyed: Callable[..., Keys], api: TestClient) -> None:
    keys = keyed(client=("predict",), prometheus=("metrics",))
    assert "classifier_requests_total" in call(api, "GET", "/metrics", key=keys.issued["prometheus"]).text
    assert_error(api.get("/metrics"), 401, "unauthorized")
    assert_error(call(api, "GET", "/metrics", key=keys.issued["client"]), 403, "forbidden")
    revoke_key(keys.path, "prometheus")  # the last key with `metrics`: the metrics stay keyed
    keys.next_check()
    assert_error(api.get("/metrics"), 401, "unauthorized")
    assert_error(call(api, "GET", "/metrics", key=keys.issued["prometheus"]), 401, "unauthorized")


def test_metrics_configured_open_take_no_key(keyed: Callable[..., Keys], api: TestClient) -> None:
    keys = keyed(metrics_open=True, client=("predict",))
    assert "classifier_requests_total" in api.get("/metrics").text
    assert_error(api.get("/models"), 401, "unauthorized")  # only /metrics is open
    keys.path.write_text("{")
    keys.next_check()
    assert api.get("/metrics").status_code == 200  # open whatever the keys file says


def test_readyz_says_not_ready_while_the_keys_file_cannot_be_read(keyed: Callable[..., Keys], api: TestClient) -> None:
    keys = keyed(client=("predict",))
    assert api.get("/readyz").status_code == 200
    good = keys.path.read_text()
    keys.path.write_text(good[:-20])  # an edit in place, cut short
    keys.next_check()
    assert_error(call(api, "GET", "/models", key=keys.issued["client"]), 503, "unavailable")
    error = assert_error(api.get("/readyz"), 503, "unavailable")
    assert "API keys file" in error["message"] and "not a valid API keys file" in error["message"]
    keys.path.write_text(good)
    keys.next_check()
    assert api.get("/readyz").status_code == 200


def test_refusals_are_counted_per_endpoint_and_code(keyed: Callable[..., Keys], api: TestClient) -> None:
    keys = keyed(client=("predict",), prometheus=("metrics",))
    body = ROUTES[0][2]
    before = requests_counted(api, keys.issued["prometheus"])
    call(api, "POST", "/predict", body)
    call(api, "POST", "/predict", body, new_key())
    call(api, "POST", "/feedback", {"feedback": []}, keys.issued["client"])
    call(api, "POST", "/predict", body, keys.issued["client"])
    after = requests_counted(api, keys.issued["prometheus"])
    moved = {labels: n - before.get(labels, 0.0) for labels, n in after.items() if n != before.get(labels, 0.0)}
    assert moved == {
        ("none", "/predict", "unauthorized"): 2,
        ("none", "/feedback", "forbidden"): 1,
        ("digits", "/predict", "ok"): 1,
        ("none", "/metrics", "ok"): 1,  # the first scrape, counted once it was answered
    }


def test_keys_created_and_revoked_take_effect_without_a_restart(keyed: Callable[..., Keys], api: TestClient) -> None:
    keys = keyed(old=("predict",))
    new = keys.create("new", "predict")
    assert_error(call(api, "GET", "/models", key=new), 401, "unauthorized")  # the file is looked at once a second
    keys.next_check()
    assert call(api, "GET", "/models", key=new).status_code == 200
    revoke_key(keys.path, "old")
    keys.next_check()
    assert_error(call(api, "GET", "/models", key=keys.issued["old"]), 401, "unauthorized")
    assert call(api, "GET", "/models", key=new).status_code == 200


def test_no_key_reaches_the_logs(keyed: Callable[..., Keys], api: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    keys = keyed(client=("predict",), ops=("admin",))
    wrong = new_key()
    with caplog.at_level(logging.DEBUG):
        call(api, "POST", "/predict", ROUTES[0][2], keys.issued["client"])
        call(api, "POST", "/predict", ROUTES[0][2], wrong)
        call(api, "POST", "/feedback", {"feedback": []}, keys.issued["client"])
        call(api, "POST", "/admin/models/digits/promote", {"version": "nosuchversion"}, keys.issued["ops"])
        keys.path.write_text(keys.path.read_text().replace('"format"', '"formats"'))
        keys.next_check()
        broken = call(api, "GET", "/models", key=keys.issued["client"])
    assert_error(broken, 503, "unavailable")
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    assert "-> 401 unauthorized" in logged and "-> 403 forbidden" in logged and "not a valid API keys file" in logged
    for secret in [*keys.issued.values(), wrong]:
        assert secret not in logged


def test_a_missing_keys_file_stops_the_service_before_any_worker_starts(tmp_path: Path) -> None:
    env = {**os.environ, "CLF_API_KEYS_FILE": str(tmp_path / "missing.json")}
    command = [sys.executable, "-c", "import service.app"]  # what `bentoml serve` does first
    project = Path(__file__).resolve().parents[2]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 1 and "cannot read the API keys file" in result.stderr
