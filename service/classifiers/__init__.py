"""The classifier core: task kinds, decision policies, input validation. Pure numpy + scikit-learn.

scikit-learn is imported inside the functions that fit, measure or inspect an estimator, not at import: the server's
arbiter and `python -m models ensure` import the core without touching a model (`tests/test_import_diet.py`).
"""

from __future__ import annotations

from . import binary, hierarchical, multiclass, multilabel  # noqa: F401  (registers the task kinds)
from .base import (
    DefaultDecisions,
    Description,
    Options,
    Prediction,
    Scored,
    Task,
    get_task,
    register_task,
    registered_tasks,
)
from .errors import ClassifierError, InvalidInputError, InvalidModelError, NonFiniteScoreError, unscored_rows
from .features import FeatureSchema
from .hierarchical import ROOT, fit_hierarchy
from .profile import profile_features
from .truth import ClassFigures, DecisionKeys, GivenLabel, Pair, Realized, Truth

__all__ = [
    "ROOT",
    "ClassFigures",
    "ClassifierError",
    "DecisionKeys",
    "DefaultDecisions",
    "Description",
    "FeatureSchema",
    "GivenLabel",
    "InvalidInputError",
    "InvalidModelError",
    "NonFiniteScoreError",
    "Options",
    "Pair",
    "Prediction",
    "Realized",
    "Scored",
    "Task",
    "Truth",
    "fit_hierarchy",
    "get_task",
    "profile_features",
    "register_task",
    "registered_tasks",
    "unscored_rows",
]
