"""One store and one data folder whatever the entry point (service/home.py, service/bentoml_fixes.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import home

PROJECT = Path(__file__).resolve().parents[1]
PROBE = (
    "import os, service; from service.settings import Settings; "
    "print(os.environ['BENTOML_HOME']); print(Settings().data_dir)"
)


def resolved(cwd: Path, **env: str) -> list[str]:
    """(BENTOML_HOME, data_dir) as a process started in `cwd` with `env` (and neither variable unless given) sees."""
    clean = {k: v for k, v in os.environ.items() if k not in ("BENTOML_HOME", "CLF_DATA_DIR")}
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=cwd, env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return run.stdout.split()


def test_a_checkout_uses_its_own_store_and_data_folder_from_any_folder(tmp_path: Path) -> None:
    """`python -m models` from the checkout's root, or anywhere else, finds the store `make serve` serves."""
    expected = [str(PROJECT / ".bentoml"), str(PROJECT / "data")]
    assert resolved(PROJECT) == expected
    assert resolved(tmp_path) == expected


def test_the_environment_wins(tmp_path: Path) -> None:
    chosen = [str(tmp_path / "store"), str(tmp_path / "log")]
    assert resolved(PROJECT, BENTOML_HOME=chosen[0], CLF_DATA_DIR=chosen[1]) == chosen


def test_models_cli_says_which_store_and_data_folder_it_uses(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "store"), "CLF_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run(
        [sys.executable, "-m", "models", "list"], cwd=PROJECT, env=env, capture_output=True, text=True, check=True
    )
    assert f"BentoML store {tmp_path / 'store'} (BENTOML_HOME)" in run.stderr
    assert f"data folder {tmp_path / 'data'} (CLF_DATA_DIR)" in run.stderr


def test_a_model_not_found_names_the_store_it_looked_in() -> None:
    from service.classifiers import InvalidModelError
    from service.store import load_model

    with pytest.raises(InvalidModelError, match=f"not in the BentoML store {os.environ['BENTOML_HOME']}"):
        load_model("no_such_model:latest")


def test_bentomls_cli_store_is_pointed_at_the_same_folder(tmp_path: Path) -> None:
    """`bentoml serve` resolves BentoML's default store before it imports the service: `use_store` moves it (a
    BentoML upgrade that caches the store elsewhere fails here, not in a user's first hour)."""
    script = (
        "import bentoml, pathlib, sys\n"
        "from bentoml._internal.configuration.containers import BentoMLContainer\n"
        "BentoMLContainer.model_store.get()  # what the CLI does before loading the service\n"
        "from service.bentoml_fixes import use_store\n"
        "use_store(pathlib.Path(sys.argv[1]))\n"
        "with bentoml.models.create('probe') as model: pass\n"
        "print(bentoml.models.get('probe:latest').path)\n"
    )
    clean = {k: v for k, v in os.environ.items() if k != "BENTOML_HOME"}
    env = {**clean, "HOME": str(tmp_path / "user"), "PYTHONPATH": str(PROJECT)}
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "store")], env=env, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip().startswith(str(tmp_path / "store" / "models" / "probe"))


def test_each_server_has_a_metrics_folder_of_its_own(tmp_path: Path) -> None:
    assert home.server_metrics_folder(tmp_path, 41) != home.server_metrics_folder(tmp_path, 42)
    assert home.server_metrics_folder(tmp_path, 41).parent == tmp_path / "prometheus_multiproc_dir"


def test_a_server_start_removes_the_metrics_folders_of_servers_that_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer

    from service.bentoml_fixes import metrics_folder_of_this_server

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone, running = home.server_metrics_folder(tmp_path, int(dead.stdout)), home.server_metrics_folder(tmp_path, 1)
    gone.mkdir(parents=True)
    running.mkdir()
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    try:
        assert metrics_folder_of_this_server(tmp_path) == home.server_metrics_folder(tmp_path, os.getpid())
        assert BentoMLContainer.prometheus_multiproc_dir.get() == str(home.server_metrics_folder(tmp_path, os.getpid()))
    finally:
        BentoMLContainer.prometheus_multiproc_dir.reset()
    assert not gone.exists() and running.exists()
