"""The model card: everything registration learns about a model version, as one frozen, typed object.

Registration writes it (`ModelCard.to_metadata`) into the BentoML model's metadata and loading parses it back
(`ModelCard.parse`) once, checking every field, so that the classifier core, monitoring, the store, the log and the
CLI read typed attributes and never a key of the stored JSON. The stored format is the one earlier releases wrote:
fields added since are optional, and a version registered before them parses with what they meant when absent.

Plain dataclasses and the standard library only: the classifier core and monitoring both import this module and
must not import each other, nor pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

METADATA_SCHEMA = 1  # the `schema` entry of the stored metadata: written by classifier-service


class InvalidCardError(ValueError):
    """A stored model's metadata lacks a field or holds a value of the wrong type; `field` is its dotted path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    @classmethod
    def missing(cls, field: str) -> InvalidCardError:
        return cls(field, f"the metadata lacks '{field}'")

    @classmethod
    def wrong(cls, field: str, expected: str, value: Any) -> InvalidCardError:
        return cls(field, f"the metadata's '{field}' is not {expected}: {_shown(value)}")


@dataclass(frozen=True, slots=True)
class Features:
    """The features a model takes (see `service.classifiers.FeatureSchema`, which validates rows against them).

    `ignored` is stored as the metadata's own `ignored_columns`, beside `features`."""

    names: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    allows_missing: bool = False
    as_frame: bool = False
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision defaults registration tuned; each task kind sets the fields it uses (multiclass: none)."""

    positive_class: str | None = None  # binary
    threshold: float | None = None  # binary: P(positive_class) at or above it decides it
    thresholds: tuple[float, ...] | None = None  # multilabel: per label, in `classes` order
    layout: str | None = None  # multilabel: `joint` or `per_label`
    objective: str | None = None  # what the thresholds were tuned for (binary, multilabel)
    hierarchy: Mapping[str, tuple[str, ...]] | None = None  # hierarchical: parent -> children

    def to_metadata(self) -> dict[str, Any]:
        """The fields this decision sets, JSON-ready: the stored `decision` and the one `GET /models` shows."""
        stored: dict[str, Any] = {
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "thresholds": None if self.thresholds is None else list(self.thresholds),
            "layout": self.layout,
            "objective": self.objective,
            "hierarchy": None if self.hierarchy is None else {k: list(v) for k, v in self.hierarchy.items()},
        }
        return {key: value for key, value in stored.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Validation:
    """Registration's figures on the validation rows. `figures` holds every one as stored, task-specific ones
    included (per-level accuracy, per-label F1, the tuned threshold); NaN marks a figure the model lacks."""

    figures: Mapping[str, Any]
    accuracy: float = float("nan")
    macro_f1: float = float("nan")
    mean_confidence: float = float("nan")
    ece: float = float("nan")

    @classmethod
    def of(cls, figures: Mapping[str, Any]) -> Validation:
        """The figures registration measured; raises `InvalidCardError` on one of the wrong type."""
        return _validation(_Fields(figures, "metrics"))


@dataclass(frozen=True, slots=True)
class CalibrationMap:
    """The confidence calibration: a monotone piecewise-linear map, and the rows it rests on (`rows`; `folds` 0 for
    the validation rows alone, else the parts of the training rows it was cross-fitted over)."""

    confidence: tuple[float, ...]
    correct: tuple[float, ...]
    rows: int | None = None
    folds: int = 0


@dataclass(frozen=True, slots=True)
class NumericProfile:
    """A numeric feature in the training rows: inner quantile edges (bin i holds [edges[i-1], edges[i])), the
    share of the present values in each bin, their range (None: no value present) and the missing rate."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    minimum: float | None
    maximum: float | None
    missing_rate: float


@dataclass(frozen=True, slots=True)
class CategoricalProfile:
    """A categorical feature in the training rows: the share of all rows taking each category, and the missing rate."""

    categories: Mapping[str, float]
    missing_rate: float


