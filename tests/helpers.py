"""Shared test helpers: catalog data."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits


def digits_rows(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """load_digits rows and integer targets (the first n)."""
    X, y = load_digits(return_X_y=True)
    return (X, y) if n is None else (X[:n], y[:n])


def cancer_rows(n: int | None = None) -> tuple[np.ndarray, list[str]]:
    """load_breast_cancer rows (the first n) and the feature names."""
    data = load_breast_cancer()
    return (data.data if n is None else data.data[:n]), list(data.feature_names)


def catalog_rows(name: str, n: int | None = None) -> np.ndarray:
    """Rows a catalog model takes: breast cancer rows for `breast_cancer`, digits for the others."""
    return cancer_rows(n)[0] if name == "breast_cancer" else digits_rows(n)[0]
