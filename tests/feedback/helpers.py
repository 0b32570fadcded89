"""Rows of the prediction log for store and export tests, written through the stores' own inserts."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson

from service.classifiers import DecisionKeys
from service.database.codecs import encode_floats, encode_inputs, encode_keys
from service.feedback.feedback_store import FeedbackStore, LabelWrite, OutcomeWrite, Stored
from service.feedback.ids import new_key
from service.feedback.prediction_store import LoggedDecision, PredictionStore, RequestRecord

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def request_record(
    at: datetime = T0,
    model: str = "digits",
    version: str = "v1",
    decisions: list[str | None] | None = None,
    confidence: list[float] | None = None,
    inputs: list[list[float]] | None = None,
    request_id: str | None = None,
) -> RequestRecord:
    """A logged multiclass request whose rows decided `decisions` (default: three rows, "0", "1", "2")."""
    keys = ["0", "1", "2"] if decisions is None else decisions
    return RequestRecord(
        key=new_key(True, at.timestamp()),
        model=model,
        version=version,
        created_at=at,
        request_id=request_id,
        rows=len(keys),
        options="{}",
        decisions=orjson.dumps([{"label": k} for k in keys]).decode(),
        decision_keys=encode_keys(decisions_of(keys)),
        confidence=encode_floats(np.asarray(confidence or [0.9] * len(keys))),
        inputs=None if inputs is None else encode_inputs(inputs),
    )


def decisions_of(keys: list[str | None]) -> DecisionKeys:
    distinct = list(dict.fromkeys(keys))
    return DecisionKeys(distinct, np.array([distinct.index(key) for key in keys], dtype=np.intp))


def prediction(store: PredictionStore, key: str, row: int) -> LoggedDecision:
    """A logged prediction, as feedback finds it."""
    return store.find_predictions([(key, row)])[(key, row)]


def logged(store: PredictionStore, *records: RequestRecord) -> dict[str, RequestRecord]:
    store.write_requests(list(records))
    return {record.key: record for record in records}


def feedback(
    store: FeedbackStore, label_writes: list[LabelWrite], outcome_writes: list[OutcomeWrite], now: datetime
) -> Stored:
    """One feedback request's labels and outcomes, stored as the service stores a group of one request."""
    (stored,) = store.store_feedback_groups([(label_writes, outcome_writes)], now)
    return stored
