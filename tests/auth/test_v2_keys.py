"""The Open Inference Protocol's routes take API keys as `/predict` does (scope `predict`), with the protocol's error
body."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from tests.auth.conftest import Keys
from tests.helpers import catalog_rows
from tests.v2.test_routes import assert_v2_error, tensor_body


def test_v2_routes_take_a_key_with_the_predict_scope(keyed: Callable[..., Keys], api: TestClient) -> None:
    keys = keyed(caller=("predict",), reader=("feedback",))
    body = tensor_body("digits", catalog_rows("digits", 1))
    assert_v2_error(api.post("/v2/models/digits/infer", json=body), 401, "unauthorized")
    denied = api.post("/v2/models/digits/infer", json=body, headers={"X-API-Key": keys.issued["reader"]})
    assert_v2_error(denied, 403, "forbidden", "predict")
    allowed = api.post("/v2/models/digits/infer", json=body, headers={"X-API-Key": keys.issued["caller"]})
    assert allowed.status_code == 200, allowed.text
