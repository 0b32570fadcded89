"""Threshold tuning at registration."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from service.classifiers.evaluation import tune_threshold


def test_the_tuned_threshold_maximises_f1_and_sits_between_validation_scores() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400).astype(bool)
    p = np.clip(rng.normal(np.where(y, 0.65, 0.35), 0.15), 0.0, 1.0)
    threshold = tune_threshold(y, p)
    assert not np.isclose(p, threshold, rtol=0, atol=1e-12).any()  # a last-bit change flips no validation row
    best = max(f1_score(y, p >= t) for t in np.unique(p))
    assert f1_score(y, p >= threshold) == best


def test_when_every_row_is_best_decided_positive_the_threshold_is_under_the_lowest_score() -> None:
    y = np.array([True, True, True, False])
    p = np.array([0.2, 0.6, 0.7, 0.9])  # any higher threshold loses a positive row
    threshold = tune_threshold(y, p)
    assert 0.0 < threshold < 0.2
