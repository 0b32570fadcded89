"""`bentoml build` makes a bento that carries the service, the catalog models and a Dockerfile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.settings import DEFAULT_CATALOG
from tests.e2e.conftest import PROJECT

pytestmark = pytest.mark.e2e


def test_bento_holds_service_models_and_dockerfile(e2e_env: dict[str, str]) -> None:
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    subprocess.run([str(bentoml_cli), "build", "--output", "tag"], cwd=PROJECT, env=e2e_env, check=True)
    bentos = Path(e2e_env["BENTOML_HOME"]) / "bentos" / "classifier-service"
    bento = bentos / (bentos / "latest").read_text().strip()
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert manifest["service"] == "service.app:ClassifierService"
    assert sorted(m["tag"].split(":")[0] for m in manifest["models"]) == sorted(DEFAULT_CATALOG)
    assert (bento / "src" / "service" / "app.py").is_file()
    assert (bento / "src" / "models" / "catalog.py").is_file()
    migrations = bento / "src" / "service" / "feedback" / "migrations"
    assert (migrations / "env.py").is_file() and len(list((migrations / "versions").glob("0*.py"))) >= 2
    assert not (bento / "src" / "tests").exists()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    for package in (
        "scikit-learn==1.9.",
        "skops==",
        "orjson==",
        "bentoml==1.4.",
        "sqlalchemy==",
        "alembic==",
        "psycopg",
    ):
        assert package in requirements
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "python:3.11" in dockerfile or "python3.11" in dockerfile.lower()
    assert "CLF_DATA_DIR" in dockerfile  # the container's prediction log lives outside the code
