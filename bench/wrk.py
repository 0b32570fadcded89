"""Running wrk (closed loop: each connection sends its next request when the previous answer arrives) and
parsing its `--latency` output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .config import WRK_TIMEOUT, Scenario

LUA_SCRIPT = Path(__file__).with_name("post.lua")
BODY_ENV = "BENCH_BODY_FILE"

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = r"([0-9.]+)(us|ms|s|m|h)"


class WrkError(RuntimeError):
    """wrk failed or printed something this parser does not understand."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse(output: str) -> WrkResult:
    """The figures of one wrk run from its standard output (`--latency` required for the percentiles)."""

    def find(pattern: str, what: str) -> re.Match[str]:
        match = re.search(pattern, output, flags=re.MULTILINE)
        if match is None:
            raise WrkError(f"wrk output has no {what}:\n{output}")
        return match

    totals = find(r"^\s*(\d+) requests in " + _DURATION, "request total")
    rate = find(r"^Requests/sec:\s+([0-9.]+)", "Requests/sec line")
    p50 = find(r"^\s+50(?:\.0+)?%\s+" + _DURATION, "50% latency (run wrk with --latency)")
    p99 = find(r"^\s+99(?:\.0+)?%\s+" + _DURATION, "99% latency (run wrk with --latency)")
    p999 = find(r"^p99\.9 latency: (\d+)us", "p99.9 line (bench/post.lua's done())")
    non_2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", output, flags=re.MULTILINE)
    sockets = re.search(
        r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output, flags=re.MULTILINE
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), (int(g) for g in sockets.groups()), strict=True))
        if sockets
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )
    return WrkResult(
        requests=int(totals.group(1)),
        duration_s=to_ms(totals.group(2), totals.group(3)) / 1e3,
        req_per_s=float(rate.group(1)),
        p50_ms=to_ms(p50.group(1), p50.group(2)),
        p99_ms=to_ms(p99.group(1), p99.group(2)),
        p999_ms=to_ms(p999.group(1), "us"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed: run bench/install-wrk.sh (or `make bench`)")
    return path


def version() -> str:
    run = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True, check=False)
    return (run.stdout or run.stderr).splitlines()[0].split(" Copyright")[0].strip()


def command(url: str, scenario: Scenario, duration_s: float, path: str = "/predict") -> list[str]:
    return [
        wrk_binary(),
        f"--threads={scenario.threads}",
        f"--connections={scenario.connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={WRK_TIMEOUT}",
        f"--script={LUA_SCRIPT}",
        "--latency",
        f"{url}{path}",
    ]


def run(url: str, scenario: Scenario, body_file: Path, duration_s: float, path: str = "/predict") -> WrkResult:
    """One closed-loop wrk run posting `body_file` to `path`; raises `WrkError` when wrk fails."""
    env = {**os.environ, BODY_ENV: str(body_file)}
    argv = command(url, scenario, duration_s, path)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration_s + 60, check=False)
    if done.returncode != 0:
        raise WrkError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip() or done.stdout}")
    return parse(done.stdout)
