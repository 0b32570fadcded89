"""Domain errors of the classifier core: no HTTP here, `service/errors.py` maps them."""

from __future__ import annotations

from collections.abc import Mapping


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
