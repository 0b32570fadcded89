"""A user's table read for training: the feature columns by kind, and the target in the task's own form.

Everything wrong with the file is a `DataError` whose message says what to change; `python -m models train` prints
it and exits with code 2 before anything is trained or registered.

pandas is imported where a table is read or examined: `python -m models` imports this module for its options'
defaults, and `ensure` (every `make serve`) reads no table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.classifiers import ROOT
from service.database.codecs import CSV_LIST_SEPARATOR

if TYPE_CHECKING:
    import pandas as pd

# a row's labels and a path in a target column: as the prediction log's CSV export writes them
LABEL_SEP, PATH_SEP = CSV_LIST_SEPARATOR["labels"], CSV_LIST_SEPARATOR["path"]
TASKS = ("binary", "multiclass", "multilabel", "hierarchical")
POSITIVE_NAMES = ("1", "true", "yes", "y", "positive", "pos")  # the positive class when none is named
TEXT_MIN_WORDS = 3.0  # a string column whose values average more words than this is free text, not a category
TEXT_MIN_DISTINCT_SHARE = 0.5  # ... and whose values are mostly distinct


class DataError(ValueError):
    """The training file cannot make a model as asked; the message says why and what to change."""


@dataclass(frozen=True)
class Columns:
    """The feature columns by kind, in the order the served model takes them (the table's order)."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    text: tuple[str, ...]
    order: tuple[str, ...]


@dataclass
class TrainingData:
    """The features (a DataFrame in `columns.order`), the target in the task's form, and what the task needs:
    `labels` (multilabel, the target's columns in order), `hierarchy` (parent -> children), `positive_class`.
    `ignored`: the file's other columns but the target (the time column, ids, `--drop`), which the served model
    accepts in object rows and ignores."""

    task: str
    target: str
    X: pd.DataFrame
    y: np.ndarray
    columns: Columns
    times: pd.Series | None = None
    labels: list[str] = field(default_factory=list)
    hierarchy: dict[str, list[str]] = field(default_factory=dict)
    positive_class: str | None = None
    positive_class_reason: str = ""  # why that class: said before training, so a wrong default is caught early
    notes: list[str] = field(default_factory=list)  # what reading changed (rows without a target, ...)
    ignored: list[str] = field(default_factory=list)

    def task_params(self) -> dict[str, Any]:
        if self.task == "binary":
            return {"positive_class": self.positive_class}
        if self.task == "multilabel":
            return {"labels": self.labels}
        if self.task == "hierarchical":
            return {"hierarchy": self.hierarchy}
        return {}

    def positive_class_line(self) -> str | None:
        """Which class a binary model's threshold and F1 are about, and why (None for other tasks)."""
        if self.task != "binary":
            return None
        return f"positive class: '{self.positive_class}' ({self.positive_class_reason})"


def read_table(path: Path) -> pd.DataFrame:
    """A CSV, JSON Lines (`.jsonl`, `.ndjson`) or Parquet file as a DataFrame."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except ImportError as exc:
        raise DataError(f"{path}: reading {suffix} needs a package that is not installed ({exc})") from exc
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable {suffix[1:]} file: {exc}") from exc
    raise DataError(f"{path}: unknown file type '{suffix}'; use .csv, .jsonl or .parquet")


def prepare(
    table: pd.DataFrame,
    task: str,
    target: str,
    *,
    positive_class: str | None = None,
    label_sep: str = LABEL_SEP,
    path_sep: str = PATH_SEP,
    categorical: Sequence[str] = (),
    text: Sequence[str] = (),
    drop: Sequence[str] = (),
    time_column: str | None = None,
) -> TrainingData:
    """Split `table` into features and target for `task`; rows without a target are left out (and noted)."""
    import pandas as pd

    if task not in TASKS:
        raise DataError(f"unknown task '{task}'; one of {', '.join(TASKS)}")
    named = {"--target": [target], "--categorical": categorical, "--text": text, "--drop": drop}
    if time_column:
        named["--time-column"] = [time_column]
    for option, names in named.items():
        unknown = [name for name in names if name not in table.columns]
        if unknown:
            raise DataError(f"{option} names {unknown}, not columns of the file; its columns: {list(table.columns)}")
    both = set(categorical) & set(text)
    if both:
        raise DataError(f"columns {sorted(both)} are named both --categorical and --text")
    notes: list[str] = []
    unlabelled = table[target].isna() | (table[target].astype(str).str.strip() == "")
    if task != "multilabel" and unlabelled.any():  # an empty multilabel target is a row with no labels
        notes.append(f"{int(unlabelled.sum())} rows without a target ('{target}') left out")
        table = table.loc[~unlabelled]
    if len(table) == 0:
        raise DataError(f"the file has no rows with a target ('{target}')")
    times = None
    if time_column:
        try:
            times = pd.to_datetime(table[time_column], utc=True)
        except (ValueError, TypeError) as exc:
            raise DataError(f"--time-column '{time_column}' holds values that are not times: {exc}") from exc
        if times.isna().any():
            raise DataError(f"--time-column '{time_column}' is empty on {int(times.isna().sum())} rows")
    features = [c for c in table.columns if c not in {target, time_column, *drop}]
    if not features:
        raise DataError("no feature columns are left once the target, the time column and --drop are taken out")
    X = table[features].reset_index(drop=True)
    identifiers = [name for name in X.columns if name not in {*categorical, *text} and _looks_like_an_id(X[name])]
    if identifiers:
        notes.append(
            f"left out {identifiers}: a distinct string on every row (an id or a time?); name a column with "
            "--categorical or --text to keep it"
        )
        X = X.drop(columns=identifiers)
    columns = _kinds(X, categorical, text)
    for name in columns.categorical:
        present = X[name].notna()
        X[name] = X[name].where(~present, X[name].astype(str)).astype(object)
    for name in columns.text:  # a missing text is an empty document, as the service reads it
        X[name] = X[name].fillna("").astype(str).astype(object)
    for name in columns.numeric:
        X[name] = X[name].astype(np.float64)
    raw = table[target].reset_index(drop=True)
    data = TrainingData(task, target, X, np.empty(0), columns, None if times is None else times.reset_index(drop=True))
    data.notes = notes
    data.ignored = [str(name) for name in table.columns if name != target and name not in X.columns]
    if task in ("binary", "multiclass"):
        _single_label(data, raw, positive_class)
    elif task == "multilabel":
        _multilabel(data, raw, label_sep)
    else:
        _hierarchical(data, raw, path_sep)
    return data


def _kinds(X: pd.DataFrame, categorical: Sequence[str], text: Sequence[str]) -> Columns:
    import pandas as pd

    numeric, categories, texts = [], [], []
    for name in X.columns:
        column = X[name]
        if name in text:
            texts.append(name)
        elif name in categorical:
            categories.append(name)
        elif pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            numeric.append(name)
        elif column.notna().sum() == 0:
            raise DataError(f"column '{name}' is empty on every row; drop it (--drop {name})")
        elif _looks_like_text(column):
            texts.append(name)
        else:
            categories.append(name)
    return Columns(tuple(numeric), tuple(categories), tuple(texts), tuple(X.columns))


def _looks_like_an_id(column: pd.Series) -> bool:
    import pandas as pd

    values = column.dropna()
    is_string = not (pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column))
    return bool(is_string and len(values) >= 20 and values.nunique() == len(values) and not _looks_like_text(column))


def _looks_like_text(column: pd.Series) -> bool:
    values = column.dropna().astype(str)
    words = values.str.split().str.len().mean()
    return bool(words > TEXT_MIN_WORDS and values.nunique() >= TEXT_MIN_DISTINCT_SHARE * len(values))


def _single_label(data: TrainingData, raw: pd.Series, positive_class: str | None) -> None:
    y = raw.astype(str).str.strip().to_numpy(dtype=object)
    classes = sorted(set(y))
    if len(classes) < 2:
        raise DataError(f"the target has one class only ('{classes[0]}'): there is nothing to tell apart")
    if data.task == "binary":
        if len(classes) > 2:
            raise DataError(
                f"a binary target has 2 classes, this one has {len(classes)} ({', '.join(classes[:5])}, ...); "
                "use --task multiclass"
            )
        if positive_class is None:
            named = next((c for c in classes if c.lower() in POSITIVE_NAMES), None)
            positive_class = classes[1] if named is None else named
            why = "its name says positive" if named else f"the second of '{classes[0]}', '{classes[1]}' in sort order"
            other = classes[0] if positive_class == classes[1] else classes[1]
            data.positive_class_reason = f"by default: {why}; --positive-class '{other}' to choose the other"
        elif positive_class not in classes:
            raise DataError(f"--positive-class '{positive_class}' is not a class of the target; classes: {classes}")
        else:
            data.positive_class_reason = "as asked"
        data.positive_class = positive_class
    data.y = y


def _multilabel(data: TrainingData, raw: pd.Series, label_sep: str) -> None:
    import pandas as pd

    sets = [
        [] if pd.isna(value) else [part.strip() for part in str(value).split(label_sep) if part.strip()]
        for value in raw
    ]
    labels = sorted({label for row in sets for label in row})
    if not labels:
        raise DataError(f"the target holds no labels on any row (labels separated by '{label_sep}')")
    index = {label: j for j, label in enumerate(labels)}
    Y = np.zeros((len(sets), len(labels)), dtype=int)
    for i, row in enumerate(sets):
        Y[i, [index[label] for label in row]] = 1
    counts = Y.sum(axis=0)
    for label, count in zip(labels, counts.tolist(), strict=True):
        if count == len(Y):
            raise DataError(f"label '{label}' is set on every row: a model cannot learn when it is absent")
        if count < 2:
            raise DataError(f"label '{label}' is set on one row only: it can be neither learned nor validated")
    data.y, data.labels = Y, labels


def _hierarchical(data: TrainingData, raw: pd.Series, path_sep: str) -> None:
    paths = [tuple(part.strip() for part in str(value).split(path_sep) if part.strip()) for value in raw]
    if not all(paths):
        row = [bool(p) for p in paths].index(False)
        raise DataError(f"row {row}'s target holds no path (nodes separated by '{path_sep}')")
    children: dict[str, list[str]] = {ROOT: []}
    parent_of: dict[str, str] = {}
    for path in paths:
        for parent, child in zip((ROOT, *path[:-1]), path, strict=True):
            known = parent_of.setdefault(child, parent)
            if known != parent:
                raise DataError(
                    f"'{child}' sits under both '{_shown(known)}' and '{_shown(parent)}': each node name must be "
                    "unique in the tree (rename one, e.g. 'shoes-men' and 'shoes-women')"
                )
            siblings = children.setdefault(parent, [])
            if child not in siblings:
                siblings.append(child)
    inner = sorted({path[-1] for path in paths} & {p for p in children if p != ROOT})
    if inner:
        raise DataError(
            f"'{inner[0]}' is the label of some rows and the parent of others; label every row with a full path "
            "to a leaf"
        )
    leaves = sorted({path[-1] for path in paths})
    if len(leaves) < 2:
        raise DataError(f"the target has one class only ('{leaves[0]}'): there is nothing to tell apart")
    data.y = np.array([path[-1] for path in paths], dtype=object)
    data.hierarchy = {parent: sorted(kids) for parent, kids in children.items()}


def _shown(node: str) -> str:
    return "the top level" if node == ROOT else node
