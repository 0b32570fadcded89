"""FeatureSchema.validate: request rows (lists or objects) to a float matrix, or an error naming row and feature."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from service.classifiers import FeatureSchema, InvalidInputError, InvalidModelError

NUMERIC = FeatureSchema(names=("f0", "f1", "f2"))
MISSING_OK = FeatureSchema(names=("f0", "f1", "f2"), allows_missing=True)
MIXED = FeatureSchema(names=("colour", "size"), categorical=frozenset({"colour"}))
# a model trained from a file with a time column and an id column besides its features
RECORDS = FeatureSchema(names=("f0", "f1", "f2"), allows_missing=True, ignored=("signup", "customer"))


def invalid(schema: FeatureSchema, rows: Any) -> InvalidInputError:
    """The error `validate` raises for `rows` (fails the test when it raises nothing, or something else)."""
    with pytest.raises(InvalidInputError) as excinfo:
        schema.validate(rows)
    return excinfo.value


def test_list_rows_become_a_float_matrix() -> None:
    """Numbers in feature order, ints included, become float64 in the same order."""
    X = NUMERIC.validate([[1, 2.5, -3], [0.0, 1e-3, 7]])
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, [[1.0, 2.5, -3.0], [0.0, 1e-3, 7.0]])


def test_object_rows_in_any_key_order_equal_list_rows() -> None:
    """Objects keyed by feature name are reordered into the model's column order."""
    as_lists = NUMERIC.validate([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    as_objects = NUMERIC.validate([{"f2": 3.0, "f0": 1.0, "f1": 2.0}, {"f1": 5.0, "f2": 6.0, "f0": 4.0}])
    np.testing.assert_array_equal(as_objects, as_lists)
    assert as_objects.dtype == np.float64


def test_single_feature_object_rows() -> None:
    """A one-feature model still gets a rows x 1 matrix from objects."""
    X = FeatureSchema(names=("only",)).validate([{"only": 1.5}, {"only": 2}])
    np.testing.assert_array_equal(X, [[1.5], [2.0]])


def test_wrong_value_count_names_the_row() -> None:
    """Row 3 of a batch with 2 values for 3 features: field `instances[3]`, message with both counts."""
    error = invalid(NUMERIC, [[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2], [1, 2, 3]])
    assert error.field == "instances[3]"
    assert "row 3" in error.message and "2" in error.message and "3" in error.message


def test_every_row_too_long_names_the_first() -> None:
    """A consistent but wrong count is reported at row 0."""
    error = invalid(NUMERIC, [[1, 2, 3, 4], [1, 2, 3, 4]])
    assert error.field == "instances[0]"
    assert "4" in error.message and "3" in error.message


def test_missing_feature_in_the_first_object_row() -> None:
    """An object without `f1` names row and feature."""
    error = invalid(NUMERIC, [{"f0": 1, "f2": 3}])
    assert error.field == "instances[0].f1"
    assert "f1" in error.message


def test_unknown_feature_in_the_first_object_row() -> None:
    """An object with every feature plus `f9` names the unknown one."""
    error = invalid(NUMERIC, [{"f0": 1, "f1": 2, "f2": 3, "f9": 4}])
    assert error.field == "instances[0].f9"
    assert "f9" in error.message and "unknown" in error.message


def test_renamed_feature_with_the_right_count_is_reported_missing() -> None:
    """Same number of keys, one misspelt: the missing name is reported."""
    error = invalid(NUMERIC, [{"f0": 1, "F1": 2, "f2": 3}])
    assert error.field == "instances[0].f1"


VALID = {"f0": 1.0, "f1": 2.0, "f2": 3.0}


@pytest.mark.parametrize(
    ("bad_row", "field"),
    [
        ({"f0": 1.0, "f2": 3.0}, "instances[3].f1"),  # missing, fewer keys
        ({"f0": 1.0, "f1x": 2.0, "f2": 3.0}, "instances[3].f1"),  # missing, same key count
        ({**VALID, "extra": 0.0}, "instances[3].extra"),  # unknown, more keys
    ],
)
def test_object_row_faults_after_valid_rows_name_that_row(bad_row: dict[str, float], field: str) -> None:
    """A faulty object in row 3 after three valid ones is an input error at `instances[3].<feature>`."""
    error = invalid(NUMERIC, [VALID, VALID, VALID, bad_row])
    assert error.field == field
    assert "row 3" in error.message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(value: float) -> None:
    """NaN and +-inf name their row and feature."""
    error = invalid(NUMERIC, [[1.0, 2.0, 3.0], [1.0, value, 3.0]])
    assert error.field == "instances[1].f1"
    assert "finite" in error.message


@pytest.mark.parametrize("schema", [NUMERIC, MISSING_OK, MIXED])
@pytest.mark.parametrize("sign", [1, -1])
def test_an_integer_too_large_for_a_double_is_rejected(schema: FeatureSchema, sign: int) -> None:
    """A JSON integer of hundreds of digits is no double: an input error naming row and feature, counted as
    non-finite, with its length rather than its digits in the message."""
    huge = sign * 10**400
    row: list[Any] = ["red", huge] if schema is MIXED else [1.0, huge, 3.0]
    feature = schema.names[1]
    error = invalid(schema, [row[:], row[:1] + [2.0] + row[2:], row])
    assert error.field == f"instances[0].{feature}"
    assert "row 0" in error.message and f"'{feature}'" in error.message and "401 digits" in error.message
    assert str(10**400) not in error.message
    assert error.issues == {(feature, "non_finite"): 2}


def test_null_is_rejected_without_missing_value_support() -> None:
    """`null` where the model takes no missing values is an input error naming the feature."""
    error = invalid(NUMERIC, [[1.0, 2.0, 3.0], [1.0, 2.0, None]])
    assert error.field == "instances[1].f2"
    assert "null" in error.message and "missing" in error.message


def test_null_becomes_nan_when_the_model_allows_missing_values() -> None:
    """With `allows_missing`, `null` is NaN in the matrix; the other cells are unchanged."""
    X = MISSING_OK.validate([[1.0, None, 3.0], {"f2": None, "f0": 4, "f1": 5.5}])
    assert X.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(X), [[False, True, False], [False, False, True]])
    assert X[0, 0] == 1.0 and X[1, 1] == 5.5


def test_infinity_is_rejected_even_when_missing_values_are_allowed() -> None:
    """`allows_missing` admits null, not inf, also on the cell-by-cell path."""
    error = invalid(MISSING_OK, [[None, math.inf, 1.0]])
    assert error.field == "instances[0].f1"


def test_string_for_a_numeric_feature_is_rejected() -> None:
    """A numeric-looking string is still not a number."""
    error = invalid(NUMERIC, [[1.0, "2.0", 3.0]])
    assert error.field == "instances[0].f1"
    assert "'2.0'" in error.message and "number" in error.message


def test_strings_are_accepted_for_categorical_features() -> None:
    """A categorical feature keeps its string; numeric features are floats."""
    X = MIXED.validate([["red", 1.5], {"size": 2, "colour": "blue"}])
    assert X.tolist() == [["red", 1.5], ["blue", 2.0]]


def test_a_category_that_is_not_text_is_rejected() -> None:
    """A lone UTF-16 surrogate (`"\\ud800"`, which Python's JSON parser lets through) is no text: the log could not
    store it, so it is refused here, naming row and feature."""
    error = invalid(MIXED, [["red", 1.0], ["re\ud800d", 2.0]])
    assert error.field == "instances[1].colour"
    assert "surrogate" in error.message and "text" in error.message
    assert MIXED.validate([["\U0001f600", 1.0]]).tolist() == [["\U0001f600", 1.0]]  # a pair is a character


def test_string_for_the_numeric_feature_of_a_categorical_model_is_rejected() -> None:
    """Only the categorical features take strings."""
    error = invalid(MIXED, [["red", "large"]])
    assert error.field == "instances[0].size"


def test_mixed_list_and_object_rows_give_the_same_matrix() -> None:
    """CONTRACT.md's own example mixes a list row and an object row in one request: each row is read in its form."""
    mixed = NUMERIC.validate([[1.0, 2.0, 3.0], {"f2": 6.0, "f0": 4.0, "f1": 5.0}, [7, 8, 9]])
    np.testing.assert_array_equal(mixed, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    assert mixed.dtype == np.float64


def test_object_row_faults_in_a_mixed_batch_name_the_row() -> None:
    """A bad object after a list row is still reported at its own index and feature."""
    error = invalid(NUMERIC, [[1.0, 2.0, 3.0], {"f0": 1.0, "f1": 2.0}])
    assert error.field == "instances[1].f2"


def test_numbers_for_a_categorical_feature_are_rejected() -> None:
    """A categorical feature takes a category string; a number there names the feature and what was expected."""
    error = invalid(MIXED, [[3, 1.5]])
    assert error.field == "instances[0].colour"
    assert "category" in error.message


def test_a_row_that_is_neither_list_nor_object_is_named() -> None:
    """A scalar row names its index and what was expected."""
    error = invalid(NUMERIC, [[1.0, 2.0, 3.0], "1,2,3"])
    assert error.field == "instances[1]"
    assert "string" in error.message and "expected" in error.message


def test_empty_instances_are_rejected() -> None:
    """At least one row."""
    assert invalid(NUMERIC, []).field == "instances"


def test_booleans_are_rejected_when_they_are_the_only_values() -> None:
    """A row of JSON booleans is not a row of numbers."""
    error = invalid(NUMERIC, [[True, False, True]])
    assert error.field == "instances[0].f0"
    assert "boolean" in error.message


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([[1.0, True, 3.0]], "instances[0].f1"),
        ([[1.0, 2.0, 3.0], [True, False, True]], "instances[1].f0"),
    ],
)
def test_booleans_among_numbers_are_rejected(rows: list[list[Any]], field: str) -> None:
    """CONTRACT.md: a value is a number, null or a string; `true` is none of them, wherever it appears."""
    assert invalid(NUMERIC, rows).field == field


