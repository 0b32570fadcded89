"""The model's default decisions are computed once per model call and read, as one object, by monitoring, the
prediction log and the shadow runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from service.classifiers import DecisionKeys, DefaultDecisions, Scored
from service.feedback.log import Entry
from service.observations import Observations
from tests.rollout.test_promotion import ROWS, two_versions


@pytest.mark.parametrize("batching", [True, False])
def test_monitoring_the_log_and_the_shadow_read_one_default_decisions_per_model_call(
    api: TestClient, reconfigure: Callable[..., None], monkeypatch: pytest.MonkeyPatch, batching: bool
) -> None:
    name, _, v2 = two_versions()
    reconfigure(models=name, shadow=f"{name}:{v2}", batching=batching)
    registry = bentoml.get_current_service().registry
    served = registry.served[name]
    task = served.model.task

    computed: list[DefaultDecisions] = []
    compute = task.default_decisions

    def counted(scores: Any) -> DefaultDecisions:
        computed.append(compute(scores))
        return computed[-1]

    observe = task.observe
    monitored: list[np.ndarray] = []

    def observed_with(scores: Any, expected_correct: np.ndarray) -> Observations:
        monitored.append(expected_correct)
        return observe(scores, expected_correct)

    observed: list[Observations] = []
    logged: list[Entry] = []
    shadowed: list[Scored] = []
    monkeypatch.setattr(task, "default_decisions", counted)
    monkeypatch.setattr(task, "observe", observed_with)
    monkeypatch.setattr(served.monitor, "observe_prediction", observed.append)
    if served.batcher is not None:  # bound when the batcher was built
        monkeypatch.setattr(served.batcher.to_observe, "observe_decisions", observed.append)
    monkeypatch.setattr(registry.log, "submit", logged.append)
    monkeypatch.setattr(registry.shadows, "submit", lambda task, shadow, key, X, scored: shadowed.append(scored))

    answer = api.post("/predict", json={"model": name, "instances": ROWS.tolist()})
    assert answer.status_code == 200, answer.text
    assert api.get("/metrics").status_code == 200  # hands monitoring the model calls waiting for it

    assert len(computed) == 1  # one model call: computed once, not once per reader
    (defaults,) = computed
    assert [entry.scored.defaults for entry in logged] == [defaults] and logged[0].scored.defaults is defaults
    assert len(shadowed) == 1 and shadowed[0].defaults is defaults
    assert len(monitored) == 1 and monitored[0] is defaults.expected_correct
    assert len(observed) == 1 and observed[0].expected_correct is defaults.expected_correct
    assert (logged[0].scored.start, logged[0].scored.stop) == (0, len(ROWS))


def test_the_default_decisions_of_a_joined_call_are_those_of_its_requests_alone(catalog: dict[str, str]) -> None:
    """What the log and the shadow read of one request's rows (`Scored`), and the default decisions of calls joined
    for monitoring, equal the default decisions of each request's rows alone, for every task kind."""
    from service.store import load_model
    from tests.helpers import catalog_rows

    bounds = ((0, 2), (2, 7), (7, 9))
    for model in ("breast_cancer", "digits", "digit_groups", "digit_attributes"):
        task = load_model(catalog[model]).task
        X = catalog_rows(model, 9)
        scores = task.score(X)
        whole = task.default_decisions(scores)
        alone = [task.default_decisions(task.score(X[a:b])) for a, b in bounds]
        for (a, b), part in zip(bounds, alone, strict=True):
            scored = Scored(task.slice_scores(scores, a, b), whole, a, b)
            assert scored.decision_keys.tolist() == part.keys.tolist(), model
            np.testing.assert_allclose(scored.expected_correct, part.expected_correct, rtol=1e-9)
        joined = DecisionKeys.join([part.keys for part in alone])
        assert joined.tolist() == whole.keys.tolist(), model
        expected_correct = np.concatenate([part.expected_correct for part in alone])
        np.testing.assert_allclose(expected_correct, whole.expected_correct, rtol=1e-9)
        observed = task.observe(scores, expected_correct)
        assert observed.expected_correct is expected_correct


def test_decision_keys_of_batches_that_decided_other_keys_join_by_key() -> None:
    """Multilabel batches each key the sets they decided: joined, every row keeps its own key."""
    first = DecisionKeys(["a", "a|b"], np.array([1, 0, 1]))
    second = DecisionKeys(["b", "a"], np.array([0, 1]))
    joined = DecisionKeys.join([first, second])
    assert joined.tolist() == ["a|b", "a", "a|b", "b", "a"]
    assert sorted(joined.keys) == ["a", "a|b", "b"]  # each key once
