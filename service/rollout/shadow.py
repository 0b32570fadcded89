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
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classifiers import DecisionKeys, InvalidInputError, Scored, Task
from ..database.codecs import encode_floats, encode_keys
from ..feedback.log import PredictionLog
from ..monitoring.metrics import Children, Metrics
from ..store import LoadedModel
from .rollout_store import ShadowRecord

logger = logging.getLogger(__name__)

SHADOW_EVERY_S = 0.1  # how often the shadow thread scores what waits: the staleness of its counters


def agreeing(ours: DecisionKeys, theirs: DecisionKeys) -> int:
    """How many rows have the same decision key in both (over the keys, not the rows: a Python loop per row of
    a shadow's group cost the served requests their CPU)."""
    index: dict[str | None, int] = {}
    for key in [*ours.keys, *theirs.keys]:
        index.setdefault(key, len(index))
    as_ours = np.array([index[key] for key in ours.keys], dtype=np.intp)[ours.codes]
    as_theirs = np.array([index[key] for key in theirs.keys], dtype=np.intp)[theirs.codes]
    return int((as_ours == as_theirs).sum())


def check_shadow(served: LoadedModel, shadow: LoadedModel) -> None:
    """A shadow takes the served version's rows as they are: the same task and features."""
    same_features = served.card.features.names == shadow.card.features.names
    if served.task.name != shadow.task.name or not same_features:
        raise InvalidInputError(
            f"{shadow.tag} cannot shadow {served.tag}: it does another task or takes other features", field="version"
        )


@dataclass(frozen=True)
class _Waiting:
    served: Task
    shadow: LoadedModel
    key: str | None
    X: Any
    scored: Scored  # the served version's scores and default decisions


class ShadowRunner:
    """Scores requests' rows with their model's shadow off the response path, in groups: a thread wakes every
    `every` seconds and scores everything waiting for one shadow in one call (a hand-over per request would cost the
    served requests a thread switch each)."""

    def __init__(
        self,
        metrics: Metrics,
        log: PredictionLog,
        max_pending_rows: int,
        initializer: Callable[[], Any],
        every: float = SHADOW_EVERY_S,
    ) -> None:
        self._rows = Children(metrics.shadow_rows)  # model, version, result
        self._log = log
        self._max_pending_rows = max_pending_rows
        self._every = every
        self._waiting: list[_Waiting] = []
        self._waiting_rows = 0
        self._condition = threading.Condition()
        self._stopped = False
        self._initializer = initializer
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def submit(self, served: Task, shadow: LoadedModel, key: str | None, X: Any, scored: Scored) -> None:
        """Score `X` with `shadow` later; `scored` holds the served version's default decisions on it, `key` is the
        logged request's (or None)."""
        rows = scored.rows
        with self._condition:
            skipped = self._stopped or self._waiting_rows + rows > self._max_pending_rows
            if not skipped:
                if not self._waiting:
                    self._condition.notify()  # the first rows of a group wake the idle thread
                self._waiting.append(_Waiting(served, shadow, key, X, scored))
                self._waiting_rows += rows
        if skipped:
            self._rows(shadow.name, shadow.version, "skipped").inc(rows)

    def _run(self) -> None:
        self._initializer()
        while True:
            with self._condition:
                while not self._waiting and not self._stopped:
                    self._condition.wait()  # idle: no thread wake-ups without a shadow's rows
                if not self._stopped:
                    self._condition.wait(self._every)  # the group gathers (submit does not notify meanwhile)
                waiting, self._waiting, self._waiting_rows = self._waiting, [], 0
                stopped = self._stopped
            groups: dict[tuple[int, int], list[_Waiting]] = {}
            for item in waiting:  # by served and shadow version: a promotion may change either meanwhile
                groups.setdefault((id(item.served), id(item.shadow)), []).append(item)
            for group in groups.values():
                self._score(group)
            if stopped:
                return

    def _score(self, group: list[_Waiting]) -> None:
        shadow = group[0].shadow
        rows = sum(item.scored.rows for item in group)
        try:
            shadow_scores = shadow.task.score(shadow.task.join_inputs([item.X for item in group]))
            decided = shadow.task.default_decisions(shadow_scores)
            agreed = agreeing(decided.keys, DecisionKeys.join([item.scored.decision_keys for item in group]))
            confidence = encode_floats(decided.expected_correct)
        except Exception:  # noqa: BLE001 -- a shadow's fault must never reach the served model's answers
            logger.exception("shadow %s failed on %d rows", shadow.tag, rows)
            self._rows(shadow.name, shadow.version, "failed").inc(rows)
            return
        self._rows(shadow.name, shadow.version, "agree").inc(agreed)
        self._rows(shadow.name, shadow.version, "disagree").inc(rows - agreed)
        start = 0
        for item in group:
            stop = start + item.scored.rows
            if item.key is not None:
                keys, floats = encode_keys(decided.keys.rows(start, stop)), confidence[8 * start : 8 * stop]
                self._log.submit_shadow(ShadowRecord(item.key, shadow.name, shadow.version, stop - start, keys, floats))
            start = stop

    def stop(self) -> None:
        """Score what waits, then stop the thread (a graceful stop: before the log writes its last records)."""
        with self._condition:
            self._stopped = True
            self._condition.notify()
        self._thread.join(timeout=30)
