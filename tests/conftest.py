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

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def catalog() -> dict[str, str]:
    """The default catalog, trained and registered into the test store by its own recipes: name -> tag."""
    from models.catalog import CATALOG

    return {name: recipe() for name, recipe in CATALOG.items()}
