"""The door to prometheus_client's private value cells (service/monitoring/prometheus_fast.py): what `PendingWrites`
writes through it exposes exactly what the public API writes, in memory and in multiprocess files, and a library
that moved the cells is refused at import or at first use, never written to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import Histogram

from service.monitoring import prometheus_fast
from service.monitoring.prometheus_fast import PrometheusInternalsChanged, check_internals, histogram_cells

ROOT = Path(__file__).resolve().parents[2]

# The same operations, through the public API or through PendingWrites (buffered, then flushed); prints the exposition
# a scrape would read: the process's registry, or every file of the multiprocess folder.
OPERATIONS = """
import os, sys
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from service.monitoring.metrics import LATENCY_BUCKETS, ROW_BUCKETS, PendingWrites

public = sys.argv[1] == "public"
registry = CollectorRegistry()
hits = Counter("probe_hits", "hits", ["kind"], registry=registry)
plain = Counter("probe_plain", "plain", registry=registry)
busy = Gauge("probe_busy", "busy", ["endpoint"], multiprocess_mode="livesum", registry=registry)
latency = Histogram("probe_latency_seconds", "latency", ["model"], buckets=LATENCY_BUCKETS, registry=registry)
rows = Histogram("probe_rows", "rows", buckets=ROW_BUCKETS, registry=registry)
odd = Histogram("probe_odd", "with NaN and infinities", buckets=(0.5, 1.0), registry=registry)
one_by_one = [0.0, 0.0001, 0.00011, 0.3, 0.5, 0.5000001, 10.0, 11.0, 1e9]
many = [1, 2, 2, 3, 4, 5, 63, 64, 65, 2048, 2049, 100000]
odd_values = [float("nan"), 0.5, float("inf"), -1.0, 0.2, 0.7, 1.0]
if public:
    hits.labels("a").inc(1.0); hits.labels("a").inc(2.5); hits.labels('q"uote').inc(3.0); plain.inc(7.0)
    busy.labels("/predict").inc(2.0); busy.labels("/predict").dec(0.5)
    for value in one_by_one:
        latency.labels("m").observe(value)
    for value in many:
        rows.observe(value)
    for value in odd_values:
        odd.observe(value)
else:
    writes = PendingWrites(buffered=True)
    writes.inc(hits.labels("a"), 1.0); writes.inc(hits.labels("a"), 2.5); writes.inc(hits.labels('q"uote'), 3.0)
    writes.inc(plain, 7.0)
    writes.inc(busy.labels("/predict"), 2.0); writes.dec(busy.labels("/predict"), 0.5)
    for value in one_by_one:
        writes.observe(latency.labels("m"), value)
    writes.observe_many(rows, np.asarray(many, dtype=np.float64))
    writes.observe_many(odd, np.asarray(odd_values))
    writes.flush()
if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
text = generate_latest(registry).decode()
print("".join(line + "\\n" for line in text.splitlines() if "_created" not in line))
"""


def exposition(how: str, multiprocess_dir: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if multiprocess_dir is not None:
        multiprocess_dir.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiprocess_dir)
    result = subprocess.run(
        [sys.executable, "-c", OPERATIONS, how], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("multiprocess", [False, True], ids=["in-process", "multiprocess files"])
def test_pending_writes_expose_what_the_public_api_writes(tmp_path: Path, multiprocess: bool) -> None:
    public = exposition("public", tmp_path / "public" if multiprocess else None)
    pending = exposition("pending", tmp_path / "pending" if multiprocess else None)
    # sorted: the multiprocess collector lists families in the order their files hold them
    assert sorted(pending.splitlines()) == sorted(public.splitlines())
    # the comparison is about written values, not two empty expositions
    assert 'probe_hits_total{kind="a"} 3.5' in public
    assert 'probe_latency_seconds_bucket{le="0.00025",model="m"} 3.0' in public
    assert 'probe_rows_bucket{le="+Inf"} 12.0' in public
    assert "probe_odd_sum NaN" in public


def test_the_installed_prometheus_client_has_the_cells() -> None:
    check_internals()


@pytest.mark.parametrize("method", ["_metric_init", "observe", "_child_samples"])
def test_a_histogram_that_no_longer_uses_the_cells_is_refused(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    monkeypatch.setattr(Histogram, method, lambda self, *args: None)
    with pytest.raises(PrometheusInternalsChanged, match=f"Histogram.{method} no longer uses"):
        check_internals()


def test_a_moved_cell_stops_the_import() -> None:
    """A version bump that moves a cell fails at start-up: importing the metrics module raises."""
    code = (
        "import prometheus_client\n"
        "prometheus_client.Counter._metric_init = lambda self: None\n"
        "import service.monitoring.metrics\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "PrometheusInternalsChanged: prometheus_client's Counter._metric_init no longer uses ['_value']" in (
        result.stderr
    )


@pytest.mark.parametrize(
    "shape",
    [
        {"_upper_bounds": [1.0, float("inf")], "_buckets": [0, 0, 0], "_sum": 0},  # a bucket too many
        {"_upper_bounds": [1.0, 2.0], "_buckets": [0, 0], "_sum": 0},  # no +Inf
        {"_upper_bounds": [2.0, 1.0, float("inf")], "_buckets": [0, 0, 0], "_sum": 0},  # not rising
        {"_upper_bounds": [1.0, float("inf")], "_buckets": [0, 0]},  # no sum
    ],
    ids=["bucket count", "no +Inf", "not rising", "no sum"],
)
def test_histogram_cells_of_an_unexpected_shape_are_refused(shape: dict[str, object]) -> None:
    with pytest.raises(PrometheusInternalsChanged):
        histogram_cells(SimpleNamespace(**shape))


def test_a_histogram_with_labels_needs_its_child() -> None:
    from prometheus_client import CollectorRegistry

    parent = Histogram("probe_parent", "parent", ["model"], registry=CollectorRegistry())
    with pytest.raises(PrometheusInternalsChanged, match="needs .labels"):
        histogram_cells(parent)
    assert len(histogram_cells(parent.labels("m")).buckets) == len(Histogram.DEFAULT_BUCKETS)
    with pytest.raises(PrometheusInternalsChanged, match="needs .labels"):
        prometheus_fast.value_cell(parent)
