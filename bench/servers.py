"""The one launcher of real servers, for the benchmarks and the e2e tests: start one on a free loopback port in its
own BentoML home, wait until it is ready, stop it by its process group; and the one HTTP client call the harness
makes outside its load generators.

Every server runs in its own session (process group) and is stopped by that group: SIGTERM, then SIGKILL after
a grace period, also when the harness fails or is interrupted. A server that exits or is not ready in time raises
`ServerError` with the tail of its log. The bounds are generous, none of them a measure of speed: the machine is
shared, and its speed varies tenfold.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
import psutil

from . import peers
from .config import ALL_MODELS, Variant

logger = logging.getLogger("bench.servers")

PROJECT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 600.0  # a loaded machine has taken minutes to start a worker
PORTS_FROM = 10000  # servers' ports are drawn from here up to the ephemeral range (`free_port`)
STOP_TIMEOUT_S = 300.0  # a graceful stop finishes requests under way and writes the prediction log's queue
REQUEST_TIMEOUT_S = 300.0  # one request: a loaded worker has taken minutes to answer its first ones
POLL_S = 0.05  # start-up is measured to this poll (bench/startup.py)
JSON = {"Content-Type": "application/json"}


class ServerError(RuntimeError):
    """A server did not start, or died."""


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    ready_s: float = 0.0  # from the server's launch to its first ready answer
    launched_at: float = 0.0  # `time.time()` at the launch

    def tree(self) -> list[psutil.Process]:
        """The server process and all its descendants (arbiter, workers, their log writer processes)."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerError(f"{self.name} exited with {self.process.returncode}:\n{log_tail(self.log)}")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll `condition` until it holds; the seconds it took. Raises `ServerError` with the log's tail when the
        server exits or `timeout` passes first."""
        started = time.monotonic()
        while True:
            self.check_alive()
            if condition():
                waited = time.monotonic() - started
                logger.info("%s %s on %s in %.1f s", self.name, what, self.url, waited)
                return waited
            if time.monotonic() - started > timeout:
                raise ServerError(f"{self.name} not {what} after {timeout:.0f} s:\n{log_tail(self.log)}")
            time.sleep(POLL_S)


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


def log_to_stderr() -> None:
    """The log of a bench command: INFO lines with their time on stderr, without httpx's line per request."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def ephemeral_ports() -> range:
    """The ports the kernel hands to `bind(0)` and outgoing connections (Linux's `ip_local_port_range`)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port() -> int:
    """A loopback port free now, chosen below the ephemeral range: a port from `bind(0)`, released for the server
    to bind later, could meanwhile be handed to the server's own `bind(0)` (BentoML's arbiter reserves its ZeroMQ
    ports so) and the server would fail with "Address already in use" on its own port."""
    ephemeral = ephemeral_ports()
    if ephemeral.start <= PORTS_FROM:  # an unusual range: no room below it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(100):
        port = random.randrange(PORTS_FROM, ephemeral.start)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ServerError(f"no free loopback port in [{PORTS_FROM}, {ephemeral.start}) after 100 tries")


def log_tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def http_status(
    url: str, body: bytes | None = None, timeout: float = 10.0, client: httpx.Client | None = None
) -> tuple[int, bytes]:
    """Status and body of a GET (or a JSON POST when `body` is given); 0 when nothing answered. `client` keeps its
    connection open between calls (a poll); without one, each call opens its own."""
    method = "GET" if body is None else "POST"
    try:
        if client is None:
            response = httpx.request(method, url, content=body, headers=JSON, timeout=timeout)
        else:
            response = client.request(method, url, content=body, headers=JSON, timeout=timeout)
    except httpx.TransportError:
        return 0, b""
    return response.status_code, response.content


def isolated_env(home: Path, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`base` with `home` as the BentoML home. `bentoml serve` sets a Prometheus multiprocess folder of its own in
    its home, so one inherited from `base` is dropped: two servers sharing one would sum each other's metrics."""
    env = {**base, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def service_command(port: int) -> list[str]:
    """`bentoml serve` of the service on `port` of the loopback interface."""
    return [
        sys.executable, "-m", "bentoml", "serve", "service.app:ClassifierService",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


@contextlib.contextmanager
def launched(
    name: str,
    command: Callable[[int], list[str]],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = PROJECT,
    ready_path: str = "/readyz",
) -> Iterator[Server]:
    """`command(port)` on a free loopback port, in a process group of its own, its output appended to `log`; yielded
    once `ready_path` answers 200, stopped (process group) on exit."""
    port = free_port()
    launched_at, launch = time.time(), time.monotonic()
    with log.open("ab") as out:
        process = subprocess.Popen(
            command(port), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log, launched_at=launched_at)
    try:
        with httpx.Client() as client:
            ready = f"{server.url}{ready_path}"
            server.wait_for(lambda: http_status(ready, timeout=REQUEST_TIMEOUT_S, client=client)[0] == 200, "ready")
        server.ready_s = time.monotonic() - launch
        yield server
    finally:
        if not stop(process):
            logger.warning("%s ignored SIGTERM for %.0f s and was killed:\n%s", name, STOP_TIMEOUT_S, log_tail(log))


def stop(
    process: subprocess.Popen[bytes], how: signal.Signals = signal.SIGTERM, grace_s: float = STOP_TIMEOUT_S
) -> bool:
    """Signal a server's process group with `how`, SIGKILL it after `grace_s`; then SIGKILL, by pid, any process of
    its tree still alive: circus starts each BentoML worker in a session of its own, so only the arbiter stops them
    gracefully, and a SIGKILL of the group misses them. Returns whether the server exited within `grace_s`."""
    tree = _descendants(process)
    exited = True
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, how)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            exited = False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if any
    process.wait()
    alive = [p for p in tree if p.is_running()]
    for straggler in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            straggler.kill()  # psutil refuses if the pid was reused by another process
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)
    return exited


