"""Shadow versions: a version that scores a served model's rows after the answers went out, and never answers.

The shadow runs on a thread of its own, so the served model's answers never wait for it; when it falls behind
(`CLF_SHADOW_MAX_PENDING_ROWS` rows waiting), rows go unscored and are counted instead of queueing without bound.
Each scored row counts whether the shadow's default decision agrees with the served version's
(`classifier_shadow_rows_total`), and the shadow's decisions on a logged request go to the prediction log beside
the request's (`shadow_predictions`), where labels can later judge both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..classifiers import InvalidInputError, Task
from ..feedback.log import PredictionLog
from ..feedback.store import ShadowRecord, encode_floats, encode_keys
from ..monitoring.metrics import Children, Metrics
from ..store import LoadedModel

logger = logging.getLogger(__name__)


def check_shadow(served: LoadedModel, shadow: LoadedModel) -> None:
    """A shadow takes the served version's rows as they are: the same task and features."""
    same_features = served.metadata["features"]["names"] == shadow.metadata["features"]["names"]
    if served.task.name != shadow.task.name or not same_features:
        raise InvalidInputError(
            f"{shadow.tag} cannot shadow {served.tag}: it does another task or takes other features", field="version"
        )


class ShadowRunner:
    """Scores requests' rows with their model's shadow, one call at a time, off the response path."""

    def __init__(
        self, metrics: Metrics, log: PredictionLog, max_pending_rows: int, initializer: Callable[[], Any]
    ) -> None:
        self._rows = Children(metrics.shadow_rows)  # model, version, result
        self._log = log
        self._max_pending_rows = max_pending_rows
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow", initializer=initializer)

    def submit(self, served: Task, shadow: LoadedModel, key: str | None, X: Any, scores: Any, rows: int) -> None:
        """Score `X` with `shadow` later; `scores` are the served version's, `key` the logged request's (or None)."""
        with self._lock:
            skipped = self._pending_rows + rows > self._max_pending_rows
            if not skipped:
                self._pending_rows += rows
        if skipped:
            self._rows(shadow.name, shadow.version, "skipped").inc(rows)
            return
        self._executor.submit(self._score, served, shadow, key, X, scores, rows)

    def _score(self, served: Task, shadow: LoadedModel, key: str | None, X: Any, scores: Any, rows: int) -> None:
        try:
            shadow_scores = shadow.task.score(X)
            decided = shadow.task.decision_keys(shadow_scores)
            agreed = sum(a == b for a, b in zip(decided.tolist(), served.decision_keys(scores).tolist(), strict=True))
            confidence = shadow.task.expected_correct(shadow_scores)
        except Exception:  # noqa: BLE001 -- a shadow's fault must never reach the served model's answers
            logger.exception("shadow %s failed on %d rows", shadow.tag, rows)
            self._rows(shadow.name, shadow.version, "failed").inc(rows)
            return
        finally:
            with self._lock:
                self._pending_rows -= rows
        self._rows(shadow.name, shadow.version, "agree").inc(agreed)
        self._rows(shadow.name, shadow.version, "disagree").inc(rows - agreed)
        if key is not None:
            record = ShadowRecord(
                key, shadow.name, shadow.version, rows, encode_keys(decided), encode_floats(confidence)
            )
            self._log.submit_shadow(record)

    def stop(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
