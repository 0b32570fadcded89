"""The image `make image` builds, run as it is deployed: a read-only root filesystem, its non-root user, the prediction
log on a volume, the metrics folder in memory (`scripts.image.run_command`).

The image is built once, by `make image` (the module's first test to need it), from the session's catalog store.
Every test skips, saying why, only where no container engine can run at all; a build or a run that fails, fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bench import servers
from bench.servers import PROJECT, STOP_TIMEOUT_S, Server, log_tail
from models.catalog import evaluation_rows
from scripts import image
from service.settings import DEFAULT_CATALOG
from tests.e2e.conftest import (
    TIMEOUT,
    Samples,
    assert_under_way_answered,
    recorded_load,
    scrape_when,
    value,
    wait_until,
)
from tests.helpers import CATALOG_TASKS

pytestmark = pytest.mark.e2e

MAX_IMAGE_BYTES = 600_000_000
CLIENTS = 8
LIST_DISTRIBUTIONS = """
from importlib.metadata import distributions
from packaging.utils import canonicalize_name
print(*sorted(f"{canonicalize_name(d.metadata['Name'])}=={d.version}" for d in distributions()))
"""


def startup_budget_s() -> float:
    """What the Deployment's startup probe allows before the kubelet restarts the container."""
    deployment = yaml.safe_load((PROJECT / "deploy/k8s/base/deployment.yaml").read_text())
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    return float(probe["periodSeconds"] * probe["failureThreshold"])


