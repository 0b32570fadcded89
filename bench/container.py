"""`python -m bench.container` (`make bench-container`): the image `make image` built, measured against the same
service outside it, on this machine, in one run; writes docs/container.md.

1. Throughput at 1 row x 16 connections (bench's scenario, wrk, warm-up then the measured run) of three servers of
   the same catalog models and settings: `bentoml serve` on the host, the image with its port published, and the
   image on the host's network; alternating (A B C A B C ...) `--repeat` times, the median run of each kept. The
   ratio container / host of req/s is held to issue 21's target.
2. Start-up: from `podman run` to `/readyz` 200, and from the host's `bentoml serve` launch to `/readyz` 200, from
   the same models, alternating (ABBA).
3. The image's size, its base's, and what takes the space (`du` inside the image).

Needs the image (`make image`) and wrk (`bench/install-wrk.sh`); `make bench-container` runs both first.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import psutil

from scripts import image
from service.settings import DEFAULT_CATALOG

from . import machine, payloads, runner, wrk
from .config import CATALOG_MODELS, DEFAULT_DURATION_S, QUICK_DURATION_S, SCENARIO_BY_KEY, WARMUP_S, Variant
from .report import NA, number, ratio, table
from .results import Point
from .servers import PROJECT, Server, interrupt_on_signals, launched, log_to_stderr, serving

logger = logging.getLogger("bench.container")

SCENARIO = SCENARIO_BY_KEY["1x16"]
MIN_RATIO = 0.95  # issue 21: the container's req/s at 1 row x 16 over the host's, same run
MAX_IMAGE_MB = 600.0  # issue 21: the image with the catalog
MODES = ("host", "published", "host_network")  # the three servers, in the order each round measures them
MODE_LABELS = {
    "host": "host `bentoml serve`",
    "published": "container, port published",
    "host_network": "container, host network",
}
Rounds = dict[tuple[str, int, str], list[Point]]  # (mode, workers, model): every run, in order
# where the image keeps what takes its space (deploy/container/Containerfile)
IMAGE_ENV = "/opt/classifier-service"
IMAGE_MODELS = "/var/lib/bentoml/models"
DEBIAN_PYTHON = "/usr/lib/python3.11"
LARGEST_PACKAGES = 8
INTERPRETER_RUNS = 3
# What tells two CPython builds apart at the same version: libpython shared or linked into the executable (a shared
# one is position-independent code called through the PLT), and whether `configure` was asked for PGO and LTO
# (Debian's packaging builds its static interpreter with both outside `configure`, so its flags do not show them);
# and the time of a pure-Python loop, the same code in both, best of 20, taken INTERPRETER_RUNS times alternating
# between the two and the best kept (one taking a loaded moment is not the build's doing): what the build is worth.
PYTHON_LOOP = "sorted(str(i) for i in range(1000))"
PYTHON_FACTS = f"""
import platform, sysconfig, timeit
config = sysconfig.get_config_var("CONFIG_ARGS") or ""
with open("/proc/self/maps") as maps:
    shared = any("libpython" in line for line in maps)
