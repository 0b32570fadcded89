"""The model store: classifiers saved to and loaded from the BentoML model store.

Estimators are written with `skops.io` and read back trusting only scikit-learn's own types plus the
explicit `TRUSTED_TYPES` list: no code path unpickles an arbitrary object. Everything the service and its
monitoring need (task, classes, thresholds, metrics, training profile) lives in the model's metadata, written
from a `ModelCard` at registration and parsed back into one, checked, at load. skops (and with it scikit-learn)
is imported where an estimator is read or written: checking a stored record (`check_stored`) imports neither; skops
gets its default trusted-type lists from the record `service.skops_defaults` keeps instead of computing them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import yaml
from bentoml._internal import utils as bentoml_utils
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models import model as bentoml_model

from . import home
from .card import (
    METADATA_SCHEMA,
    CalibrationMap,
    InvalidCardError,
    ModelCard,
    ReferenceRows,
    TrainingRecipe,
    Validation,
)
from .classifiers import FeatureSchema, InvalidModelError, Task, get_task, profile_features
from .classifiers.evaluation import (
    CALIBRATION_FOLDS,
    Correctness,
    cross_fitted_calibration,
    feature_sensitivity,
    row_count,
)
from .monitoring.reconstruction import fit_reconstruction
from .skops_defaults import use_recorded_defaults
from .tags import names_a_version

logger = logging.getLogger(__name__)

OWNER_LABEL = "classifier-service"
CANDIDATE = "candidate"  # the `stage` label of a version registered for comparison: `latest` skips it

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


class _LibYAML:
    """PyYAML as BentoML's model records module uses it, but `safe_load` with libyaml's safe loader: BentoML parses
    each model.yaml with PyYAML's pure-Python one, and a record here holds its card (reference profile, calibration
    map: 25-70 KB), 0.17 s of CPU each against 0.02 s. Both build the same document from what BentoML writes."""

    def __getattr__(self, name: str) -> Any:
        return getattr(yaml, name)

    @staticmethod
    def safe_load(stream: Any) -> Any:
        return yaml.load(stream, Loader=yaml.CSafeLoader)  # noqa: S506 -- the safe loader, in C


if getattr(yaml, "__with_libyaml__", False):  # PyYAML built without libyaml keeps its own loader
    bentoml_model.yaml = _LibYAML()  # type: ignore[attr-defined]  # every reader of the store: workers and CLIs

# what BentoML's metadata check (`validate_metadata`) returns unchanged, by exact type: it converts numpy, pandas and
# tuples, and refuses None and other objects
_PLAIN_KEYS = frozenset({str, int, float})
_PLAIN_VALUES = frozenset({str, bytes, bool, int, float, complex, datetime, date, time, timedelta})


def _plain(value: object) -> bool:
    kind = type(value)
    if kind is dict:
        return all(type(key) in _PLAIN_KEYS and _plain(item) for key, item in value.items())  # type: ignore[attr-defined]
    if kind is list:
        return all(map(_plain, value))  # type: ignore[call-overload]
    return kind in _PLAIN_VALUES


_bentoml_validate_metadata = bentoml_utils.validate_metadata


def _validate_metadata(metadata: Any) -> None:
    """BentoML's check of a model's metadata, which it runs on every record it reads as well as on each it writes,
    with exact types first: a record here holds its card, 30,000 values each of which BentoML's check tests against
    nine lazily imported numpy and pandas types, 0.06 s of CPU per record read, against under 0.01 s. Metadata
    holding anything else goes through BentoML's own check, converted or refused as it would be."""
    if type(metadata) is dict and _plain(metadata):
        return
    _bentoml_validate_metadata(metadata)


bentoml_utils.validate_metadata = _validate_metadata  # called by the validator of BentoML's `ModelInfo.metadata`


class ModelNotFoundError(InvalidModelError):
    """The store holds no such model or version."""


@dataclass(frozen=True)
class LoadedModel:
    """A served model: its store identity, its task object and its card."""

    name: str
    version: str
    task: Task
    card: ModelCard
    candidate: bool = False  # registered as a candidate (`stage=candidate`): served once promoted

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


def _file_names(keys: Iterable[str]) -> dict[str, str]:
    """The file in the model's folder of each estimator, by key."""
    return {key: f"estimator-{i}.skops" for i, key in enumerate(keys)}


def _save(files: Mapping[str, bytes], name: str, task: str, metadata: Mapping[str, Any], candidate: bool) -> str:
    """Write estimator files already in skops' format, and the metadata, as a new version of `name`."""
    labels = {"owner": OWNER_LABEL, "task": task, **({"stage": CANDIDATE} if candidate else {})}
    with bentoml.models.create(name, labels=labels, metadata=dict(metadata)) as model:
        for key, file in _file_names(files).items():
            Path(model.path_of(file)).write_bytes(files[key])
    logger.info("registered %s (%s)", model.tag, task)
    return str(model.tag)


