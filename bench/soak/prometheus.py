"""A real Prometheus for the soak: the shipped scrape config and rule files, retargeted at the server under test,
scraping and evaluating every few seconds; and what the soak asks it at the end (the alerts of the run)."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from ..servers import PROJECT, Server, ServerError, launched
from .figures import Alert

logger = logging.getLogger("bench.soak")

SHIPPED = PROJECT / "deploy" / "prometheus"
JOB = "classifier-service"
HIDDEN_LABELS = ("__name__", "alertname", "alertstate", "severity")
QUERY_TIMEOUT_S = 60.0
MAX_POINTS = 10_000  # a range query answers at most 11,000 points per series


def config(targets: Sequence[str], interval_s: float, rule_files: Sequence[Path]) -> dict[str, Any]:
    """The shipped `prometheus.yml` with its job scraping `targets` (host:port each), the given rule files (the
    shipped ones, copied), and scrape and evaluation every `interval_s` seconds."""
    loaded: dict[str, Any] = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    loaded["global"].update(scrape_interval=f"{interval_s:g}s", evaluation_interval=f"{interval_s:g}s")
    loaded["rule_files"] = [str(path) for path in rule_files]
    (job,) = loaded["scrape_configs"]
    job["static_configs"] = [{"targets": list(targets)}]
    return loaded


@dataclass(frozen=True)
class Prometheus:
    server: Server

    @property
    def url(self) -> str:
        return self.server.url

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self._ask("query", {"query": promql})

    def query_range(self, promql: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        return self._ask("query_range", {"query": promql, "start": start, "end": end, "step": f"{step_s:g}s"})

    def _ask(self, what: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.server.check_alive()
        body: dict[str, Any] = httpx.get(f"{self.url}/api/v1/{what}", params=params, timeout=QUERY_TIMEOUT_S).json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus refused {params}: {body}")
        found: list[dict[str, Any]] = body["data"]["result"]
        return found

    def alerts(self, start: float, end: float, interval_s: float) -> list[Alert]:
        """Every alert series pending or firing at an evaluation between `start` and `end` (Unix seconds)."""
        step = max(interval_s, (end - start) / MAX_POINTS)
        return alerts_seen(self.query_range("ALERTS", start, end, step), start)

    def scrapes(self, start: float, end: float) -> tuple[int, float]:
        """(scrapes of the service, lowest `up`) between `start` and `end` (Unix seconds)."""
        window = f"{max(1, round(end - start))}s"
        counted = self.query(f'count_over_time(up{{job="{JOB}"}}[{window}])')
        lowest = self.query(f'min_over_time(up{{job="{JOB}"}}[{window}])')
        return (int(float(counted[0]["value"][1])) if counted else 0, float(lowest[0]["value"][1]) if lowest else 0.0)


def alerts_seen(matrix: Sequence[Mapping[str, Any]], start: float) -> list[Alert]:
    """The series of a range query of `ALERTS` as Alerts: first and last evaluation at which each was seen, in
    seconds from `start`; sorted by state (firing first), then name."""
    found = []
    for series in matrix:
        metric: Mapping[str, str] = series["metric"]
        times = [float(at) for at, _ in series["values"]]
        labels = tuple(sorted((k, v) for k, v in metric.items() if k not in HIDDEN_LABELS))
        found.append(Alert(metric["alertname"], metric["alertstate"], labels, min(times) - start, max(times) - start))
    return sorted(found, key=lambda a: (a.state != "firing", a.name, a.labels))


@contextlib.contextmanager
def running(target_urls: Sequence[str], folder: Path, interval_s: float) -> Iterator[Prometheus]:
    """A Prometheus on a free loopback port scraping the servers at `target_urls`, its data and rule copies in
    `folder`; ready and having scraped every server once when yielded; stopped (process group) on exit."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise ServerError("prometheus is not on PATH: run scripts/install-system-deps.sh (make system-deps)")
    shutil.rmtree(folder, ignore_errors=True)
    rules = folder / "rules"
    shutil.copytree(SHIPPED / "rules", rules)
    targets = [url.removeprefix("http://") for url in target_urls]
    settings = config(targets, interval_s, sorted(rules.glob("*.yml")))
    (folder / "prometheus.yml").write_text(yaml.safe_dump(settings, sort_keys=False))

    def command(port: int) -> list[str]:
        return [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip

    with launched("Prometheus", command, folder / "prometheus.log", ready_path="/-/ready") as server:
        prometheus = Prometheus(server)
        server.wait_for(lambda: _up(prometheus, len(targets)), "to scrape the service")
        yield prometheus


def _up(prometheus: Prometheus, targets: int) -> bool:
    return [float(s["value"][1]) for s in prometheus.query(f'up{{job="{JOB}"}}')] == [1.0] * targets
