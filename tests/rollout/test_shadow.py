"""Shadow versions: they score the served rows after the answers, never change one, count their agreement and log
their decisions beside the served ones."""

from __future__ import annotations

import time
from collections.abc import Callable

import bentoml
import numpy as np
import pydantic
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from service.classifiers import DecisionKeys, Options
from service.database.schema import shadow_predictions
from service.rollout.shadow import agreeing
from service.serving import ModelRegistry
from service.settings import Settings
from service.store import load_model, register_model
from tests.rollout.test_promotion import ROWS, scores, two_versions

WAIT_S = 120.0


def shadow_rows(model: str, version: str, result: str) -> float:
    """This worker's count (0 before the first); the service's metrics live in the default registry."""
    labels = {"model": model, "version": version, "result": result}
    return REGISTRY.get_sample_value("classifier_shadow_rows_total", labels) or 0.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {WAIT_S}s waiting for {what}"
        time.sleep(0.01)


def decisions(tag: str) -> list[str]:
    task = load_model(tag).task
    return [r["label"] for r in task.decide(task.score(ROWS), Options()).records()]


def logged_shadow(key: str) -> sa.Row | None:
    engine = bentoml.get_current_service().log.stores.engine
    with engine.connect() as connection:
        return connection.execute(sa.select(shadow_predictions).where(shadow_predictions.c.key == key)).first()


def test_a_shadow_scores_the_rows_after_the_answer_and_never_changes_it(
    api: TestClient, reconfigure: Callable[..., None]
) -> None:
    name, v1, v2 = two_versions()
    reconfigure(models=name)
    alone = api.post("/predict", json={"model": name, "instances": ROWS.tolist()}).json()
    reconfigure(models=name, shadow=f"{name}:{v2}")
    shadowed = api.post("/predict", json={"model": name, "instances": ROWS.tolist()}).json()
    assert shadowed["version"] == v1
    assert [p["score"] for p in shadowed["predictions"]] == [p["score"] for p in alone["predictions"]]

    expected = sum(a == b for a, b in zip(decisions(f"{name}:{v1}"), decisions(f"{name}:{v2}"), strict=True))
    assert 0 < expected < len(ROWS)  # the two versions disagree on some rows
    wait_for(lambda: shadow_rows(name, v2, "agree") + shadow_rows(name, v2, "disagree") == len(ROWS), "the shadow")
    assert shadow_rows(name, v2, "agree") == expected

    key = shadowed["predictions"][0]["id"].split("-")[0]
    wait_for(lambda: logged_shadow(key) is not None, "the shadow's decisions in the log")
    logged = logged_shadow(key)
    assert logged is not None and (logged.model, logged.version, logged.rows) == (name, v2, len(ROWS))


def test_labels_realize_the_shadows_accuracy_beside_the_served_versions(
    api: TestClient, reconfigure: Callable[..., None]
) -> None:
    name, v1, v2 = two_versions()
    reconfigure(models=name, shadow=f"{name}:{v2}")
    answer = api.post("/predict", json={"model": name, "instances": ROWS.tolist()}).json()
    key = answer["predictions"][0]["id"].split("-")[0]
    wait_for(lambda: logged_shadow(key) is not None, "the shadow's decisions in the log")
    truth = load_breast_cancer().target_names[load_breast_cancer().target][: len(ROWS)]
    items = [{"prediction_id": p["id"], "label": str(t)} for p, t in zip(answer["predictions"], truth, strict=True)]
    assert api.post("/feedback", json={"feedback": items}).json()["accepted"] == len(ROWS)

    figures = {v["version"]: v for v in api.get(f"/models/{name}/performance").json()["versions"]}
    for version in (v1, v2):
        right = np.mean([d == t for d, t in zip(decisions(f"{name}:{version}"), truth, strict=True)])
        assert figures[version]["labelled"] == len(ROWS)
        assert figures[version]["accuracy"] == pytest.approx(right)
    assert figures[v1]["accuracy"] != figures[v2]["accuracy"]


def test_the_admin_route_sets_and_stops_a_shadow_on_every_worker(
    api: TestClient, reconfigure: Callable[..., None]
) -> None:
    name, v1, v2 = two_versions()
    reconfigure(models=name, admin=True)
    service = bentoml.get_current_service()
    other = ModelRegistry.load(service.settings, service.metrics, service.log)  # another worker
    started = api.put(f"/admin/models/{name}/shadow", json={"version": v2})
    assert started.status_code == 200, started.text
    assert started.json() == {"model": name, "version": v1, "shadow": v2}
    scores(api, name)
    wait_for(lambda: shadow_rows(name, v2, "agree") + shadow_rows(name, v2, "disagree") == len(ROWS), "the shadow")
    assert service.log.stores.rollout.rollout().shadows[name] == v2  # recorded: other workers follow
    assert api.get(f"/models/{name}").json()["shadow"] == v2
    assert REGISTRY.get_sample_value("classifier_shadow_info", {"model": name, "version": v2}) == 1
    other.rollout.follow()  # its next poll
    assert other.served[name].shadow is not None and other.served[name].shadow.version == v2

    stopped = api.delete(f"/admin/models/{name}/shadow")
    assert stopped.status_code == 200 and stopped.json()["shadow"] is None
    scores(api, name)
    assert bentoml.get_current_service().registry.served[name].shadow is None
    assert name not in service.log.stores.rollout.rollout().shadows
    other.rollout.follow()
    assert other.served[name].shadow is None


def test_a_shadow_must_take_the_same_rows(api: TestClient, reconfigure: Callable[..., None]) -> None:
    name, v1, _ = two_versions()
    X, y = load_digits(return_X_y=True)
    other = register_model(
        name, "multiclass", LogisticRegression(max_iter=3000).fit(X, y.astype(str)), X, y.astype(str)
    )
    reconfigure(models=f"{name}:{v1}", admin=True)
    refused = api.put(f"/admin/models/{name}/shadow", json={"version": other.split(":")[1]})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "version"
    reconfigure(models=f"{name}:{v1}", shadow=other)  # configured: served without it, and said in the log
    assert bentoml.get_current_service().registry.served[name].shadow is None


def test_a_shadow_that_falls_behind_skips_rows_and_counts_them(
    api: TestClient, reconfigure: Callable[..., None]
) -> None:
    name, v1, v2 = two_versions()
    reconfigure(models=name, shadow=f"{name}:{v2}", shadow_max_pending_rows=len(ROWS) - 1)
    assert scores(api, name)[0] == v1
    assert shadow_rows(name, v2, "skipped") == len(ROWS)


def test_a_shadow_names_its_version() -> None:
    with pytest.raises(pydantic.ValidationError, match="name a version"):
        Settings(shadow="breast_cancer")
    assert Settings(shadow="a:v1, b:v2").shadow == ("a:v1", "b:v2")


def test_agreement_is_counted_over_each_sides_own_keys() -> None:
    ours = DecisionKeys(["b", "a", None], np.array([0, 1, 2, 1, 0]))  # b a None a b
    theirs = DecisionKeys(["a", "c", None, "b"], np.array([3, 0, 2, 1, 3]))  # b a None c b
    assert agreeing(ours, theirs) == 4
