"""What uv.lock pins, read without uv: the runtime closure of the project, and the pins of a requirements file."""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def normalized(name: str) -> str:
    """A distribution name as the lock writes it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(text: str) -> dict[str, str]:
    """name -> version of each `name==version` line of a requirements file (markers and comments left out)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[normalized(match[1])] = match[2]
    return pins


def lock_all_pins(lock: Path = PROJECT / "uv.lock") -> dict[str, str]:
    """name -> version of every package in the lock, the dev and bench extras' included."""
    return {p["name"]: p["version"] for p in tomllib.loads(lock.read_text())["package"]}


def lock_runtime_pins(lock: Path = PROJECT / "uv.lock") -> dict[str, str]:
    """name -> version of every package the project needs to run, extras left out: its dependencies, theirs
    (with the extras they ask of each other), on any platform, as the lock pins them."""
    packages = {p["name"]: p for p in tomllib.loads(lock.read_text())["package"]}
    project = packages["classifier-service"]
    wanted = list(project.get("dependencies", []))
    seen: dict[str, str] = {}
    while wanted:
        dependency = wanted.pop()
        package = packages[dependency["name"]]
        for extra in dependency.get("extra", []):
            wanted.extend(package.get("optional-dependencies", {}).get(extra, []))
        if dependency["name"] not in seen:
            seen[dependency["name"]] = package["version"]
            wanted.extend(package.get("dependencies", []))
    return seen


def uv_command() -> list[str]:
    """The uv that `make install` puts in .uv/, else one on PATH or in this environment."""
    pinned = PROJECT / ".uv" / "bin" / "uv"
    if pinned.is_file():
        return [str(pinned)]
    if found := shutil.which("uv"):
        return [found]
    try:
        import uv  # noqa: F401
    except ImportError:
        pytest.fail("no uv: `make install` puts the project's pinned uv in .uv/")
    return [sys.executable, "-m", "uv"]
