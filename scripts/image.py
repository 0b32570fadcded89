"""`make image`: the service's OCI image, from deploy/container/Containerfile, with the catalog models in it.

    python -m scripts.image build   # (make image) the base if missing, then classifier-service:latest and :<version>
    python -m scripts.image tag     # print the version tag this checkout builds

A Containerfile of our own rather than `bentoml containerize`: BentoML's generated Dockerfile starts from
`python:3.11-slim`, which only a registry gives (none is reachable here), installs requirements.txt with pip's
resolver in the final image (its build tools and caches stay), and makes BentoML's home the parent of the bento, so a
read-only root filesystem needs a volume over it. This one installs uv.lock's runtime pins with the Makefile's uv in a
build stage (`uv sync --frozen --no-dev`), ships Python, that environment and the catalog models, declares the two
folders the service writes, and has a health check.

The base: `BASE_IMAGE` (make image BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm where a registry can be
pulled from); by default `localhost/classifier-service-base:bookworm`, built here from Debian's packages with
`mmdebstrap` (bookworm, minbase, python3: Python 3.11, as the lock wants) and `podman import`, when missing.

The engine: `CONTAINER_ENGINE` (e.g. `docker`); by default podman, with `--runtime runc` where runc is installed
(crun refuses hybrid cgroups, as on the development machines), and open-file and process limits a sandbox can grant.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTAINERFILE = ROOT / "deploy/container/Containerfile"
UV = ROOT / ".uv/bin/uv"
IMAGE = "classifier-service"
LOCAL_BASE = "localhost/classifier-service-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CODE = ("service", "models")
CONTEXT_FILES = ("pyproject.toml", "uv.lock", "README.md")
# the folders the service writes in the image: the prediction log (a volume) and the Prometheus multiprocess files
DATA_FOLDER = "/home/bentoml/data"
METRICS_FOLDER = "/var/lib/bentoml/prometheus_multiproc_dir"
CONTAINER_PORT = 3000
USER_ID = 1034  # the image's user and group, bentoml (Containerfile): the uid BentoML's own images use
STOP_TIMEOUT_S = 60  # as the Deployment's terminationGracePeriodSeconds: drain, then write the log's queue
# podman's defaults exceed what an unprivileged sandbox may set; 4,096 is more than a server of two workers opens
LIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")


def engine() -> list[str]:
    """The container engine's command: `CONTAINER_ENGINE`, else podman (with runc where installed), else docker."""
    chosen = os.environ.get("CONTAINER_ENGINE")
    if chosen:
        return shlex.split(chosen)
    if shutil.which("podman"):
        return ["podman", "--runtime", "runc"] if shutil.which("runc") else ["podman"]
    if shutil.which("docker"):
        return ["docker"]
    raise SystemExit("no container engine: install podman (apt-get install podman runc) or docker")


def is_podman(command: Sequence[str]) -> bool:
    return Path(command[0]).name == "podman"


def run_options(command: Sequence[str]) -> list[str]:
    """What every `run` and `build` of this engine needs on this kind of machine."""
    return list(LIMITS) if is_podman(command) else []


def version() -> str:
    """`<project version>-<commit>`, `.dirty` appended when the checkout has uncommitted changes."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True, check=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return f"{project}-{commit.stdout.strip()}" + (".dirty" if dirty.stdout.strip() else "")


def image_exists(command: Sequence[str], image: str) -> bool:
    found = subprocess.run([*command, "image", "inspect", image], capture_output=True)
    return found.returncode == 0


def ensure_base(command: Sequence[str], base: str) -> None:
    """The base image: present, else built from Debian's packages (the local default) or pulled."""
    if image_exists(command, base):
        return
    if base != LOCAL_BASE:
        subprocess.run([*command, "pull", base], check=True)
        return
    if not shutil.which("mmdebstrap"):
        raise SystemExit(f"{base} is built with mmdebstrap: apt-get install mmdebstrap (or set BASE_IMAGE)")
    with tempfile.TemporaryDirectory(prefix="clf-base-") as folder:
        rootfs = Path(folder) / "rootfs.tar"
        excluded = [f"--dpkgopt=path-exclude=/usr/share/{part}/*" for part in ("man", "locale", "doc", "info")]
        subprocess.run(
            [
                "mmdebstrap", "--variant=minbase", "--include=python3", "--aptopt=APT::Install-Recommends false",
                # /usr merged by mmdebstrap's hook, not by the usrmerge package, which pulls in Perl (46 MB)
                "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                *excluded, "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "bookworm", str(rootfs), DEBIAN_MIRROR,
            ],
            check=True,
        )  # fmt: skip
        subprocess.run([*command, "import", "--change", 'CMD ["/bin/sh"]', str(rootfs), base], check=True)


