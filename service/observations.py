"""What monitoring observes of a batch of decisions: the one type the classifier core produces and monitoring reads.

Plain numpy and the standard library only: the classifier core and monitoring both import this module and must not
import each other (as `service.card`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Observations:
    """What monitoring observes of a batch of decisions: plain arrays and label strings, no classifier objects.

    Attributes:
        labels: decided labels by level: `""` for flat tasks (multilabel: every decided label), `"0"`, `"1"`, …
            for the levels of a hierarchical path.
        drift_labels: the decisions whose distribution is compared with `prediction_distribution`
            (None where there is no decision: abstained, or a path that stopped early).
        confidence: see `Prediction.confidence`.
        margin: top-1 minus top-2 probability per row, where the task has one.
        abstentions: rows with no label.
        labels_per_instance: multilabel: labels decided per row.
        path_depth: hierarchical: levels decided per row.
        incomplete_paths: hierarchical: paths that stopped before a leaf.
        expected_correct: per row, the calibrated probability that the model's default decision is right
            (`Task.expected_correct`); its mean is the label-free accuracy estimate.
    """

    labels: Mapping[str, Sequence[str | None]]
    drift_labels: Sequence[str | None]
    confidence: np.ndarray
    margin: np.ndarray | None = None
    abstentions: int = 0
    labels_per_instance: np.ndarray | None = None
    path_depth: np.ndarray | None = None
    incomplete_paths: int = 0
    expected_correct: np.ndarray | None = None

    @classmethod
    def flat(cls, labels: Sequence[str | None], confidence: np.ndarray, **extra: Any) -> Observations:
        """Observations of a flat task: one level, whose labels are also the ones drift compares."""
        abstentions = list(labels).count(None)  # labels are strings or None: == is `is` here
        return cls(labels={"": labels}, drift_labels=labels, confidence=confidence, abstentions=abstentions, **extra)
