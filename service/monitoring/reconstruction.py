"""Drift in the joint distribution of the inputs: how badly a PCA of the training rows reconstructs each row.

NannyML's data reconstruction drift. A change that keeps every feature's own distribution but breaks how features go
together (two columns swapped by an upstream join, one column shuffled) leaves every per-feature PSI near 0; rows off
the training rows' correlation structure fall away from the principal subspace and reconstruct worse.

Registration fits the PCA (`fit_reconstruction`) on the training rows' numeric features, standardized with the
training mean and standard deviation, missing and non-finite values imputed with the training median; categorical
and free-text features are left out (their drift is per-feature PSI's). It keeps the components that explain 90 % of
the variance, and bins the per-row error of the calibration rows, which the PCA never saw, as live rows are; serving
counts each accepted row into those bins (`Reconstruction.counts`), and the recording rules compute a PSI of the
live bins against the calibration shares, as for a feature.

What it cannot see: a change along the principal components (a population shift that keeps the correlations:
per-feature PSI's), and a fault in a categorical or text column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..card import ReconstructionFit

VARIANCE_KEPT = 0.9
ERROR_BINS = 10  # deciles of the calibration rows' errors
MAX_FEATURES = 100  # the most sensitive numeric features: the metadata holds components x features floats
SIGNIFICANT_DIGITS = 7  # float32's precision, far finer than a decile edge needs: the metadata stays small


class Reconstruction:
    """A fitted PCA's reconstruction error of rows, binned by the calibration rows' deciles."""

    def __init__(self, fitted: ReconstructionFit) -> None:
        self.features: list[str] = list(fitted.features)
        self._median = np.asarray(fitted.median, dtype=np.float64)
        self._mean = np.asarray(fitted.mean, dtype=np.float64)
        self._scale = np.asarray(fitted.scale, dtype=np.float64)
        # features x components: one matrix multiply per batch projects every row onto the principal subspace
        self._components = np.ascontiguousarray(np.asarray(fitted.components, dtype=np.float64).T)
        self.edges = np.asarray(fitted.edges, dtype=np.float64)
        self.shares: list[float] = list(fitted.proportions)

    def errors(self, values: np.ndarray) -> np.ndarray:
        """Per row (rows x `features`, NaN for a missing value), the mean squared standardized residual of its
        reconstruction; +inf where the values are too large for the arithmetic (as far from training as it gets)."""
        values = np.where(np.isfinite(values), values, self._median)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (values - self._mean) / self._scale
            projected = z @ self._components
            # the components are orthonormal: |z - reconstruction|^2 = |z|^2 - |projection|^2
            residual = ((z * z).sum(axis=1) - (projected * projected).sum(axis=1)) / z.shape[1]
        # below 0 by rounding only; NaN where both terms overflowed (np.nan_to_num costs ten times more)
        error: np.ndarray = np.where(np.isnan(residual), np.inf, np.maximum(residual, 0.0))
        return error

    def counts(self, values: np.ndarray) -> np.ndarray:
        """Rows per error bin; bin i holds errors in [edges[i-1], edges[i])."""
        index = np.searchsorted(self.edges, self.errors(values), side="right")
        return np.bincount(index, minlength=len(self.edges) + 1).astype(np.float64)


def fit_reconstruction(
    X_train: Any, X_calibration: Any, names: Sequence[str], numeric: Sequence[str]
) -> ReconstructionFit | None:
    """The PCA of the training rows' `numeric` features (the first `MAX_FEATURES` of them, most sensitive first,
    taken in column order) and the decile edges and shares of the calibration rows' errors, for the card; None where
    there is nothing to fit (fewer than two numeric features or training rows, no calibration row, no variance)."""
    kept_features = set(numeric[:MAX_FEATURES])
    features = [name for name in names if name in kept_features]
    train = _numeric(X_train, names, features)
    calibration = _numeric(X_calibration, names, features)
    if len(features) < 2 or len(train) < 2 or len(calibration) == 0:
        return None
    median = np.nan_to_num(np.nanmedian(np.where(np.isfinite(train), train, np.nan), axis=0), nan=0.0)
    train = np.where(np.isfinite(train), train, median)
    mean = train.mean(axis=0)
    scale = train.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature: any other value is an error, in its own units
    _, singular, components = np.linalg.svd((train - mean) / scale, full_matrices=False)
    variance = singular**2
    if variance.sum() <= 0:
        return None
    kept = int(np.searchsorted(np.cumsum(variance) / variance.sum(), VARIANCE_KEPT) + 1)
    kept = min(max(kept, 1), len(features) - 1)
    fitted = ReconstructionFit(
        features=tuple(features),
        median=_compact(median),
        mean=_compact(mean),
        scale=_compact(scale),
        components=tuple(_compact(row) for row in components[:kept]),
        explained_variance=round(float(variance[:kept].sum() / variance.sum()), 4),
    )
    errors = Reconstruction(fitted).errors(calibration)  # the stored (rounded) parameters, as serving uses them
    edges = np.unique(np.quantile(errors, np.linspace(0, 1, ERROR_BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, errors, side="right"), minlength=len(edges) + 1)
    return replace(fitted, edges=_compact(edges), proportions=_compact(counts / len(errors)), rows=len(errors))


def _numeric(X: Any, names: Sequence[str], features: Sequence[str]) -> np.ndarray:
    """The `features` columns of rows `X` (a DataFrame or a matrix whose columns are `names`) as floats."""
    if hasattr(X, "columns"):
        return np.asarray(X[list(features)], dtype=np.float64)
    columns = [list(names).index(name) for name in features]
    return np.asarray(np.asarray(X, dtype=object)[:, columns], dtype=np.float64)


def _compact(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in values.tolist())