@dataclass(frozen=True, slots=True)
class TextProfile:
    """A free-text feature in the training rows: watched for missing values only."""

    missing_rate: float


FeatureProfile = NumericProfile | CategoricalProfile | TextProfile


@dataclass(frozen=True, slots=True)
class ReferenceRows:
    """How many rows the references rest on: the alert thresholds allow for their sampling noise."""

    training: int
    calibration: int


@dataclass(frozen=True, slots=True)
class ReconstructionFit:
    """The multivariate drift reference: a PCA of the training rows' `features` (standardized, missing values
    replaced by the median) and the decile edges and shares of the calibration rows' reconstruction errors."""

    features: tuple[str, ...]
    median: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    components: tuple[tuple[float, ...], ...]
    explained_variance: float = float("nan")
    edges: tuple[float, ...] = ()
    proportions: tuple[float, ...] = ()
    rows: int = 0


@dataclass(frozen=True, slots=True)
class TrainingRecipe:
    """How the estimator was trained, as `python -m models train` recorded it (`retrain` reuses it); `options` is
    the whole record, empty for a model registered by other code."""

    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def split(self) -> str | None:
        """How the catalog split its rows (`models.catalog.SPLIT_RECIPE`)."""
        return _optional_text(self.options, "split")

    @property
    def target(self) -> str | None:
        return _optional_text(self.options, "target")

    @property
    def trained_on_log_before(self) -> str | None:
        """A retrained version: the time its validation slice of the prediction log began."""
        return _optional_text(self.options, "trained_on_log_before")