def load_model(tag: str, trusted_types: Sequence[str] = ()) -> LoadedModel:
    """Load a model from the store and build its task; raises `InvalidModelError` on any fault of the stored
    artifact: a file missing, truncated or corrupt, metadata lacking a field or holding one of the wrong type, an
    unknown task, estimators that do not take the features the card names.

    `name` and `name:latest` are resolved once: the card and the estimators come from that one version, whatever
    is registered meanwhile.
    """
    model, card = _stored(tag)
    try:
        estimators = _read_estimators(model, card, trusted_types)
        task = _build_task(card, estimators)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{model.tag}: {exc}") from exc
    return LoadedModel(
        name=model.tag.name,
        version=str(model.tag.version),
        task=task,
        card=card,
        candidate=is_candidate(model),
    )


def check_stored(tag: str) -> ModelCard:
    """The card of a stored model that `load_model` would accept as far as its record tells, without reading an
    estimator: registered by this service, with this scikit-learn minor release, its card complete and well typed,
    a known task, and every estimator file present. Raises `InvalidModelError` like `load_model` otherwise. A file
    damaged in place passes here and fails at the worker's load, which serves the other models and says why."""
    model, card = _stored(tag)
    try:
        get_task(card.task)
        _estimator_paths(model, card)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{model.tag}: {exc}") from exc
    return card


def read_estimators(tag: str, trusted_types: Sequence[str] = ()) -> dict[str, Any]:
    """The fitted estimators of a stored model by key, read with skops and the trusted-type list."""
    model, card = _stored(tag)
    return _read_estimators(model, card, trusted_types)


def _read_estimators(model: bentoml.Model, card: ModelCard, trusted_types: Sequence[str]) -> dict[str, Any]:
    trusted = set(TRUSTED_TYPES) | set(trusted_types)
    return {key: _load_estimator(path, trusted) for key, path in _estimator_paths(model, card).items()}


def _estimator_paths(model: bentoml.Model, card: ModelCard) -> dict[str, Path]:
    paths = {key: Path(model.path_of(file)) for key, file in card.estimators.items()}
    for path in paths.values():
        if not path.is_file():
            raise InvalidModelError(f"{path.name} is missing from the model's folder")
    return paths


def _build_task(card: ModelCard, estimators: Mapping[str, Any]) -> Task:
    task_class = get_task(card.task)
    try:
        return task_class(estimators, card)
    except InvalidModelError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # estimators that do not fit the card
        raise InvalidModelError(f"the card does not describe a {task_class.name} model: {exc!r}") from exc


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
    if names_a_version(version):
        return bentoml.models.get(tag)
    # the store `bentoml.models.list` reads, without importing `bentoml.models` (its analytics import BentoML's
    # cloud client: a second of `python -m models ensure`, which reads only records)
    served = [model for model in BentoMLContainer.model_store.get().list(name) if not is_candidate(model)]
    if not served:
        raise bentoml.exceptions.NotFound(f"model '{name}' has no version other than candidates")
    return max(served, key=lambda model: model.info.creation_time)


def _stored(tag: str) -> tuple[bentoml.Model, ModelCard]:
    """The stored model of `tag` and its card, parsed and checked."""
    try:
        model = _get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise ModelNotFoundError(f"model '{tag}' is not in the BentoML store {home.bentoml_home()[0]}") from exc
    except bentoml.exceptions.BentoMLException as exc:  # a malformed name or version
        raise ModelNotFoundError(f"'{tag}' is not a model tag (name:version): {exc}") from exc
    except Exception as exc:  # noqa: BLE001 -- a damaged model.yaml fails in its parser or in BentoML's checks
        raise InvalidModelError(f"model '{tag}': its model.yaml cannot be read ({_describe(exc)})") from exc
    return model, parse_card(model)


def parse_card(model: bentoml.Model) -> ModelCard:
    """The card of a stored model; raises `InvalidModelError` naming the model and the bad field."""
    metadata = model.info.metadata
    # the envelope before the card: a model of another scikit-learn release may hold a card of another release too
    if metadata.get("schema") != METADATA_SCHEMA:
        raise InvalidModelError(f"model '{model.tag}' was not registered by classifier-service (no metadata schema)")
    check_sklearn_version(str(metadata.get("sklearn_version", "")))
    try:
        return ModelCard.parse(metadata)
    except InvalidCardError as exc:
        raise InvalidModelError(f"{model.tag}: {exc}") from exc


@cache
def sklearn_version() -> str:
    """The installed scikit-learn's version, read from its package record without importing it."""
    return metadata.version("scikit-learn")


