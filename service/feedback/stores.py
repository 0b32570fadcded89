"""The stores of the prediction log's database, one per thing stored, over one engine: what the service's log opens
once its schema is migrated (`log.PredictionLog`), and the commands that read the log (`service.export.open_stores`)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..rollout.rollout_store import RolloutStore
from .feedback_store import FeedbackStore
from .prediction_store import PredictionStore
from .realized_store import RealizedStore


@dataclass(frozen=True)
class LogStores:
    """Each store of one engine; a caller takes the one it needs (`stores.feedback.void_labels(...)`)."""

    engine: sa.Engine
    predictions: PredictionStore
    feedback: FeedbackStore
    rollout: RolloutStore
    realized: RealizedStore

    @classmethod
    def over(cls, engine: sa.Engine) -> LogStores:
        """Every store of `engine`, whose schema is migrated."""
        return cls(engine, PredictionStore(engine), FeedbackStore(engine), RolloutStore(engine), RealizedStore(engine))
