"""Domain errors of the classifier core: no HTTP here, `service/errors.py` maps them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

Value = TypeVar("Value")


class ClassifierError(Exception):
    """Base of every error the classifier core raises on purpose."""


class InvalidInputError(ClassifierError, ValueError):
    """The request's rows or options do not fit the model.

    `field` locates the first fault in the request body (`instances[3].pixel_5`, `options.top_k`); `issues`
    counts every data-quality fault found in the rows, by (feature, kind), so rejected rows are monitored too.
    """

    def __init__(
        self, message: str, field: str | None = None, issues: Mapping[tuple[str, str], int] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.issues: Mapping[tuple[str, str], int] = issues or {}


class InvalidModelError(ClassifierError, ValueError):
    """A stored or registered model is inconsistent: unfitted, wrong classes, unknown task."""


class NonFiniteScoreError(ClassifierError):
    """The model gave row `row` (of one request) a NaN or infinite score: there is no answer to give for it."""

    def __init__(self, row: int) -> None:
        super().__init__(f"row {row} got a NaN or infinite score")
        self.row = row


MAX_CAUSE_CHARS = 200


def unscored_rows(model: str, exc: Exception) -> InvalidInputError:
    """The input error of a request whose rows `model` could not score: it gave a row a non-finite score, or it
    raised `exc` (named by its type and first line only: the rest is internals, and the log has it)."""
    if isinstance(exc, NonFiniteScoreError):
        return InvalidInputError(
            f"model '{model}' gave row {exc.row} a NaN or infinite score; expected values it can score "
            "(values far outside the ones it was trained on can overflow its arithmetic)",
            field=f"instances[{exc.row}]",
        )
    lines = str(exc).strip().splitlines()
    cause = type(exc).__name__ + (f": {lines[0]}" if lines else "")
    if len(cause) > MAX_CAUSE_CHARS:
        cause = cause[: MAX_CAUSE_CHARS - 3] + "..."
    return InvalidInputError(
        f"model '{model}' could not score the rows of this request ({cause}); expected rows it can score",
        field="instances",
    )


def required(value: Value | None, field: str, task: str) -> Value:
    """A decision default the task kind needs: a card without it fails at load, naming the field."""
    if value is None:
        raise InvalidModelError(f"the metadata lacks '{field}' (a {task} model needs it)")
    return value
