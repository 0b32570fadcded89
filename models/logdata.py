"""What production saw: the labelled predictions of the prediction log, read through the export's query.

Only the latest label of a prediction counts (a relabel replaces it). The database is the service's own
(`CLF_DATABASE_URL`, or the SQLite file in `CLF_DATA_DIR`), read with the service's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from service.export import EVERY_CALLER, Callers, ExportError, key_range, open_stores, rows
from service.feedback.stores import LogStores
from service.feedback.timerange import parse_time
from service.rollout.versions import Versions
from service.settings import Settings

from .dataset import DataError


@dataclass(frozen=True)
class LabelledLog:
    """Labelled predictions of one model whose logged inputs fit its features, oldest first."""

    X: pd.DataFrame  # the inputs, in the feature order given
    labels: list[dict[str, Any]]  # each prediction's label as feedback sent it (`label`, `labels`, `path`)
    predicted_at: pd.Series  # UTC times
    versions: list[str]  # the version that answered each
    skipped: int  # labelled predictions left out: logged without inputs, or with other features

    def __len__(self) -> int:
        return len(self.labels)


def since_time(text: str | None) -> datetime | None:
    try:
        return None if text is None else parse_time(text, datetime.now(UTC))
    except ValueError as exc:
        raise DataError(f"--since: {exc}") from None


def open_log(settings: Settings) -> LogStores:
    """The service's prediction log (its settings say where), or a `DataError` saying why it cannot be read."""
    try:
        return open_stores(settings)
    except ExportError as exc:
        raise DataError(str(exc)) from None


def labelled_log(
    stores: LogStores, model: str, features: list[str], since: datetime | None, callers: Callers = EVERY_CALLER
) -> LabelledLog:
    """The labelled predictions of `model` made since `since` (all when None), of some callers only (`Callers`)."""
    inputs, labels, times, versions, skipped = [], [], [], [], 0
    for joined in rows(stores, Versions(), model, key_range(since, None), labelled_only=True, callers=callers):
        if joined["inputs"] is None or list(joined["inputs"]) != features:
            skipped += 1
            continue
        inputs.append(list(joined["inputs"].values()))
        labels.append(joined["label"])
        times.append(joined["predicted_at"])
        versions.append(joined["version"])
    X = pd.DataFrame(inputs, columns=features)
    return LabelledLog(X, labels, pd.to_datetime(pd.Series(times, dtype=object), utc=True), versions, skipped)
