"""The model versions feedback refers to: the served ones, and any other the log has seen (read once, then kept)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..card import LoggedCard
from ..classifiers import Truth, get_task
from .rollout_store import RolloutStore


@dataclass(frozen=True)
class VersionInfo:
    """What labels and realized metrics need of one model version."""

    model: str
    version: str
    task: str
    truth: Truth
    feature_names: list[str]
    metadata: Mapping[str, Any]  # what the log keeps of the version (`LoggedCard.to_metadata`)


def version_info(model: str, version: str, task: str, card: LoggedCard) -> VersionInfo:
    """A version's info from the part of its card the log keeps (the store's card's, or the log's copy)."""
    return VersionInfo(
        model=model,
        version=version,
        task=task,
        truth=get_task(task).ground_truth(card.classes, card.decision),
        feature_names=list(card.feature_names),
        metadata=card.to_metadata(),
    )


class Versions:
    """Model versions by (model, version). Thread-safe: the writer thread and the database threads read it.

    A version this worker serves is written to the log's `model_versions` before any of its predictions.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], VersionInfo] = {}
        self._unsaved: list[VersionInfo] = []
        self._lock = threading.Lock()

    def serve(self, info: VersionInfo) -> None:
        """A version this worker serves: known at once, written to the log before its predictions."""
        with self._lock:
            self._known[(info.model, info.version)] = info
            self._unsaved.append(info)

    def models(self) -> set[str]:
        """Names of the models among the known versions."""
        with self._lock:
            return {model for model, _ in self._known}

    def save(self, store: RolloutStore, now: datetime) -> None:
        """Write the served versions the log does not have yet (the writer thread, before each batch)."""
        with self._lock:
            unsaved, self._unsaved = self._unsaved, []
        try:
            for info in unsaved:
                store.remember_version(info.model, info.version, info.task, info.metadata, now)
        except Exception:
            with self._lock:
                self._unsaved[:0] = unsaved
            raise

    def get(self, store: RolloutStore, model: str, version: str) -> VersionInfo | None:
        """A known version, reading it from the log's `model_versions` when this worker does not serve it."""
        with self._lock:
            info = self._known.get((model, version))
        if info is not None:
            return info
        found = store.version(model, version)
        if found is None:
            return None
        task, logged = found
        info = version_info(model, version, task, LoggedCard.parse(logged))
        with self._lock:
            self._known[(model, version)] = info
        return info
