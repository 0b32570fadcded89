"""The facts a benchmark figure depends on: machine, versions, the tree that was measured, when."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psutil

PACKAGES = ("bentoml", "scikit-learn", "numpy", "fastapi", "uvicorn")


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    ram_gb: float
    python: str
    packages: dict[str, str]
    wrk: str
    commit: str
    changed: tuple[str, ...]
    date: str
    load_before: str

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("CPUs (nproc)", str(self.cpus)),
            ("CPU model", self.cpu_model),
            ("RAM", f"{self.ram_gb:.1f} GiB"),
            ("Python", self.python),
            *((name, version) for name, version in self.packages.items()),
            ("load generator", self.wrk),
            ("git commit", describe_commit(self.commit, self.changed)),
            ("date (UTC)", self.date),
            ("load average before the run (1/5/15 min)", self.load_before),
        ]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git(project: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)
    return done.stdout.rstrip() if done.returncode == 0 else ""


def changed_paths(project: Path) -> tuple[str, ...]:
    """Paths that differ from HEAD (others may be editing the tree while it is measured)."""
    return tuple(sorted(line[3:] for line in git(project, "status", "--porcelain").splitlines() if line))


def describe_commit(commit: str, changed: tuple[str, ...]) -> str:
    if not changed:
        return commit
    shown = ", ".join(changed[:8]) + (" …" if len(changed) > 8 else "")
    return f"{commit} + uncommitted changes in {len(changed)} paths ({shown})"


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def collect(project: Path, wrk_version: str) -> Machine:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    return Machine(
        cpus=len(os.sched_getaffinity(0)),
        cpu_model=cpu_model(),
        ram_gb=psutil.virtual_memory().total / 2**30,
        python=platform.python_version(),
        packages=packages,
        wrk=wrk_version,
        commit=git(project, "rev-parse", "--short", "HEAD") or "unknown",
        changed=changed_paths(project),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        load_before=load_average(),
    )
