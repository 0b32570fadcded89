"""Promotion: the version of a model every worker and replica serves, changed without a restart.

The promoted version of a model is a row of the prediction log's database (`served_versions`), which every worker
and replica shares. The worker that takes `POST /admin/models/{name}/promote` loads the version, records it (an admin
action, `admin.py`: checked, recorded and logged with its caller) and serves it at once; the others poll the table
every `CLF_PROMOTION_POLL_SECONDS` and follow. A request reads its model once (`serving.Served`), so none mixes two
versions: requests under way finish on the version they started with. A rollback is a promotion of the older version.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import anyio
import sqlalchemy as sa

from ..classifiers import InvalidInputError, InvalidModelError
from ..errors import DependencyUnavailableError, UnknownModelError
from ..feedback.log import DatabaseUnavailableError, PredictionLog
from ..serving import ModelRegistry, Served
from ..store import LoadedModel, ModelNotFoundError, load_model
from . import admin
from .shadow import check_shadow

logger = logging.getLogger(__name__)


class Promotions:
    """Promotes versions on request and follows the ones other workers promote (a daemon thread)."""

    def __init__(self, registry: Callable[[], ModelRegistry], log: PredictionLog, poll_seconds: float) -> None:
        self._registry = registry  # read each time: the service may replace its registry
        self._log = log
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()  # one swap at a time: the route and the thread may follow the same promotion
        self._refused: set[tuple[str, str]] = set()  # promoted versions this worker could not load: said once
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promotions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    async def promote(self, name: str, version: str, caller: str, force: bool = False) -> dict[str, Any]:
        """`POST /admin/models/{name}/promote`: serve `version` of `name` here now, and on every worker soon. A
        candidate nobody compared or shadowed takes `force` (`admin.promote`)."""
        registry = self._registry()
        current = _served(registry, name)
        if name in registry.pinned:
            raise InvalidInputError(
                f"model '{name}' is pinned to version {current.model.version} by CLF_MODELS ('{name}:version'); "
                f"configure it as '{name}' to promote versions of it",
                field="name",
            )
        model = await anyio.to_thread.run_sync(_load, name, version, registry.settings.trusted_types)
        with _recording("promotion"):
            await anyio.to_thread.run_sync(
                lambda: admin.promote(self._log.stores.rollout, model, caller, current.model.version, force)
            )
        previous = self._swap(registry, model)
        return {
            "model": name,
            "version": model.version,
            "previous": previous,
            "workers_follow_within_seconds": self._poll_seconds,
        }

    async def shadow(self, name: str, version: str | None, caller: str) -> dict[str, Any]:
        """`PUT` (a version) or `DELETE` (None) `/admin/models/{name}/shadow`: the shadow of `name`, on every worker."""
        registry = self._registry()
        current = _served(registry, name)
        shadow = None
        if version is not None:
            shadow = await anyio.to_thread.run_sync(_load, name, version, registry.settings.trusted_types)
            check_shadow(current.model, shadow)
        before = None if current.shadow is None else current.shadow.version
        after = None if shadow is None else shadow.version
        with _recording("shadow"):
            await anyio.to_thread.run_sync(lambda: admin.shadow(self._log.stores.rollout, name, after, caller, before))
        with self._lock:
            served = registry.served[name]
            registry.swap(replace(served, shadow=shadow))
        still = registry.shadow_versions(self._log.rollout()).get(name) if shadow is None else shadow.version
        return {"model": name, "version": served.model.version, "shadow": still}

    def _swap(self, registry: ModelRegistry, model: LoadedModel) -> str | None:
        with self._lock:
            served = registry.served.get(model.name)
            if served is not None and served.model.version == model.version:
                return served.model.version
            shadow = None if served is None or served.shadow is None else served.shadow.version
            replaced = registry.swap(registry.serving(model, registry.load_shadow(model, shadow)))
            return None if replaced is None else replaced.model.version

    def _run(self) -> None:
        while not self._stopped.wait(self._poll_seconds):
            try:
                self.follow()
            except Exception:  # noqa: BLE001 -- the next poll tries again; serving goes on meanwhile
                logger.exception("following promotions failed")

    def follow(self) -> None:
        """Serve the versions promoted, and the shadows set, since the last poll (by this worker or another one)."""
        registry = self._registry()
        rollout = self._log.rollout()
        self._follow_promotions(registry, rollout.promoted)
        self._follow_shadows(registry, registry.shadow_versions(rollout))

    def _follow_shadows(self, registry: ModelRegistry, wanted: dict[str, str]) -> None:
        for name, served in list(registry.served.items()):
            version = wanted.get(name)
            if version == served.model.version:
                version = None  # a promoted shadow shadows nothing
            current = None if served.shadow is None else served.shadow.version
            if version == current or (name, str(version)) in self._refused:
                continue
            shadow = registry.load_shadow(served.model, version)
            if version is not None and shadow is None:
                self._refused.add((name, version))  # load_shadow said why, once; the current shadow stays
                continue
            with self._lock:
                if registry.served.get(name) is served:
                    registry.swap(replace(served, shadow=shadow))

    def _follow_promotions(self, registry: ModelRegistry, promoted: dict[str, str]) -> None:
        for name, version in promoted.items():
            served = registry.served.get(name)
            if served is None or name in registry.pinned or served.model.version == version:
                continue
            try:
                model = _load(name, version, registry.settings.trusted_types)
            except (InvalidModelError, UnknownModelError, InvalidInputError) as exc:
                if (name, version) not in self._refused:
                    self._refused.add((name, version))
                    logger.error("promoted version %s:%s cannot be served here; keeping %s: %s", name, version,
                                 served.model.version, getattr(exc, "message", exc))  # fmt: skip
                continue
            previous = self._swap(registry, model)
            logger.info("following the promotion of %s (was %s)", model.tag, previous)


@contextlib.contextmanager
def _recording(what: str) -> Iterator[None]:
    """The route's 503 when the log's database, where an admin action is recorded, cannot take it."""
    try:
        yield
    except DatabaseUnavailableError as exc:
        raise DependencyUnavailableError(f"the {what} cannot be recorded: {exc}") from None
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        logger.error("the %s cannot be recorded: %s", what, exc)
        raise DependencyUnavailableError(
            f"the {what} cannot be recorded: the prediction log's database failed; the service log says why"
        ) from None


def _served(registry: ModelRegistry, name: str) -> Served:
    """What `name` serves, or the route's 404."""
    current = registry.served.get(name)
    if current is None:
        listed = ", ".join(sorted(registry.served)) or "none"
        raise UnknownModelError(f"model '{name}' is not served; served models: {listed}", field="name")
    return current


def _load(name: str, version: str, trusted_types: Any) -> LoadedModel:
    """The stored version, or the request's error: an unknown version is a 404, an unloadable one a 400."""
    if version in ("", "latest"):
        raise InvalidInputError("name the version to promote; 'latest' moves with every registration", "version")
    try:
        return load_model(f"{name}:{version}", trusted_types)
    except ModelNotFoundError as exc:
        raise UnknownModelError(f"version '{version}' of model '{name}' is not served or stored: {exc}") from None
    except InvalidModelError as exc:
        raise InvalidInputError(f"version '{version}' of model '{name}' cannot be served: {exc}", "version") from None
