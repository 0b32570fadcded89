"""Realized figures: how right each model version was on the predictions that got feedback, for
`GET /models/{name}/performance` and the `classifier_realized_*` gauges of `/metrics`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ..classifiers import InvalidInputError
from ..errors import UnknownModelError
from ..monitoring.metrics import render_gauges
from .log import PredictionLog
from .realized import VersionFigures, realized_families
from .realized_store import OutcomeTotal
from .stores import LogStores
from .timerange import parse_time

logger = logging.getLogger(__name__)

EARLIEST = datetime.min.replace(tzinfo=UTC)


class Performance:
    """The realized figures of one worker's prediction log, over its feedback window by default."""

    def __init__(
        self,
        log: PredictionLog,
        window_seconds: float,
        min_predictions: int,
        query: Callable[..., Awaitable[Any]],
        stores: Callable[[], LogStores],
    ) -> None:
        """`min_predictions`: answers withhold figures over fewer (`CLF_PERFORMANCE_MIN_PREDICTIONS`); `query` runs
        a blocking database call off the event loop, `stores` opens the log's stores (both `FeedbackLoop`'s, which
        turn a database that is down into `unavailable`)."""
        self.log = log
        self.versions = log.versions
        self.window_seconds = window_seconds
        self.min_predictions = min_predictions
        self._query = query
        self._stores = stores

    def figures(self, since: datetime, until: datetime, model: str | None = None) -> list[VersionFigures]:
        """Realized figures per model version over predictions made in [since, until). Blocking (database)."""
        stores = self.log.stores
        pairs: dict[tuple[str, str], list[tuple[str | None, str, int]]] = {}
        expected: dict[tuple[str, str], float] = {}
        for count in stores.realized.pair_counts(since, until, model):
            version = (count.model, count.version)
            pairs.setdefault(version, []).append((count.decision_key, count.truth_key, count.count))
            expected[version] = expected.get(version, 0.0) + count.confidence_sum
        logged = stores.realized.logged_predictions(since, until, model)
        figures = []
        for model_name, version_name in sorted(set(pairs) | set(logged)):
            info = self.versions.get(stores.rollout, model_name, version_name)
            if info is None:
                continue  # a version the log never recorded: nothing to measure it against
            realized = info.truth.realized(pairs.get((model_name, version_name), []))
            figures.append(
                VersionFigures(
                    model=model_name,
                    version=version_name,
                    predictions=logged.get((model_name, version_name), 0),
                    labelled=realized.labelled,
                    accuracy=realized.accuracy,
                    f1=realized.f1,
                    level_accuracy=realized.level_accuracy,
                    # the log keeps each row's calibrated confidence (`Task.expected_correct`): its mean is the estimate
                    estimated_accuracy=(
                        expected.get((model_name, version_name), 0.0) / realized.labelled
                        if realized.labelled
                        else float("nan")
                    ),
                    classes=realized.classes,
                )
            )
        return figures

    def exposition(self) -> str:
        """The `classifier_realized_*` gauges over the feedback window, for `/metrics`. Blocking (database)."""
        until = datetime.now(UTC)
        since = until - timedelta(seconds=self.window_seconds)
        try:
            figures = self.figures(since, until)
        except Exception as exc:  # noqa: BLE001 -- /metrics answers without these rather than not at all
            logger.warning("prediction log: realized metrics unavailable: %s", exc)
            return ""
        return render_gauges(realized_families(figures))

    async def answer(self, model: str, since_text: str | None, until_text: str | None) -> dict[str, Any]:
        """`GET /models/{name}/performance`: realized figures, per class and outcomes, per version, over predictions
        made in [since, until) (times or ages, `parse_time`; default: the feedback window up to now)."""
        now = datetime.now(UTC)
        until = now if until_text is None else _query_time(until_text, now, "until")
        if since_text is not None:
            since = _query_time(since_text, now, "since")
        elif until - EARLIEST > timedelta(seconds=self.window_seconds):
            since = until - timedelta(seconds=self.window_seconds)
        else:  # an `until` in the first days of year 1
            since = EARLIEST
        stores = self._stores()
        if since >= until:
            raise InvalidInputError(
                f"'since' ({since.isoformat()}) is not before 'until' ({until.isoformat()})", field="since"
            )
        if model not in self.versions.models() and model not in await self._query(stores.rollout.models):
            raise UnknownModelError(f"model '{model}' has never been served with this prediction log", field="name")
        figures = await self._query(self.figures, since, until, model)
        totals = await self._query(stores.realized.outcome_totals, since, until, model)
        versions = []
        for figure in figures:
            outcomes = [t for t in totals if t.version == figure.version]
            few_labelled, few_predictions = (
                figure.labelled < self.min_predictions,
                figure.predictions < self.min_predictions,
            )
            withheld = self._withheld(figure, few_labelled, few_predictions)
            if few_labelled:
                figure = _without_label_figures(figure)
            if few_predictions:
                outcomes = []
            versions.append(_version_json(figure, outcomes, withheld))
        return {"model": model, "since": since.isoformat(), "until": until.isoformat(), "versions": versions}

    def _withheld(self, figure: VersionFigures, few_labelled: bool, few_predictions: bool) -> str | None:
        """Why some of a version's figures are withheld, or None. A figure over a few predictions tells of each one
        (`since=t&until=t+1s` isolates one prediction's decision, label and outcome): figures of the labelled
        predictions need `min_predictions` labelled ones, outcomes `min_predictions` predictions. Decided on the
        counts the answer shows anyway, so the reason itself tells nothing more."""
        least = self.min_predictions
        parts = []
        if few_labelled and figure.labelled > 0:  # with none labelled, there is nothing to withhold
            parts.append(f"accuracy, F1 and per-class figures ({figure.labelled} labelled predictions)")
        if few_predictions:
            parts.append(f"outcomes ({figure.predictions} predictions)")
        if not parts:
            return None
        return (
            f"withheld: {' and '.join(parts)}; figures are given over at least {least} predictions "
            f"(CLF_PERFORMANCE_MIN_PREDICTIONS), so that none tells of a single prediction: widen since/until"
        )


