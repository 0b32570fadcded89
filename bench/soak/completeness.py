"""After the server's graceful stop: does its prediction log hold everything the client was answered?

Read with the service's own code (`service.export.open_stores`, `find_predictions` and `feedback_of` of its stores, the
model version's `Truth` for the key of a label): every prediction id answered 200 is logged, and every feedback
item acknowledged in a 200 is stored as sent (the label, the outcome with its value).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import TypeVar

from service.classifiers import GivenLabel
from service.export import open_stores
from service.feedback.ids import parse_id
from service.feedback.prediction_store import PredictionKey, PredictionStore
from service.feedback.stores import LogStores
from service.rollout.versions import Versions
from service.settings import Settings

from .figures import Completeness
from .traffic import Acknowledged

CHUNK = 400  # predictions or keys per query (SQLite's variable limit is far above)
EXAMPLES = 5

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def check(
    settings: Settings, requests: Mapping[str, tuple[str, str, int]], acknowledged: Sequence[Acknowledged]
) -> Completeness:
    """`requests`: request key -> (model, version, rows) of every `/predict` answered 200."""
    stores = open_stores(settings)
    try:
        missing: list[str] = []
        wanted = [(key, row) for key, (_, _, rows) in requests.items() for row in range(rows)]
        predictions = _logged(stores.predictions, wanted, missing)
        labels, outcomes = _stored(stores, acknowledged, missing)
    finally:
        stores.engine.dispose()
    return Completeness(
        predictions_expected=len(wanted),
        predictions_found=predictions,
        labels_expected=sum(ack.truth is not None for ack in acknowledged),
        labels_found=labels,
        outcomes_expected=sum(ack.outcome is not None for ack in acknowledged),
        outcomes_found=outcomes,
        missing=tuple(missing[:EXAMPLES]),
    )


def _logged(store: PredictionStore, wanted: Sequence[PredictionKey], missing: list[str]) -> int:
    """How many of `wanted` are logged; adds what is not to `missing`."""
    found = 0
    for chunk in chunks(wanted):
        logged = store.find_predictions(chunk)
        for key, row in chunk:
            hit = logged.get((key, row))
            if hit is not None and hit.row < hit.rows:
                found += 1
            else:
                missing.append(f"prediction {key}-{row} is not in the log")
    return found


def _stored(stores: LogStores, acknowledged: Sequence[Acknowledged], missing: list[str]) -> tuple[int, int]:
    """(labels, outcomes) of `acknowledged` stored as sent; adds what is not to `missing`."""
    versions = Versions()
    labels = outcomes = 0
    for chunk in chunks(acknowledged):
        refs = [parse_id(ack.prediction_id) for ack in chunk]
        current, reported = stores.feedback.feedback_of(sorted({ref.key for ref in refs if ref is not None}))
        for ack, ref in zip(chunk, refs, strict=True):
            if ref is None:
                missing.append(f"{ack.prediction_id} is not a prediction id")
                continue
            prediction = (ref.key, ref.row)
            if ack.truth is not None:
                info = versions.get(stores.rollout, ack.model, ack.version)
                expected = None if info is None else info.truth.key(GivenLabel(**ack.truth))
                label = current.get(prediction)
                if label is not None and label.truth_key == expected:
                    labels += 1
                else:
                    stored = None if label is None else label.truth_key
                    missing.append(f"label of {ack.prediction_id}: sent {ack.truth}, stored {stored}")
            if ack.outcome is not None:
                value = reported.get(prediction, {}).get(ack.outcome)
                if value == ack.value:
                    outcomes += 1
                else:
                    missing.append(f"outcome {ack.outcome} of {ack.prediction_id}: sent {ack.value}, stored {value}")
    return labels, outcomes
