"""The fakes behave like fitted scikit-learn classifiers, so the tasks treat them as they would a real model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .fakes import (
    FixedMultiOutput,
    FixedProba,
    counting_proba,
    fixed_proba,
    multi_output,
    odd_rows_round_down,
    one_column_binary,
)


def test_fitted_fakes_pass_check_is_fitted() -> None:
    """Every helper returns a fitted estimator; an unfitted one is reported as such."""
    fitted = (fixed_proba(["a", "b"]), counting_proba(["a", "b"]), odd_rows_round_down(["a", "b"]))
    for estimator in (*fitted, one_column_binary(0), multi_output(2)):
        check_is_fitted(estimator)
    for unfitted in (FixedProba(), FixedMultiOutput()):
        with pytest.raises(NotFittedError):
            check_is_fitted(unfitted)


def test_fixed_proba_reads_its_column_slice() -> None:
    """`predict_proba` is the input's columns [offset, offset + n_classes); `fit` without `classes` sorts y."""
    X = np.array([[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_array_equal(fixed_proba(["x", "y"], offset=1).predict_proba(X), [[0.2, 0.3]])
    assert FixedProba().fit(X, ["z", "a", "z"]).classes_.tolist() == ["a", "z"]


def test_multi_output_uses_scikit_learns_list_form() -> None:
    """One (rows, 2) array per output, `classes_` one [0, 1] array per output."""
    estimator = multi_output(2)
    proba = estimator.predict_proba(np.array([[0.25, 0.75]]))
    assert isinstance(proba, list) and len(proba) == 2
    np.testing.assert_array_equal(proba[1], [[0.25, 0.75]])
    assert [c.tolist() for c in estimator.classes_] == [[0, 1], [0, 1]]


def test_counting_proba_records_rows_per_call() -> None:
    """Each call appends its row count."""
    estimator = counting_proba(["a", "b"])
    estimator.predict_proba(np.zeros((3, 2)))
    estimator.predict_proba(np.zeros((1, 2)))
    assert estimator.calls_ == [3, 1]


def test_odd_rows_round_down_by_one_ulp_on_odd_row_counts() -> None:
    """Two rows read as `FixedProba` reads them; one of them alone comes out one ulp lower, and never above."""
    estimator = odd_rows_round_down(["a", "b"])
    X = np.array([[0.375, 0.625], [0.5, 0.5]])
    np.testing.assert_array_equal(estimator.predict_proba(X), X)
    alone = estimator.predict_proba(X[:1])
    np.testing.assert_array_equal(alone, np.nextafter(X[:1], 0.0))
    assert (alone < X[:1]).all()
