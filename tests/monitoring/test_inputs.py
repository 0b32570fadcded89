"""Input monitoring on a hand-made reference profile: drift bins and data-quality faults per feature."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.card import CategoricalProfile, FeatureProfile, NumericProfile
from service.classifiers import profile_features
from service.monitoring.inputs import InputProfile

NAN = float("nan")

# What `service.classifiers.profile.profile_features` finds: inner edges, one proportion per bin (len(edges) + 1,
# among present values), training min/max and the missing rate.
NUMERIC_PROFILE: dict[str, NumericProfile] = {
    "a": NumericProfile(edges=(1.0, 2.0), proportions=(0.25, 0.5, 0.25), minimum=0.0, maximum=3.0, missing_rate=0.2),
    "b": NumericProfile(edges=(10.0,), proportions=(0.5, 0.5), minimum=5.0, maximum=15.0, missing_rate=0.0),
    "c": NumericProfile(edges=(0.0,), proportions=(0.5, 0.5), minimum=-1.0, maximum=1.0, missing_rate=0.0),
    "d": NumericProfile(edges=(), proportions=(1.0,), minimum=0.0, maximum=0.0, missing_rate=0.0),
}
CATEGORICAL_PROFILE: dict[str, CategoricalProfile] = {
    "color": CategoricalProfile(categories={"red": 0.5, "blue": 0.3}, missing_rate=0.2),
    "shape": CategoricalProfile(categories={"round": 0.9}, missing_rate=0.1),
}


def numeric_profile() -> InputProfile:
    """Columns a, b, c, d; drift tracked on b then a (sensitivity order, not column order); c, d untracked."""
    return InputProfile(["a", "b", "c", "d"], [], NUMERIC_PROFILE, tracked=["b", "a"])


def mixed_profile() -> InputProfile:
    """Columns a, color, b, shape; tracked a, color, b; the categorical `shape` untracked."""
    profile: dict[str, FeatureProfile] = {**NUMERIC_PROFILE, **CATEGORICAL_PROFILE}
    return InputProfile(["a", "color", "b", "shape"], ["color", "shape"], profile, tracked=["a", "color", "b"])


def bins_of(profile: InputProfile, bins: np.ndarray) -> dict[str, list[float]]:
    """The window's input columns split per tracked feature."""
    return {
        name: bins[profile.offsets[f] : profile.offsets[f + 1]].tolist() for f, name in enumerate(profile.feature_order)
    }


# rows of (a, b, c, d), and what each value does
NUMERIC_ROWS = [
    [0.5, 10.0, 0.0, 0.0],  # a bin 0; b = edge 10 -> upper bin 1
    [1.0, 4.0, 2.0, 0.0],  # a = edge 1 -> bin 1; b below min (bin 0); c above max (untracked)
    [2.0, NAN, NAN, -3.0],  # a = edge 2 -> bin 2; b missing; c missing; d below min (untracked)
    [NAN, 15.0, -1.0, 0.0],  # a missing; b = max (in range) bin 1; c = min (in range)
    [3.5, 16.0, 0.5, 0.0],  # a above max, top bin 2; b above max, bin 1
]
NUMERIC_BINS = {"b": [1.0, 3.0, 1.0], "a": [1.0, 1.0, 2.0, 1.0]}  # b: 2 bins + missing; a: 3 bins + missing
NUMERIC_ISSUES = {
    ("a", "missing"): 1,
    ("a", "out_of_range"): 1,
    ("b", "missing"): 1,
    ("b", "out_of_range"): 2,
    ("other", "missing"): 1,  # c
    ("other", "out_of_range"): 2,  # c above, d below
}


def test_layout_follows_the_tracked_order() -> None:
    """Window columns: each tracked feature's bins plus a missing bin, in tracked order."""
    profile = numeric_profile()
    assert profile.feature_order == ["b", "a"]
    assert profile.sizes == [3, 4]
    assert profile.offsets.tolist() == [0, 3, 7]
    assert profile.width == 7


