"""What monitoring observes of a batch of decisions: the one type the classifier core produces and monitoring reads.

Plain numpy and the standard library only: the classifier core and monitoring both import this module and must not
import each other (as `service.card`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
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
        abstentions = sum(label is None for label in labels)
        return cls(labels={"": labels}, drift_labels=labels, confidence=confidence, abstentions=abstentions, **extra)

    @classmethod
    def join(cls, parts: Sequence[Observations]) -> Observations:
        """The observations of several batches of one model as one, in order: monitoring's fixed cost per
        observation is paid once for a group of model calls."""
        if len(parts) == 1:
            return parts[0]
        levels = list(parts[0].labels)  # one model: every batch has the same levels
        labels = {level: list(chain.from_iterable(part.labels[level] for part in parts)) for level in levels}
        flat = all(part.drift_labels is part.labels.get("") for part in parts)
        drift = labels[""] if flat else list(chain.from_iterable(part.drift_labels for part in parts))
        return cls(
            labels=labels,
            drift_labels=drift,  # flat: the same list as the level's, which monitoring counts once
            confidence=np.concatenate([part.confidence for part in parts]),
            margin=_joined([part.margin for part in parts]),
            abstentions=sum(part.abstentions for part in parts),
            labels_per_instance=_joined([part.labels_per_instance for part in parts]),
            path_depth=_joined([part.path_depth for part in parts]),
            incomplete_paths=sum(part.incomplete_paths for part in parts),
            expected_correct=_joined([part.expected_correct for part in parts]),
        )


def _joined(arrays: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """The arrays concatenated; None where the task has no such value (None in every part)."""
    present = [array for array in arrays if array is not None]
    return np.concatenate(present) if present else None
