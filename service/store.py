"""The model store: classifiers saved to and loaded from the BentoML model store.

Estimators are written with `skops.io` and read back trusting only scikit-learn's own types plus the
explicit `TRUSTED_TYPES` list: no code path unpickles an arbitrary object. Everything the service and its
monitoring need (task, classes, thresholds, metrics, training profile) lives in the model's metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import sklearn
import skops.io

from . import home
from .classifiers import FeatureSchema, InvalidModelError, Task, get_task, profile_features
from .classifiers.base import Description
from .classifiers.evaluation import (
    CALIBRATION_FOLDS,
    cross_fitted_calibration,
    feature_sensitivity,
    measure_confidence,
    row_count,
)
from .monitoring.reconstruction import fit_reconstruction

logger = logging.getLogger(__name__)

METADATA_SCHEMA = 1
OWNER_LABEL = "classifier-service"
CANDIDATE = "candidate"  # the `stage` label of a version registered for comparison: `latest` skips it
# Metadata every served version holds besides what its task reads (`register_model` writes all of it): the model
# card and monitoring read these, so a version lacking one fails to load rather than at its first request.
SERVED_METADATA = ("metrics", "trained_at", "sklearn_version", "reference_profile", "prediction_distribution")

# scikit-learn's internal helper types that skops does not trust by default. Each is plain data
# (tree arrays, optimiser state, distance metrics), never a callable chosen by the file.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "numpy.dtype",  # a column's dtype that SimpleImputer keeps after fitting: a type descriptor, not code
)


class ModelNotFoundError(InvalidModelError):
    """The store holds no such model or version."""


@dataclass(frozen=True)
class LoadedModel:
    """A served model: its store identity, its task object and its metadata."""

    name: str
    version: str
    task: Task
    metadata: Mapping[str, Any]
    candidate: bool = False  # registered as a candidate (`stage=candidate`): served once promoted

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


def save_model(
    name: str, task: str, estimators: Mapping[str, Any], metadata: Mapping[str, Any], candidate: bool = False
) -> str:
    """Write estimators (skops) and metadata as a new version of `name`; returns the tag. A `candidate` is served
    only when named by its version: `name` and `name:latest` resolve to the newest version that is not one."""
    return _save({key: skops.io.dumps(e) for key, e in estimators.items()}, name, task, metadata, candidate)


def _save(files: Mapping[str, bytes], name: str, task: str, metadata: Mapping[str, Any], candidate: bool) -> str:
    """Write estimator files already in skops' format, and the metadata, as a new version of `name`."""
    names = {key: f"estimator-{i}.skops" for i, key in enumerate(files)}
    full_metadata = {**metadata, "schema": METADATA_SCHEMA, "task": task, "estimators": names}
    labels = {"owner": OWNER_LABEL, "task": task, **({"stage": CANDIDATE} if candidate else {})}
    with bentoml.models.create(name, labels=labels, metadata=full_metadata) as model:
        for key, blob in files.items():
            Path(model.path_of(names[key])).write_bytes(blob)
    logger.info("registered %s (%s)", model.tag, task)
    return str(model.tag)


def load_model(tag: str, trusted_types: Sequence[str] = ()) -> LoadedModel:
    """Load a model from the store and build its task; raises `InvalidModelError` on any fault of the stored
    artifact: a file missing, truncated or corrupt, metadata lacking a key, estimators that do not take the
    features the metadata names.

    `name` and `name:latest` are resolved once: the metadata and the estimators come from that one version, whatever
    is registered meanwhile.
    """
    model, metadata = _stored(tag)
    try:
        for key in SERVED_METADATA:
            _metadata_entry(metadata, key)
        estimators = _read_estimators(model, metadata, trusted_types)
        task = _build_task(metadata, estimators)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{model.tag}: {exc}") from exc
    return LoadedModel(
        name=model.tag.name,
        version=str(model.tag.version),
        task=task,
        metadata=metadata,
        candidate=is_candidate(model),
    )


def check_stored(tag: str) -> Mapping[str, Any]:
    """The metadata of a stored model that `load_model` would accept as far as its record tells, without reading an
    estimator: registered by this service, with this scikit-learn minor release, its metadata complete, a known
    task, and every estimator file present. Raises `InvalidModelError` like `load_model` otherwise. A file damaged
    in place passes here and fails at the worker's load, which serves the other models and says why."""
    model, metadata = _stored(tag)
    try:
        for key in SERVED_METADATA:
            _metadata_entry(metadata, key)
        get_task(_metadata_entry(metadata, "task"))
        _estimator_paths(model, metadata)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{model.tag}: {exc}") from exc
    return metadata


