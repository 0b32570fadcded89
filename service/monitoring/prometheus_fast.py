"""prometheus_client's value cells, written directly: the one module that reaches into its metric objects' private
attributes (`_value`, `_upper_bounds`, `_buckets`, `_sum`), for `PendingWrites` (service/monitoring/metrics.py).

Why: in multiprocess mode every public `inc()` or `observe()` takes a lock, checks the pid and writes an mmapped
file; `PendingWrites` sums a request's updates in memory and adds each total to its cell once per flush, which needs
the cells themselves. prometheus_client is pinned, and a new version may rename or reshape them: `check_internals`
runs when this module is imported and refuses to start when the metric classes no longer use the cells this module
writes; `histogram_cells` checks a histogram's cells at its first use; tests/monitoring/test_prometheus_fast.py
compares the exposition with what the public API writes for the same operations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram, values


class PrometheusInternalsChanged(RuntimeError):
    """The installed prometheus_client no longer keeps metric values in the cells `PendingWrites` writes."""


class Cell(Protocol):
    """One stored value of a metric (prometheus_client's `ValueClass`: in memory, or an mmapped file's entry)."""

    def inc(self, amount: float) -> None: ...

    def get(self) -> float: ...


@dataclass(frozen=True)
class HistogramCells:
    """A histogram child's cells: per-bucket counts (not cumulative) for `bounds` (the last one +Inf), and the sum."""

    bounds: Sequence[float]
    buckets: Sequence[Cell]
    sum: Cell


# the attributes each method must still use, or the cells written here are not those the exposition reads
_USES = {
    (Counter, "_metric_init"): {"_value"},
    (Gauge, "_metric_init"): {"_value"},
    (Histogram, "_metric_init"): {"_upper_bounds", "_buckets", "_sum"},
    (Histogram, "observe"): {"_upper_bounds", "_buckets", "_sum"},
    (Histogram, "_child_samples"): {"_upper_bounds", "_buckets", "_sum"},
}


def check_internals() -> None:
    """Raise `PrometheusInternalsChanged` unless prometheus_client's metrics still create, observe into and export
    the cells this module writes, and its value class still has `inc` and `get`. Creates no metric value (one
    would show in the multiprocess exposition)."""
    for (cls, method), names in _USES.items():
        code = getattr(getattr(cls, method, None), "__code__", None)
        missing = names - set(getattr(code, "co_names", ()))
        if missing:
            raise PrometheusInternalsChanged(
                f"prometheus_client's {cls.__name__}.{method} no longer uses {sorted(missing)}: PendingWrites "
                "(service/monitoring/prometheus_fast.py) would write cells the exposition does not read; "
                "adapt it to this version or pin the tested one"
            )
    if not all(callable(getattr(values.ValueClass, name, None)) for name in ("inc", "get")):
        raise PrometheusInternalsChanged(f"prometheus_client's {values.ValueClass!r} has no inc() and get()")


def value_cell(child: Any) -> Cell:
    """The cell of a counter or gauge child (or of a metric without labels)."""
    try:
        return child._value  # type: ignore[no-any-return]
    except AttributeError:
        raise PrometheusInternalsChanged(
            f"{child!r} has no `_value`: a metric with labels needs .labels(...), or prometheus_client changed"
        ) from None


def histogram_cells(histogram: Any) -> HistogramCells:
    """The cells of a histogram child, checked: one bucket per bound, the bounds rising to +Inf."""
    try:
        cells = HistogramCells(list(histogram._upper_bounds), list(histogram._buckets), histogram._sum)
    except AttributeError:
        raise PrometheusInternalsChanged(
            f"{histogram!r} has no `_upper_bounds`, `_buckets` and `_sum`: a histogram with labels needs "
            ".labels(...), or prometheus_client changed"
        ) from None
    bounds = cells.bounds
    if (
        len(cells.buckets) != len(bounds)
        or not bounds
        or bounds[-1] != math.inf
        or any(b >= a for a, b in zip(bounds[1:], bounds, strict=False))
    ):
        raise PrometheusInternalsChanged(
            f"{histogram!r}: {len(cells.buckets)} bucket cells for the bounds {bounds}; PendingWrites expects one "
            "per bound, rising to +Inf"
        )
    return cells


check_internals()
