"""The metric names `GET /metrics` exports, read from the service's own code (not a copy of them).

`Metrics.create` in a fresh registry gives the worker metrics; `render_drift([])` and `realized_families([])` the
scrape-time gauges.
Names are as they appear in the exposition (counters with `_total`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service.feedback.realized import realized_families
from service.monitoring.metrics import Metrics, render_gauges
from service.monitoring.monitor import render_drift


def exported_metrics() -> dict[str, str]:
    """Exposition name -> type of every metric the service exports."""
    registry = CollectorRegistry()
    Metrics.create(registry)
    exported = {}
    for family in registry.collect():
        exported[family.name + ("_total" if family.type == "counter" else "")] = family.type
    scrape_time = render_drift([]) + render_gauges(realized_families([]))
    for family in text_string_to_metric_families(scrape_time):
        exported[family.name + ("_total" if family.type == "counter" else "")] = family.type
    return exported


EXPORTED: dict[str, str] = exported_metrics()
