"""The peers' definitions, requirement files, bodies and answers, without installing or starting any of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from bench import peers
from bench.config import CATALOG_MODELS, PEERS, SCENARIO_BY_KEY, VARIANT_BY_KEY, VARIANTS
from bench.payloads import PROTOCOLS, body, v2_body
from bench.runner import disagreement
from bench.servers import server_env

REQUIREMENTS = sorted({peer.requirements for peer in PEERS.values()})


@pytest.mark.parametrize("name", REQUIREMENTS)
def test_every_requirement_file_pins_exact_versions(name: str) -> None:
    pinned = peers.pins(name)
    assert pinned, name
    direct = [line.split("==")[0].split("[")[0].lower() for line in (peers.FOLDER / f"{name}.in").read_text().split()]
    assert set(direct) <= set(pinned)  # the compiled file covers what the .in asks


def test_a_requirement_line_that_is_not_an_exact_pin_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "FOLDER", tmp_path)
    (tmp_path / "loose.txt").write_text("# a comment\nnumpy==2.4.6\nscikit-learn>=1.9\n")
    with pytest.raises(ValueError, match="scikit-learn>=1.9"):
        peers.pins("loose")


def test_peers_unpickle_with_the_service_s_scikit_learn_and_numpy() -> None:
    from importlib.metadata import version

    for name in ("fastapi", "mlserver", "bentoml"):
        pinned = peers.pins(name)
        assert pinned["scikit-learn"] == version("scikit-learn"), name
        assert pinned["numpy"] == version("numpy"), name


def test_every_peer_variant_has_its_app_and_serves_the_catalog() -> None:
    for variant in (v for v in VARIANTS if v.peer is not None):
        peer = variant.peer
        assert peer is not None and variant.models == CATALOG_MODELS
        assert peer.launcher in ("uvicorn", "bentoml", "mlserver")
        if peer.launcher != "mlserver":
            assert (peers.FOLDER / f"{peer.app}.py").exists(), peer.app
        assert peers.requirements_file(peer.requirements).exists()


@pytest.mark.parametrize("rows", [1, 64])
def test_the_v2_body_holds_the_json_body_s_rows(rows: int) -> None:
    instances = orjson.loads(body("breast_cancer", rows))["instances"]
    request = orjson.loads(v2_body("breast_cancer", rows))
    (tensor,) = request["inputs"]
    assert tensor["datatype"] == "FP64" and tensor["shape"] == [rows, 30]
    assert np.array_equal(np.asarray(tensor["data"]).reshape(tensor["shape"]), np.asarray(instances))
    assert request["outputs"] == [{"name": "predict_proba"}]


def test_probabilities_are_read_from_each_kind_of_answer() -> None:
    matrix = [[0.25, 0.75], [0.5, 0.5]]
    v2 = {"outputs": [{"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.25, 0.75, 0.5, 0.5]}]}
    service = {"predictions": [{"label": "b", "probabilities": {"a": 0.25, "b": 0.75}},
                               {"label": "a", "probabilities": {"a": 0.5, "b": 0.5}}]}  # fmt: skip
    answers = {
        "fastapi_fold": {"probabilities": matrix}, "bentoml_minimal": matrix, "mlserver": v2,
    }  # fmt: skip
    for key, answer in answers.items():
        got = peers.probabilities(VARIANT_BY_KEY[key], orjson.dumps(answer))
        assert got is not None and np.array_equal(got, matrix), key
    got = peers.probabilities(VARIANT_BY_KEY["default"], orjson.dumps(service))
    assert got is not None and np.array_equal(got, matrix)
    got = peers.probabilities(VARIANT_BY_KEY["v2"], orjson.dumps(v2))  # the service's V2 route: MLServer's output
    assert got is not None and np.array_equal(got, matrix)
    assert peers.probabilities(VARIANT_BY_KEY["floor"], b'{"probabilities": [[0.5, 0.5]]}') is None


def test_the_service_s_v2_variant_sends_mlserver_s_body_to_its_own_v2_route() -> None:
    v2, mlserver, default = (VARIANT_BY_KEY[key] for key in ("v2", "mlserver", "default"))
    assert v2.peer is None and v2.protocol == mlserver.protocol == "v2" and default.protocol == "json"
    assert v2.models == mlserver.models == CATALOG_MODELS
    assert PROTOCOLS[v2.protocol] is v2_body
    # monitoring and log on, 1 worker: the service's default settings, only the route differs
    assert v2.settings_env() == default.settings_env() and v2.log_on


def test_requests_go_to_each_variant_s_path() -> None:
    v2_route = {v.key for v in VARIANTS if peers.path(v, "digits") == "/v2/models/digits/infer"}
    assert v2_route == {"mlserver", "v2"}
    assert all(peers.path(v, "digits") == "/predict" for v in VARIANTS if v.key not in v2_route)


def test_a_peer_reads_the_exported_models_and_the_service_s_fold_from_the_snapshot(tmp_path: Path) -> None:
    env = server_env(VARIANT_BY_KEY["fastapi_fold"], tmp_path / "store", tmp_path / "peer", tmp_path / "src")
    assert env[peers.MODELS_ENV] == str(tmp_path / "store" / "peers" / "models")
    assert env[peers.NAMES_ENV] == "breast_cancer,digits" and env["PYTHONPATH"] == str(tmp_path / "src")
    assert env["BENTOML_HOME"] == str(tmp_path / "peer") and "CLF_DATA_DIR" not in env


def test_each_launcher_starts_one_worker_on_the_port_given(tmp_path: Path) -> None:
    ports = iter([7001, 7002])
    for key in ("fastapi_proba", "bentoml_minimal", "mlserver"):
        argv = peers.command(PEERS[key], tmp_path, tmp_path / "src", tmp_path / "models", lambda: next(ports))(6000)
        assert "6000" in argv or "MLSERVER_HTTP_PORT=6000" in argv, key
    uvicorn = peers.command(PEERS["floor"], tmp_path, tmp_path / "src", tmp_path / "models", lambda: 0)(6000)
    assert uvicorn[uvicorn.index("--workers") + 1] == "1" and "httptools" in uvicorn and "uvloop" in uvicorn
    assert peers.MLSERVER_SETTINGS["parallel_workers"] == 0


def test_the_service_s_v2_answer_is_checked_as_mlserver_s_without_asking_predict_again() -> None:
    """`disagreement` asks /predict again only for the JSON service variants; `server` is never used for V2."""
    expected = np.array([[0.25, 0.75], [0.5, 0.5]])
    output = {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.25, 0.75, 0.5, 0.5]}
    answer = orjson.dumps({"model_name": "digits", "outputs": [output]})
    v2, scenario = VARIANT_BY_KEY["v2"], SCENARIO_BY_KEY["64x4"]
    assert disagreement(v2, None, "digits", scenario, answer, expected) is None  # type: ignore[arg-type]
    off = orjson.dumps({"outputs": [{**output, "data": [0.25, 0.75, 0.5 + 1e-8, 0.5]}]})
    wrong = disagreement(v2, None, "digits", scenario, off, expected)  # type: ignore[arg-type]
    assert wrong is not None and "differ from predict_proba's by up to 1e-08" in wrong
    no_proba = orjson.dumps({"outputs": [{**output, "name": "predict"}]})
    missing = disagreement(v2, None, "digits", scenario, no_proba, expected)  # type: ignore[arg-type]
    assert missing is not None and "answer without probabilities" in missing