print("python=" + platform.python_version())
print("libpython=" + ("shared" if shared else "linked in"))
print("configure=" + (" ".join(f for f in ("--enable-optimizations", "--with-lto") if f in config) or "neither"))
print("loop_us=%.1f" % (1e6 * min(timeit.repeat("{PYTHON_LOOP}", number=100, repeat=20)) / 100))
"""
# One `sh -c` in the image: each `du` on its own, since one du given nested folders counts each inode only once.
# The container has no network: the script only reads the image.
SIZE_SCRIPT = f"""
du -skx /
for path in {DEBIAN_PYTHON} {IMAGE_ENV} {IMAGE_MODELS} {IMAGE_ENV}/lib/python3*/site-packages/* {IMAGE_MODELS}/*
do du -sk "$path"; done
echo "nproc=$(nproc)"
"""


@dataclass(frozen=True)
class Sizes:
    """The image's size as the engine reports it, its base's, and `du` KiB per path inside it."""

    image_bytes: int
    base_bytes: int | None
    du_kib: dict[str, int]

    @property
    def image_mb(self) -> float:
        return self.image_bytes / 1e6

    def kib(self, path: str) -> int:
        return self.du_kib.get(path, 0)

    def children(self, folder: str) -> list[tuple[str, int]]:
        """The entries directly in `folder`, largest first."""
        found = [(path, kib) for path, kib in self.du_kib.items() if path.rpartition("/")[0] == folder]
        return sorted(found, key=lambda item: -item[1])

    def packages(self) -> list[tuple[str, int]]:
        site = [p for p in self.du_kib if p.startswith(IMAGE_ENV + "/lib/") and "/site-packages/" in p]
        folder = site[0].rsplit("/", 1)[0] if site else IMAGE_ENV + "/lib"
        return self.children(folder)


@dataclass(frozen=True)
class ImageFacts:
    """What the page says about the image measured: its tag, version label, Python, CPUs it sees."""

    name: str
    version: str
    base: str
    python: dict[str, str]  # PYTHON_FACTS in the image, the fastest loop of INTERPRETER_RUNS
    cpus: str
    network: str  # the engine's network backend (podman info), which publishes the port


@dataclass(frozen=True)
class ContainerRun:
    machine: machine.Machine
    command: str
    duration_s: float
    repeats: int
    image: ImageFacts
    host_python: dict[str, str]  # PYTHON_FACTS of the host's interpreter, which the host server runs, as `python`
    sizes: Sizes | None
    points: list[Point]  # the median run of each (mode, workers, model)
    rounds: Rounds = field(default_factory=dict)
    startup_s: dict[str, list[float]] = field(default_factory=dict)  # "host" / "published": launch to /readyz 200
    native_threads: dict[int, int] = field(default_factory=dict)  # workers: CLF_NATIVE_THREADS
    load_after: str = ""


# ---------------------------------------------------------------- servers


@dataclass
class ContainerServer(Server):
    """A container's server: its processes are the container's (found by the engine), not the engine client's."""

    container_pid: int = 0

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.container_pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def variant(mode: str, workers: int) -> Variant:
    worker_text = "1 worker" if workers == 1 else f"{workers} workers"
    return Variant(f"{mode}_w{workers}", f"{MODE_LABELS[mode]}, {worker_text}", workers=workers, models=CATALOG_MODELS)


def settings(workers: int, native_threads: int) -> dict[str, str]:
    """The CLF_* settings every server of a worker count gets, in and out of the container."""
    return {
        **variant("host", workers).settings_env(),
        "CLF_MODELS": ",".join(DEFAULT_CATALOG),
        "CLF_NATIVE_THREADS": str(native_threads),
    }


def copy_catalog(store: Path) -> Path:
    """A BentoML home holding the served version of each catalog model, copied from the store `make image` put in
    the image: the host serves the models the container serves."""
    shutil.rmtree(store, ignore_errors=True)
    for folder in image.catalog_models():
        shutil.copytree(folder, store / "models" / folder.parent.name / folder.name)
        (store / "models" / folder.parent.name / "latest").write_text(folder.name)
    return store


def container_pid(engine: Sequence[str], name: str) -> int:
    done = subprocess.run(
        [*engine, "inspect", "--format", "{{.State.Pid}}", name], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


def remove(engine: Sequence[str], name: str) -> None:
    """Remove container `name` if it is still there (the server's stop removes it: `--rm`)."""
    subprocess.run([*engine, "rm", "--force", "--ignore", name], capture_output=True, check=False)


@contextlib.contextmanager
def container(name: str, env: dict[str, str], workdir: Path, host_network: bool) -> Iterator[ContainerServer]:
    """The image serving on a free loopback port, ready; removed on exit whatever happened."""
    engine = image.engine()
    name = f"clf-bench-{name}-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    command = image.run_command(name, env=env, host_network=host_network)
    try:
        with launched(name, command, workdir / f"{name}.log") as server:
            state = {f.name: getattr(server, f.name) for f in fields(Server)}
            yield ContainerServer(**state, container_pid=container_pid(engine, name))
    finally:
        remove(engine, name)


@contextlib.contextmanager
def server(mode: str, workers: int, env: dict[str, str], store: Path, workdir: Path) -> Iterator[Server]:
    if mode == "host":
        with serving(variant(mode, workers), store, workdir / f"host_w{workers}", PROJECT, env) as host:
            yield host
    else:
        with container(f"{mode}-w{workers}", env, workdir, host_network=mode == "host_network") as inside:
            yield inside


# ---------------------------------------------------------------- measuring


def measure_throughput(
    workers: int, env: dict[str, str], store: Path, workdir: Path, bodies: dict[tuple[str, int, str], Path],
    models: Sequence[str], repeats: int, duration_s: float,
) -> Rounds:  # fmt: skip
    """Every run of the three servers of one worker count, all three running, alternating per model."""
    runs: Rounds = {}
    with contextlib.ExitStack() as stack:
        started = {mode: stack.enter_context(server(mode, workers, env, store, workdir)) for mode in MODES}
        for model in models:
            for repeat in range(repeats):
                logger.info("round %d/%d, %s, %d worker(s); load %s", repeat + 1, repeats, model, workers,
                            machine.load_average())  # fmt: skip
                for mode in MODES:
                    body = bodies[model, SCENARIO.rows, "json"]
                    point = runner.measure(variant(mode, workers), started[mode], model, SCENARIO, body, duration_s)
                    runs.setdefault((mode, workers, model), []).append(point)
                    logger.info("%s | %s: %s", point.variant.label, model, runner.describe(point))
    return runs


def measure_startups(store: Path, workdir: Path, runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    """`runs` start-ups of the host server and of the container (port published), alternating ABBA."""
    results: dict[str, list[float]] = {"host": [], "published": []}
    for run in range(runs):
        order = ["host", "published"] if run % 2 == 0 else ["published", "host"]
        for mode in order:
            with server(mode, 1, env, store, workdir / "startup") as started:
                results[mode].append(started.ready_s)
            logger.info("start-up run %d/%d, %s: %.1f s", run + 1, runs, MODE_LABELS[mode], results[mode][-1])
    return results


def parse_du(output: str) -> dict[str, int]:
    """KiB per path from `du -sk` lines (`<KiB>\\t<path>`); other lines are ignored."""
    sizes = {}
    for line in output.splitlines():
        kib, _, path = line.partition("\t")
        if kib.isdigit() and path:
            sizes[path] = int(kib)
    return sizes


def parse_facts(output: str) -> dict[str, str]:
    """The `key=value` lines of the size script."""
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line and "\t" not in line)


def inspect_size(engine: Sequence[str], name: str) -> int | None:
    done = subprocess.run([*engine, "image", "inspect", "--format", "{{.Size}}", name], capture_output=True, text=True)
    return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip().isdigit() else None


def measure_image(name: str, base: str, python: dict[str, str]) -> tuple[Sizes | None, ImageFacts]:
    engine = image.engine()
    label = '{{index .Labels "org.opencontainers.image.version"}}'
    version = subprocess.run([*engine, "image", "inspect", "--format", label, name], capture_output=True, text=True)
    script = subprocess.run(
        [*engine, "run", "--rm", "--network", "none", *image.run_options(engine), "--entrypoint", "sh", name,
         "-c", SIZE_SCRIPT],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    facts = parse_facts(script.stdout)
    image_bytes = inspect_size(engine, name)
    sizes = None if image_bytes is None else Sizes(image_bytes, inspect_size(engine, base), parse_du(script.stdout))
    backend = subprocess.run([*engine, "info", "--format", "{{.Host.NetworkBackend}}"], capture_output=True, text=True)
    found = ImageFacts(
        name, version.stdout.strip() or NA, base, python, facts.get("nproc", NA), backend.stdout.strip() or "unknown"
    )
    return sizes, found


# ---------------------------------------------------------------- the page


def find(points: Sequence[Point], mode: str, workers: int, model: str) -> Point | None:
    for point in points:
        if point.ok and (point.variant.key, point.model) == (variant(mode, workers).key, model):
            return point
    return None


def req_per_s(point: Point | None) -> float | None:
    return None if point is None or point.wrk is None else point.wrk.req_per_s


def round_ratios(
    rounds: Rounds, mode: str, workers: int, model: str, of: Callable[[Point], float | None] = req_per_s
) -> list[float]:
    """`of` the container's run over `of` the host's, per round: two runs measured seconds apart, so a drift of the
    machine's load falls on both alike."""
    pairs = zip(rounds.get((mode, workers, model), []), rounds.get(("host", workers, model), []), strict=False)
    found = [(of(inside), of(host)) for inside, host in pairs if inside.ok and host.ok]
    return [a / b for a, b in found if a is not None and b]


def paired_ratio(rounds: Rounds, mode: str, workers: int, model: str) -> float | None:
    """The median of the rounds' req/s ratios: the figure held to the target."""
    found = round_ratios(rounds, mode, workers, model)
    return statistics.median(found) if found else None


def cpu_ms(point: Point) -> float | None:
    return point.cpu_ms_per_request


def worker_counts(points: Sequence[Point]) -> list[int]:
    return sorted({p.variant.workers for p in points})


def models_of(points: Sequence[Point]) -> list[str]:
    return list(dict.fromkeys(p.model for p in points))


def verdict(ok: bool | None) -> str:
    return "n/a (not measured)" if ok is None else ("met" if ok else "**not met**")


def ratio_target(run: ContainerRun, mode: str) -> tuple[str, str]:
    """The lowest paired ratio of `mode` over every model and worker count, and whether it meets the target."""
    found = {
        (m, w): paired_ratio(run.rounds, mode, w, m) for w in worker_counts(run.points) for m in models_of(run.points)
    }
    known = {key: value for key, value in found.items() if value is not None}
    if not known or len(known) < len(found):
        return NA, verdict(None)
    (model, workers), lowest = min(known.items(), key=lambda item: item[1])
    where = f"{model}, {workers} worker{'s' if workers > 1 else ''}"
    return f"lowest {ratio(lowest)} ({where})", verdict(lowest >= MIN_RATIO)


def targets_table(run: ContainerRun) -> str:
    rows = []
    for mode in MODES[1:]:
        measured, result = ratio_target(run, mode)
        rows.append([f"req/s at 1 row x 16, {MODE_LABELS[mode]} / host", f"≥ {MIN_RATIO:.2f}x", measured, result])
    size = run.sizes.image_mb if run.sizes else None
    rows.append(
        ["image size, catalog included", f"≤ {MAX_IMAGE_MB:.0f} MB", f"{number(size)} MB" if size else NA,
         verdict(None if size is None else size <= MAX_IMAGE_MB)]
    )  # fmt: skip
    return table(["target", "required", "measured", "result"], rows)


def throughput_table(run: ContainerRun) -> str:
    def spread(values: list[float]) -> str:
        if not values:
            return NA
        return f"{ratio(statistics.median(values))} ({ratio(min(values))}–{ratio(max(values))})"

    rows = []
    for workers in worker_counts(run.points):
        for model in models_of(run.points):
            for mode in MODES:
                point = find(run.points, mode, workers, model)
                head = [model, str(workers), MODE_LABELS[mode]]
                if point is None or point.wrk is None:
                    rows.append([*head, *([NA] * 7)])
                    continue
                host = mode == "host"
                rows.append(
                    [
                        *head,
                        number(point.wrk.req_per_s),
                        number(point.wrk.p50_ms, 2),
                        number(point.wrk.p99_ms, 2),
                        str(point.wrk.errors),
                        number(point.cpu_ms_per_request, 2),
                        NA if host else spread(round_ratios(run.rounds, mode, workers, model)),
                        NA if host else spread(round_ratios(run.rounds, mode, workers, model, cpu_ms)),
                    ]
                )
    headers = ["model", "workers", "server", "req/s", "p50 ms", "p99 ms", "errors", "server CPU ms/req",
               "req/s / host's", "CPU ms/req / host's"]  # fmt: skip
    text = table(headers, rows)
    failures = [p for p in run.points if p.error]
    if failures:
        text += "\n\n" + "\n".join(f"- not measured, {p.variant.label}, {p.model}: {p.error}" for p in failures)
    return text


def startup_table(startup_s: dict[str, list[float]]) -> str:
    def cell(values: list[float]) -> str:
        if not values:
            return NA
        return f"{statistics.median(values):.1f} s ({min(values):.1f}–{max(values):.1f})"

    rows = [
        ["container: `podman run` to `/readyz` 200", cell(startup_s.get("published", []))],
        ["host: `bentoml serve` launch to `/readyz` 200", cell(startup_s.get("host", []))],
    ]
    return table(["start-up (default catalog, 1 worker)", "median (min–max)"], rows)


def mb(kib: int) -> str:
    return f"{kib * 1024 / 1e6:,.1f} MB"


def size_table(sizes: Sizes, facts: ImageFacts) -> str:
    root, env, models = sizes.kib("/"), sizes.kib(IMAGE_ENV), sizes.kib(IMAGE_MODELS)
    rows = [
        [f"`{facts.name}` (engine's `image inspect` Size)", f"{sizes.image_mb:,.1f} MB"],
        [f"its base `{facts.base}`", NA if sizes.base_bytes is None else f"{sizes.base_bytes / 1e6:,.1f} MB"],
        ["inside the image, `du -skx /`", mb(root)],
        ["· Debian's OS and Python 3.11: everything but the two rows below", mb(root - env - models)],
        [f"· · of which the standard library `{DEBIAN_PYTHON}`", mb(sizes.kib(DEBIAN_PYTHON))],
        [f"· the Python environment `{IMAGE_ENV}` (uv.lock's runtime pins and the service)", mb(env)],
        *(
            [f"· · `{path.rsplit('/', 1)[1]}`", mb(kib)]
            for path, kib in sizes.packages()[:LARGEST_PACKAGES]
        ),
        [f"· the catalog models `{IMAGE_MODELS}`", mb(models)],
        *([f"· · `{path.rsplit('/', 1)[1]}`", mb(kib)] for path, kib in sizes.children(IMAGE_MODELS)),
    ]  # fmt: skip
    return table(["what", "size"], rows)


def differences(run: ContainerRun) -> list[str]:
    threads = ", ".join(f"{w} worker(s): {t}" for w, t in sorted(run.native_threads.items()))
    return [
        "Same in and out: the models (the host serves a copy of the store `make image` put in the image), the "
        f"settings (`CLF_MODELS` = the default catalog, `CLF_WORKERS`, `CLF_NATIVE_THREADS` ({threads}), "
        "monitoring, batching and the prediction log on), uv.lock's pins, the CPUs: no CPU limit on the container, "
        f"which sees {run.image.cpus} (the host {run.machine.cpus}).",
        "The network path: the host server and the host-network container bind the loopback port themselves; the "
        f"published port goes through the engine's port forwarding (network backend {run.image.network}, as root: "
        "NAT rules), then a veth pair into the container's own network namespace.",
        "The container runs as it is deployed (`scripts.image.run_command`): read-only root filesystem, non-root "
        "user, the Prometheus multiprocess folder on a tmpfs (on the host: a folder of the server's BentoML home, "
        "on disk), the prediction log in the container's anonymous volume (on the host: a folder of the bench's "
        "server directory).",
        f"The interpreter: the image's is Debian's `python3` of bookworm, {interpreter(run.image.python)}; the "
        f"host's (which its server runs) {interpreter(run.host_python)}. Debian builds its interpreter with "
        "profile-guided optimisation and LTO, in its packaging rather than through `configure`; a shared libpython "
        "(the usual pyenv build) is position-independent code whose calls into itself go through the PLT. The loop's "
        "time, the same code in both interpreters, says what that is worth here, apart from any network path; the "
        "two containers run the same interpreter, so their ratio to each other is the network path's alone.",
        "Server CPU ms/req is user + system of the server's process tree (arbiter, workers, log writers): on the "
        "host by psutil from `bentoml serve`, in the container from the container's first process "
        "(`podman inspect --format {{.State.Pid}}`); the engine's own processes (conmon, the podman client) and the "
        "kernel's network work are counted on neither side.",
        f"Runs of each server per model and worker count: {run.repeats}, the three alternating, {run.duration_s:.0f} s "
        f"after a {WARMUP_S:.0f} s warm-up (bench.runner.measure); req/s, p50, p99 and CPU are of the run with the "
        "median req/s of each server. A ratio to the host is taken per round, between runs measured seconds apart, "
        "and the median of the rounds is given (min–max) and held to the target: the machine is shared (2 cores, wrk "
        "on the same cores, other benchmarks), its load drifts within a minute, and a ratio of paired runs says more "
        "than req/s. CPU ms/req, which the load disturbs less than req/s, shows what each request costs.",
    ]


def interpreter(facts: dict[str, str]) -> str:
    """A CPython build in a few words, from PYTHON_FACTS' lines."""
    return (
        f"{facts.get('python', NA)}, libpython {facts.get('libpython', NA)}, "
        f"`configure` options for PGO/LTO: {facts.get('configure', NA)}; "
        f"`{PYTHON_LOOP}` {facts.get('loop_us', NA)} µs (best of {INTERPRETER_RUNS} x 20 x 100)"
    )


def host_python() -> dict[str, str]:
    """PYTHON_FACTS of this interpreter, the one the host server runs (bench.servers.service_command)."""
    done = subprocess.run([sys.executable, "-c", PYTHON_FACTS], capture_output=True, text=True, check=True)
    return parse_facts(done.stdout)


def image_python(engine: Sequence[str], name: str) -> dict[str, str]:
    """PYTHON_FACTS of the image's interpreter (no network)."""
    done = subprocess.run(
        [*engine, "run", "--rm", "--network", "none", *image.run_options(engine), "--entrypoint", "python3", name,
         "-c", PYTHON_FACTS],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return parse_facts(done.stdout)


def fastest(runs: Sequence[dict[str, str]]) -> dict[str, str]:
    """The run with the fastest loop."""
    return min(runs, key=lambda facts: float(facts.get("loop_us", "inf")))


def measure_interpreters(name: str) -> tuple[dict[str, str], dict[str, str]]:
    """PYTHON_FACTS in the image and on the host, INTERPRETER_RUNS each, alternating; the fastest loop of each."""
    engine = image.engine()
    inside, host = [], []
    for _ in range(INTERPRETER_RUNS):
        inside.append(image_python(engine, name))
        host.append(host_python())
    return fastest(inside), fastest(host)


def render(run: ContainerRun) -> str:
    rows = [*run.machine.rows(), ("load average after the run", run.load_after or NA)]
    rows += [
        ("image", f"`{run.image.name}` version {run.image.version}"),
        ("image's Python", interpreter(run.image.python)),
        ("host's Python", interpreter(run.host_python)),
    ]
    parts = [
        "# The container vs the host",
        "Generated by `python -m bench.container` (`make bench-container`) from one run; do not edit by hand, re-run "
        "it. The image `make image` builds (`deploy/container/Containerfile`), measured against the same service "
        "outside it on the same machine in the same run: throughput at 1 row x 16 connections, start-up, size.",
        "## Machine and command",
        table(["what", "value"], rows),
        f"Command: `{run.command}`",
        "## Targets",
        targets_table(run),
        "## Throughput at 1 row x 16 connections",
        throughput_table(run),
        "## Start-up",
        f"Launch to the first `/readyz` 200, runs of each: {max(map(len, run.startup_s.values()), default=0)}, "
        "alternating (ABBA); the container's from `podman run` (a new container of the image, port published), "
        "the host's from `bentoml serve` (not `make serve`: no `models ensure`), the same models.",
        startup_table(run.startup_s),
        "## Image size",
        size_table(run.sizes, run.image) if run.sizes else "(not measured in this run)",
        "## What differs, and how it was measured",
        "\n".join(f"- {line}" for line in differences(run)),
    ]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- command line


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.container", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DURATION_S:.0f} s points, 1 repeat, 1 start-up, 1 worker")  # fmt: skip
    parser.add_argument("--duration", type=float, help="seconds per measured point (overrides --quick)")
    parser.add_argument("--repeat", type=int, help="rounds of the three servers per model (default 3; --quick 1)")
    parser.add_argument("--startup-runs", type=int, help="start-ups of each (default 5; --quick 1)")
    parser.add_argument("--workers", type=worker_list, help="worker counts, comma-separated (default 1,2; --quick 1)")
    parser.add_argument("--image", default=f"{image.IMAGE}:latest", help="the image measured")
    parser.add_argument("--base", default=os.environ.get("BASE_IMAGE") or image.LOCAL_BASE,
                        help="its base image, for the size table (BASE_IMAGE as `make image` reads it)")  # fmt: skip
    parser.add_argument("--home", type=Path, default=PROJECT / ".bench" / "container", help="working folder")
    parser.add_argument("--output", type=Path, default=PROJECT / "docs" / "container.md", help="the page written")
    args = parser.parse_args(argv)
    args.duration = args.duration or (QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.startup_runs = args.startup_runs if args.startup_runs is not None else (1 if args.quick else 5)
    args.workers = args.workers or ([1] if args.quick else [1, 2])
    return args


def worker_list(text: str) -> list[int]:
    try:
        counts = sorted({int(item) for item in text.split(",") if item.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"worker counts are 1 or more: {text!r}")
    return counts


def native_threads(workers: int) -> int:
    """CLF_NATIVE_THREADS as the service's default would choose it here: the usable CPUs shared by the workers."""
    return max(1, len(os.sched_getaffinity(0)) // workers)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    log_to_stderr()
    interrupt_on_signals()
    command = shlex.join(["python", "-m", "bench.container", *(sys.argv[1:] if argv is None else argv)])
    facts = machine.collect(PROJECT, wrk.version())
    workdir = args.home.resolve()
    store = copy_catalog(workdir / "store")
    models = list(CATALOG_MODELS)
    bodies = payloads.write_bodies(workdir / "bodies", models, [SCENARIO.rows])
    inside_python, outside_python = measure_interpreters(args.image)
    sizes, image_facts = measure_image(args.image, args.base, inside_python)
    threads = {workers: native_threads(workers) for workers in args.workers}
    rounds: Rounds = {}
    for workers in args.workers:
        env = settings(workers, threads[workers])
        rounds |= measure_throughput(
            workers, env, store, workdir / "servers", bodies, models, args.repeat, args.duration
        )
    startups = measure_startups(store, workdir / "servers", args.startup_runs, settings(1, native_threads(1)))
    run = ContainerRun(
        facts, command, args.duration, args.repeat, image_facts, outside_python, sizes,
        [runner.median_run(runs) for runs in rounds.values()], rounds, startups, threads, machine.load_average(),
    )  # fmt: skip
    text = render(run)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    sys.stdout.write(text)
    logger.info("wrote %s", args.output)
    return 1 if any(p.error for p in run.points) else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        logger.error("interrupted: every server and container started was stopped; no page written")
        raise SystemExit(130) from None
