"""The Open Inference Protocol's own clients against a served catalog: Triton's `tritonclient[http]`, and a client
written for MLServer's scikit-learn runtime (its codecs and `mlserver.types`, run from MLServer's pinned environment),
which gets from us what it gets from MLServer itself on the same estimator file, to 1e-9, with only its URL changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from bench import peers, servers
from bench.config import VARIANT_BY_KEY
from bench.servers import PROJECT
from models.catalog import evaluation_rows
from service.settings import DEFAULT_CATALOG
from tests.e2e.conftest import TIMEOUT
from tests.helpers import CATALOG_TASKS

pytestmark = pytest.mark.e2e

CLIENT = Path(__file__).with_name("mlserver_client.py")
MLSERVER = VARIANT_BY_KEY["mlserver"]
MODELS = ["breast_cancer", "digits", "digit_attributes", "digit_groups"]  # a model of each task kind
SAME_FILE = ["breast_cancer", "digits"]  # one estimator each: MLServer's runtime serves their exported file


def predicted(url: str, model: str, rows: np.ndarray) -> list[dict[str, Any]]:
    body = {"model": model, "instances": rows.tolist(), "options": {"return_probabilities": True}}
    answer = httpx.post(f"{url}/predict", json=body, timeout=TIMEOUT).json()
    records: list[dict[str, Any]] = answer["predictions"]
    return records


@pytest.mark.parametrize("model", DEFAULT_CATALOG)
def test_tritonclient_reads_metadata_and_infers_every_task_kind(server: str, model: str) -> None:
    client = triton.InferenceServerClient(url=server.removeprefix("http://"), connection_timeout=300.0,
                                          network_timeout=300.0)  # fmt: skip
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
    metadata = client.get_model_metadata(model)
    (tensor,) = metadata["inputs"]
    classes = metadata["parameters"]["classes"]
    rows = evaluation_rows(model)[0][:4].astype(np.float64)
    given = triton.InferInput(tensor["name"], list(rows.shape), "FP64")
    given.set_data_from_numpy(rows, binary_data=False)
    names = ["predict"] + (["predict_proba"] if CATALOG_TASKS[model] != "hierarchical" else ["path_confidence"])
    asked = [triton.InferRequestedOutput(name, binary_data=False) for name in names]
    result = client.infer(model, [given], outputs=asked, request_id="triton-1")
    assert result.get_response()["id"] == "triton-1"
    records = predicted(server, model, rows)
    decided = result.as_numpy("predict")
    if CATALOG_TASKS[model] == "multilabel":
        assert decided.tolist() == [[int(c in r["labels"]) for c in classes] for r in records]
    else:
        assert [str(label) for label in decided[:, 0]] == [r["label"] for r in records]
    if CATALOG_TASKS[model] == "hierarchical":
        expected = [[node["confidence"] for node in r["path"]] for r in records]
        assert np.allclose(result.as_numpy("path_confidence"), expected, rtol=0, atol=1e-12)
    else:
        expected = [[r["probabilities"][c] for c in classes] for r in records]
        assert np.allclose(result.as_numpy("predict_proba"), expected, rtol=0, atol=1e-12)
    ids = result.get_response()["parameters"]["prediction_ids"]
    assert httpx.get(f"{server}/predictions/{ids[0]}", timeout=TIMEOUT).status_code == 200


@pytest.fixture(scope="module")
def mlserver(e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """MLServer 1.7's scikit-learn runtime serving the catalog's estimators exported from the e2e store; its URL and
    its Python (the benchmark's pinned environment, installed into `.bench/` when missing)."""
    shared = PROJECT / ".bench"
    peers.install(shared, [MLSERVER.peer])  # type: ignore[list-item]
    store = Path(e2e_env["BENTOML_HOME"])
    (store / "peers").mkdir(exist_ok=True)
    environment = peers.environment(store, "mlserver")
    if not environment.exists():
        environment.symlink_to(peers.environment(shared, "mlserver"))
    export = f"from pathlib import Path; from bench.peers import export; export(Path({str(store)!r}), {SAME_FILE!r})"
    subprocess.run([sys.executable, "-c", export], cwd=PROJECT, env=e2e_env, check=True)
    workdir = tmp_path_factory.mktemp("mlserver")
    with servers.serving(MLSERVER, store, workdir) as server:
        yield server.url, peers.python(store, "mlserver")


def mlserver_client(python: Path, url: str, model: str, form: str, outputs: str, given: dict[str, Any]) -> Any:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run([str(python), str(CLIENT), url, model, form, outputs], input=json.dumps(given),
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("model", SAME_FILE)
def test_a_client_written_for_mlserver_gets_the_same_probabilities_from_us(
    server: str, mlserver: tuple[str, Path], model: str
) -> None:
    theirs, python = mlserver
    rows = evaluation_rows(model)[0][:16]
    given = {"rows": rows.tolist()}
    from_mlserver = mlserver_client(python, theirs, model, "np", "predict_proba", given)
    from_us = mlserver_client(python, server, model, "np", "predict_proba", given)
    assert np.allclose(from_us["outputs"]["predict_proba"], from_mlserver["outputs"]["predict_proba"], rtol=0,
                       atol=1e-9)  # fmt: skip


@pytest.mark.parametrize("model", MODELS)
def test_mlserver_types_and_codecs_parse_every_task_kind_in_both_input_forms(
    server: str, mlserver: tuple[str, Path], model: str
) -> None:
    _, python = mlserver
    rows = evaluation_rows(model)[0][:3]
    features = httpx.get(f"{server}/v2/models/{model}", timeout=TIMEOUT).json()["parameters"]["features"]
    as_tensor = mlserver_client(python, server, model, "np", "-", {"rows": rows.tolist()})
    as_frame = mlserver_client(python, server, model, "pd", "-", {"rows": rows.tolist(), "features": features})
    assert as_tensor["outputs"] == as_frame["outputs"]
    assert as_tensor["parameters"]["task"] == CATALOG_TASKS[model]
    records = predicted(server, model, rows)
    if CATALOG_TASKS[model] != "multilabel":
        assert as_tensor["outputs"]["predict"] == [r["label"] for r in records]
    assert len(as_tensor["parameters"]["prediction_ids"]) == 3
