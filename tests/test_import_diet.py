"""What the steps of `make serve` import before a worker needs the model stack, read from `python -X importtime`.

`bentoml serve` imports `service.app` twice: in its arbiter, only to read the service's configuration, and in each
worker. `python -m models ensure` checks each catalog model by its stored record. Neither needs scikit-learn (with
SciPy and pandas, which it imports), skops or the prediction log's database: each of them is seconds of a start on a
loaded machine (docs/performance.md, "Start-up").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
MODEL_STACK = ("sklearn", "scipy", "pandas", "skops", "sqlalchemy", "alembic")


def imported(*args: str) -> tuple[set[str], str]:
    """The modules `python -X importtime ARGS` imports (run from the project, this test's environment), and its
    output; fails with the output if it fails."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=PROJECT, env=os.environ, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rpartition("|")[2].strip() for line in lines[1:]}, result.stdout + result.stderr


def of_the_stack(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.partition(".")[0] in MODEL_STACK)


def test_the_arbiters_import_of_the_service_leaves_the_model_stack_to_the_workers() -> None:
    modules, output = imported("-c", "import service.app")
    assert "service.app" in modules, output
    assert of_the_stack(modules) == []
    assert "service.serving" not in modules and "service.feedback.log" not in modules


def test_ensure_with_the_catalog_present_reads_records_without_the_model_stack(catalog: dict[str, str]) -> None:
    modules, output = imported("-m", "models", "ensure")
    assert "needs training" not in output  # the catalog is present: nothing trained, only records read
    assert "service.store" in modules, output
    assert of_the_stack(modules) == []


def test_the_probe_would_see_the_model_stack() -> None:
    """The same reading finds scikit-learn once something imports it, so the tests above can fail."""
    modules, _ = imported("-c", "import service.app, sklearn.base")
    assert "sklearn" in of_the_stack(modules) and "scipy" in of_the_stack(modules)


def test_a_workers_model_load_gives_skops_the_recorded_trusted_types(catalog: dict[str, str]) -> None:
    """skops's own list building (`skops.io._trusted_types`, with `sklearn.utils.all_estimators()`'s walk of every
    scikit-learn module) is left out when the record matches the installed releases (tests/test_skops_defaults.py
    checks the record against what skops computes)."""
    load = "from service.store import load_model\nfor name in {names!r}:\n    load_model(name)"
    modules, output = imported("-c", load.format(names=sorted(catalog.values())))
    assert "skops.io" in modules and "sklearn.base" in modules, output
    assert "skops.io._trusted_types" not in modules and "sklearn.utils._testing" not in modules
