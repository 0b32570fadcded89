"""Starting and stopping the servers under test, and measuring their process trees.

Every server runs in its own session (process group) and is stopped by that group: SIGTERM, then SIGKILL after
a grace period, also when the harness fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psutil

from .config import ALL_MODELS, READY_TIMEOUT_S, Variant

logger = logging.getLogger("bench.servers")

PROJECT = Path(__file__).resolve().parents[1]
STOP_GRACE_S = 30.0


class ServerError(RuntimeError):
    """A server did not start, or died."""


@dataclass
class Server:
    variant: Variant
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    ready_s: float = 0.0  # from the server's launch to its first /readyz 200

    def tree(self) -> list[psutil.Process]:
        """The server process and all its descendants (arbiter and workers)."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerError(f"{self.variant.label} exited with {self.process.returncode}:\n{log_tail(self.log)}")


def cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    """User + system CPU seconds per pid (processes that vanished are left out)."""
    seconds = {}
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            seconds[process.pid] = times.user + times.system
    return seconds


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots, summed over the tree; a pid new in `after` counts whole."""
    return sum(max(0.0, spent - before.get(pid, 0.0)) for pid, spent in after.items())


def rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total / 2**20


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM unwind as KeyboardInterrupt, so every server is stopped by its `finally` (SIGINT too when
    the harness was started in the background, where the shell makes it ignore SIGINT)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def http_status(url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a GET (or a JSON POST when `body` is given); 0 when nothing answered."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


def base_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # bentoml serve sets its own, per server
    for name in [key for key in env if key.startswith("CLF_")]:
        del env[name]  # only the variant's settings
    return env


def server_command(variant: Variant, port: int) -> list[str]:
    if variant.baseline:
        return [
            sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "bentoml", "serve", "service.app:ClassifierService",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def server_env(variant: Variant, store: Path, workdir: Path) -> dict[str, str]:
    """The baseline reads the bench store in place; a service gets a fresh copy of its models in `workdir`,
    because `bentoml serve` wipes its home's Prometheus folder at start, and its own data folder there, because
    servers running at once must not write one prediction log (the default `./data` of the source folder)."""
    models = ",".join(ALL_MODELS)
    if variant.baseline:
        return {**base_env(store), "BENCH_MODELS": models}
    shutil.copytree(store / "models", workdir / "models")
    return {**base_env(workdir), "CLF_MODELS": models, "CLF_DATA_DIR": str(workdir / "data"), **variant.settings_env()}


@contextlib.contextmanager
def serving(
    variant: Variant, store: Path, workdir: Path, source: Path = PROJECT, extra_env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """A ready server of `variant` on a free loopback port, run from `source`; stopped (process group) on exit.
    `extra_env` overrides the variant's environment (the feedback benchmark's CLF_MODELS and CLF_DATABASE_URL)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = {**server_env(variant, store, workdir), **(extra_env or {})}
    port = free_port()
    log = workdir / "server.log"
    launched = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            server_command(variant, port), cwd=source, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Server(variant, f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server)
        server.ready_s = time.monotonic() - launched
        yield server
    finally:
        stop(process)


def wait_ready(server: Server, timeout: float = READY_TIMEOUT_S) -> None:
    started = time.monotonic()
    deadline = started + timeout
    while True:
        server.check_alive()
        if http_status(f"{server.url}/readyz", timeout=2.0)[0] == 200:
            logger.info("%s ready on %s in %.1f s", server.variant.label, server.url, time.monotonic() - started)
            return
        if time.monotonic() > deadline:
            raise ServerError(f"{server.variant.label} not ready after {timeout:.0f} s:\n{log_tail(server.log)}")
        time.sleep(0.05)  # start-up is measured to this poll (bench/startup.py)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it after the grace period; then SIGKILL, by pid, any process
    of its tree still alive (BentoML workers run in process groups of their own)."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            logger.warning("server %d ignored SIGTERM for %.0f s; killing it", process.pid, STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if any
    process.wait()
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for straggler in alive:
        logger.warning("killing leftover server process %d", straggler.pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            straggler.kill()  # psutil refuses if the pid was reused by another process
