"""The classifier core stays free of the serving stack (STYLE.md §1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("bentoml", "prometheus_client", "pydantic", "starlette")


def test_importing_the_core_loads_no_serving_modules() -> None:
    """A fresh interpreter that imports `service.classifiers` has none of the serving libraries in sys.modules."""
    code = (
        "import json, sys\n"
        "import service.classifiers\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_check_would_see_a_serving_import() -> None:
    """The same probe reports pydantic once something imports it, so the test above can fail."""
    code = (
        "import json, sys\n"
        "import service.classifiers, pydantic\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pydantic" in json.loads(result.stdout.strip().splitlines()[-1])
