"""The model store: registering a user's estimator, what its metadata holds, and safe loading."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import bentoml
import numpy as np
import pytest
import sklearn
import skops.io
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from service.card import METADATA_SCHEMA, CalibrationMap, CategoricalProfile, NumericProfile, ReferenceRows
from service.classifiers import InvalidInputError, InvalidModelError, Options
from service.classifiers.evaluation import decision_correctness
from service.serving import describe_model
from service.store import OWNER_LABEL, TRUSTED_TYPES, load_model, read_estimators, register_model
from tests.classifiers.fakes import predict
from tests.helpers import cancer_rows, register_colors_model

PROJECT = Path(__file__).resolve().parents[1]


class Memorised(ClassifierMixin, BaseEstimator):
    """A classifier type of this test module: not in the trusted list, so the store must refuse it."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Memorised:
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


def save_model(name: str, task: str, estimators: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    """Write estimators (skops) and metadata as given, unchecked, as a new version of `name`; returns the tag. A
    store as an earlier release (or a damaged file) left it: the service itself writes only a checked `ModelCard`."""
    files = {key: f"estimator-{i}.skops" for i, key in enumerate(estimators)}
    stored = {**metadata, "schema": METADATA_SCHEMA, "task": task, "estimators": files}
    with bentoml.models.create(name, labels={"owner": OWNER_LABEL, "task": task}, metadata=stored) as model:
        for key, file in files.items():
            Path(model.path_of(file)).write_bytes(skops.io.dumps(estimators[key]))
    return str(model.tag)


def cancer_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, _ = cancer_rows()
    from sklearn.datasets import load_breast_cancer

    y = load_breast_cancer().target_names[load_breast_cancer().target]
    return X[:400], X[400:], y[:400], y[400:]


def test_register_user_estimator_records_everything_monitoring_needs() -> None:
    X_train, X_val, y_train, y_val = cancer_split()
    estimator = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X_train, y_train)
    tag = register_model(
        "user_hgb", "binary", estimator, X_val, y_val, X_train=X_train, y_train=y_train, positive_class="malignant"
    )
    model = load_model(tag)
    card = model.card
    assert card.task == "binary" and card.classes == ("benign", "malignant")
    assert card.sklearn_version == sklearn.__version__
    assert card.decision.threshold is not None and 0 < card.decision.threshold < 1
    assert card.decision.positive_class == "malignant"
    assert {"accuracy", "macro_f1", "log_loss", "ece", "mean_confidence"} <= set(card.validation.figures)
    assert card.class_prior is not None and card.class_prior["malignant"] == pytest.approx(
        np.mean(y_train == "malignant")
    )
    assert sum(card.prediction_distribution.values()) == pytest.approx(1.0)
    assert card.features.names == tuple(f"x{i}" for i in range(30))
    profile = card.reference_profile["x0"]
    assert isinstance(profile, NumericProfile)
    assert profile.minimum == X_train[:, 0].min() and profile.maximum == X_train[:, 0].max()
    assert sum(profile.proportions) == pytest.approx(1.0) and profile.missing_rate == 0.0
    assert card.reference_rows == ReferenceRows(training=len(X_train), calibration=len(X_val))
    # HistGradientBoosting handles missing values, so null is accepted and reaches the model as NaN
    assert card.features.allows_missing is True
    X = model.task.validate([[None] + X_val[0, 1:].tolist()])
    assert np.isnan(X[0, 0])
    assert predict(model.task, X, Options()).decided_labels[0] in ("benign", "malignant")


def test_model_without_missing_value_support_rejects_null() -> None:
    X_train, X_val, y_train, y_val = cancer_split()
    estimator = LogisticRegression(max_iter=5000).fit(X_train, y_train)
    model = load_model(register_model("user_lr", "binary", estimator, X_val, y_val))
    with pytest.raises(InvalidInputError, match="x3"):
        model.task.validate([[1.0, 2.0, 3.0, None] + [0.0] * 26])


def test_categorical_pipeline_takes_strings_only_where_encoded() -> None:
    tag = register_colors_model("user_categorical")
    model = load_model(tag)
    assert isinstance(model.card.reference_profile["color"], CategoricalProfile)
    rows = model.task.validate([["red", 0.0], {"size": 2.0, "color": "purple"}])
    assert predict(model.task, rows, Options()).decided_labels[0] == "yes"
    with pytest.raises(InvalidInputError, match="size"):
        model.task.validate([["red", "big"]])
    with pytest.raises(InvalidInputError, match="color"):
        model.task.validate([[3.0, 1.0]])