def _query_time(text: str, now: datetime, field: str) -> datetime:
    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise InvalidInputError(f"'{field}': {exc}", field=field) from None


def _version_json(figure: VersionFigures, outcomes: Sequence[OutcomeTotal], withheld: str | None) -> dict[str, Any]:
    """One version's part of `GET /models/{name}/performance`."""
    return {
        "version": figure.version,
        "predictions": figure.predictions,
        "labelled": figure.labelled,
        "accuracy": _number(figure.accuracy),
        "f1": {average: _number(value) for average, value in figure.f1.items()},
        "level_accuracy": [_number(v) for v in figure.level_accuracy],
        "estimated_accuracy": _number(figure.estimated_accuracy),
        "classes": [
            {
                "class": c.name,
                "support": c.support,
                "predicted": c.predicted,
                "precision": _number(c.precision),
                "recall": _number(c.recall),
                "f1": _number(c.f1),
            }
            for c in figure.classes
        ],
        "outcomes": [
            {
                "outcome": t.name,
                "count": t.count,
                "value": t.value_sum,
                "take_rate": t.count / figure.predictions if figure.predictions else None,
            }
            for t in outcomes
        ],
        "withheld": withheld,
    }


def _without_label_figures(figure: VersionFigures) -> VersionFigures:
    """The figure with what its labelled predictions say left undefined (null in JSON), its counts kept."""
    undefined = float("nan")
    return replace(
        figure,
        accuracy=undefined,
        f1=dict.fromkeys(figure.f1, undefined),
        level_accuracy=[undefined] * len(figure.level_accuracy),
        estimated_accuracy=undefined,
        classes=[],
    )


def _number(value: float) -> float | None:
    """JSON has no NaN: an undefined figure (nothing labelled, no support) is null."""
    return None if value != value else value