def test_field_path_names_row_and_feature() -> None:
    """The third row's `f1` is `instances[2].f1`."""
    rows: list[Any] = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, "x", 0.0]]
    assert invalid(NUMERIC, rows).field == "instances[2].f1"


BAD_CELLS: list[tuple[FeatureSchema, Any, int, str]] = [
    (NUMERIC, [[1.0, 2.0, 3.0], [1.0, 2.0, math.nan]], 1, "f2"),
    (NUMERIC, [[1.0, 2.0, 3.0], [1.0, 2.0, None]], 1, "f2"),
    (NUMERIC, [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], ["a", 2.0, 3.0]], 2, "f0"),
    (NUMERIC, [[1.0, [2.0], 3.0]], 0, "f1"),
    (NUMERIC, [[1.0, {"v": 2.0}, 3.0]], 0, "f1"),
    (NUMERIC, [{"f0": 1.0, "f2": 3.0}], 0, "f1"),
    (NUMERIC, [{"f0": 1.0, "f1": 2.0, "f2": 3.0, "zz": 0.0}], 0, "zz"),
    (MIXED, [["red", None]], 0, "size"),
    (MIXED, [[None, 1.0]], 0, "colour"),
    (MISSING_OK, [[1.0, 2.0, math.nan]], 0, "f2"),
]


