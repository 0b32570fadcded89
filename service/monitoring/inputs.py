"""Input monitoring against the training reference profile: drift bins and data-quality faults."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..card import CategoricalProfile, FeatureProfile, NumericProfile

OTHER_FEATURE = "other"
MISSING = "missing"
OUT_OF_RANGE = "out_of_range"
UNSEEN_CATEGORY = "unseen_category"
# the `bin` labels of the drift bins that are not a value range or a training category
BELOW_FIRST_EDGE = "-Inf"
MISSING_BIN = "missing"
UNSEEN_BIN = "unseen"


@dataclass(frozen=True)
class InputReport:
    """One batch of accepted rows: faults by (feature, kind), the drift bin counts (the window's input columns) of its
    `rows`, and its numeric features' values (rows x `InputProfile.numeric_names`, NaN where missing)."""

    bins: np.ndarray
    issues: dict[tuple[str, str], int]
    rows: int
    numeric: np.ndarray


class InputProfile:
    """The monitored features of a model and the reference each is compared with.

    Drift is tracked for `tracked` features (bounded, so a wide model cannot explode the series count); faults
    are checked on every feature and reported under the feature's name if tracked, `other` if not.

    Each tracked numeric feature has the reference's quantile bins plus a missing bin; a categorical one has
    its training categories plus an unseen bin and a missing bin. Drift bins and faults count every row, so a
    1000-row request weighs as 1000 one-row requests do (a per-call sample would weigh it as one).
    """

    def __init__(
        self,
        names: Sequence[str],
        categorical: Sequence[str],
        profile: Mapping[str, FeatureProfile],
        tracked: Sequence[str],
        text: Sequence[str] = (),
    ) -> None:
        self.names = list(names)
        self._text_columns = [self.names.index(n) for n in text]  # free text: only its missing values are counted
        self.tracked = [n for n in tracked if n not in text]
        categorical_set = set(categorical)
        strings = categorical_set | set(text)
        self.numeric_columns = np.array([j for j, n in enumerate(self.names) if n not in strings], dtype=np.intp)
        self.numeric_names = [self.names[j] for j in self.numeric_columns.tolist()]
        self.tracked_numeric = [n for n in self.tracked if n not in categorical_set]
        self.tracked_categorical = [n for n in self.tracked if n in categorical_set]
        numeric = {n: _numeric(profile, n) for n in self.numeric_names}
        categories = {n: _categorical(profile, n) for n in self.names if n in categorical_set}
        self._categories = {n: sorted(reference.categories) for n, reference in categories.items()}
        self._check_ranges(numeric)
        self._bin_edges([numeric[n] for n in self.tracked_numeric])
        self._lay_out_window(numeric, categories)
        self._all_numeric = not categorical_set and not self._text_columns

    def _check_ranges(self, numeric: Mapping[str, NumericProfile]) -> None:
        """The training range of each numeric feature (out of it: a fault), and the label its faults count under."""
        self.minimum = np.array([_bound(numeric[n].minimum, -np.inf) for n in self.numeric_names])
        self.maximum = np.array([_bound(numeric[n].maximum, np.inf) for n in self.numeric_names])
        tracked = set(self.tracked)
        self._fault_label = np.array([n if n in tracked else OTHER_FEATURE for n in self.numeric_names], dtype=object)

    def _bin_edges(self, references: Sequence[NumericProfile]) -> None:
        """The tracked numeric features' edges as one features x edges matrix, padded with +inf, so that one
        comparison bins every value of a batch."""
        width = max((len(reference.edges) for reference in references), default=0)
        self._count_type = np.uint8 if width < 255 else np.intp  # bin indices summed as bytes: a quarter less time
        self._edges = np.full((len(references), max(width, 1)), np.inf)
        for f, reference in enumerate(references):
            self._edges[f, : len(reference.edges)] = reference.edges

    def _lay_out_window(
        self, numeric: Mapping[str, NumericProfile], categorical: Mapping[str, CategoricalProfile]
    ) -> None:
        """The window's input columns: per tracked feature, its bins (missing last); `offsets` says where each
        starts, `expected` holds the reference's shares and `bin_labels` names each bin (the `bin` label of
        classifier_drift_bin_rows_total: docs/monitoring.md "Drift across replicas")."""
        self.sizes: list[int] = []
        self.expected: list[np.ndarray] = []
        self.bin_labels: list[list[str]] = []
        for name in self.tracked_numeric:
            reference = numeric[name]
            proportions = np.asarray(reference.proportions, dtype=np.float64) * (1 - reference.missing_rate)
            self.expected.append(np.append(proportions, reference.missing_rate))
            self.sizes.append(len(reference.edges) + 2)
            self.bin_labels.append([BELOW_FIRST_EDGE, *edge_labels(reference.edges), MISSING_BIN])
        for name in self.tracked_categorical:
            known = self._categories[name]
            shares = [categorical[name].categories[c] for c in known]
            self.expected.append(np.array([*shares, 0.0, categorical[name].missing_rate]))
            self.sizes.append(len(shares) + 2)
            # a category spelled like a special bin is told apart by a leading "="
            labels = [f"={c}" if c in (UNSEEN_BIN, MISSING_BIN) else c for c in known]
            self.bin_labels.append([*labels, UNSEEN_BIN, MISSING_BIN])
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.intp)
        self.width = int(self.offsets[-1])
        self.feature_order = self.tracked_numeric + self.tracked_categorical
        self._categorical_slot = {n: len(self.tracked_numeric) + k for k, n in enumerate(self.tracked_categorical)}
        # tracked numeric features as columns of the numeric matrix; their bins come first in the window
        columns = [self.numeric_names.index(n) for n in self.tracked_numeric]
        self._tracked_numeric_columns = np.array(columns, dtype=np.intp)
        self._numeric_offsets = self.offsets[: len(self.tracked_numeric)]
        self._missing_bin = np.asarray(self.sizes[: len(self.tracked_numeric)], dtype=np.intp) - 1
        self._numeric_width = int(self.offsets[len(self.tracked_numeric)])

    def bins(self) -> list[tuple[str, str, float]]:
        """(feature, bin label, reference share) of every input column of the window, in its order."""
        return [
            (name, label, float(share))
            for name, labels, expected in zip(self.feature_order, self.bin_labels, self.expected, strict=True)
            for label, share in zip(labels, expected.tolist(), strict=True)
        ]

    def observe(self, X: Any) -> InputReport:
        """Drift bins and faults of an accepted batch (float matrix, object matrix or DataFrame)."""
        matrix = X.to_numpy(dtype=object) if hasattr(X, "to_numpy") else np.asarray(X)
        if self._all_numeric and matrix.dtype == np.float64:
            numeric = matrix
        else:
            numeric = matrix[:, self.numeric_columns].astype(np.float64)
        issues: dict[tuple[str, str], int] = {}
        missing = np.isnan(numeric)
        any_missing = bool(missing.any())
        if any_missing:
            self._count(issues, missing.sum(axis=0), MISSING)
        outside = (numeric < self.minimum) | (numeric > self.maximum)
        if outside.any():
            self._count(issues, outside.sum(axis=0), OUT_OF_RANGE)

        bins = np.zeros(self.width)
        if self.tracked_numeric:
            # features x rows, so the comparison's inner loop runs along the rows: much faster than rows x features
            values = np.ascontiguousarray(numeric[:, self._tracked_numeric_columns].T)
            index = np.add.reduce(values[:, None, :] >= self._edges[:, :, None], axis=1, dtype=self._count_type)
            if any_missing:
                index = np.where(np.isnan(values), self._missing_bin[:, None], index)
            flat = (index + self._numeric_offsets[:, None]).ravel()  # offsets are intp: no uint8 overflow
            bins[: self._numeric_width] = np.bincount(flat, minlength=self._numeric_width)
        for name, categories in self._categories.items():
            column = matrix[:, self.names.index(name)]
            known = np.asarray(categories, dtype=str)
            absent = np.asarray((column == None) | (column != column), dtype=bool)  # noqa: E711 -- None or NaN, elementwise
            values = column.astype(str)
            seen = np.isin(values, known) & ~absent
            label = self.fold_feature(name)
            for kind, count in ((UNSEEN_CATEGORY, int((~seen & ~absent).sum())), (MISSING, int(absent.sum()))):
                if count:
                    issues[(label, kind)] = issues.get((label, kind), 0) + count
            if name in self._categorical_slot:
                f = self._categorical_slot[name]
                codes = np.where(seen, np.searchsorted(known, values), len(known))
                codes = np.where(absent, len(known) + 1, codes)
                bins[self.offsets[f] : self.offsets[f + 1]] += np.bincount(codes, minlength=self.sizes[f])
        for j in self._text_columns:
            column = matrix[:, j]
            empty = int(np.asarray((column == None) | (column != column) | (column == ""), dtype=bool).sum())  # noqa: E711
            if empty:
                label = self.fold_feature(self.names[j])
                issues[(label, MISSING)] = issues.get((label, MISSING), 0) + empty
        return InputReport(bins=bins, issues=issues, rows=len(matrix), numeric=numeric)

    def _count(self, issues: dict[tuple[str, str], int], per_column: np.ndarray, kind: str) -> None:
        for column in np.flatnonzero(per_column).tolist():
            key = (str(self._fault_label[column]), kind)
            issues[key] = issues.get(key, 0) + int(per_column[column])

    def fold_feature(self, name: str) -> str:
        """The `feature` label of a fault on `name`."""
        return name if name in self.tracked else OTHER_FEATURE


def edge_labels(edges: Sequence[float]) -> list[str]:
    """Each numeric bin's lower edge as a label: 6 significant digits, or every digit where two would read alike."""
    short = [f"{edge:.6g}" for edge in edges]
    return short if len(set(short)) == len(short) else [repr(float(edge)) for edge in edges]


def _bound(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def _numeric(profile: Mapping[str, FeatureProfile], name: str) -> NumericProfile:
    reference = profile[name]
    if not isinstance(reference, NumericProfile):
        raise TypeError(f"feature '{name}' is numeric; its reference profile is not")
    return reference


def _categorical(profile: Mapping[str, FeatureProfile], name: str) -> CategoricalProfile:
    reference = profile[name]
    if not isinstance(reference, CategoricalProfile):
        raise TypeError(f"feature '{name}' is categorical; its reference profile is not")
    return reference
