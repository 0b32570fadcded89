"""`python -m models retrain`: the next version of a served model, trained on the labelled prediction log.

The served version's own recipe (the options `python -m models train` recorded, its feature kinds, its positive
class) trains the new one on every labelled prediction since `--since` whose inputs were logged, plus the rows of
`--data` when given; `--caller`/`--exclude-caller` keep or leave out the predictions of some API keys (those that
asked for them or gave their current label: `service.export.Callers`). Validation is time-based: the newest
labelled predictions, so the new version is judged on what production sees now. It is registered as a candidate:
nothing serves it until it is promoted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.export import EVERY_CALLER, Callers
from service.settings import Settings
from service.store import LoadedModel

from .dataset import LABEL_SEP, PATH_SEP, DataError, prepare, read_table
from .logdata import labelled_log, open_log, since_time
from .training import Split, TrainedModel, TrainingOptions, fit_and_register

PREDICTED_AT = "__predicted_at__"  # the log's time column while training: validation takes the newest rows
SEPARATOR = "\x1f"  # joins a label set or a path: no class name holds it
DEFAULT_TARGET = "label"


def retrain(
    model: LoadedModel,
    since: str | None,
    extra: Path | None,
    settings: Settings,
    progress: Callable[[str], None],
    callers: Callers = EVERY_CALLER,
) -> TrainedModel:
    card = model.card
    recipe = card.training.options
    options = TrainingOptions(**{f.name: recipe[f.name] for f in fields(TrainingOptions) if f.name in recipe})
    options.check()
    features = list(card.features.names)
    target = card.training.target or DEFAULT_TARGET
    task = card.task
    added = None if extra is None else _extra_rows(read_table(extra), features, target, task)
    progress("reading the prediction log")
    log = labelled_log(open_log(settings), model.name, features, since_time(since), callers)
    if len(log) == 0:
        skipped = f" ({log.skipped} labelled ones were logged without inputs or with other features)"
        raise DataError(f"no labelled predictions of '{model.name}' to train on{skipped if log.skipped else ''}")
    table = log.X.assign(**{target: [_target(task, label) for label in log.labels], PREDICTED_AT: log.predicted_at})
    if added is not None:  # timed before the log's first prediction: they only ever train
        table = pd.concat([added.assign(**{PREDICTED_AT: log.predicted_at.min() - timedelta(days=1)}), table])
    data = prepare(
        table.reset_index(drop=True),
        task,
        target,
        positive_class=card.decision.positive_class,
        label_sep=SEPARATOR,
        path_sep=SEPARATOR,
        categorical=list(card.features.categorical),
        text=list(card.features.text),
        time_column=PREDICTED_AT,
    )
    data.ignored = list(card.features.ignored)  # clients send the rows they sent the served version
    if log.skipped:
        data.notes.append(f"{log.skipped} labelled predictions left out: logged without inputs or with other features")
    progress("splitting")
    rows = newest_split(data.times, len(log), options.validation_share)
    assert data.times is not None
    validated_from = data.times.iloc[rows.validation].min().isoformat()
    # `compare` judges it only on predictions it did not train on: those made since its validation slice began
    recipe = {"trained_on_log_before": validated_from}
    return fit_and_register(model.name, data, rows, options, progress, candidate=True, recipe=recipe)


def newest_split(times: pd.Series | None, logged: int, share: float) -> Split:
    """Validation: the newest `share` of the logged predictions, and every prediction made at the same time as the
    oldest of them (a request's rows share a time: none of them trains while another validates, so `compare` can
    judge on everything made since); older rows, `--data` rows included, train."""
    assert times is not None
    size = max(1, math.ceil(share * logged))
    order = np.argsort(times.to_numpy(), kind="stable")
    since = times.iloc[order[-size]]
    newest = (times >= since).to_numpy()[order]
    validation, train = order[newest], order[~newest]
    if len(train) < 2:
        raise DataError(f"{logged} labelled predictions are too few to train and validate on")
    return Split(train, validation, f"time-based: the newest {len(validation)} labelled predictions, from {since}")


def _target(task: str, label: dict[str, Any]) -> str:
    if task == "multilabel":
        return SEPARATOR.join(label["labels"])
    if task == "hierarchical":
        return SEPARATOR.join(label["path"])
    return str(label["label"])


def _extra_rows(table: pd.DataFrame, features: list[str], target: str, task: str) -> pd.DataFrame:
    """`--data` rows in the log's layout: the model's features and its target."""
    missing = [name for name in [*features, target] if name not in table.columns]
    if missing:
        raise DataError(f"--data lacks columns {missing}: it needs the model's features and the target '{target}'")
    extra = table[[*features, target]].copy()
    if task in ("multilabel", "hierarchical"):  # written with the separators `python -m models train` reads
        sep = LABEL_SEP if task == "multilabel" else PATH_SEP
        extra[target] = [
            "" if pd.isna(v) else SEPARATOR.join(p.strip() for p in str(v).split(sep) if p.strip())
            for v in extra[target]
        ]
    return extra
