"""Reference profile of training inputs, the baseline that drift and data-quality signals compare against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..card import CategoricalProfile, FeatureProfile, NumericProfile, TextProfile

PROFILE_BINS = 10


def profile_features(
    X: Any, names: Sequence[str], categorical: frozenset[str], text: frozenset[str] = frozenset()
) -> dict[str, FeatureProfile]:
    """Per feature: quantile bin edges and proportions, min/max and missing rate (numeric), category shares, or
    for free text its missing rate only.

    Edges are the inner quantile cut points; bin i holds values in [edges[i-1], edges[i]).
    """
    profile: dict[str, FeatureProfile] = {}
    for name, column in zip(names, _columns(X, names), strict=True):
        if name in text:
            profile[name] = _text_profile(column)
        elif name in categorical:
            profile[name] = _categorical_profile(column)
        else:
            profile[name] = _numeric_profile(np.asarray(column, dtype=np.float64))
    return profile


def _text_profile(column: np.ndarray) -> TextProfile:
    written = sum(1 for v in column if v is not None and v == v and v != "")
    return TextProfile(missing_rate=float(1 - written / max(len(column), 1)))


def _categorical_profile(column: np.ndarray) -> CategoricalProfile:
    values = np.asarray([v for v in column if v is not None and v == v], dtype=object)
    categories, counts = np.unique(values.astype(str), return_counts=True)
    return CategoricalProfile(
        categories={str(c): float(k / max(len(column), 1)) for c, k in zip(categories, counts, strict=True)},
        missing_rate=float(1 - len(values) / max(len(column), 1)),
    )


def _numeric_profile(numeric: np.ndarray) -> NumericProfile:
    present = numeric[~np.isnan(numeric)]
    if len(present) == 0:
        return NumericProfile(edges=(), proportions=(1.0,), minimum=None, maximum=None, missing_rate=1.0)
    edges = np.unique(np.quantile(present, np.linspace(0, 1, PROFILE_BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return NumericProfile(
        edges=tuple(edges.tolist()),
        proportions=tuple((counts / len(present)).tolist()),
        minimum=float(present.min()),
        maximum=float(present.max()),
        missing_rate=float(1 - len(present) / len(numeric)),
    )


def _columns(X: Any, names: Sequence[str]) -> list[np.ndarray]:
    if hasattr(X, "columns"):  # a DataFrame
        return [np.asarray(X[name], dtype=object) for name in names]
    matrix = np.asarray(X, dtype=object)
    return [matrix[:, j] for j in range(len(names))]