def test_a_model_registered_from_python_names_the_other_columns_its_rows_may_hold() -> None:
    """`ignored_columns`: keys an object row may carry besides the features, dropped before the model; none by
    default."""
    model = load_model(register_colors_model("user_ignoring", ignored_columns=["customer", "signup"]))
    assert model.card.features.ignored == ("customer", "signup")
    X = model.task.validate([{"customer": "c-1", "color": "red", "size": 0.0, "signup": "2026-01-01"}])
    assert X.tolist() == [["red", 0.0]]
    with pytest.raises(InvalidInputError, match="unknown feature 'signup_at'"):
        model.task.validate([{"color": "red", "size": 0.0, "signup_at": "2026-01-01"}])
    plain = load_model(register_colors_model("user_not_ignoring"))
    assert plain.card.features.ignored == () and describe_model(plain, 100)["ignored_columns"] == []


@pytest.mark.parametrize(
    ("ignored", "message"),
    [
        (["customer", "size"], "'size' is both a feature and an ignored column"),
        (["customer", "customer"], "'customer' is listed twice"),
        ("customer", "column names"),
        ([7], "column names"),
    ],
)
def test_ignored_columns_that_are_features_or_not_names_are_refused_at_registration(ignored: Any, message: str) -> None:
    with pytest.raises(InvalidModelError, match=message):
        register_colors_model("user_bad_ignored", ignored_columns=ignored)
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.models.list("user_bad_ignored")


def test_a_model_stored_before_ignored_columns_existed_ignores_none() -> None:
    """Metadata without `ignored_columns` (registered by an earlier release): loads, lists none, refuses extra keys."""
    tag = register_colors_model("user_before_ignored")
    metadata = dict(bentoml.models.get(tag).info.metadata)
    del metadata["ignored_columns"]
    model = load_model(save_model("user_before_ignored", "binary", read_estimators(tag), metadata))
    assert model.card.features.ignored == () and model.task.features.ignored == ()
    assert describe_model(model, 100)["ignored_columns"] == []
    with pytest.raises(InvalidInputError, match="unknown feature 'customer'"):
        model.task.validate([{"color": "red", "size": 0.0, "customer": "c-1"}])


def test_dataframe_fitted_model_gets_a_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    X_train, X_val, y_train, y_val = cancer_split()
    columns = [f"f{i}" for i in range(30)]
    estimator = LogisticRegression(max_iter=5000).fit(pd.DataFrame(X_train, columns=columns), y_train)
    model = load_model(register_model("user_frame", "binary", estimator, pd.DataFrame(X_val, columns=columns), y_val))
    assert model.card.features.names == tuple(columns) and model.card.features.as_frame
    frame = model.task.validate(X_val[:3].tolist())
    assert list(frame.columns) == columns
    np.testing.assert_array_equal(
        model.task.score(frame), estimator.predict_proba(pd.DataFrame(X_val[:3], columns=columns))
    )


def test_untrusted_types_are_refused_unless_listed() -> None:
    X_train, X_val, y_train, y_val = cancer_split()
    estimator = Memorised().fit(X_train, y_train)
    trusted = LogisticRegression(max_iter=5000).fit(X_train, y_train)
    metadata = bentoml.models.get(register_model("user_trusted", "binary", trusted, X_val, y_val)).info.metadata
    tag = save_model("user_untrusted", "binary", {"model": estimator}, metadata)
    with pytest.raises(InvalidModelError, match=re.escape(f"{__name__}.Memorised")):
        load_model(tag)
    assert load_model(tag, trusted_types=[f"{__name__}.Memorised"]).task.name == "binary"


def test_a_model_the_service_would_refuse_is_never_saved() -> None:
    X_train, X_val, y_train, y_val = cancer_split()
    with pytest.raises(InvalidModelError, match=re.escape(f"{__name__}.Memorised")):
        register_model("user_refused", "binary", Memorised().fit(X_train, y_train), X_val, y_val)
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.models.list("user_refused")  # no version, not even one that fails to load


