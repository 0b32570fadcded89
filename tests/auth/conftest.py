"""A service with API keys, in-process: the keys file, the keys issued into it, and the clock of its key ring."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bentoml
import pytest
from starlette.testclient import TestClient

from service.auth.guard import CHECK_SECONDS, KeyRing
from service.auth.keys import Scope, create_key
from tests.auth.test_keys import Clock


@dataclass
class Keys:
    """The keys file of the running service, the keys issued into it, and the clock of its key ring."""

    path: Path
    issued: dict[str, str]
    clock: Clock

    def create(self, name: str, *scopes: Scope) -> str:
        self.issued[name] = create_key(self.path, name, scopes)
        return self.issued[name]

    def next_check(self) -> None:
        """Moves the key ring's clock to its next look at the file."""
        self.clock.now += CHECK_SECONDS


@pytest.fixture
def keyed(api: TestClient, reconfigure: Callable[..., None], tmp_path: Path) -> Iterator[Callable[..., Keys]]:
    """Serves `models` with a keys file holding a key per keyword argument (name=scopes); the key ring's clock is
    the test's."""

    def start(
        admin: bool = False, metrics_open: bool = False, models: str = "digits", **scopes: tuple[Scope, ...]
    ) -> Keys:
        keys = Keys(tmp_path / "keys.json", {}, Clock())
        for name, granted in scopes.items():
            keys.create(name, *granted)
        reconfigure(models=models, api_keys_file=keys.path, admin=admin, metrics_open=metrics_open)
        bentoml.get_current_service().guard.keys = KeyRing(keys.path, clock=keys.clock)
        return keys

    yield start