@pytest.mark.parametrize(("schema", "rows", "i", "feature"), BAD_CELLS)
def test_every_cell_error_names_row_and_feature_and_what_was_expected(
    schema: FeatureSchema, rows: Any, i: int, feature: str
) -> None:
    """Message: `row i`, the feature's name, and `expected ...`; field: `instances[i].feature`."""
    error = invalid(schema, rows)
    assert error.field == f"instances[{i}].{feature}"
    assert re.search(rf"\brow {i}\b", error.message), error.message
    assert f"'{feature}'" in error.message, error.message
    assert "expected" in error.message, error.message


def test_card_round_trip() -> None:
    """`to_card` / `from_card` keep every attribute, the ignored columns included."""
    schema = FeatureSchema(names=("a", "b"), categorical=frozenset({"b"}), allows_missing=True)
    assert FeatureSchema.from_card(schema.to_card()) == schema
    ignoring = FeatureSchema(names=("a", "b"), text=frozenset({"a"}), as_frame=True, ignored=("when", "id"))
    assert FeatureSchema.from_card(ignoring.to_card()) == ignoring


# --- columns of the training file that the model does not use -----------------------------------------------------


def test_columns_the_model_ignores_are_accepted_in_object_rows_and_dropped() -> None:
    """A row of the training file (minus the target) gives the matrix of the features alone: in every row (the
    fast path), in some rows only, and among list rows."""
    plain = RECORDS.validate([VALID, VALID])
    every = RECORDS.validate([{**VALID, "signup": "2026-01-01", "customer": "c-1"}] * 2)
    some = RECORDS.validate([VALID, {"customer": "c-2", "f2": 3.0, "f0": 1.0, "signup": None, "f1": 2.0}])
    mixed = RECORDS.validate([[1.0, 2.0, 3.0], {**VALID, "signup": "2026-01-02"}])
    for X in (every, some, mixed):
        np.testing.assert_array_equal(X, plain)
        assert X.dtype == np.float64
    single = FeatureSchema(names=("only",), ignored=("when",))
    np.testing.assert_array_equal(single.validate([{"only": 1.5, "when": "today"}, {"only": 2}]), [[1.5], [2.0]])


