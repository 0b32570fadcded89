"""uv.lock is the one list of versions: current for pyproject.toml, and the bento's requirements are its pins."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from tests.lock import PROJECT, lock_all_pins, lock_runtime_pins, normalized, requirement_pins, uv_command


def test_lock_is_current_for_pyproject(tmp_path: Path) -> None:
    # --offline with an empty cache: the check reads pyproject.toml and uv.lock only, as on a machine with no network
    env = {**os.environ, "UV_CACHE_DIR": str(tmp_path), "UV_PYTHON_DOWNLOADS": "never"}
    check = [*uv_command(), "lock", "--check", "--offline", "--python", "python3"]
    result = subprocess.run(check, cwd=PROJECT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"uv.lock is stale for pyproject.toml: run `make lock`\n{result.stderr}"


def test_bento_requirements_are_the_lock_runtime_pins() -> None:
    bentofile = yaml.safe_load((PROJECT / "bentofile.yaml").read_text())
    assert bentofile["python"].get("lock_packages") is False  # BentoML would otherwise re-resolve at build time
    assert "packages" not in bentofile["python"]
    requirements = (PROJECT / bentofile["python"]["requirements_txt"]).read_text()
    assert requirement_pins(requirements) == lock_runtime_pins(), "requirements.txt is stale: run `make lock`"


def test_lock_runtime_pins_hold_the_declared_dependencies_and_no_dev_tool() -> None:
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    pins = lock_runtime_pins()
    declared = {normalized(Requirement(dependency).name) for dependency in project["dependencies"]}
    assert declared <= set(pins)
    assert {"pytest", "mypy", "ruff", "schemathesis", "fastapi"}.isdisjoint(pins)
    assert pins["bentoml"].startswith("1.4.") and pins["scikit-learn"].startswith("1.9.")


def test_the_makefile_installs_with_the_locked_uv() -> None:
    # the uv that creates .venv and the one inside it (that bentoml build runs) are one version
    makefile = (PROJECT / "Makefile").read_text()
    pinned = next(line.split(":=")[1].strip() for line in makefile.splitlines() if line.startswith("UV_VERSION"))
    assert pinned == lock_all_pins()["uv"]