@pytest.mark.parametrize("kind", ["float", "object", "frame"])
def test_numeric_bins_and_faults(kind: str) -> None:
    """Edges go to the upper bin, NaN to the missing bin; faults per tracked feature, untracked ones as `other`."""
    X: Any = np.array(NUMERIC_ROWS, dtype=np.float64)
    if kind == "object":
        X = np.array([[None if v != v else v for v in row] for row in NUMERIC_ROWS], dtype=object)  # None = missing
    elif kind == "frame":
        X = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    profile = numeric_profile()
    report = profile.observe(X)
    assert bins_of(profile, report.bins) == NUMERIC_BINS
    assert report.bins.sum() == len(NUMERIC_ROWS) * 2  # every row lands once per tracked feature
    assert report.issues == NUMERIC_ISSUES


def test_bins_agree_with_searchsorted_right() -> None:
    """Random values, edges included: each tracked feature's bins equal `np.searchsorted(edges, v, "right")` counts."""
    rng = np.random.default_rng(3)
    values = rng.choice([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 9.0, 10.0, 11.0, 20.0, NAN], size=(200, 4))
    profile = numeric_profile()
    bins = bins_of(profile, profile.observe(values).bins)
    for name, column in (("a", 0), ("b", 1)):
        edges = np.asarray(NUMERIC_PROFILE[name].edges)
        present = values[:, column][~np.isnan(values[:, column])]
        expected = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1).tolist()
        assert bins[name] == [*expected, float(np.isnan(values[:, column]).sum())]


def test_a_clean_batch_has_no_issues() -> None:
    """Values inside [min, max], none missing: no fault at all (not zero counts)."""
    report = numeric_profile().observe(np.array([[0.0, 5.0, 1.0, 0.0], [3.0, 15.0, -1.0, 0.0]]))
    assert report.issues == {}


def test_expected_proportions_per_feature() -> None:
    """Numeric: the present proportions scaled by (1 - missing rate), then the missing rate; each sums to 1."""
    profile = mixed_profile()
    expected = dict(zip(profile.feature_order, (e.tolist() for e in profile.expected), strict=True))
    assert expected["a"] == pytest.approx([0.2, 0.4, 0.2, 0.2])
    assert expected["b"] == pytest.approx([0.5, 0.5, 0.0])
    assert expected["color"] == pytest.approx([0.3, 0.5, 0.0, 0.2])  # blue, red (sorted), unseen, missing
    for values in profile.expected:
        assert values.sum() == pytest.approx(1.0)
    assert [len(e) for e in profile.expected] == profile.sizes


def test_expected_proportions_of_a_real_profile_sum_to_one() -> None:
    """A profile written by `profile_features` itself (numeric with NaN, categorical with None): each sums to 1."""
    X = np.array(
        [[float(i), ["x", "y", None, "x"][i % 4] if i % 5 else None] for i in range(40)] + [[NAN, "z"]],
        dtype=object,
    )
    reference = profile_features(X, ["n", "cat"], frozenset({"cat"}))
    profile = InputProfile(["n", "cat"], ["cat"], reference, tracked=["n", "cat"])
    for values in profile.expected:
        assert values.sum() == pytest.approx(1.0)
    assert profile.observe(X).bins.sum() == 2 * len(X)


def test_categorical_bins_and_faults_on_an_object_matrix() -> None:
    """Known categories (sorted), then unseen, then missing (None or NaN); unseen and missing counted as faults."""
    X = np.array(
        [
            [0.5, "red", 10.0, "round"],
            [1.5, "blue", 11.0, "round"],
            [1.5, "green", 11.0, "round"],  # unseen color
            [1.5, None, 11.0, "round"],  # missing color
            [1.5, NAN, 11.0, "round"],  # missing color (the service's validation writes NaN)
            [2.5, "red", 12.0, "round"],
        ],
        dtype=object,
    )
    profile = mixed_profile()
    assert profile.feature_order == ["a", "b", "color"]  # numeric first, then categorical
    report = profile.observe(X)
    assert bins_of(profile, report.bins) == {
        "a": [1.0, 4.0, 1.0, 0.0],
        "b": [0.0, 6.0, 0.0],
        "color": [1.0, 2.0, 1.0, 2.0],  # blue, red, unseen, missing
    }
    assert report.issues == {("color", "unseen_category"): 1, ("color", "missing"): 2}