def _descendants(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return list(psutil.Process(process.pid).children(recursive=True))
    return []


# ---------------------------------------------------------------- the benchmark's servers


def base_env(home: Path) -> dict[str, str]:
    """This process's environment with `home` as the BentoML home and no `CLF_*` settings: only the variant's."""
    return {k: v for k, v in isolated_env(home).items() if not k.startswith("CLF_")}


def server_command(variant: Variant, store: Path, source: Path) -> Callable[[int], list[str]]:
    if variant.peer is None:
        return service_command
    return peers.command(variant.peer, store, source, peers.models_folder(store), free_port)


def server_env(variant: Variant, store: Path, workdir: Path, source: Path = PROJECT) -> dict[str, str]:
    """A peer reads the estimators `peers.export` wrote; a service gets a fresh copy of the store's models in
    `workdir`, because `bentoml serve` wipes its home's Prometheus folder at start, and its own data folder there,
    because servers running at once must not write one prediction log (the default `./data` of the source folder)."""
    if variant.peer is not None:
        return {**base_env(workdir), **peers.env(source, peers.models_folder(store), variant.models)}
    shutil.copytree(store / "models", workdir / "models")
    models = ",".join(ALL_MODELS)
    return {**base_env(workdir), "CLF_MODELS": models, "CLF_DATA_DIR": str(workdir / "data"), **variant.settings_env()}


@contextlib.contextmanager
def serving(
    variant: Variant, store: Path, workdir: Path, source: Path = PROJECT, extra_env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """A ready server of `variant` in a fresh `workdir`, run from `source`; stopped (process group) on exit.
    `extra_env` overrides the variant's environment (the feedback benchmark's CLF_MODELS and CLF_DATABASE_URL)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = {**server_env(variant, store, workdir, source), **(extra_env or {})}
    command = server_command(variant, store, source)
    cwd = source if variant.peer is None else workdir  # MLServer keeps its metrics folder in its working directory
    ready = "/readyz" if variant.peer is None else variant.peer.ready_path
    with launched(variant.label, command, workdir / "server.log", env, cwd, ready) as server:
        yield server
