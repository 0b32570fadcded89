"""Promotion and rollback, live: `POST /admin/models/{name}/promote`, `python -m models promote`, and workers that
follow a promotion recorded by another one."""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bentoml
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from starlette.testclient import TestClient

from models.__main__ import BAD_DATA_EXIT, main
from service.serving import ModelRegistry
from service.store import register_model
from tests.helpers import Samples, scrape

ROWS = load_breast_cancer().data[:40]


def two_versions() -> tuple[str, str, str]:
    """A model with a served version and a candidate that scores differently: (name, v1, v2)."""
    data = load_breast_cancer()
    X, y = data.data, data.target_names[data.target]
    name = f"promoted_{uuid.uuid4().hex[:8]}"
    tags = [
        register_model(
            name,
            "binary",
            make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(X[:400], y[:400]),
            X[400:],
            y[400:],
            positive_class="malignant",
            candidate=candidate,
        )
        for c, candidate in ((1.0, False), (0.001, True))
    ]
    return name, tags[0].split(":")[1], tags[1].split(":")[1]


def scores(api: TestClient, model: str) -> tuple[str, list[float]]:
    response = api.post("/predict", json={"model": model, "instances": ROWS.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["version"], [p["score"] for p in body["predictions"]]


def promote(api: TestClient, model: str, version: Any) -> Any:
    """Promote `version`, forced: these tests promote candidates nobody compared or shadowed (tests/auth/test_admin)."""
    return api.post(f"/admin/models/{model}/promote", json={"version": version, "force": True})


def test_a_candidate_is_served_only_once_promoted_and_a_rollback_is_a_promotion(
    api: TestClient, served: tuple[str, str, str]
) -> None:
    name, v1, v2 = served
    assert scores(api, name)[0] == v1  # `latest` skips the candidate
    response = promote(api, name, v2)
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("model", "version", "previous")} == {
        "model": name,
        "version": v2,
        "previous": v1,
    }
    version, promoted_scores = scores(api, name)
    assert version == v2 and api.get(f"/models/{name}").json()["version"] == v2
    assert promote(api, name, v1).json()["previous"] == v2  # rollback
    version, first_scores = scores(api, name)
    assert version == v1 and not np.allclose(first_scores, promoted_scores)


def test_another_worker_follows_the_promotion_and_a_new_one_starts_on_it(
    api: TestClient, served: tuple[str, str, str]
) -> None:
    name, v1, v2 = served
    service = bentoml.get_current_service()
    other = ModelRegistry.load(service.settings, service.metrics, service.log)  # a worker started before
    assert other.served[name].model.version == v1
    assert promote(api, name, v2).status_code == 200
    other.rollout.follow()  # its next poll
    assert other.served[name].model.version == v2
    assert ModelRegistry.load(service.settings, service.metrics, service.log).served[name].model.version == v2


def test_a_version_that_could_not_be_served_is_not_recorded_as_served(
    api: TestClient, served: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version is known to the log (its figures realized, listed among the versions served) once the registry
    serves it: a promotion that fails while making its monitor leaves the served version and the log as they were."""
    name, v1, v2 = served
    service = bentoml.get_current_service()

    def no_window_files(*_: Any) -> Any:
        raise OSError("no space left for the window files")

    monkeypatch.setattr(ModelRegistry, "serving", no_window_files)
    assert promote(api, name, v2).status_code == 500
    assert scores(api, name)[0] == v1
    assert service.log.versions.get(service.log.stores.rollout, name, v2) is None
    monkeypatch.undo()
    assert promote(api, name, v2).status_code == 200
    assert service.log.versions.get(service.log.stores.rollout, name, v2) is not None


def versions_of(samples: Samples, name: str, model: str) -> set[str]:
    """The versions of `model` that `name` has series for."""
    return {labels["version"] for sample, key in samples if sample == name and (labels := dict(key))["model"] == model}


def test_the_metrics_of_a_request_carry_the_version_that_answered_it(
    api: TestClient, served: tuple[str, str, str]
) -> None:
    """Before the promotion every series of the model names v1; after it the requests, decisions, baselines and
    drift gauges of v2 are series of their own, and the model info says which version is served."""
    name, v1, v2 = served
    scores(api, name)
    before = scrape(api)
    for family in ("classifier_requests_total", "classifier_predictions_total", "classifier_validation_accuracy"):
        assert versions_of(before, family, name) == {v1}, family
    assert promote(api, name, v2).status_code == 200
    scores(api, name)
    after = scrape(api)
    ok = {("model", name), ("endpoint", "/predict"), ("code", "ok")}
    for version in (v1, v2):
        assert after[("classifier_requests_total", frozenset(ok | {("version", version)}))] == 1.0
        assert after[
            ("classifier_rows_total", frozenset({("model", name), ("version", version), ("outcome", "accepted")}))
        ] == len(ROWS)
    for family in (
        "classifier_predictions_total",
        "classifier_prediction_confidence_count",
        "classifier_estimated_rows_total",
        "classifier_validation_accuracy",
        "classifier_model_trained_timestamp_seconds",
    ):
        assert versions_of(after, family, name) == {v1, v2}, family
    # computed at scrape time: the served version only
    assert versions_of(after, "classifier_drift_window_rows", name) == {v2}
    assert versions_of(after, "classifier_model_info", name) == {v1, v2}
    info = {
        v: after[("classifier_model_info", frozenset({("model", name), ("version", v), ("task", "binary")}))]
        for v in (v1, v2)
    }
    assert info == {v1: 0.0, v2: 1.0}


def test_requests_during_promotions_each_get_one_whole_version(api: TestClient, served: tuple[str, str, str]) -> None:
    name, v1, v2 = served
    expected = {v1: scores(api, name)[1]}
    promote(api, name, v2)
    expected[v2] = scores(api, name)[1]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = [pool.submit(scores, api, name) for _ in range(60)]
        for version in [v1, v2] * 5:
            assert promote(api, name, version).status_code == 200
        results = [answer.result() for answer in answers]
    for version, got in results:  # each answer's scores are those of the version it names
        assert np.allclose(got, expected[version])


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"version": "nosuchversion"}, 404, "unknown_model"),
        ({"version": "latest"}, 400, "invalid_input"),
        ({"version": "bad version!"}, 404, "unknown_model"),
        ({"version": 3}, 400, "invalid_input"),
        ({}, 400, "invalid_input"),
    ],
)
def test_bad_promotions_are_refused_with_the_contract_error(
    api: TestClient, served: tuple[str, str, str], body: dict[str, Any], status: int, code: str
) -> None:
    name, v1, _ = served
    response = api.post(f"/admin/models/{name}/promote", json={**body, "force": True} if body else body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert scores(api, name)[0] == v1


def test_admin_routes_are_off_by_default_and_pinned_models_do_not_move(
    api: TestClient, reconfigure: Callable[..., None]
) -> None:
    name, v1, v2 = two_versions()
    reconfigure(models=name)
    off = promote(api, name, v2)
    assert off.status_code == 403 and off.json()["error"]["code"] == "forbidden"
    reconfigure(models=f"{name}:{v1}", admin=True)
    pinned = promote(api, name, v2)
    assert pinned.status_code == 400 and "pinned" in pinned.json()["error"]["message"]
    unknown = promote(api, "nosuchmodel", v2)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_model"


def test_the_promote_command_records_the_version_for_every_worker(
    api: TestClient, reconfigure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    name, v1, v2 = two_versions()
    reconfigure(models=name)
    service = bentoml.get_current_service()
    assert main(["promote", f"{name}:{v2}"]) == BAD_DATA_EXIT  # a candidate nobody compared or shadowed
    assert "--force" in capsys.readouterr().err and service.log.stores.rollout.admin_actions(name) == []
    assert main(["promote", f"{name}:{v2}", "--force"]) == 0
    assert f"promoted {name}:{v2}" in capsys.readouterr().out
    service.registry.rollout.follow()
    assert scores(api, name)[0] == v2
    (action,) = service.log.stores.rollout.admin_actions(name)
    assert (action.caller, action.action, action.from_version, action.to_version) == (
        f"cli:{getpass.getuser()}",
        "promote",
        v1,
        v2,
    )
    assert main(["promote", name]) == BAD_DATA_EXIT
    assert main(["promote", f"{name}:nosuchversion"]) == BAD_DATA_EXIT