def read_estimators(tag: str, trusted_types: Sequence[str] = ()) -> dict[str, Any]:
    """The fitted estimators of a stored model by key, read with skops and the trusted-type list."""
    model, metadata = _stored(tag)
    return _read_estimators(model, metadata, trusted_types)


def _read_estimators(model: bentoml.Model, metadata: Mapping[str, Any], trusted_types: Sequence[str]) -> dict[str, Any]:
    trusted = set(TRUSTED_TYPES) | set(trusted_types)
    return {key: _load_estimator(path, trusted) for key, path in _estimator_paths(model, metadata).items()}


def _estimator_paths(model: bentoml.Model, metadata: Mapping[str, Any]) -> dict[str, Path]:
    paths = {key: Path(model.path_of(file)) for key, file in _metadata_entry(metadata, "estimators").items()}
    for path in paths.values():
        if not path.is_file():
            raise InvalidModelError(f"{path.name} is missing from the model's folder")
    return paths


def _build_task(metadata: Mapping[str, Any], estimators: Mapping[str, Any]) -> Task:
    task_class = get_task(_metadata_entry(metadata, "task"))
    try:
        return task_class(estimators, metadata)
    except InvalidModelError:
        raise
    except KeyError as exc:
        raise InvalidModelError(f"the metadata lacks {exc} (a {task_class.name} model needs it)") from exc
    except (TypeError, ValueError, AttributeError) as exc:  # a value of the wrong shape or type
        raise InvalidModelError(f"the metadata does not describe a {task_class.name} model: {exc}") from exc


def _metadata_entry(metadata: Mapping[str, Any], key: str) -> Any:
    if key not in metadata:
        raise InvalidModelError(f"the metadata lacks '{key}'")
    return metadata[key]


def is_candidate(model: bentoml.Model) -> bool:
    return bool(model.info.labels.get("stage") == CANDIDATE)


def default_version(name: str) -> str | None:
    """The version `name` serves when nothing was promoted: its newest that is not a candidate (None: none)."""
    try:
        return str(_get(name).tag.version)
    except bentoml.exceptions.BentoMLException:
        return None


def _get(tag: str) -> bentoml.Model:
    """The stored model of `tag`; `name` and `name:latest` are the newest version that is not a candidate."""
    name, _, version = tag.partition(":")
    if version not in ("", "latest"):
        return bentoml.models.get(tag)
    served = [model for model in bentoml.models.list(name) if not is_candidate(model)]
    if not served:
        raise bentoml.exceptions.NotFound(f"model '{name}' has no version other than candidates")
    return max(served, key=lambda model: model.info.creation_time)


def _stored(tag: str) -> tuple[bentoml.Model, dict[str, Any]]:
    try:
        model = _get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise ModelNotFoundError(f"model '{tag}' is not in the BentoML store {home.bentoml_home()[0]}") from exc
    except bentoml.exceptions.BentoMLException as exc:  # a malformed name or version
        raise ModelNotFoundError(f"'{tag}' is not a model tag (name:version): {exc}") from exc
    except Exception as exc:  # noqa: BLE001 -- a damaged model.yaml fails in its parser or in BentoML's checks
        raise InvalidModelError(f"model '{tag}': its model.yaml cannot be read ({_describe(exc)})") from exc
    metadata = dict(model.info.metadata)
    if metadata.get("schema") != METADATA_SCHEMA:
        raise InvalidModelError(f"model '{tag}' was not registered by classifier-service (no metadata schema)")
    check_sklearn_version(str(metadata.get("sklearn_version", "")))
    return model, metadata


def check_sklearn_version(trained_with: str) -> None:
    """Refuse estimators pickled by another scikit-learn minor release: their internals may differ."""
    if trained_with.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise InvalidModelError(
            f"model was trained with scikit-learn {trained_with or 'unknown'}, "
            f"this service runs {sklearn.__version__}; re-register it"
        )


