"""Input validation: request rows (lists or objects) to the estimator's input matrix."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from numbers import Real
from operator import itemgetter
from typing import Any

import numpy as np

from ..card import Features
from .errors import InvalidInputError, InvalidModelError

# Data-quality fault kinds found while validating (monitoring adds out_of_range and unseen_category).
MISSING = "missing"
NON_FINITE = "non_finite"
MAX_IGNORED_NAMED = 10  # an unknown key's message names at most this many of the columns a model ignores
_JUST_LISTS = {list}


@dataclass(frozen=True)
class FeatureSchema:
    """What a model's rows must look like.

    Attributes:
        names: feature names in the estimator's column order.
        categorical: names of the features that take categories, as strings (a pipeline encodes them).
        text: names of the features that take free text (a pipeline vectorizes them); not drift-monitored.
        allows_missing: whether the estimator handles NaN, so `null` is accepted.
        as_frame: the estimator was fitted on a DataFrame and wants one (needs pandas).
        ignored: columns of the training file that the model does not use (its time column, an id, dropped ones):
            an object row may hold them besides the features, and their values are dropped unread.
    """

    names: tuple[str, ...]
    categorical: frozenset[str] = frozenset()
    text: frozenset[str] = frozenset()
    allows_missing: bool = False
    as_frame: bool = False
    ignored: Sequence[str] = ()  # kept as a tuple
    _keys: frozenset[str] = field(init=False, repr=False, compare=False)  # what an object row may hold

    def __post_init__(self) -> None:
        columns = self.ignored
        # a bare string would pass as a sequence of one-letter columns
        if (
            isinstance(columns, str)
            or not isinstance(columns, Sequence)
            or not all(isinstance(c, str) and c for c in columns)
        ):
            raise InvalidModelError(f"ignored columns are a list of column names (strings), not {columns!r}")
        features = set(self.names)
        for i, column in enumerate(columns):
            if column in features:
                raise InvalidModelError(f"'{column}' is both a feature and an ignored column")
            if column in columns[:i]:
                raise InvalidModelError(f"ignored column '{column}' is listed twice")
        object.__setattr__(self, "ignored", tuple(columns))
        object.__setattr__(self, "_keys", frozenset(self.names) | frozenset(columns))

    @classmethod
    def from_card(cls, features: Features) -> FeatureSchema:
        """The schema of a model card's features."""
        return cls(
            names=features.names,
            categorical=frozenset(features.categorical),
            text=frozenset(features.text),
            allows_missing=features.allows_missing,
            as_frame=features.as_frame,
            ignored=features.ignored,
        )

    def to_card(self) -> Features:
        """The features of the model card registration writes."""
        return Features(
            names=self.names,
            categorical=tuple(sorted(self.categorical)),
            text=tuple(sorted(self.text)),
            allows_missing=self.allows_missing,
            as_frame=self.as_frame,
            ignored=tuple(self.ignored),
        )

    @property
    def strings(self) -> frozenset[str]:
        """The features that take strings: categories and free text."""
        return self.categorical | self.text

    def validate(self, rows: Sequence[Any], booleans_possible: bool = True) -> Any:
        """Return the estimator input for `rows`, or raise `InvalidInputError` naming row and feature.

        `booleans_possible=False` (the JSON body holds no `true` or `false`) skips the scan for booleans,
        which numpy would otherwise read as 1 and 0 among numbers.
        """
        if not rows:
            raise InvalidInputError("'instances' is empty; send at least one row", field="instances")
        values = self._as_lists(rows)
        if not self.strings:
            matrix = _numeric_matrix(values, len(self.names), booleans_possible)
            if matrix is not None:
                self._check_numeric(matrix, values)
                return self._frame(matrix) if self.as_frame else matrix
        return self._validate_cells(values)

    def _as_lists(self, rows: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """Rows as value sequences in feature order; object rows are reordered by name."""
        if set(map(type, rows)) == _JUST_LISTS:
            return rows
        n = len(self.names)
        getter = itemgetter(*self.names)
        if all(type(row) is dict for row in rows) and self._only_known_keys(rows):
            try:
                picked = list(map(getter, rows))
                return picked if n > 1 else [[value] for value in picked]
            except KeyError:
                pass
        values: list[Sequence[Any]] = []
        for i, row in enumerate(rows):
            if type(row) is list:
                values.append(row)
            elif type(row) is dict:
                if len(row) != n or not all(name in row for name in self.names):
                    self._check_keys(i, row)
                values.append(getter(row) if n > 1 else [row[self.names[0]]])
            else:
                raise InvalidInputError(
                    f"row {i} is a {_json_type(row)}; expected a list of {n} values or an object keyed by feature name",
                    field=f"instances[{i}]",
                )
        return values

    def _only_known_keys(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Whether no object row holds a key other than the features and the ignored columns (a row of exactly n
        keys holds no other as soon as it has every feature, which picking them checks)."""
        n = len(self.names)
        if set(map(len, rows)) == {n}:
            return True
        return bool(self.ignored) and all(len(row) == n or self._keys.issuperset(row) for row in rows)

    def _check_keys(self, i: int, row: Mapping[str, Any]) -> None:
        """Raise for an object row lacking a feature or holding a key that is neither a feature nor ignored."""
        missing = [name for name in self.names if name not in row]
        if missing:
            raise InvalidInputError(
                f"row {i} lacks feature '{missing[0]}' ({len(missing)} missing); "
                f"expected every one of the model's {len(self.names)} features",
                field=f"instances[{i}].{missing[0]}",
            )
        extra = [key for key in row if key not in self._keys]
        if extra:
            ignored = ", ".join(f"'{column}'" for column in self.ignored[:MAX_IGNORED_NAMED])
            more = ", ..." if len(self.ignored) > MAX_IGNORED_NAMED else ""
            also = f", or the training file's columns it ignores ({ignored}{more})" if self.ignored else ""
            raise InvalidInputError(
                f"row {i} has unknown feature '{extra[0]}'; expected only the model's features{also}",
                field=f"instances[{i}].{extra[0]}",
            )

    def _check_numeric(self, matrix: np.ndarray, values: Sequence[Sequence[Any]]) -> None:
        finite = np.isfinite(matrix)
        if not finite.all():
            bad_rows, bad_cols = np.nonzero(~finite)
            counts = np.bincount(bad_cols, minlength=len(self.names))
            issues = {(self.names[j], NON_FINITE): int(counts[j]) for j in np.flatnonzero(counts).tolist()}
            i, j = int(bad_rows[0]), int(bad_cols[0])
            raise self._rejection(i, j, values[i][j], issues)

    def _validate_cells(self, values: Sequence[Sequence[Any]]) -> Any:
        """The slow path for rows with nulls, strings or faults: checks every cell, counting data-quality faults."""
        n = len(self.names)
        takes_string = [name in self.strings for name in self.names]
        text = [name in self.text for name in self.names]
        out = np.empty((len(values), n), dtype=object if self.strings else np.float64)
        first: InvalidInputError | None = None
        issues: Counter[tuple[str, str]] = Counter()
        for i, row in enumerate(values):
            if len(row) != n:
                first = first or InvalidInputError(
                    f"row {i} has {len(row)} values; the model expects {n}", field=f"instances[{i}]"
                )
                continue
            for j, value in enumerate(row):
                if value is None and text[j]:
                    out[i, j] = ""  # a missing text is an empty document: monitoring counts it as missing
                elif value is None:
                    if not self.allows_missing:
                        issues[self.names[j], MISSING] += 1
                        first = first or self._rejection(i, j, value)
                    out[i, j] = np.nan
                elif isinstance(value, str):
                    if takes_string[j] and _is_text(value):
                        out[i, j] = value
                    else:
                        first = first or self._rejection(i, j, value)
                elif isinstance(value, Real) and not isinstance(value, bool):
                    number = _as_double(value)
                    if not math.isfinite(number):
                        issues[self.names[j], NON_FINITE] += 1
                        first = first or self._rejection(i, j, value)
                    elif takes_string[j]:
                        first = first or self._rejection(i, j, value)
                    out[i, j] = number
                else:
                    first = first or self._rejection(i, j, value)
        if first is not None:
            raise InvalidInputError(first.message, first.field, dict(issues))
        return self._frame(out) if self.as_frame else out

    def _rejection(
        self, i: int, j: int, value: Any, issues: Mapping[tuple[str, str], int] | None = None
    ) -> InvalidInputError:
        """The error for cell (i, j): it names the row and the feature and says what was expected."""
        name = self.names[j]
        field = f"instances[{i}].{name}"
        if name in self.categorical:
            kind = "a category (string)"
        elif name in self.text:
            kind = "a text (string)"
        else:
            kind = "a finite number"
        if value is None:
            message = f"row {i} feature '{name}' is null; this model takes no missing values, expected {kind}"
        elif isinstance(value, str) and name not in self.strings:
            message = f"row {i} feature '{name}' is the string {value!r}; expected a number"
        elif isinstance(value, str):
            message = f"row {i} feature '{name}' holds a lone UTF-16 surrogate, which is not text; expected {kind}"
        else:
            message = f"row {i} feature '{name}' is {_describe(value)}; expected {kind}"
        return InvalidInputError(message, field=field, issues=issues)

    def _frame(self, matrix: np.ndarray) -> Any:
        import pandas as pd  # only models fitted on DataFrames need it

        frame = pd.DataFrame(matrix, columns=list(self.names))
        numeric = [name for name in self.names if name not in self.strings]
        if matrix.dtype == object and numeric:
            frame[numeric] = frame[numeric].astype(np.float64)
        return frame


def _numeric_matrix(values: Sequence[Sequence[Any]], n_features: int, booleans_possible: bool) -> np.ndarray | None:
    """The rows as a float matrix when they are all numbers of the right count; None otherwise."""
    try:
        array = np.array(values)
    except (ValueError, TypeError):
        return None
    if array.ndim != 2 or array.shape[1] != n_features:
        return None
    if array.dtype.kind in "fiu" and not (booleans_possible and bool in set(map(type, chain.from_iterable(values)))):
        return array.astype(np.float64, copy=False)
    return None  # nulls, strings, booleans: the cell-by-cell path says what is wrong


def _is_text(value: str) -> bool:
    """Whether `value` is text that UTF-8 can encode: Python's JSON parser (the fallback for bodies holding NaN)
    lets a lone surrogate escape (`"\\ud800"`) through, which no log, database or JSON encoder takes."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _as_double(value: Real) -> float:
    """The value as a double; infinite when no double holds it (an integer literal of hundreds of digits)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _describe(value: Any) -> str:
    if isinstance(value, Real) and not isinstance(value, bool):
        if math.isfinite(_as_double(value)):
            return repr(value)
        if isinstance(value, int):  # too large for a double: its digits would flood the message
            return f"an integer of {len(str(abs(value)))} digits (too large for a double)"
        return f"{value!r} (not finite)"
    return f"a {_json_type(value)} ({value!r})"
