"""`bentoml build` makes a bento that carries the service, the catalog models and a Dockerfile; the build context
that `bentoml containerize` hands a container engine is checked as far as no engine is needed (none runs here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.servers import PROJECT
from service.settings import DEFAULT_CATALOG
from tests.lock import lock_runtime_pins, requirement_pins

pytestmark = pytest.mark.e2e

# `bentoml containerize`'s own first step: the bento and its models from the store, as one build context
CONTEXT = """
import shutil, sys, bentoml
from bentoml._internal.container import construct_containerfile
with construct_containerfile(bentoml.bentos.get(sys.argv[1]), enable_buildkit=False) as (context, _):
    shutil.copytree(context, sys.argv[2])
"""


def test_bento_and_its_container_context(e2e_env: dict[str, str], tmp_path: Path) -> None:
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    built = subprocess.run([str(bentoml_cli), "build", "--output", "tag"], cwd=PROJECT, env=e2e_env, check=True,
                           capture_output=True, text=True)  # fmt: skip
    tag = re.search(r"__tag__:(\S+)", built.stdout)
    assert tag, built.stdout
    context = tmp_path / "context"
    subprocess.run([sys.executable, "-c", CONTEXT, tag[1], str(context)], env=e2e_env, check=True)

    manifest = yaml.safe_load((context / "bento.yaml").read_text())
    assert manifest["service"] == "service.app:ClassifierService"
    assert sorted(m["tag"].split(":")[0] for m in manifest["models"]) == sorted(DEFAULT_CATALOG)
    assert (context / "src" / "service" / "app.py").is_file()
    assert (context / "src" / "models" / "catalog.py").is_file()
    migrations = context / "src" / "service" / "database" / "migrations"
    assert (migrations / "env.py").is_file() and len(list((migrations / "versions").glob("0*.py"))) >= 2
    assert not (context / "src" / "tests").exists()

    # the catalog models inside the image: each version the bento names, with every estimator file it lists
    for model in manifest["models"]:
        name, version = model["tag"].split(":")
        folder = context / "models" / name / version
        metadata = yaml.safe_load((folder / "model.yaml").read_text())["metadata"]
        assert metadata["estimators"] and all((folder / file).is_file() for file in metadata["estimators"].values())

    # the image installs uv.lock's runtime pins, nothing resolved at build time
    requirements = (context / "env" / "python" / "requirements.txt").read_text()
    assert requirement_pins(requirements) == lock_runtime_pins()
    assert not (context / "env" / "python" / "requirements.lock.txt").exists()

    dockerfile = (context / "env" / "docker" / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines() if re.match(r"^[A-Z]+ ", line)]
    assert instructions[0] == ["FROM", "python:3.11-slim AS base-container"]
    assert [arg for op, arg in instructions if op == "USER"][-1] == "bentoml"  # not root
    assert "useradd -m -u $BENTO_USER_UID" in dockerfile
    assert ["EXPOSE", "3000"] in instructions
    assert "install -r $BENTO_PATH/env/python/requirements.txt" in dockerfile
    entrypoint = [arg for op, arg in instructions if op == "ENTRYPOINT"]
    assert entrypoint == ['[ "/home/bentoml/bento/env/docker/entrypoint.sh" ]']
    assert 'set -- bentoml serve "$@" "$BENTO_PATH"' in (context / "env" / "docker" / "entrypoint.sh").read_text()
    # the SQLite prediction log under the non-root user's home, outside the code: a volume keeps it
    assert "ARG CLF_DATA_DIR=/home/bentoml/data" in dockerfile and "ENV CLF_DATA_DIR=$CLF_DATA_DIR" in dockerfile
    assert "ENV BENTOML_DO_NOT_TRACK=$BENTOML_DO_NOT_TRACK" in dockerfile