@dataclass(frozen=True, slots=True)
class LoggedCard:
    """The part of the card the prediction log keeps per version (`model_versions.metadata`): enough to judge
    labels and realized figures of a version no worker serves any more."""

    classes: tuple[str, ...]
    decision: Decision
    validation: Validation
    feature_names: tuple[str, ...]

    @classmethod
    def parse(cls, stored: Mapping[str, Any]) -> LoggedCard:
        """The log's copy, as `to_metadata` wrote it; raises `InvalidCardError`."""
        fields = _Fields(stored, "")
        return cls(
            classes=fields.labels("classes"),
            decision=_decision(fields.object("decision", optional=True)),
            validation=_validation(fields.object("metrics", optional=True)),
            feature_names=fields.object("features").texts("names"),
        )

    def to_metadata(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "decision": self.decision.to_metadata(),
            "metrics": dict(self.validation.figures),
            "features": {"names": list(self.feature_names)},
        }


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What a model version is and how it was measured: task, classes, features, decision defaults, calibration,
    the references monitoring compares live traffic with, the training recipe and the validation figures.

    Attributes:
        prediction_distribution: the share of each class among validation decisions (multilabel: each label's rate).
        level_distribution: the same per level of a hierarchy (empty for flat tasks).
        class_prior: the share of each class among training labels; None in models registered before it was kept.
        monitored_features: the features, most important first (text ones left out: empty when every feature is
            text); None in models registered before it was kept (`monitored` then gives the features in column
            order).
        estimators: the estimators' files in the model's folder, by key.
    """

    task: str
    classes: tuple[str, ...]
    features: Features
    decision: Decision
    validation: Validation
    prediction_distribution: Mapping[str, float]
    reference_profile: Mapping[str, FeatureProfile]
    trained_at: datetime
    sklearn_version: str
    level_distribution: tuple[Mapping[str, float], ...] = ()
    class_prior: Mapping[str, float] | None = None
    reference_rows: ReferenceRows | None = None
    calibration: CalibrationMap | None = None
    monitored_features: tuple[str, ...] | None = None
    reconstruction: ReconstructionFit | None = None
    training: TrainingRecipe = field(default_factory=TrainingRecipe)
    estimators: Mapping[str, str] = field(default_factory=dict)

    @property
    def monitored(self) -> tuple[str, ...]:
        """The features monitoring watches first: the ranked ones, else every feature in column order."""
        return self.monitored_features or self.features.names

    @property
    def logged(self) -> LoggedCard:
        return LoggedCard(self.classes, self.decision, self.validation, self.features.names)

    @classmethod
    def parse(cls, stored: Mapping[str, Any]) -> ModelCard:
        """The card of a stored model's metadata; raises `InvalidCardError` naming the first bad field."""
        fields = _Fields(stored, "")
        features = fields.object("features")
        optional = fields.has
        card = cls(
            task=fields.text("task"),
            classes=fields.labels("classes"),
            features=Features(
                names=features.texts("names"),
                categorical=features.texts("categorical", ()),
                text=features.texts("text", ()),
                allows_missing=features.flag("allows_missing", False),
                as_frame=features.flag("as_frame", False),
                ignored=fields.texts("ignored_columns", ()),
            ),
            decision=_decision(fields.object("decision", optional=True)),
            validation=_validation(fields.object("metrics")),
            prediction_distribution=fields.shares("prediction_distribution"),
            reference_profile=_profile(fields.object("reference_profile")),
            trained_at=fields.time("trained_at"),
            sklearn_version=fields.text("sklearn_version"),
            level_distribution=fields.share_list("level_distribution"),
            class_prior=fields.shares("class_prior") if optional("class_prior") else None,
            reference_rows=_reference_rows(fields.object("reference_rows")) if optional("reference_rows") else None,
            calibration=_calibration(fields.object("calibration")) if optional("calibration") else None,
            monitored_features=fields.texts("monitored_features", None),
            reconstruction=_reconstruction(fields.object("reconstruction")) if optional("reconstruction") else None,
            training=TrainingRecipe(dict(fields.object("training", optional=True).value)),
            estimators=_estimator_files(fields.object("estimators")),
        )
        _check_profile(card.features, card.reference_profile)
        return card

    def to_metadata(self) -> dict[str, Any]:
        """The stored metadata: JSON-ready, in the format `parse` reads (and earlier releases wrote)."""
        stored: dict[str, Any] = {
            "schema": METADATA_SCHEMA,
            "task": self.task,
            "estimators": dict(self.estimators),
            "classes": list(self.classes),
            "features": _features_metadata(self.features),
            "ignored_columns": list(self.features.ignored),
            "decision": self.decision.to_metadata(),
            "metrics": dict(self.validation.figures),
            "prediction_distribution": dict(self.prediction_distribution),
            "level_distribution": [dict(shares) for shares in self.level_distribution],
            "reference_profile": {name: _profile_metadata(p) for name, p in self.reference_profile.items()},
            "trained_at": self.trained_at.isoformat(),
            "sklearn_version": self.sklearn_version,
            "training": dict(self.training.options),
        }
        if self.monitored_features is not None:
            stored["monitored_features"] = list(self.monitored_features)
        if self.class_prior is not None:
            stored["class_prior"] = dict(self.class_prior)
        if self.reference_rows is not None:
            stored["reference_rows"] = {
                "training": self.reference_rows.training,
                "calibration": self.reference_rows.calibration,
            }
        if self.calibration is not None:
            stored["calibration"] = _calibration_metadata(self.calibration)
        if self.reconstruction is not None:
            stored["reconstruction"] = _reconstruction_metadata(self.reconstruction)
        return stored


def _estimator_files(fields: _Fields) -> dict[str, str]:
    return {key: fields.need_text(fields.name(key), file) for key, file in fields.value.items()}


def _optional_text(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    return None if value is None else str(value)


def _decision(fields: _Fields) -> Decision:
    hierarchy = fields.object("hierarchy", optional=True)
    return Decision(
        positive_class=fields.text("positive_class", None),
        threshold=fields.number("threshold", None),
        thresholds=fields.numbers("thresholds", None),
        layout=fields.text("layout", None),
        objective=fields.text("objective", None),
        hierarchy={parent: hierarchy.labels(parent) for parent in hierarchy.value} if fields.has("hierarchy") else None,
    )


def _validation(fields: _Fields) -> Validation:
    nan = float("nan")
    return Validation(
        figures=dict(fields.value),
        accuracy=fields.number("accuracy", nan),
        macro_f1=fields.number("macro_f1", nan),
        mean_confidence=fields.number("mean_confidence", nan),
        ece=fields.number("ece", nan),
    )


def _features_metadata(features: Features) -> dict[str, Any]:
    return {
        "names": list(features.names),
        "categorical": sorted(features.categorical),
        "text": sorted(features.text),
        "allows_missing": features.allows_missing,
        "as_frame": features.as_frame,
    }


def _calibration(fields: _Fields) -> CalibrationMap:
    return CalibrationMap(
        confidence=fields.numbers("confidence"),
        correct=fields.numbers("correct"),
        rows=fields.count("rows", None),
        folds=fields.count("folds", 0),
    )


def _calibration_metadata(calibration: CalibrationMap) -> dict[str, Any]:
    stored: dict[str, Any] = {"confidence": list(calibration.confidence), "correct": list(calibration.correct)}
    if calibration.rows is not None:
        stored.update(rows=calibration.rows, folds=calibration.folds)
    return stored


def _reference_rows(fields: _Fields) -> ReferenceRows:
    return ReferenceRows(training=fields.count("training"), calibration=fields.count("calibration"))


def _profile(fields: _Fields) -> dict[str, FeatureProfile]:
    return {name: _feature_profile(fields.object(name)) for name in fields.value}


def _feature_profile(fields: _Fields) -> FeatureProfile:
    kind = fields.text("kind")
    if kind == "text":
        return TextProfile(missing_rate=fields.number("missing_rate"))
    if kind == "categorical":
        return CategoricalProfile(categories=fields.shares("categories"), missing_rate=fields.number("missing_rate"))
    if kind == "numeric":
        return NumericProfile(
            edges=fields.numbers("edges"),
            proportions=fields.numbers("proportions"),
            minimum=fields.number("min", None, nullable=True),
            maximum=fields.number("max", None, nullable=True),
            missing_rate=fields.number("missing_rate"),
        )
    raise InvalidCardError.wrong(fields.name("kind"), "numeric, categorical or text", kind)


def _check_profile(features: Features, profile: Mapping[str, FeatureProfile]) -> None:
    """Every feature has a reference of its own kind: monitoring bins it by that."""
    for name in features.names:
        kind, expected = (
            ("text", TextProfile)
            if name in features.text
            else ("categorical", CategoricalProfile)
            if name in features.categorical
            else ("numeric", NumericProfile)
        )
        reference = profile.get(name)
        if not isinstance(reference, expected):
            raise InvalidCardError.wrong(f"reference_profile.{name}", f"a {kind} feature's profile", reference)


def _profile_metadata(profile: FeatureProfile) -> dict[str, Any]:
    if isinstance(profile, TextProfile):
        return {"kind": "text", "missing_rate": profile.missing_rate}
    if isinstance(profile, CategoricalProfile):
        return {"kind": "categorical", "categories": dict(profile.categories), "missing_rate": profile.missing_rate}
    return {
        "kind": "numeric",
        "edges": list(profile.edges),
        "proportions": list(profile.proportions),
        "min": profile.minimum,
        "max": profile.maximum,
        "missing_rate": profile.missing_rate,
    }


def _reconstruction(fields: _Fields) -> ReconstructionFit:
    components = fields.raw("components")
    if not isinstance(components, list):
        raise InvalidCardError.wrong(fields.name("components"), "a list of lists", components)
    return ReconstructionFit(
        features=fields.texts("features"),
        median=fields.numbers("median"),
        mean=fields.numbers("mean"),
        scale=fields.numbers("scale"),
        components=tuple(_Fields.need_numbers(f"{fields.name('components')}.{i}", c) for i, c in enumerate(components)),
        explained_variance=fields.number("explained_variance", float("nan")),
        edges=fields.numbers("edges", ()),
        proportions=fields.numbers("proportions", ()),
        rows=fields.count("rows", 0),
    )


def _reconstruction_metadata(fit: ReconstructionFit) -> dict[str, Any]:
    return {
        "features": list(fit.features),
        "median": list(fit.median),
        "mean": list(fit.mean),
        "scale": list(fit.scale),
        "components": [list(row) for row in fit.components],
        "explained_variance": fit.explained_variance,
        "edges": list(fit.edges),
        "proportions": list(fit.proportions),
        "rows": fit.rows,
    }


class _Required:
    """The default of a field that must be present."""


_REQUIRED: Final = _Required()


class _Fields:
    """One JSON object of the metadata, read field by field; `where` is its dotted path in error messages."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, Mapping):
            raise InvalidCardError.wrong(where, "an object", value)
        self.value: Mapping[str, Any] = value
        self.where = where

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        """Whether the field is present and not null (null is how JSON says absent)."""
        return self.value.get(key) is not None

    def raw(self, key: str) -> Any:
        if key not in self.value:
            raise InvalidCardError.missing(self.name(key))
        return self.value[key]

    def _get(self, key: str, default: Any) -> Any:
        if not self.has(key) and not isinstance(default, _Required):
            return default
        return self.raw(key)

    def object(self, key: str, optional: bool = False) -> _Fields:
        """A nested object; an optional one that is absent reads as empty."""
        return _Fields(self._get(key, {} if optional else _REQUIRED), self.name(key))

    def text(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default)
        return value if value is default else self.need_text(self.name(key), value)

    def number(self, key: str, default: Any = _REQUIRED, nullable: bool = False) -> Any:
        if nullable and key in self.value and self.value[key] is None:
            return None
        value = self._get(key, default)
        return value if value is default else self.need_number(self.name(key), value)

    def count(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidCardError.wrong(self.name(key), "a count", value)
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise InvalidCardError.wrong(self.name(key), "true or false", value)
        return value

    def texts(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidCardError.wrong(self.name(key), "a list of strings", value)
        return tuple(value)

    def labels(self, key: str) -> tuple[str, ...]:
        """Class names: strings, or numbers written as they were (a model trained on integer labels)."""
        value = self.raw(key)
        if not isinstance(value, list) or not all(_is_label(v) for v in value):
            raise InvalidCardError.wrong(self.name(key), "a list of labels", value)
        return tuple(str(v) for v in value)

    def numbers(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default)
        return value if value is default else self.need_numbers(self.name(key), value)

    def shares(self, key: str) -> dict[str, float]:
        value = self.raw(key)
        if not isinstance(value, Mapping):
            raise InvalidCardError.wrong(self.name(key), "an object", value)
        return {str(k): self.need_number(f"{self.name(key)}.{k}", v) for k, v in value.items()}

    def share_list(self, key: str) -> tuple[dict[str, float], ...]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise InvalidCardError.wrong(self.name(key), "a list", value)
        return tuple(_Fields({"level": item}, self.name(key)).shares("level") for item in value)

    def time(self, key: str) -> datetime:
        value = self.text(key)
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise InvalidCardError.wrong(self.name(key), "an ISO time", value) from None

    @staticmethod
    def need_text(where: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidCardError.wrong(where, "a string", value)
        return value

    @staticmethod
    def need_number(where: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidCardError.wrong(where, "a number", value)
        return float(value)

    @staticmethod
    def need_numbers(where: str, value: Any) -> tuple[float, ...]:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise InvalidCardError.wrong(where, "a list of numbers", value)
        return tuple(_Fields.need_number(f"{where}.{i}", v) for i, v in enumerate(value))


def _is_label(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool))


def _shown(value: Any) -> str:
    """A value in an error message, cut short: a wrong field may hold a whole profile."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
