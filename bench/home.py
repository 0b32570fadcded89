"""The bench BentoML home: the default catalog plus the high-cardinality bench pair, registered when missing."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

from .servers import PROJECT, base_env

logger = logging.getLogger("bench.home")


SOURCES = ("service", "models", "bench")


def snapshot(store: Path) -> Path:
    """A copy of the code under test, taken once at the start: every server of the run imports `service` from it
    (the working directory comes before the editable install), so all variants measure the same code even while
    the tree is being edited. Returns the folder to run from."""
    source = store / "src"
    shutil.rmtree(source, ignore_errors=True)
    for package in SOURCES:
        shutil.copytree(PROJECT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    sys.path.insert(0, str(source))  # this process too (raw floor, settings): `service` and `models` from the copy
    return source


def prepare(store: Path, source: Path, modules: tuple[str, ...] = ("models", "bench.models")) -> None:
    """`python -m models ensure`, then `python -m bench.models` (the modules asked), with BENTOML_HOME=`store`."""
    store.mkdir(parents=True, exist_ok=True)
    env = base_env(store)
    for module in modules:
        logger.info("registering missing models into %s (python -m %s)", store, module)
        argv = [sys.executable, "-m", module] + (["ensure"] if module == "models" else [])
        subprocess.run(argv, cwd=source, env=env, check=True)


def settings_support() -> dict[str, bool]:
    """Whether service/settings.py (as it is now) knows the switches the variants set; unknown ones are ignored."""
    from service.settings import Settings

    return {name: name in Settings.model_fields for name in ("workers", "monitoring", "batching", "log_sample_rate")}
