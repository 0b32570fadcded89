"""Shared fixtures of the classifier-core unit tests (the fake estimators live in `fakes.py`)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so randomised checks are reproducible."""
    return np.random.default_rng(20240601)
