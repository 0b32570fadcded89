"""The rule of which version of a model serves and which shadows it, in one place.

A model configured as `name:version` (`CLF_MODELS`) is pinned: it serves that version whatever is promoted. Else it
serves the version promoted through the admin route or `python -m models promote` (`served_versions`), else its
newest version that is not a candidate (`latest`). Its shadow is the one set through the admin route, else
`CLF_SHADOW`'s; a shadow that is the served version shadows nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..tags import LATEST, names_a_version
from .rollout_store import Rollout


@dataclass(frozen=True)
class RolloutPlan:
    """The configured models, their pins and their configured shadows; with the admin routes' `Rollout`, which
    version each one serves and which shadows it."""

    names: tuple[str, ...]  # in `CLF_MODELS` order
    pinned: Mapping[str, str]  # name -> version: promotions do not move them
    configured_shadows: Mapping[str, str]  # `CLF_SHADOW`: name -> version

    @classmethod
    def configured(cls, models: Sequence[str], shadows: Sequence[str]) -> RolloutPlan:
        """The plan of `CLF_MODELS` entries (`name` or `name:version`) and `CLF_SHADOW` entries (`name:version`)."""
        names, pinned = [], {}
        for entry in models:
            name, _, version = entry.partition(":")
            names.append(name)
            if names_a_version(version):
                pinned[name] = version
        return cls(tuple(names), pinned, dict(entry.split(":", 1) for entry in shadows))

    def promoted(self, name: str, rollout: Rollout) -> str | None:
        """The version promoted for `name` that it should follow: None when it is pinned or none was promoted."""
        return None if name in self.pinned else rollout.promoted.get(name)

    def version(self, name: str, rollout: Rollout) -> str:
        """The version `name` serves: pinned, else promoted, else `latest`."""
        return self.pinned.get(name) or self.promoted(name, rollout) or LATEST

    def shadow(self, name: str, rollout: Rollout) -> str | None:
        """The version that shadows `name`: the admin route's, else `CLF_SHADOW`'s (None: none)."""
        return rollout.shadows.get(name) or self.configured_shadows.get(name)