@pytest.mark.parametrize("value", [None, math.nan, math.inf, 10**400, True, "garbage", [1, {"x": None}], {"a": 1}])
def test_values_of_ignored_columns_are_neither_checked_nor_counted(value: Any) -> None:
    """Whatever an ignored column holds, it is no input fault: the features' own faults are the only ones reported."""
    np.testing.assert_array_equal(RECORDS.validate([{**VALID, "signup": value, "customer": value}]), [[1.0, 2.0, 3.0]])
    error = invalid(RECORDS, [{**VALID, "f1": math.inf, "signup": value, "customer": value}])
    assert error.field == "instances[0].f1" and error.issues == {("f1", "non_finite"): 1}


@pytest.mark.parametrize("rows", [[{**VALID, "signup": 1, "sign_up": 1}], [VALID, {**VALID, "sign_up": 1}]])
def test_a_key_neither_feature_nor_ignored_column_is_refused_naming_it(rows: list[dict[str, Any]]) -> None:
    """A typo must not pass silently: the unknown key is named, and the message says which columns are ignored."""
    i = len(rows) - 1
    error = invalid(RECORDS, rows)
    assert error.field == f"instances[{i}].sign_up"
    assert f"row {i} has unknown feature 'sign_up'" in error.message
    assert "'signup'" in error.message and "'customer'" in error.message


def test_ignored_columns_do_not_stand_in_for_a_missing_feature() -> None:
    error = invalid(RECORDS, [{"f0": 1.0, "f1": 2.0, "signup": 3.0}])
    assert error.field == "instances[0].f2" and "lacks feature 'f2'" in error.message


def test_list_rows_hold_the_features_only() -> None:
    """Ignored columns are keys of object rows; a list row is the features in order, as before."""
    error = invalid(RECORDS, [[1.0, 2.0, 3.0, "2026-01-01"]])
    assert error.field == "instances[0]" and "4 values; the model expects 3" in error.message


@pytest.mark.parametrize(
    ("ignored", "message"),
    [
        (("f1",), "'f1' is both a feature and an ignored column"),
        (("when", "when"), "'when' is listed twice"),
        (("when", 3), "column names"),
        (("",), "column names"),
        ("when", "column names"),
    ],
)
def test_ignored_columns_are_distinct_names_that_are_not_features(ignored: Any, message: str) -> None:
    with pytest.raises(InvalidModelError, match=message):
        FeatureSchema(names=("f0", "f1"), ignored=ignored)