def _load_estimator(path: Path, trusted: set[str]) -> Any:
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 -- a damaged file fails in many ways (zip, JSON, missing members)
        raise InvalidModelError(f"{path.name} is not a readable skops file ({_describe(exc)})") from exc
    _refuse_untrusted(untrusted, trusted, path.name)
    try:
        return skops.io.load(path, trusted=untrusted)
    except Exception as exc:  # noqa: BLE001 -- as above: the file's content decides what breaks
        raise InvalidModelError(f"{path.name} cannot be loaded ({_describe(exc)})") from exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _refuse_untrusted(untrusted: Sequence[str], trusted: set[str], what: str) -> None:
    refused = sorted(set(untrusted) - trusted)
    if refused:
        raise InvalidModelError(f"{what} holds types outside the trusted list: {refused}")


def register_model(
    name: str,
    task: str,
    estimator: Any | Mapping[str, Any],
    X_val: Any,
    y_val: Any,
    *,
    X_train: Any | None = None,
    y_train: Any | None = None,
    feature_names: Sequence[str] | None = None,
    categorical_features: Sequence[str] = (),
    text_features: Sequence[str] = (),
    allows_missing: bool | None = None,
    ignored_columns: Sequence[str] = (),
    trained_at: datetime | None = None,
    training: Mapping[str, Any] | None = None,
    refit: Callable[[Any, Any], Any] | None = None,
    candidate: bool = False,
    **task_params: Any,
) -> str:
    """Register a fitted estimator as a servable model; returns its `name:version` tag.

    Measures the model on the labelled validation set: tuned thresholds, accuracy, macro-F1, log-loss,
    calibration, and the prediction distribution; profiles the training inputs for drift monitoring, and, given
    training rows, fits the PCA whose reconstruction error of validation rows is the multivariate drift reference.

    Args:
        name: the served name.
        task: `binary`, `multiclass`, `multilabel`, `hierarchical` or another registered task kind.
        estimator: a fitted estimator with `predict_proba`; for `multilabel` with one binary estimator per
            label, a mapping label -> estimator; for `hierarchical`, a mapping parent node -> estimator
            (`service.classifiers.fit_hierarchy` trains one).
        X_val, y_val: validation rows and labels (multilabel: a rows x labels 0/1 matrix): the calibration rows, the
            thresholds, the calibration map, the metrics, the prediction distribution and the multivariate drift
            reference all come from them.
        X_train, y_train: training rows and labels for the reference profile, the class prior and the multivariate
            drift's PCA (default: the validation set, and no multivariate drift signal).
        feature_names: the features' names in column order; default `feature_names_in_` or `x0..`.
        categorical_features: features that take categories as strings (the estimator's pipeline encodes them).
        text_features: features that take free text (the pipeline vectorizes them); watched for missing values only.
        allows_missing: whether `null` inputs are accepted; default the estimator's `allow_nan` tag.
        ignored_columns: other keys an object row may hold, dropped unread: the columns of the training data that
            the model does not use (a time column, an id), so that clients may send records as they have them.
            Names distinct from the features; default none.
        trained_at: when the estimator was trained (default now).
        training: how it was trained (`python -m models train` records its options; `retrain` reuses them).
        refit: fits a new estimator of the same kind (as `estimator` was fitted) on the rows and labels it is
            given, and returns it (never `estimator` fitted again); with training rows, the confidence calibration
            is cross-fitted over the training and validation rows (`cross_fitted_calibration`) instead of fitted on
            the validation rows alone.
        candidate: register a candidate: served only when named by its version, until promoted.
        **task_params: `positive_class` (binary), `labels` (multilabel), `hierarchy` (hierarchical:
            parent -> children, `service.classifiers.ROOT` as the top level's parent).
    """
    estimators = _as_estimators(estimator)
    task_cls = get_task(task)
    description: Description = task_cls.describe(estimators, X_val, y_val, task_params)
    first = next(iter(estimators.values()))
    names = _feature_names(first, X_val, feature_names)
    features = FeatureSchema(
        names=tuple(names),
        categorical=frozenset(categorical_features),
        text=frozenset(text_features),
        allows_missing=_allows_missing(estimators) if allows_missing is None else allows_missing,
        as_frame=hasattr(first, "feature_names_in_") and hasattr(X_val, "columns"),
        ignored=ignored_columns,
    )
    reference_X = X_val if X_train is None else X_train
    reference_y = y_val if y_train is None else y_train
    metadata: dict[str, Any] = {
        "classes": description.classes,
        "features": features.to_metadata(),
        "ignored_columns": list(features.ignored),
        "decision": description.decision,
        "metrics": description.metrics,
        "class_prior": task_cls.label_distribution(reference_y, description.classes),
        "prediction_distribution": description.prediction_distribution,
        "level_distribution": description.level_distribution,
        "reference_profile": profile_features(reference_X, names, features.categorical, features.text),
        # how many rows the references rest on: the alert thresholds allow for their sampling noise
        "reference_rows": {"training": row_count(reference_X), "calibration": row_count(X_val)},
        "trained_at": (trained_at or datetime.now(UTC)).isoformat(),
        "sklearn_version": sklearn.__version__,
        "training": dict(training or {}),
    }
    served = task_cls(estimators, metadata)
    confidence_figures, calibration = measure_confidence(served, X_val, y_val)
    metadata["metrics"].update(confidence_figures)
    calibrated_on = {"rows": row_count(X_val), "folds": 0}
    if refit is not None and X_train is not None and y_train is not None:

        def refitted_task(fitted: Any) -> Task:
            refitted = _as_estimators(fitted)
            if any(new is old for new in refitted.values() for old in estimators.values()):
                raise TypeError("refit must return newly fitted estimators, not fit the registered one again")
            return task_cls(refitted, metadata)

        try:
            calibration = cross_fitted_calibration(served, refitted_task, refit, X_train, y_train, X_val, y_val)
            calibrated_on = {"rows": row_count(X_val) + row_count(X_train), "folds": CALIBRATION_FOLDS}
        except ValueError as exc:  # a part's model could not be fitted or served (a rare class left out of it)
            logger.warning(
                "%s: confidence calibrated on the validation rows alone: cross-fitting failed: %s", name, exc
            )
    # rows: how many the map rests on; folds: 0 for the validation rows alone, else the parts of the training rows
    metadata["calibration"] = {**calibration.to_metadata(), **calibrated_on}
    sensitivity = feature_sensitivity(served, X_val)
    ranked = [names[j] for j in np.argsort(-sensitivity, kind="stable").tolist()]
    metadata["monitored_features"] = [name for name in ranked if name not in features.text]
    # multivariate drift needs calibration errors out of sample for the PCA, as live rows are: training rows apart
    if X_train is not None:
        numeric = [name for name in ranked if name not in features.categorical | features.text]
        reconstruction = fit_reconstruction(X_train, X_val, names, numeric)
        if reconstruction is not None:
            metadata["reconstruction"] = reconstruction
    files = {key: skops.io.dumps(estimator) for key, estimator in estimators.items()}
    check_servable(served, files, metadata, X_val)
    return _save(files, name, task, metadata, candidate)


