"""Admin actions: a promotion, a shadow set or stopped, a comparison. One code path for the admin routes and for
`python -m models promote` / `compare`: each action is checked, recorded in the log's database (`admin_actions`, in
the transaction that changes `served_versions`) and logged at WARNING with who asked, the model and both versions.
"""

from __future__ import annotations

import getpass
import logging
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..database.schema import NAME_LENGTH
from ..errors import ConflictError
from .rollout_store import AdminAction, AdminActionKind, RolloutStore

if TYPE_CHECKING:
    from ..store import LoadedModel

logger = logging.getLogger(__name__)


def cli_caller() -> str:
    """The caller the command line records: `cli:<user>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a user id with no name (a container's bare uid)
        user = str(os.getuid())
    return f"cli:{user}"[:NAME_LENGTH]


def log_action(action: AdminAction) -> None:
    logger.warning(
        "admin action %s by %s: model %s from %s to %s",
        action.action,
        action.caller,
        action.model,
        action.from_version or "none",
        action.to_version or "none",
    )


def promote(store: RolloutStore, model: LoadedModel, caller: str, from_version: str | None, force: bool) -> AdminAction:
    """Make `model` the version that every worker and replica sharing the log serves, after checking that a
    candidate was compared or shadowed (unless `force`); blocks on the database. Raises `ConflictError` for a
    candidate that was neither."""
    if model.candidate and not force and not store.vetted(model.name, model.version):
        raise ConflictError(
            f"version '{model.version}' of model '{model.name}' is a candidate that was neither compared "
            f"(`python -m models compare`) nor shadowed (`PUT /admin/models/{model.name}/shadow`, `CLF_SHADOW`): do "
            'one first, or promote it anyway with `"force": true` (`python -m models promote --force`)',
            field="version",
        )
    action = AdminAction(datetime.now(UTC), caller, "promote", model.name, from_version, model.version)
    store.promote(action)
    log_action(action)
    return action


def shadow(store: RolloutStore, name: str, version: str | None, caller: str, from_version: str | None) -> AdminAction:
    """Make `version` the shadow of `name` on every worker and replica sharing the log (None: stop it)."""
    kind: AdminActionKind = "shadow" if version is not None else "stop_shadow"
    action = AdminAction(datetime.now(UTC), caller, kind, name, from_version, version)
    store.set_shadow(action)
    log_action(action)
    return action


def compared(store: RolloutStore, name: str, a: str, b: str, caller: str) -> AdminAction:
    """Record that versions `a` and `b` of `name` were compared: either may then be promoted without `force`."""
    action = AdminAction(datetime.now(UTC), caller, "compare", name, a, b)
    store.record(action)
    log_action(action)
    return action
