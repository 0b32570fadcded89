"""The catalog's data discipline: train / calibration / evaluation parts that share no row, and a registration that
never reads the evaluation rows."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

from models import catalog
from models.catalog import (
    CALIBRATION_SHARE,
    CATALOG,
    EVALUATION_SHARE,
    SPLIT_RECIPE,
    TRAIN_SHARE,
    catalog_split,
    evaluation_rows,
)

PARTS = ("train", "calibration", "evaluation")


def row_hashes(X: np.ndarray) -> list[str]:
    """One digest per row, of its values' bytes: rows are the same by content exactly when their digests are."""
    return [hashlib.sha256(np.ascontiguousarray(row, dtype=np.float64).tobytes()).hexdigest() for row in X]


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_the_three_parts_share_no_row_by_content(name: str) -> None:
    """Disjoint by content, not only by index: the data sets hold no row twice (so a row cannot sit in two parts
    under two indices; a data set that did would need deduplicating before the split), and the parts cover them."""
    split = catalog_split(name)
    everything = row_hashes(split.X)
    assert len(set(everything)) == len(everything), f"{name}'s data holds duplicate rows: dedupe before splitting"
    parts = {part: set(row_hashes(split.X[getattr(split, part)])) for part in PARTS}
    for i, a in enumerate(PARTS):
        for b in PARTS[i + 1 :]:
            assert not parts[a] & parts[b], (name, a, b)
    assert set().union(*parts.values()) == set(everything)
    for part, share in zip(PARTS, (TRAIN_SHARE, CALIBRATION_SHARE, EVALUATION_SHARE), strict=True):
        assert abs(len(parts[part]) - share * len(everything)) < 2, (name, part)  # two cuts, each rounds a row


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_part_keeps_the_class_shares(name: str) -> None:
    """Stratified: each part holds each class (each label set, for multilabel) in its data set's share, to the
    rounding of each of the two cuts."""
    split = catalog_split(name)
    keys = [str(label) for label in (split.y.tolist() if split.y.ndim == 2 else split.y)]
    for part in PARTS:
        rows = getattr(split, part)
        for key in set(keys):
            expected = keys.count(key) * len(rows) / len(keys)
            assert abs([keys[i] for i in rows].count(key) - expected) < 2, (name, part, key)


def test_the_split_is_the_same_on_every_call_and_for_every_digits_model() -> None:
    """Registration and `evaluation_rows` compute it apart; the digits models share their rows (the scorecard
    reads a multilabel row's digit from `digits`' evaluation rows)."""
    first, again = catalog_split("digit_groups"), catalog_split("digit_groups")
    for part in PARTS:
        np.testing.assert_array_equal(getattr(first, part), getattr(again, part))
    X, digit = evaluation_rows("digits")
    for name in ("digit_attributes", "digit_attributes_ovr", "digit_groups"):
        np.testing.assert_array_equal(evaluation_rows(name)[0], X)
    np.testing.assert_array_equal(evaluation_rows("digit_groups")[1], digit)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_registration_passes_the_calibration_rows_as_validation_and_never_an_evaluation_row(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What each recipe hands `register_model`: the training rows to profile, the calibration rows to tune,
    calibrate and measure on, its split recorded; no array it passes holds an evaluation row."""
    passed: dict[str, Any] = {}

    def record(name: str, task: str, estimator: Any, X_val: Any, y_val: Any, **kwargs: Any) -> str:
        passed.update(X_val=X_val, y_val=y_val, **kwargs)
        return f"{name}:recorded"

    monkeypatch.setattr(catalog, "register_model", record)
    assert CATALOG[name]() == f"{name}:recorded"
    split = catalog_split(name)
    for argument, part, index in (("X_val", split.X, split.calibration), ("y_val", split.y, split.calibration),
                                  ("X_train", split.X, split.train), ("y_train", split.y, split.train)):  # fmt: skip
        np.testing.assert_array_equal(passed[argument], part[index], err_msg=argument)
    assert passed["training"] == {"split": SPLIT_RECIPE}
    assert callable(passed["refit"])  # the recipe, for the cross-fitted calibration on the training rows only
    evaluation = set(row_hashes(split.X[split.evaluation]))
    for argument in ("X_val", "X_train"):
        assert not evaluation & set(row_hashes(passed[argument])), argument
