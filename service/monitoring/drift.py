"""Population stability index, and the label folding that keeps label sets bounded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

PSI_EPSILON = 1e-4  # floor for reference bins never seen in training, so their term stays finite
PSEUDO_COUNT = 0.5  # added to each observed bin: an empty bin in a small window is sampling noise, not drift
OTHER = "other"


def psi(observed_counts: np.ndarray, expected: np.ndarray) -> float:
    """PSI of observed counts against expected proportions: sum((a - e) * ln(a / e)); NaN with no observation.

    Observed proportions are smoothed with half a count per bin (Jeffreys): without it, a bin that holds 5 %
    of the reference and happens to be empty in 100 rows alone adds 0.3 to the PSI.
    """
    total = observed_counts.sum()
    if total <= 0:
        return float("nan")
    actual = (observed_counts + PSEUDO_COUNT) / (total + PSEUDO_COUNT * len(observed_counts))
    reference = np.maximum(expected / max(expected.sum(), PSI_EPSILON), PSI_EPSILON)
    return float(np.sum((actual - reference) * np.log(actual / reference)))


class LabelFolder:
    """Maps labels to a bounded set: the `limit` most frequent ones keep their name, the rest become `other`."""

    def __init__(self, frequencies: Mapping[str, float], limit: int) -> None:
        ranked = sorted(frequencies, key=lambda label: -frequencies[label])  # stable: ties keep their order
        self.kept = ranked[:limit]
        self.names = self.kept + ([OTHER] if len(ranked) > limit else [])
        self._index = {label: i for i, label in enumerate(self.kept)}
        self._other = len(self.kept) if len(ranked) > limit else None  # no `other` slot: unknown labels are dropped

    def tally(self, labels: Sequence[str | None]) -> dict[int, int]:
        """Count per folded label index (None skipped); the counting runs in C, the loop is over distinct labels."""
        folded: dict[int, int] = {}
        for label, count in Counter(labels).items():
            if label is not None and (code := self._code(label)) >= 0:
                folded[code] = folded.get(code, 0) + count
        return folded

    def counts(self, labels: Sequence[str | None]) -> np.ndarray:
        """Count per folded label (None is skipped), as a vector over `names`."""
        counts = np.zeros(len(self.names), dtype=np.int64)
        for code, count in self.tally(labels).items():
            counts[code] = count
        return counts

    def _code(self, label: str) -> int:
        code = self._index.get(label, self._other)
        return -1 if code is None else code

    def fold(self, shares: Mapping[str, float]) -> np.ndarray:
        """`shares` summed into the folded labels."""
        folded = np.zeros(len(self.names))
        for label, share in shares.items():
            if (code := self._code(label)) >= 0:
                folded[code] += share
        return folded
