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

    observed: list[Observations] = []
    logged: list[Entry] = []
    shadowed: list[Scored] = []
    monkeypatch.setattr(task, "default_decisions", counted)
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
    assert len(observed) == 1 and observed[0] is defaults.observations
    assert (logged[0].scored.start, logged[0].scored.stop) == (0, len(ROWS))


def test_the_default_decisions_of_a_joined_call_are_those_of_its_requests_alone(catalog: dict[str, str]) -> None:
    """What the log and the shadow read of one request's rows (`Scored`), and what monitoring reads of calls joined,
    equal the default decisions of each request's rows alone, for every task kind."""
    from service.store import load_model
    from tests.helpers import catalog_rows

    for model in ("breast_cancer", "digits", "digit_groups", "digit_attributes"):
        task = load_model(catalog[model]).task
        X = catalog_rows(model, 9)
        whole = task.default_decisions(task.score(X))
        parts = [task.default_decisions(task.score(X[a:b])) for a, b in ((0, 2), (2, 7), (7, 9))]
        for (a, b), part in zip(((0, 2), (2, 7), (7, 9)), parts, strict=True):
            scored = Scored(task.slice_scores(task.score(X), a, b), whole, a, b)
            assert scored.decision_keys.tolist() == part.keys.tolist(), model
            np.testing.assert_allclose(scored.expected_correct, part.expected_correct, rtol=1e-9)
        assert DecisionKeys.join([p.keys for p in parts]).tolist() == whole.keys.tolist(), model
        joined = Observations.join([p.observations for p in parts])
        assert {k: list(v) for k, v in joined.labels.items()} == {
            k: list(v) for k, v in whole.observations.labels.items()
        }
        assert list(joined.drift_labels) == list(whole.observations.drift_labels), model
        assert (joined.drift_labels is joined.labels.get("")) == (
            whole.observations.drift_labels is whole.observations.labels.get("")
        ), model  # flat tasks: one list, counted once
        for field in ("confidence", "margin", "labels_per_instance", "path_depth", "expected_correct"):
            got, expected = getattr(joined, field), getattr(whole.observations, field)
            assert (got is None) == (expected is None), (model, field)
            if expected is not None:
                np.testing.assert_allclose(got, expected, rtol=1e-9, err_msg=f"{model} {field}")
        assert (joined.abstentions, joined.incomplete_paths) == (
            whole.observations.abstentions,
            whole.observations.incomplete_paths,
        ), model
