"""The model card: what registration writes is what loading reads, the stored format of earlier releases still
parses, and a bad field is named by its path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import bentoml
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from service.card import Decision, InvalidCardError, ModelCard
from service.store import register_model

# the fields a version registered before them lacks, and what each reads as when absent
LATER_FIELDS = (
    "ignored_columns",
    "class_prior",
    "level_distribution",
    "reference_rows",
    "calibration",
    "monitored_features",
    "reconstruction",
    "training",
)


@pytest.fixture(scope="module")
def stored() -> dict[str, Any]:
    """The metadata of a binary model registered with training rows and a refit: every field written."""
    data = load_breast_cancer()
    X, y = data.data[:, :8], data.target_names[data.target]
    estimator = LogisticRegression(max_iter=5000).fit(X[:300], y[:300])
    tag = register_model(
        "card_binary",
        "binary",
        estimator,
        X[300:450],
        y[300:450],
        X_train=X[:300],
        y_train=y[:300],
        refit=lambda rows, labels: LogisticRegression(max_iter=5000).fit(rows, labels),
        training={"split": "by hand", "target": "diagnosis"},
        positive_class="malignant",
    )
    return copy.deepcopy(dict(bentoml.models.get(tag).info.metadata))


def test_the_stored_metadata_is_the_card_written_and_read_back(stored: dict[str, Any]) -> None:
    """Writer and reader are one type: parsing the stored metadata and writing it again gives it back unchanged."""
    card = ModelCard.parse(stored)
    assert card.to_metadata() == stored
    assert set(LATER_FIELDS) <= set(stored)  # the round trip covered every optional field
    assert card.reconstruction is not None and card.calibration is not None and card.calibration.folds == 5
    assert (card.training.split, card.training.target) == ("by hand", "diagnosis")


@pytest.mark.parametrize(
    "decision",
    [
        Decision(),
        Decision(positive_class="yes", threshold=0.25, objective="f1"),
        Decision(layout="joint", thresholds=(0.5, 0.125), objective="precision-at-recall=0.9"),
        Decision(hierarchy={"__root__": ("a", "b"), "a": ("a1", "a2")}),
    ],
)
def test_every_task_kinds_decision_round_trips(stored: dict[str, Any], decision: Decision) -> None:
    assert ModelCard.parse({**stored, "decision": decision.to_metadata()}).decision == decision


def test_a_card_of_an_earlier_release_parses_with_what_absent_fields_meant(stored: dict[str, Any]) -> None:
    older = {key: value for key, value in stored.items() if key not in LATER_FIELDS}
    card = ModelCard.parse(older)
    assert card.features.ignored == () and card.class_prior is None and card.level_distribution == ()
    assert card.reference_rows is None and card.calibration is None and card.reconstruction is None
    assert card.monitored == card.features.names  # every feature, in column order
    assert card.training.options == {} and card.training.split is None
    assert card.logged == ModelCard.parse(stored).logged  # what the prediction log keeps does not change


def edit(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edited(stored: dict[str, Any]) -> dict[str, Any]:
        changed = copy.deepcopy(stored)
        change(changed)
        return changed

    return edited


BAD_FIELDS: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    # damage -> (edit, the field named, the message's words)
    "missing": (lambda m: m.pop("sklearn_version"), "sklearn_version", "lacks 'sklearn_version'"),
    "missing nested": (lambda m: m["features"].pop("names"), "features.names", "lacks 'features.names'"),
    "a string for a number": (
        lambda m: m["decision"].update(threshold="high"),
        "decision.threshold",
        "'decision.threshold' is not a number: 'high'",
    ),
    "a string for a flag": (
        lambda m: m["features"].update(allows_missing="yes"),
        "features.allows_missing",
        "is not true or false",
    ),
    "one bad edge": (
        lambda m: m["reference_profile"]["x0"]["edges"].__setitem__(1, "a"),
        "reference_profile.x0.edges.1",
        "is not a number",
    ),
    "an unknown profile kind": (
        lambda m: m["reference_profile"]["x0"].update(kind="ordinal"),
        "reference_profile.x0.kind",
        "is not numeric, categorical or text: 'ordinal'",
    ),
    "not a time": (lambda m: m.update(trained_at="yesterday"), "trained_at", "is not an ISO time"),
    "a list for an object": (lambda m: m.update(metrics=[0.9]), "metrics", "'metrics' is not an object: [0.9]"),
    "a negative count": (lambda m: m["calibration"].update(rows=-1), "calibration.rows", "is not a count"),
    "a class that is not a label": (lambda m: m.update(classes=[None, "x"]), "classes", "is not a list of labels"),
}


@pytest.mark.parametrize("damage", list(BAD_FIELDS))
def test_a_bad_field_is_named_by_its_path(stored: dict[str, Any], damage: str) -> None:
    change, field, words = BAD_FIELDS[damage]
    with pytest.raises(InvalidCardError) as raised:
        ModelCard.parse(edit(change)(stored))
    assert raised.value.field == field and words in str(raised.value)


def test_a_feature_without_its_profile_is_refused(stored: dict[str, Any]) -> None:
    """Monitoring bins each feature by its reference: a card without one fails at load, not at the first row."""
    changed = edit(lambda m: m["reference_profile"].pop("x3"))(stored)
    with pytest.raises(InvalidCardError, match="'reference_profile.x3' is not a numeric feature's profile: None"):
        ModelCard.parse(changed)
