from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient


@pytest.fixture
def served(api: TestClient, reconfigure: Callable[..., None]) -> tuple[str, str, str]:
    """The service serving a model of two versions, with the admin routes on: (name, served version, candidate)."""
    from tests.rollout.test_promotion import two_versions

    name, v1, v2 = two_versions()
    reconfigure(models=name, admin=True)
    return name, v1, v2