def check_sklearn_version(trained_with: str) -> None:
    """Refuse estimators pickled by another scikit-learn minor release: their internals may differ."""
    if trained_with.split(".")[:2] != sklearn_version().split(".")[:2]:
        raise InvalidModelError(
            f"model was trained with scikit-learn {trained_with or 'unknown'}, "
            f"this service runs {sklearn_version()}; re-register it"
        )


def _load_estimator(path: Path, trusted: set[str]) -> Any:
    use_recorded_defaults()
    import skops.io

    try:
        # one pass over the file: skops refuses any type outside its defaults and `trusted` before constructing
        # anything (listing the file's types first, `get_untrusted_types`, built the same tree twice)
        return skops.io.load(path, trusted=sorted(trusted))
    except Exception as exc:  # noqa: BLE001 -- the file's content decides what breaks; why, is told below
        failure = exc
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 -- a damaged file fails in many ways (zip, JSON, missing members)
        raise InvalidModelError(f"{path.name} is not a readable skops file ({_describe(exc)})") from exc
    _refuse_untrusted(untrusted, trusted, path.name)
    raise InvalidModelError(f"{path.name} cannot be loaded ({_describe(failure)})") from failure


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

    Measures the model on the labelled validation set (tuned thresholds, metrics, calibration, prediction shares),
    profiles the training inputs for drift monitoring and, given training rows, fits the multivariate drift's PCA.

    Args:
        name: the served name.
        task: `binary`, `multiclass`, `multilabel`, `hierarchical` or another registered task kind.
        estimator: a fitted estimator with `predict_proba`; for `multilabel` with one binary estimator per
            label, a mapping label -> estimator; for `hierarchical`, a mapping parent node -> estimator
            (`service.classifiers.fit_hierarchy` trains one).
        X_val, y_val: validation rows and labels (multilabel: a rows x labels 0/1 matrix): the thresholds, the
            calibration, the metrics, the prediction distribution and the multivariate drift reference come from them.
        X_train, y_train: training rows and labels for the reference profile, the class prior and the multivariate
            drift's PCA (default: the validation set, and no multivariate drift signal).
        feature_names: the features' names in column order; default `feature_names_in_` or `x0..`.
        categorical_features: features that take categories as strings (the estimator's pipeline encodes them).
        text_features: features that take free text (the pipeline vectorizes them); watched for missing values only.
        allows_missing: whether `null` inputs are accepted; default the estimator's `allow_nan` tag.
        ignored_columns: other keys an object row may hold, dropped unread (columns of the training data the model
            does not use: a time column, an id), so that clients may send records as they have them.
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
    features = _feature_schema(
        estimators, X_val, feature_names, categorical_features, text_features, allows_missing, ignored_columns
    )
    rows = _Rows(X_val, y_val, X_train, y_train)
    recipe = TrainingRecipe(dict(training or {}))
    card = _described_card(get_task(task), estimators, features, rows, task_params, trained_at, recipe)
    card, served = _measured_card(card, estimators, rows, refit, name)
    return _save_servable(name, card, served, estimators, X_val, candidate)


@dataclass(frozen=True)
class _Rows:
    """The labelled rows registration measures the model on: validation rows, and training rows when given."""

    X_val: Any
    y_val: Any
    X_train: Any | None
    y_train: Any | None

    @property
    def reference_X(self) -> Any:
        """The rows the input profile describes: the training rows, else the validation rows."""
        return self.X_val if self.X_train is None else self.X_train

    @property
    def reference_y(self) -> Any:
        return self.y_val if self.y_train is None else self.y_train


def _feature_schema(
    estimators: Mapping[str, Any],
    X_val: Any,
    feature_names: Sequence[str] | None,
    categorical: Sequence[str],
    text: Sequence[str],
    allows_missing: bool | None,
    ignored: Sequence[str],
) -> FeatureSchema:
    """The rows the model takes, as `register_model`'s arguments describe them."""
    first = next(iter(estimators.values()))
    return FeatureSchema(
        names=tuple(_feature_names(first, X_val, feature_names)),
        categorical=frozenset(categorical),
        text=frozenset(text),
        allows_missing=_allows_missing(estimators) if allows_missing is None else allows_missing,
        as_frame=hasattr(first, "feature_names_in_") and hasattr(X_val, "columns"),
        ignored=ignored,
    )


def _described_card(
    task_cls: type[Task],
    estimators: Mapping[str, Any],
    features: FeatureSchema,
    rows: _Rows,
    params: Mapping[str, Any],
    trained_at: datetime | None,
    training: TrainingRecipe,
) -> ModelCard:
    """The card of what the task's `describe` learns on the validation rows (decision defaults, metrics, prediction
    shares) and of the reference rows' profile and class prior, with no calibration yet."""
    description = task_cls.describe(estimators, rows.X_val, rows.y_val, params)
    return ModelCard(
        task=task_cls.name,
        classes=tuple(description.classes),
        features=features.to_card(),
        decision=description.decision,
        validation=Validation.of(description.metrics),
        class_prior=task_cls.label_distribution(rows.reference_y, description.classes),
        prediction_distribution=description.prediction_distribution,
        level_distribution=tuple(description.level_distribution),
        reference_profile=profile_features(rows.reference_X, features.names, features.categorical, features.text),
        # how many rows the references rest on: the alert thresholds allow for their sampling noise
        reference_rows=ReferenceRows(training=row_count(rows.reference_X), calibration=row_count(rows.X_val)),
        trained_at=trained_at or datetime.now(UTC),
        sklearn_version=sklearn_version(),
        training=training,
        estimators=_file_names(estimators),
    )


def _measured_card(
    card: ModelCard, estimators: Mapping[str, Any], rows: _Rows, refit: Callable[[Any, Any], Any] | None, name: str
) -> tuple[ModelCard, Task]:
    """The card completed by what the served task measures (its confidence figures and calibration, the features
    it is most sensitive to, the multivariate drift reference), and the served task."""
    served = get_task(card.task)(estimators, card)
    validation = Correctness.of(served, rows.X_val, rows.y_val)  # scored once: figures and calibration alike
    card = replace(card, validation=Validation.of({**card.validation.figures, **validation.figures()}))
    card = replace(card, calibration=_calibration(card, estimators, validation, rows, refit, name))
    features = card.features
    sensitivity = feature_sensitivity(served, rows.X_val)
    ranked = [features.names[j] for j in np.argsort(-sensitivity, kind="stable").tolist()]
    card = replace(card, monitored_features=tuple(feature for feature in ranked if feature not in features.text))
    # multivariate drift needs calibration errors out of sample for the PCA, as live rows are: training rows apart
    if rows.X_train is not None:
        numeric = [feature for feature in ranked if feature not in {*features.categorical, *features.text}]
        card = replace(card, reconstruction=fit_reconstruction(rows.X_train, rows.X_val, features.names, numeric))
    return card, served


def _calibration(
    card: ModelCard,
    estimators: Mapping[str, Any],
    validation: Correctness,
    rows: _Rows,
    refit: Callable[[Any, Any], Any] | None,
    name: str,
) -> CalibrationMap:
    """The confidence calibration: cross-fitted over the training and validation rows when the estimator can be
    refitted (`refit`) and training rows are given, else fitted on the validation rows alone."""
    alone = validation.calibration().to_card(rows=row_count(rows.X_val), folds=0)
    if refit is None or rows.X_train is None or rows.y_train is None:
        return alone
    task_cls = get_task(card.task)

    def refitted_task(fitted: Any) -> Task:
        refitted = _as_estimators(fitted)
        if any(new is old for new in refitted.values() for old in estimators.values()):
            raise TypeError("refit must return newly fitted estimators, not fit the registered one again")
        return task_cls(refitted, card)

    try:
        calibration = cross_fitted_calibration(validation, refitted_task, refit, rows.X_train, rows.y_train)
    except ValueError as exc:  # a part's model could not be fitted or served (a rare class left out of it)
        logger.warning("%s: confidence calibrated on the validation rows alone: cross-fitting failed: %s", name, exc)
        return alone
    return calibration.to_card(rows=row_count(rows.X_val) + row_count(rows.X_train), folds=CALIBRATION_FOLDS)


def _save_servable(
    name: str, card: ModelCard, served: Task, estimators: Mapping[str, Any], X_val: Any, candidate: bool
) -> str:
    """Write the estimators and their card as a new version of `name`, once the service is known to serve them as
    they were measured (`check_servable`)."""
    use_recorded_defaults()
    import skops.io

    files = {key: skops.io.dumps(estimator) for key, estimator in estimators.items()}
    check_servable(served, files, card, X_val)
    return _save(files, name, card.task, card.to_metadata(), candidate)


def _as_estimators(estimator: Any | Mapping[str, Any]) -> dict[str, Any]:
    return dict(estimator) if isinstance(estimator, Mapping) else {"model": estimator}


def check_servable(served: Task, files: Mapping[str, bytes], card: ModelCard, X_val: Any) -> None:
    """Refuse, before anything is saved, estimators the service would not serve as they were measured: each file
    must load with the trusted types only, and the task built from what comes back must score validation rows as
    the fitted estimators do."""
    use_recorded_defaults()
    import skops.io

    loaded = {}
    for key, blob in files.items():
        untrusted = skops.io.get_untrusted_types(data=blob)
        _refuse_untrusted(untrusted, set(TRUSTED_TYPES), f"estimator '{key}'")
        loaded[key] = skops.io.loads(blob, trusted=untrusted)
    rows = X_val.iloc[:50] if hasattr(X_val, "iloc") else X_val[:50]
    reloaded = type(served)(loaded, card)
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