@pytest.fixture(scope="module")
def engine() -> list[str]:
    """The container engine, or a skip where none can run a container."""
    try:
        command = image.engine()
    except SystemExit as exc:
        pytest.skip(f"no container engine on this machine: {exc}")
    probe = subprocess.run([*command, "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"{' '.join(command)} cannot run containers here: {probe.stderr.strip()[-500:]}")
    return command


@pytest.fixture(scope="module")
def built(engine: list[str], e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """`make image` from this checkout and the session's catalog store; the version tag it built."""
    log = tmp_path_factory.mktemp("image") / "make-image.log"
    with log.open("wb") as out:
        done = subprocess.run(["make", "image"], cwd=PROJECT, env=e2e_env, stdout=out, stderr=subprocess.STDOUT)
    assert done.returncode == 0, f"make image failed:\n{log_tail(log, 6000)}"
    return image.version()


@contextlib.contextmanager
def container(
    engine: list[str], folder: Path, name: str, volumes: dict[str, str] | None = None, **settings: str
) -> Iterator[Server]:
    """The image serving on a free loopback port with `CLF_*` settings, ready; removed on exit whatever happened."""
    name = f"clf-test-{name}-{os.getpid()}"
    env = {f"CLF_{key.upper()}": value for key, value in settings.items()}
    command = image.run_command(name, env=env, volumes=volumes)
    try:
        with servers.launched(f"container {name}", command, folder / f"{name}.log") as server:
            yield server
    finally:
        subprocess.run([*engine, "rm", "--force", "--ignore", name], capture_output=True)


def inspect(engine: list[str], image_name: str) -> dict[str, Any]:
    found = subprocess.run([*engine, "image", "inspect", image_name], capture_output=True, text=True, check=True)
    described: dict[str, Any] = json.loads(found.stdout)[0]
    return described


def container_name(server: Server) -> str:
    return server.name.removeprefix("container ")


def predict(http: httpx.Client, url: str, model: str, rows: list[Any]) -> httpx.Response:
    return http.post(f"{url}/predict", json={"model": model, "instances": rows})


def test_the_image_is_tagged_runs_as_its_own_user_has_a_health_check_and_fits_its_size(
    engine: list[str], built: str
) -> None:
    latest, versioned = (inspect(engine, f"{image.IMAGE}:{tag}") for tag in ("latest", built))
    assert latest["Id"] == versioned["Id"]
    config = versioned["Config"]
    assert config["User"] == "bentoml"
    # podman keeps the health check beside the OCI config (Docker inside it)
    check = versioned.get("Healthcheck") or config["Healthcheck"]
    assert any("/readyz" in part for part in check["Test"]), check
    head = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert config["Labels"]["org.opencontainers.image.revision"] == head.strip()
    assert f"{image.CONTAINER_PORT}/tcp" in config["ExposedPorts"]
    assert versioned["Size"] <= MAX_IMAGE_BYTES, f"{versioned['Size'] / 1e6:.0f} MB"


def test_the_image_installs_exactly_the_locks_runtime_pins(engine: list[str], built: str) -> None:
    listed = subprocess.run(
        [*engine, "run", "--rm", *image.run_options(engine), "--entrypoint", "python", f"{image.IMAGE}:{built}",
         "-c", LIST_DISTRIBUTIONS],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    installed = set(listed.stdout.split())
    # requirements.txt: uv.lock's runtime pins, exported by `make lock` (tests/test_lock.py keeps them equal)
    pins = [Requirement(line) for line in (PROJECT / "requirements.txt").read_text().splitlines() if line[:1].isalpha()]
    applying = [pin for pin in pins if pin.marker is None or pin.marker.evaluate()]
    wanted = {f"{canonicalize_name(pin.name)}=={next(iter(pin.specifier)).version}" for pin in applying}
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert installed == wanted | {f"{project['name']}=={project['version']}"}


def every_model_counted(samples: Samples) -> bool:
    return all(value(samples, "classifier_requests_total", model=m, code="ok") for m in DEFAULT_CATALOG)


def test_serves_every_task_kind_and_its_metrics_from_a_read_only_root_as_a_non_root_user(
    engine: list[str], built: str, tmp_path: Path
) -> None:
    with container(engine, tmp_path, "kinds") as server, httpx.Client(timeout=TIMEOUT) as http:
        assert server.ready_s <= startup_budget_s(), server.ready_s
        for model in DEFAULT_CATALOG:
            response = predict(http, server.url, model, evaluation_rows(model)[0][:3].tolist())
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["task"], len(body["predictions"])) == (CATALOG_TASKS[model], 3)
        scrape_when(server.url, every_model_counted, "/metrics counting a request of each model")
        name = container_name(server)
        health = subprocess.run([*engine, "healthcheck", "run", name], capture_output=True, text=True)
        assert health.returncode == 0, health.stderr
        user = subprocess.run([*engine, "exec", name, "id", "-u"], capture_output=True, text=True, check=True)
        assert user.stdout.strip() == str(image.USER_ID)
        write = subprocess.run([*engine, "exec", name, "touch", "/opt/classifier-service/x"], capture_output=True,
                               text=True)  # fmt: skip
        assert write.returncode != 0 and "Read-only file system" in write.stderr, write
        # the service logs to the container's standard output, which the engine keeps
        assert "Service classifier-service initialized" in server.log.read_text(errors="replace")


def test_sigterm_under_load_answers_the_requests_under_way_and_a_new_container_finds_their_predictions(
    engine: list[str], built: str, tmp_path: Path
) -> None:
    volume = f"clf-test-data-{os.getpid()}"
    rows = evaluation_rows("breast_cancer")[0][:20].tolist()
    volumes = {volume: image.DATA_FOLDER}
    try:
        # only the stop writes the log's queue (a 30-s flush interval): what reaches the volume is the drain's doing
        with (
            container(engine, tmp_path, "drain", volumes, workers="2", log_flush_seconds="30") as server,
            recorded_load(server.url, "breast_cancer", rows, CLIENTS) as outcomes,
        ):
            signalled = time.time()
            # `podman stop`: SIGTERM, and SIGKILL only after the grace period
            stop = [*engine, "stop", "--time", str(image.STOP_TIMEOUT_S), container_name(server)]
            subprocess.run(stop, capture_output=True, check=True)
            exit_code = server.process.wait(STOP_TIMEOUT_S)
        assert exit_code == 0, f"the container exited with {exit_code} (137: killed):\n{log_tail(server.log)}"
        assert_under_way_answered(outcomes, signalled)

        answered = [o.ids[0] for o in outcomes if o.status == 200]
        with container(engine, tmp_path, "after", volumes) as server, httpx.Client(timeout=TIMEOUT) as http:
            missing = [i for i in answered if http.get(f"{server.url}/predictions/{i}").status_code != 200]
        assert missing == [], f"{len(missing)} of {len(answered)} answered predictions are not in the log"
    finally:
        subprocess.run([*engine, "volume", "rm", "--force", volume], capture_output=True)


def test_livez_turns_503_when_a_worker_dies_inside_the_container(engine: list[str], built: str, tmp_path: Path) -> None:
    with container(engine, tmp_path, "livez", workers="2") as server:
        name = container_name(server)
        processes = subprocess.run([*engine, "top", name, "pid", "args"], capture_output=True, text=True, check=True)
        workers = [line.split()[0] for line in processes.stdout.splitlines() if "_bentoml_impl.worker" in line]
        assert len(workers) == 2, processes.stdout
        subprocess.run([*engine, "exec", name, "sh", "-c", f"kill -9 {workers[0]}"], check=True)

        def dead_worker_reported() -> bool:
            response = httpx.get(f"{server.url}/livez", timeout=TIMEOUT)
            return response.status_code == 503 and f"worker pid {workers[0]}" in response.text

        wait_until(dead_worker_reported, f"/livez 503 naming worker {workers[0]}")
        v2_live = httpx.get(f"{server.url}/v2/health/live", timeout=TIMEOUT)  # the same rule
        assert v2_live.status_code == 503 and f"worker pid {workers[0]}" in v2_live.json()["error"], v2_live.text
        server.check_alive()  # the container keeps running: the orchestrator restarts it, BentoML does not
