"""PSI against hand computations, and the label folding that keeps label sets bounded."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from service.monitoring.drift import OTHER, LabelFolder, psi


def test_psi_matches_a_hand_computation() -> None:
    """Observed counts get half a count per bin; expected proportions are floored at 1e-4 (not renormalised)."""
    observed = np.array([3.0, 0.0, 1.0])
    expected = np.array([0.5, 0.5, 0.0])
    # smoothed observed: (3.5, 0.5, 1.5) / (4 + 1.5); reference: 0.5, 0.5 and the floor 1e-4
    a = [3.5 / 5.5, 0.5 / 5.5, 1.5 / 5.5]
    e = [0.5, 0.5, 1e-4]
    hand = sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True))
    assert psi(observed, expected) == pytest.approx(hand, rel=1e-12)
    # the terms by hand: 0.1364 * ln(1.2727) + (-0.4091) * ln(0.1818) + 0.2726 * ln(2727.3)
    #                  = 0.0329 + 0.6974 + 2.1568
    assert hand == pytest.approx(2.8871, abs=1e-4)


def test_psi_normalises_expected_weights() -> None:
    """Expected values are proportions after division by their sum: weights (2, 6) mean (0.25, 0.75)."""
    observed = np.array([10.0, 30.0])
    a = [10.5 / 41, 30.5 / 41]
    hand = (a[0] - 0.25) * math.log(a[0] / 0.25) + (a[1] - 0.75) * math.log(a[1] / 0.75)
    assert psi(observed, np.array([2.0, 6.0])) == pytest.approx(hand, rel=1e-12)
    assert psi(observed, np.array([0.25, 0.75])) == pytest.approx(hand, rel=1e-12)


def test_psi_is_about_zero_for_the_same_distribution() -> None:
    """A large window with the reference's exact proportions: only the pseudo-count is left, far below 0.1."""
    expected = np.array([0.05, 0.15, 0.3, 0.3, 0.15, 0.05])
    assert psi(expected * 1_000_000, expected) == pytest.approx(0.0, abs=1e-9)
    assert 0 <= psi(expected * 1000, expected) < 1e-3


def test_psi_is_nan_without_observations() -> None:
    """No row in the window: no PSI (NaN), not 0 (which would claim no drift)."""
    assert math.isnan(psi(np.zeros(4), np.full(4, 0.25)))
    assert math.isnan(psi(np.array([], dtype=np.float64), np.array([])))


def test_psi_grows_as_the_distribution_shifts_either_way() -> None:
    """Sliding a symmetric distribution k bins left or right gives the same PSI, growing with k."""
    reference = np.array([0.0, 0.0, 0.0, 0.05, 0.2, 0.5, 0.2, 0.05, 0.0, 0.0, 0.0])
    n = 10_000

    def shifted(k: int) -> float:
        return psi(np.roll(reference, k) * n, reference)  # the zero tails keep the roll from wrapping mass

    right = [shifted(k) for k in range(4)]
    left = [shifted(-k) for k in range(4)]
    assert right == pytest.approx(left, rel=1e-9)
    assert right[0] < 1e-3 < right[1] < right[2] < right[3]
    assert right[1] > 0.25  # one bin of a narrow distribution is already a significant shift


def test_folder_keeps_the_most_frequent_labels() -> None:
    """The `limit` most frequent labels keep their names, in frequency order, then `other`."""
    folder = LabelFolder({"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.1}, limit=2)
    assert folder.kept == ["b", "c"]
    assert folder.names == ["b", "c", OTHER]


def test_folder_ties_keep_input_order() -> None:
    """Equal frequencies: the labels given first are kept (a stable, reproducible label set)."""
    assert LabelFolder({"x": 0.2, "y": 0.2, "z": 0.2}, limit=2).kept == ["x", "y"]
    assert LabelFolder({"z": 0.2, "y": 0.2, "x": 0.2}, limit=2).kept == ["z", "y"]
    assert LabelFolder({"p": 0.1, "x": 0.3, "y": 0.3}, limit=2).names == ["x", "y", OTHER]


def test_folder_without_overflow_has_no_other() -> None:
    """At most `limit` labels: all kept, no `other` series."""
    assert LabelFolder({"a": 0.6, "b": 0.4}, limit=2).names == ["a", "b"]
    assert LabelFolder({"a": 0.6, "b": 0.4}, limit=20).names == ["a", "b"]


def test_counts_by_hand() -> None:
    """Kept labels counted by name; folded and unknown labels go to `other`; None is skipped."""
    folder = LabelFolder({"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.1}, limit=2)
    counts = folder.counts(["b", "a", None, "c", "b", "never-seen", None, "d"])
    assert counts.tolist() == [2, 1, 3]  # b, c, other (a, never-seen, d)
    assert folder.counts([]).tolist() == [0, 0, 0]
    assert folder.counts([None, None]).tolist() == [0, 0, 0]


def test_counts_match_a_counter_on_random_labels() -> None:
    """Random label lists (with None) against a Counter folded by hand."""
    rng = np.random.default_rng(7)
    vocabulary = [f"class-{i}" for i in range(30)]
    frequencies = dict(zip(vocabulary, rng.random(30).tolist(), strict=True))
    folder = LabelFolder(frequencies, limit=5)
    top = sorted(vocabulary, key=lambda label: -frequencies[label])[:5]
    for _ in range(20):
        size = int(rng.integers(0, 300))
        pool = [*vocabulary, "unknown-1", "unknown-2", None]
        labels = [pool[i] for i in rng.integers(0, len(pool), size).tolist()]
        tally = Counter(label for label in labels if label is not None)
        expected = [tally[label] for label in top] + [sum(n for label, n in tally.items() if label not in top)]
        assert folder.counts(labels).tolist() == expected
        assert folder.names == [*top, OTHER]


def test_fold_sums_shares_into_the_folded_labels() -> None:
    """Shares of folded and unknown labels add up in `other`; kept labels keep their share."""
    folder = LabelFolder({"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.1}, limit=2)
    folded = folder.fold({"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.05, "e": 0.05})
    assert folded.tolist() == pytest.approx([0.5, 0.3, 0.2])
    assert folder.fold({}).tolist() == [0.0, 0.0, 0.0]