def _as_estimators(estimator: Any | Mapping[str, Any]) -> dict[str, Any]:
    return dict(estimator) if isinstance(estimator, Mapping) else {"model": estimator}


def check_servable(served: Task, files: Mapping[str, bytes], metadata: Mapping[str, Any], X_val: Any) -> None:
    """Refuse, before anything is saved, estimators the service would not serve as they were measured: each file
    must load with the trusted types only, and the task built from what comes back must score validation rows as
    the fitted estimators do."""
    loaded = {}
    for key, blob in files.items():
        untrusted = skops.io.get_untrusted_types(data=blob)
        _refuse_untrusted(untrusted, set(TRUSTED_TYPES), f"estimator '{key}'")
        loaded[key] = skops.io.loads(blob, trusted=untrusted)
    rows = X_val.iloc[:50] if hasattr(X_val, "iloc") else X_val[:50]
    reloaded = type(served)(loaded, metadata)
    if not np.allclose(reloaded.score_matrix(rows), served.score_matrix(rows), rtol=1e-9, atol=1e-12):
        raise InvalidModelError("the estimators score differently once saved and loaded back")


def _feature_names(estimator: Any, X: Any, given: Sequence[str] | None) -> list[str]:
    n_features = int(np.shape(X)[1])
    if given is not None:
        names = [str(n) for n in given]
    elif hasattr(estimator, "feature_names_in_"):
        names = [str(n) for n in estimator.feature_names_in_]
    elif hasattr(X, "columns"):
        names = [str(c) for c in X.columns]
    else:
        names = [f"x{i}" for i in range(n_features)]
    if len(names) != n_features or len(set(names)) != len(names):
        raise InvalidModelError(f"expected {n_features} distinct feature names, got {len(names)}")
    return names


def _allows_missing(estimators: Mapping[str, Any]) -> bool:
    from sklearn.utils import get_tags

    return all(get_tags(e).input_tags.allow_nan for e in estimators.values())