def test_other_sklearn_minor_release_is_refused() -> None:
    X_train, _, y_train, _ = cancer_split()
    metadata = {
        "classes": ["benign", "malignant"],
        "features": {"names": [f"x{i}" for i in range(30)]},
        "decision": {"positive_class": "malignant", "threshold": 0.5},
        "sklearn_version": "1.0.2",
    }
    tag = save_model("user_old", "binary", {"model": LogisticRegression(max_iter=5000).fit(X_train, y_train)}, metadata)
    with pytest.raises(InvalidModelError, match="1.0.2"):
        load_model(tag)


def test_unknown_task_fails_at_registration() -> None:
    X_train, X_val, y_train, y_val = cancer_split()
    with pytest.raises(InvalidModelError, match="unknown task 'ranking'"):
        register_model("user_rank", "ranking", LogisticRegression(max_iter=5000).fit(X_train, y_train), X_val, y_val)


def test_no_code_path_unpickles_without_a_trusted_list() -> None:
    sources = [p for folder in ("service", "models") for p in (PROJECT / folder).rglob("*.py")]
    text = "\n".join(p.read_text() for p in sources)
    assert not re.search(r"pickle\.loads?\(|joblib\.load\(|cloudpickle|trusted=True", text)
    assert "skops.io.load(path, trusted=sorted(trusted))" in text
    assert all(name.startswith("sklearn.") or name == "numpy.dtype" for name in TRUSTED_TYPES)


def noisy_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two features; the label follows the first through noise, so about one row in seven is decided wrong."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, np.where(X[:, 0] + rng.normal(scale=0.5, size=n) > 0, "yes", "no")


def lucky_validation_set() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A model, its 1,000 training rows, and 60 validation rows it happens to decide right, every one: the
    sampling luck a small validation set can have."""
    X_train, y_train = noisy_rows(1000, seed=1)
    estimator = LogisticRegression().fit(X_train, y_train)
    X_pool, y_pool = noisy_rows(400, seed=2)
    right = np.flatnonzero(estimator.predict(X_pool) == y_pool)[:60]
    return estimator, X_train, y_train, X_pool[right], y_pool[right]


def estimate_and_realized(tag: str) -> tuple[float, float]:
    """The model's label-free accuracy estimate and its realized accuracy, on 5,000 fresh rows."""
    task = load_model(tag).task
    confidence, correct = decision_correctness(task, *noisy_rows(5000, seed=3))
    return float(task.calibration(confidence).mean()), float(correct.mean())


def test_a_refittable_model_calibrates_its_confidence_out_of_fold_on_every_labelled_row() -> None:
    """Fitted on the lucky validation rows alone, the calibration maps every confidence to 1; given the recipe to
    refit with, registration scores each fifth of the training rows by a model refitted on the other four fifths
    (never on a validation row) and the estimate meets the accuracy on new rows."""
    estimator, X_train, y_train, X_val, y_val = lucky_validation_set()
    alone = register_model("lucky", "binary", estimator, X_val, y_val, X_train=X_train, y_train=y_train)
    assert load_model(alone).card.calibration == CalibrationMap(ANY, ANY, rows=len(X_val), folds=0)
    assert estimate_and_realized(alone)[0] > 0.99  # the validation rows' luck, carried into every estimate

    refitted_on: list[np.ndarray] = []

    def refit(X: np.ndarray, y: np.ndarray) -> LogisticRegression:
        refitted_on.append(X)
        return LogisticRegression().fit(X, y)

    tag = register_model("lucky", "binary", estimator, X_val, y_val, X_train=X_train, y_train=y_train, refit=refit)
    calibration = load_model(tag).card.calibration
    assert calibration is not None and (calibration.folds, calibration.rows) == (5, 1060)
    assert [len(X) for X in refitted_on] == [800] * 5
    held_out = [set(map(tuple, X_train.tolist())) - set(map(tuple, X.tolist())) for X in refitted_on]
    assert set().union(*held_out) == set(map(tuple, X_train.tolist()))  # every training row held out once
    assert sum(map(len, held_out)) == len(X_train)
    assert all(not set(map(tuple, X_val.tolist())) & set(map(tuple, X.tolist())) for X in refitted_on)
    estimate, realized = estimate_and_realized(tag)
    assert realized < 0.9 and abs(estimate - realized) < 0.03


