"""Promotion: the version of a model every worker and replica serves, changed without a restart.

The promoted version of a model is a row of the prediction log's database (`served_versions`), which every worker
and replica shares. The worker that takes `POST /admin/models/{name}/promote` loads the version, records it (an admin
action, `admin.py`: checked, recorded and logged with its caller) and serves it at once; the others poll the table
every `CLF_PROMOTION_POLL_SECONDS` and follow. A request reads its model once (`serving.Served`), so none mixes two
versions: requests under way finish on the version they started with. A rollback is a promotion of the older version.

`Promotions` decides (`plan.RolloutPlan`) and tells the registry what to serve through `Registry`; it never imports
the registry. The routes' slow steps (loading a version, the database, the registry's new monitor and its window
files) run on worker threads: the event loop never waits on them, nor on the lock the follower thread holds while it
loads a version.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import anyio
import sqlalchemy as sa

from ..classifiers import InvalidInputError, InvalidModelError
from ..errors import DependencyUnavailableError, UnknownModelError
from ..feedback.log import DatabaseUnavailableError, PredictionLog
from ..feedback.log_writer import describe_error
from ..settings import Settings
from ..store import LoadedModel, ModelNotFoundError, load_model
from ..tags import names_a_version
from . import admin
from .plan import RolloutPlan
from .rollout_store import Rollout
from .shadow import check_shadow
from .versions import version_info

logger = logging.getLogger(__name__)


class ServedVersion(Protocol):
    """A served model version and its shadow (`serving.Served`)."""

    @property
    def model(self) -> LoadedModel: ...

    @property
    def shadow(self) -> LoadedModel | None: ...


class Registry(Protocol):
    """What the rollout tells which versions to serve (`serving.ModelRegistry`)."""

    @property
    def served(self) -> Mapping[str, ServedVersion]: ...

    def serve(self, model: LoadedModel, shadow: LoadedModel | None) -> str | None:
        """Serve `model` (with `shadow`) in place of its current version, which it returns (None: none). Creates a
        monitor and its window files: called on a thread, never on the event loop."""

    def reshadow(self, name: str, shadow: LoadedModel | None) -> None:
        """Keep serving `name`'s version, with `shadow` (None: none)."""


