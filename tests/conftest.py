"""Test set-up: a private BentoML home and Prometheus multiprocess dir, set before bentoml is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="clf-tests-"))
os.environ["BENTOML_HOME"] = str(_ROOT / "bentoml")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_ROOT / "prometheus")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
(_ROOT / "prometheus").mkdir(parents=True)

from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="session")
def catalog() -> dict[str, str]:
    """The default catalog, trained and registered into the test store by its own recipes: name -> tag."""
    from models.catalog import CATALOG

    return {name: recipe() for name, recipe in CATALOG.items()}


@pytest.fixture(scope="session")
def api(catalog: dict[str, str]) -> Iterator[TestClient]:
    """The service in-process, serving the catalog. One per session: BentoML registers its metrics once."""
    from service.app import ClassifierService

    with TestClient(ClassifierService.to_asgi()) as client:
        yield client


@pytest.fixture
def reconfigure(api: TestClient) -> Iterator[Callable[..., None]]:
    """Swap the running service's settings (and the models they load); restored after the test."""
    import bentoml

    from service.serving import ModelRegistry
    from service.settings import Settings

    service = bentoml.get_current_service()
    saved = service.settings, service.registry

    def apply(**overrides: Any) -> None:
        service.settings = Settings(**overrides)
        service.registry = ModelRegistry.load(service.settings, service.metrics)

    yield apply
    service.settings, service.registry = saved