def test_untracked_categorical_faults_are_reported_as_other() -> None:
    """Faults are checked on every feature: an untracked categorical's unseen and missing values count as `other`.

    BUG (service/monitoring/inputs.py, `observe`): unseen/missing categories are only counted in the loop over
    `tracked_categorical`, so an untracked categorical feature's faults are never reported (contrary to the
    class docstring and to the spec of classifier_input_issues_total).
    """
    X = np.array(
        [
            [0.5, "red", 10.0, "round"],
            [0.5, "red", 10.0, "square"],  # unseen shape
            [0.5, "red", 10.0, None],  # missing shape
            [0.5, "red", 10.0, NAN],  # missing shape
        ],
        dtype=object,
    )
    report = mixed_profile().observe(X)
    assert report.issues == {("other", "unseen_category"): 1, ("other", "missing"): 2}


def test_untracked_faults_from_several_features_add_up_in_other() -> None:
    """`other` is one series: two untracked features' faults of one kind are summed."""
    report = numeric_profile().observe(np.array([[0.5, 10.0, 5.0, 5.0], [0.5, 10.0, NAN, NAN]]))
    assert report.issues == {("other", "out_of_range"): 2, ("other", "missing"): 2}


def test_fold_feature() -> None:
    """The `feature` label of a rejected row's fault: its name if tracked, `other` if not."""
    profile = numeric_profile()
    assert [profile.fold_feature(n) for n in ["a", "b", "c", "d", "zzz"]] == ["a", "b", "other", "other", "other"]


def test_unbounded_reference_flags_nothing_out_of_range() -> None:
    """A feature always missing in training (min/max None) has no range to leave."""
    reference = NumericProfile(edges=(), proportions=(1.0,), minimum=None, maximum=None, missing_rate=1.0)
    profile = InputProfile(["n"], [], {"n": reference}, tracked=["n"])
    report = profile.observe(np.array([[-1e300], [1e300], [NAN]]))
    assert report.issues == {("n", "missing"): 1}
    assert report.bins.tolist() == [2.0, 1.0]  # the one bin, the missing bin


def test_bins_are_labelled_by_lower_edge_category_or_kind_with_their_reference_share() -> None:
    """Numeric bins by lower edge (the first from -Inf), categorical ones by category, then `unseen`, `missing`
    last; each with the share of the training rows the PSI compares against, in the window's column order."""
    bins = mixed_profile().bins()
    assert [(feature, label) for feature, label, _ in bins] == [
        ("a", "-Inf"), ("a", "1"), ("a", "2"), ("a", "missing"),
        ("b", "-Inf"), ("b", "10"), ("b", "missing"),
        ("color", "blue"), ("color", "red"), ("color", "unseen"), ("color", "missing"),
    ]  # fmt: skip
    assert [share for _, _, share in bins] == pytest.approx([0.2, 0.4, 0.2, 0.2, 0.5, 0.5, 0.0, 0.3, 0.5, 0.0, 0.2])
    assert len(bins) == mixed_profile().width


def test_bin_labels_stay_distinct_when_edges_or_categories_read_alike() -> None:
    """Edges equal to 6 significant digits get every digit; a category named like a special bin gets a `=`."""
    close = replace(NUMERIC_PROFILE["b"], edges=(1.0000001, 1.0000002), proportions=(0.3, 0.3, 0.4))
    odd = CategoricalProfile(categories={"missing": 0.5, "unseen": 0.5}, missing_rate=0.0)
    profile = InputProfile(["x", "k"], ["k"], {"x": close, "k": odd}, tracked=["x", "k"])
    assert profile.bin_labels == [
        ["-Inf", "1.0000001", "1.0000002", "missing"],
        ["=missing", "=unseen", "unseen", "missing"],
    ]