def catalog_models() -> list[Path]:
    """The folder of each catalog model's served version in this checkout's store (`make catalog` fills it)."""
    from service import home

    home.apply()
    from service.settings import DEFAULT_CATALOG
    from service.store import default_version

    store = home.bentoml_home()[0] / "models"
    folders = []
    for name in DEFAULT_CATALOG:
        served = default_version(name)
        if served is None:
            raise SystemExit(f"catalog model {name} is not in the store {store}: run `make catalog`")
        folders.append(store / name / served)
    return folders


def stage_context(context: Path) -> None:
    """The build context: the lock, the code, the uv binary and the catalog models, nothing else of the checkout."""
    shutil.copy2(UV, context / "uv")
    for name in CONTEXT_FILES:
        shutil.copy2(ROOT / name, context / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in CODE:
        shutil.copytree(ROOT / package, context / package, ignore=ignored)
    models = context / "bentoml/models"
    for folder in catalog_models():
        shutil.copytree(folder, models / folder.parent.name / folder.name)
        (models / folder.parent.name / "latest").write_text(folder.name)
    # BentoML stores models readable by their owner only; in the image they belong to root and are read by the
    # service's user
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def build(base: str) -> str:
    """Build classifier-service:latest and :<version>; the version tag."""
    command = engine()
    ensure_base(command, base)
    tag = version()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory(prefix="clf-image-") as folder:
        context = Path(folder)
        stage_context(context)
        options = [*run_options(command), "--network", "host"]
        if is_podman(command):
            # HEALTHCHECK is a Docker-format field: podman's default OCI format drops it
            options += ["--format", "docker"]
            if HOST_CA_BUNDLE.is_file():
                options += ["--volume", f"{HOST_CA_BUNDLE}:/run/host-ca.pem:ro"]
        subprocess.run(
            [
                *command, "build", *options, "--file", str(CONTAINERFILE),
                "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"VERSION={tag}",
                "--build-arg", f"REVISION={commit.strip()}",
                "--tag", f"{IMAGE}:latest", "--tag", f"{IMAGE}:{tag}", str(context),
            ],
            check=True,
        )  # fmt: skip
    size = subprocess.run(
        [*command, "image", "inspect", "--format", "{{.Size}}", f"{IMAGE}:{tag}"], capture_output=True, text=True
    ).stdout.strip()
    sys.stdout.write(f"built {IMAGE}:{tag} (and :latest) on {base}: {int(size or 0) / 1e6:.0f} MB\n")
    return tag


def run_command(
    name: str,
    image: str = f"{IMAGE}:latest",
    env: Mapping[str, str] | None = None,
    volumes: Mapping[str, str] | None = None,
    host_network: bool = False,
) -> Callable[[int], list[str]]:
    """The command that runs `image` in the foreground as container `name`, serving on a given loopback port of
    this host, as deployed: a read-only root filesystem, the metrics folder in memory, `volumes` (name or host
    path: container path), `env`. Its port is published (`-p 127.0.0.1:PORT:3000`), or, with `host_network`, the
    server binds the host's loopback port itself. The engine passes SIGTERM on to the server (`--sig-proxy`)."""
    command = engine()
    mounts = [option for source, target in (volumes or {}).items() for option in ("--volume", f"{source}:{target}")]
    settings = [option for key, value in (env or {}).items() for option in ("--env", f"{key}={value}")]

    def at(port: int) -> list[str]:
        network = (
            ["--network", "host", "--env", "HOST=127.0.0.1", "--env", f"PORT={port}"]
            if host_network
            else ["--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}"]
        )
        return [
            *command, "run", "--rm", "--name", name, "--read-only", *run_options(command),
            "--stop-timeout", str(STOP_TIMEOUT_S), "--tmpfs", f"{METRICS_FOLDER}:rw,mode=1777",
            *mounts, *settings, *network, image,
        ]  # fmt: skip

    return at


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.image", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="build the image (and its base when missing)")
    build_parser.add_argument("--base", default=os.environ.get("BASE_IMAGE") or LOCAL_BASE)
    sub.add_parser("tag", help="print the version tag this checkout builds")
    args = parser.parse_args(argv)
    if args.command == "tag":
        sys.stdout.write(version() + "\n")
    else:
        build(args.base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