class Promotions:
    """Promotes versions on request and follows the ones other workers promote (a daemon thread); loads the versions
    a registry serves at its start."""

    def __init__(
        self, plan: RolloutPlan, log: PredictionLog, trusted_types: Sequence[str], poll_seconds: float
    ) -> None:
        self._plan = plan
        self._log = log
        self._trusted_types = tuple(trusted_types)
        self._poll_seconds = poll_seconds
        self._registry: Registry | None = None
        self._lock = threading.Lock()  # one swap at a time: the route and the thread may follow the same promotion
        self._refused: set[tuple[str, str]] = set()  # promoted versions this worker could not load: said once
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promotions", daemon=True)

    @classmethod
    def configured(cls, settings: Settings, log: PredictionLog) -> Promotions:
        plan = RolloutPlan.configured(settings.models, settings.shadow)
        return cls(plan, log, settings.trusted_types, settings.promotion_poll_seconds)

    def attach(self, registry: Registry) -> None:
        """Tell `registry` what to serve from now on (the routes, `follow`)."""
        self._registry = registry

    def start(self) -> None:
        """Follow the promotions and shadows of other workers, every `poll_seconds`."""
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    # --- a registry's start ---------------------------------------------------------------------------------------

    def starting_versions(self) -> list[tuple[str, str, str | None]]:
        """(model, version, shadow version) of each configured model, as the plan says with one read of the
        database."""
        rollout = self.read()
        return [
            (name, self._plan.version(name, rollout), self._plan.shadow(name, rollout)) for name in self._plan.names
        ]

    def load_served(self, name: str, version: str) -> LoadedModel:
        """A version to serve: `known` once the registry serves it."""
        return load_model(f"{name}:{version}", self._trusted_types)

    def load_shadow(self, served: LoadedModel, version: str | None) -> LoadedModel | None:
        """The shadow version of a served model, or None (none set, the served version itself, or one that cannot
        shadow it: said in the log, and the model is served without)."""
        if version is None or version == served.version:
            return None
        try:
            shadow = load_model(f"{served.name}:{version}", self._trusted_types)
            check_shadow(served, shadow)
        except (InvalidModelError, InvalidInputError) as exc:
            logger.error("%s is served without its shadow %s: %s", served.tag, version, getattr(exc, "message", exc))
            return None
        # known to the log: labels of the rows it shadowed realize its figures beside the served version's
        self.known(shadow)
        logger.info("%s shadows %s", shadow.tag, served.tag)
        return shadow

    def read(self) -> Rollout:
        """The versions promoted and the shadows set through the admin routes; none while the database is
        unavailable (models then serve their newest version that is not a candidate, or stay as they are)."""
        try:
            return self._log.stores.rollout.rollout()
        except (DatabaseUnavailableError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            logger.warning("prediction log: promoted and shadow versions unavailable: %s", describe_error(exc))
            return Rollout()

    def known(self, model: LoadedModel) -> None:
        """`model` is served (or shadows) from now on: the log knows its version, whose figures its rows' labels
        realize."""
        self._log.versions.serve(version_info(model.name, model.version, model.task.name, model.card.logged))

    # --- the admin routes (event loop) ----------------------------------------------------------------------------

    async def promote(self, name: str, version: str, caller: str, force: bool = False) -> dict[str, Any]:
        """`POST /admin/models/{name}/promote`: serve `version` of `name` here now, and on every worker soon. A
        candidate nobody compared or shadowed takes `force` (`admin.promote`)."""
        registry = self._attached()
        current = _served(registry, name)
        if name in self._plan.pinned:
            raise InvalidInputError(
                f"model '{name}' is pinned to version {current.model.version} by CLF_MODELS ('{name}:version'); "
                f"configure it as '{name}' to promote versions of it",
                field="name",
            )
        model = await anyio.to_thread.run_sync(self._load, name, version)
        with _recording("promotion"):
            await anyio.to_thread.run_sync(
                lambda: admin.promote(self._log.stores.rollout, model, caller, current.model.version, force)
            )
        previous = await anyio.to_thread.run_sync(self._swap, registry, model)
        return {
            "model": name,
            "version": model.version,
            "previous": previous,
            "workers_follow_within_seconds": self._poll_seconds,
        }

    async def shadow(self, name: str, version: str | None, caller: str) -> dict[str, Any]:
        """`PUT` (a version) or `DELETE` (None) `/admin/models/{name}/shadow`: the shadow of `name`, on every worker."""
        registry = self._attached()
        current = _served(registry, name)
        shadow = None
        if version is not None:
            shadow = await anyio.to_thread.run_sync(self._load_shadow, current.model, version)
        before = None if current.shadow is None else current.shadow.version
        after = None if shadow is None else shadow.version
        with _recording("shadow"):
            await anyio.to_thread.run_sync(lambda: admin.shadow(self._log.stores.rollout, name, after, caller, before))
        served_version = await anyio.to_thread.run_sync(self._reshadow, registry, name, shadow)
        if shadow is None:  # the admin route's is stopped: `CLF_SHADOW`'s, if any, takes over
            after = await anyio.to_thread.run_sync(lambda: self._plan.shadow(name, self.read()))
        return {"model": name, "version": served_version, "shadow": after}

    def _attached(self) -> Registry:
        if self._registry is None:
            raise RuntimeError("the rollout tells no registry what to serve yet (`attach`)")
        return self._registry

    def _load(self, name: str, version: str) -> LoadedModel:
        """The stored version, or the request's error: an unknown version is a 404, an unloadable one a 400."""
        if not names_a_version(version):
            raise InvalidInputError("name the version to promote; 'latest' moves with every registration", "version")
        try:
            return load_model(f"{name}:{version}", self._trusted_types)
        except ModelNotFoundError as exc:
            raise UnknownModelError(f"version '{version}' of model '{name}' is not served or stored: {exc}") from None
        except InvalidModelError as exc:
            raise InvalidInputError(
                f"version '{version}' of model '{name}' cannot be served: {exc}", "version"
            ) from None

    def _load_shadow(self, served: LoadedModel, version: str) -> LoadedModel:
        shadow = self._load(served.name, version)
        check_shadow(served, shadow)
        return shadow

    def _reshadow(self, registry: Registry, name: str, shadow: LoadedModel | None) -> str:
        """Set `name`'s shadow (a thread: the follower may hold the lock while it loads); the version it serves."""
        with self._lock:
            registry.reshadow(name, shadow)
            return registry.served[name].model.version

    def _swap(self, registry: Registry, model: LoadedModel) -> str | None:
        with self._lock:
            served = registry.served.get(model.name)
            if served is not None and served.model.version == model.version:
                return served.model.version
            shadow = None if served is None or served.shadow is None else served.shadow.version
            replaced = registry.serve(model, self.load_shadow(model, shadow))
            self.known(model)
            return replaced

    # --- the follower thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.wait(self._poll_seconds):
            try:
                self.follow()
            except Exception:  # noqa: BLE001 -- the next poll tries again; serving goes on meanwhile
                logger.exception("following promotions failed")

    def follow(self) -> None:
        """Serve the versions promoted, and the shadows set, since the last poll (by this worker or another one)."""
        registry = self._attached()
        rollout = self.read()
        self._follow_promotions(registry, rollout)
        self._follow_shadows(registry, rollout)

    def _follow_shadows(self, registry: Registry, rollout: Rollout) -> None:
        for name, served in list(registry.served.items()):
            version = self._plan.shadow(name, rollout)
            if version == served.model.version:
                version = None  # a promoted shadow shadows nothing
            current = None if served.shadow is None else served.shadow.version
            if version == current or (name, str(version)) in self._refused:
                continue
            shadow = self.load_shadow(served.model, version)
            if version is not None and shadow is None:
                self._refused.add((name, version))  # load_shadow said why, once; the current shadow stays
                continue
            with self._lock:
                if registry.served.get(name) is served:
                    registry.reshadow(name, shadow)

    def _follow_promotions(self, registry: Registry, rollout: Rollout) -> None:
        for name, served in list(registry.served.items()):
            version = self._plan.promoted(name, rollout)
            if version is None or served.model.version == version:
                continue
            try:
                model = self._load(name, version)
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


def _served(registry: Registry, name: str) -> ServedVersion:
    """What `name` serves, or the route's 404."""
    current = registry.served.get(name)
    if current is None:
        listed = ", ".join(sorted(registry.served)) or "none"
        raise UnknownModelError(f"model '{name}' is not served; served models: {listed}", field="name")
    return current
