"""Reference profile of training inputs, the baseline that drift and data-quality signals compare against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PROFILE_BINS = 10


def profile_features(
    X: Any, names: Sequence[str], categorical: frozenset[str], text: frozenset[str] = frozenset()
) -> dict[str, dict[str, Any]]:
    """Per feature: quantile bin edges and proportions, min/max and missing rate (numeric), category shares, or
    for free text its missing rate only.

    Edges are the inner quantile cut points; bin i holds values in [edges[i-1], edges[i]).
    """
    columns = _columns(X, names)
    profile: dict[str, dict[str, Any]] = {}
    for name, column in zip(names, columns, strict=True):
        if name in text:
            written = sum(1 for v in column if v is not None and v == v and v != "")
            profile[name] = {"kind": "text", "missing_rate": float(1 - written / max(len(column), 1))}
            continue
        if name in categorical:
            values = np.asarray([v for v in column if v is not None and v == v], dtype=object)
            cats, counts = np.unique(values.astype(str), return_counts=True)
            profile[name] = {
                "kind": "categorical",
                "categories": {str(c): float(k / max(len(column), 1)) for c, k in zip(cats, counts, strict=True)},
                "missing_rate": float(1 - len(values) / max(len(column), 1)),
            }
            continue
        numeric = np.asarray(column, dtype=np.float64)
        present = numeric[~np.isnan(numeric)]
        if len(present) == 0:
            profile[name] = {
                "kind": "numeric",
                "edges": [],
                "proportions": [1.0],
                "min": None,
                "max": None,
                "missing_rate": 1.0,
            }
            continue
        edges = np.unique(np.quantile(present, np.linspace(0, 1, PROFILE_BINS + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
        profile[name] = {
            "kind": "numeric",
            "edges": edges.tolist(),
            "proportions": (counts / len(present)).tolist(),
            "min": float(present.min()),
            "max": float(present.max()),
            "missing_rate": float(1 - len(present) / len(numeric)),
        }
    return profile


def _columns(X: Any, names: Sequence[str]) -> list[np.ndarray]:
    if hasattr(X, "columns"):  # a DataFrame
        return [np.asarray(X[name], dtype=object) for name in names]
    matrix = np.asarray(X, dtype=object)
    return [matrix[:, j] for j in range(len(names))]