def test_a_model_that_cannot_be_refitted_is_calibrated_on_its_validation_rows() -> None:
    estimator, X_train, y_train, X_val, y_val = lucky_validation_set()

    def refit(X: np.ndarray, y: np.ndarray) -> LogisticRegression:
        raise ValueError("a class is missing from these rows")

    tag = register_model("lucky", "binary", estimator, X_val, y_val, X_train=X_train, y_train=y_train, refit=refit)
    assert load_model(tag).card.calibration == CalibrationMap(ANY, ANY, rows=60, folds=0)


def test_a_refit_that_fits_the_registered_estimator_again_is_refused_and_nothing_is_saved() -> None:
    """Refitting in place would serve the last fold's model: registration stops before it saves anything."""
    estimator, X_train, y_train, X_val, y_val = lucky_validation_set()
    with pytest.raises(TypeError, match="newly fitted"):
        register_model(
            "refit_in_place", "binary", estimator, X_val, y_val, X_train=X_train, y_train=y_train, refit=estimator.fit
        )
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.models.get("refit_in_place:latest")


def test_monitored_features_as_ranked_at_registration_none_when_absent_every_feature() -> None:
    """`GET /models` lists the ranked features: an empty ranking (every feature text) stays empty, and a model
    stored before the ranking existed lists every feature in column order."""
    tag = register_colors_model("user_ranked")
    metadata = dict(bentoml.models.get(tag).info.metadata)
    ranked = load_model(tag)
    assert sorted(describe_model(ranked, 100)["monitored_features"]) == ["color", "size"]
    unranked = {**metadata, "monitored_features": []}
    empty = load_model(save_model("user_ranked", "binary", read_estimators(tag), unranked))
    assert describe_model(empty, 100)["monitored_features"] == []
    del metadata["monitored_features"]
    older = load_model(save_model("user_ranked", "binary", read_estimators(tag), metadata))
    assert older.card.monitored_features is None
    assert describe_model(older, 100)["monitored_features"] == ["color", "size"] == list(older.card.monitored)


def test_the_store_reads_model_records_with_libyaml_and_the_same_documents() -> None:
    """BentoML reads each model.yaml through its module's `yaml.safe_load`; `service.store` gives that module
    libyaml's safe loader. An upgrade that reads records some other way must fail here, not lose the speed silently."""
    import yaml
    from bentoml._internal.models import model as bentoml_model

    from service import store

    assert yaml.__with_libyaml__ and isinstance(bentoml_model.yaml, store._LibYAML)
    assert {"yaml", "safe_load"} <= set(bentoml_model.ModelInfo.from_yaml_file.__func__.__code__.co_names)
    record = (Path(bentoml.models.get(register_colors_model("user_yaml")).path) / "model.yaml").read_text()
    assert bentoml_model.yaml.safe_load(record) == yaml.load(record, Loader=yaml.SafeLoader)  # noqa: S506


def test_bentomls_metadata_check_gives_what_it_gave_with_the_exact_types_first() -> None:
    """BentoML checks a model's metadata on every record it reads; `service.store` tries exact plain types first and
    hands anything else to BentoML's own check, which converts or refuses it as before."""
    import copy
    from datetime import UTC, datetime

    from bentoml._internal import utils as bentoml_utils

    from service import store

    assert bentoml_utils.validate_metadata is store._validate_metadata
    assert "validate_metadata" in bentoml_utils.metadata_validator.__code__.co_names  # looked up when called
    record = bentoml.models.get(register_colors_model("user_metadata")).info.metadata
    plain = {"card": record, "when": datetime(2026, 1, 1, tzinfo=UTC), "rows": [1, 2.5, True, "a", b"b"]}
    converted = {
        "array": np.arange(3),
        "number": np.float64(0.5),
        "pair": (1, np.int64(2)),
        "nested": [{"x": np.int8(1)}],
    }
    for metadata in (plain, converted):
        ours, bentomls = copy.deepcopy(metadata), copy.deepcopy(metadata)
        store._validate_metadata(ours)
        store._bentoml_validate_metadata(bentomls)
        assert ours == bentomls and all(type(ours[k]) is type(bentomls[k]) for k in ours)
    assert store._plain(plain) and not store._plain(converted)
    for refused in ({"none": None}, {"set": {1}}, {(1, 2): "tuple key"}):
        with pytest.raises(ValueError):
            store._validate_metadata(refused)
        with pytest.raises(ValueError):
            store._bentoml_validate_metadata(copy.deepcopy(refused))
