"""What the soak computes from what it recorded: figures per time slice, RSS growth after warm-up, the verdicts.

Nothing here starts or asks anything: the records come in (requests as the client saw them, process samples,
what the log's database and Prometheus held), figures go out, so all of it is unit-tested on made-up records.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..feedback import percentile

GROUPS = ("predict", "feedback", "reads")
STATUS_CLASSES = ("2xx", "4xx", "5xx", "no answer")
MAX_RSS_GROWTH = 0.05  # the bound: RSS per worker grows by less than this after warm-up
WORKER, ARBITER = "worker", "arbiter"


@dataclass(frozen=True)
class Call:
    """One request as the client saw it. `at`: seconds from the start of traffic when it was sent; `status` 0: no
    answer (connection error or the client's timeout)."""

    at: float
    group: str
    status: int
    seconds: float


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    role: str  # ARBITER, WORKER, or "other" (a process of the server's tree that is neither)
    rss: int  # bytes
    fds: int


@dataclass(frozen=True)
class Sample:
    """The server's processes and files at `at` seconds from the start of traffic."""

    at: float
    processes: tuple[ProcessSample, ...]
    multiproc_files: int  # files in the server's PROMETHEUS_MULTIPROC_DIR
    database_bytes: int  # the prediction log's SQLite file with its WAL

    def of(self, pid: int) -> ProcessSample | None:
        return next((p for p in self.processes if p.pid == pid), None)


@dataclass(frozen=True)
class Latency:
    count: int
    p50: float | None  # seconds; None without requests
    p99: float | None


@dataclass(frozen=True)
class Slice:
    """Figures of the requests sent, and of the samples taken, in [start, end) seconds."""

    start: float
    end: float
    statuses: dict[str, int]  # STATUS_CLASSES -> requests
    latency: dict[str, Latency]  # GROUPS -> latency of the answered requests
    rss: dict[int, int]  # pid -> largest RSS sampled in the slice
    fds: dict[int, int]  # pid -> largest open file descriptor count sampled in the slice

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


@dataclass(frozen=True)
class Growth:
    """A process's RSS trend after warm-up: the least-squares line through its samples, read at the end of warm-up
    (`baseline`) and at the last sample (`end`). A line, not two samples: a worker's RSS moves by tens of MB within
    a minute as its allocator takes and gives back memory, while a leak is a slope."""

    pid: int
    role: str
    baseline: float | None  # bytes; None: fewer than two samples after warm-up, or not sampled at the end
    end: float | None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.end is None or self.baseline <= 0:
            return None
        return self.end / self.baseline - 1.0

    @property
    def ok(self) -> bool:
        return self.ratio is not None and self.ratio < MAX_RSS_GROWTH


@dataclass(frozen=True)
class Completeness:
    """What the log's database held after the server stopped, against what the client was answered."""

    predictions_expected: int
    predictions_found: int
    labels_expected: int
    labels_found: int  # present with the label that was sent
    outcomes_expected: int
    outcomes_found: int  # present with the value that was sent
    missing: tuple[str, ...] = ()  # a few examples: what is missing or differs, with the prediction id

    @property
    def complete(self) -> bool:
        return (
            self.predictions_found == self.predictions_expected
            and self.labels_found == self.labels_expected
            and self.outcomes_found == self.outcomes_expected
        )


@dataclass(frozen=True)
class Alert:
    """An alert series that Prometheus held in `state` ("pending" or "firing") at some evaluation of the run:
    its labels (without alertname, alertstate and severity), first and last seen in seconds from the start."""

    name: str
    state: str
    labels: tuple[tuple[str, str], ...]
    first_at: float
    last_at: float


@dataclass(frozen=True)
class Criterion:
    what: str
    required: str
    measured: str
    ok: bool


@dataclass(frozen=True)
class Outcome:
    """What the run gave besides the samples and requests, for the verdicts."""

    completeness: Completeness
    alerts: list[Alert]
    refused_items: int  # feedback items answered in a 200's `errors`
    stopped_gracefully: bool
    stop_detail: str
    unmeasured: list[str] = field(default_factory=list)  # parts of the run that could not be measured, and why


def status_class(status: int) -> str:
    return "no answer" if status == 0 else f"{status // 100}xx"


def latency(calls: Iterable[Call]) -> Latency:
    """p50 and p99 (nearest rank) of the answered calls."""
    seconds = [c.seconds for c in calls if c.status != 0]
    return Latency(len(seconds), percentile(seconds, 50), percentile(seconds, 99))


def slice_count(duration_s: float, slice_s: float) -> int:
    return max(1, math.ceil(duration_s / slice_s - 1e-9))


def slices(calls: Sequence[Call], samples: Sequence[Sample], slice_s: float, duration_s: float) -> list[Slice]:
    """One Slice per `slice_s` of the run (the last one may be shorter). A call counts in the slice it was sent in;
    samples taken after the run's end (the final one) count in the last slice."""
    count = slice_count(duration_s, slice_s)

    def index(at: float) -> int:
        return min(count - 1, max(0, int(at // slice_s)))

    calls_in: list[list[Call]] = [[] for _ in range(count)]
    for call in calls:
        calls_in[index(call.at)].append(call)
    samples_in: list[list[Sample]] = [[] for _ in range(count)]
    for sample in samples:
        samples_in[index(sample.at)].append(sample)
    found = []
    for i in range(count):
        statuses = Counter(status_class(c.status) for c in calls_in[i])
        rss: dict[int, int] = {}
        fds: dict[int, int] = {}
        for sample in samples_in[i]:
            for p in sample.processes:
                rss[p.pid] = max(rss.get(p.pid, 0), p.rss)
                fds[p.pid] = max(fds.get(p.pid, 0), p.fds)
        found.append(
            Slice(
                start=i * slice_s,
                end=min(duration_s, (i + 1) * slice_s),
                statuses={name: statuses.get(name, 0) for name in STATUS_CLASSES},
                latency={group: latency(c for c in calls_in[i] if c.group == group) for group in GROUPS},
                rss=rss,
                fds=fds,
            )
        )
    return found


def processes(samples: Sequence[Sample]) -> list[tuple[int, str]]:
    """(pid, role) of every process sampled: the arbiter first, then the workers, each in order of appearance."""
    seen: dict[int, str] = {}
    for sample in samples:
        for p in sample.processes:
            seen.setdefault(p.pid, p.role)
    order = {ARBITER: 0, WORKER: 1}
    return sorted(seen.items(), key=lambda item: order.get(item[1], 2))


def rss_growth(samples: Sequence[Sample], warmup_s: float) -> list[Growth]:
    """Per process, the growth of its RSS trend from the end of warm-up to the last sample (see `Growth`). A process
    absent from the first sample after warm-up or from the last one (restarted, died) has no figure."""
    after = [s for s in samples if s.at >= warmup_s]
    found = []
    for pid, role in processes(samples):
        points = [(s.at, p.rss) for s in after if (p := s.of(pid)) is not None]
        if len(points) < 2 or after[0].of(pid) is None or after[-1].of(pid) is None:
            found.append(Growth(pid, role, None, None))
            continue
        slope, intercept = np.polyfit([at for at, _ in points], [rss for _, rss in points], 1)
        found.append(Growth(pid, role, float(intercept + slope * warmup_s), float(intercept + slope * after[-1].at)))
    return found


def worker_pids(sample: Sample) -> set[int]:
    return {p.pid for p in sample.processes if p.role == WORKER}


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value / 2**20:.1f} MB"


def criteria(
    calls: Sequence[Call], samples: Sequence[Sample], growth: Sequence[Growth], outcome: Outcome, workers: int
) -> list[Criterion]:
    """Every verdict of the run: RSS flat per worker, the same workers throughout, no 5xx, every request answered
    and accepted (the traffic is clean), the log complete after a graceful stop, no alert fired."""
    statuses = Counter(status_class(c.status) for c in calls)
    found: list[Criterion] = []
    worker_growth = [g for g in growth if g.role == WORKER]
    for number, g in enumerate(worker_growth, start=1):
        measured = (
            "not measured (too few samples after warm-up, or gone at the end)"
            if g.ratio is None
            else f"{g.ratio:+.1%} ({_mb(g.baseline)} → {_mb(g.end)})"
        )
        found.append(
            Criterion(f"RSS of worker {number} (pid {g.pid}) after warm-up", f"< {MAX_RSS_GROWTH:.0%} growth",
                      measured, g.ok)
        )  # fmt: skip
    first, last = (worker_pids(samples[0]), worker_pids(samples[-1])) if samples else (set(), set())
    same = len(first) == workers and first == last and all(worker_pids(s) <= first for s in samples)
    found.append(
        Criterion(
            "the same workers throughout (none died or was restarted)",
            f"{workers} workers, same pids",
            f"{len(first)} at the start, {len(last)} at the end"
            + ("" if same else f"; pids {sorted(first)} → {sorted(last)}"),
            same,
        )
    )
    found.append(Criterion("5xx answers", "0", f"{statuses['5xx']:,}", statuses["5xx"] == 0))
    found.append(
        Criterion("requests without an answer (connection error, client timeout)", "0",
                  f"{statuses['no answer']:,}", statuses["no answer"] == 0)
    )  # fmt: skip
    found.append(
        Criterion(
            "4xx answers and refused feedback items (the traffic is valid)",
            "0",
            f"{statuses['4xx']:,} 4xx, {outcome.refused_items:,} items refused",
            statuses["4xx"] == 0 and outcome.refused_items == 0,
        )
    )
    found.append(
        Criterion("graceful stop (SIGTERM): the server exits by itself", "yes", outcome.stop_detail,
                  outcome.stopped_gracefully)
    )  # fmt: skip
    c = outcome.completeness
    found.append(
        Criterion(
            "every prediction answered 200 is in the log",
            f"{c.predictions_expected:,}",
            f"{c.predictions_found:,}",
            c.predictions_found == c.predictions_expected,
        )
    )
    found.append(
        Criterion(
            "every acknowledged feedback item is stored (labels; outcomes)",
            f"{c.labels_expected:,}; {c.outcomes_expected:,}",
            f"{c.labels_found:,}; {c.outcomes_found:,}",
            c.labels_found == c.labels_expected and c.outcomes_found == c.outcomes_expected,
        )
    )
    firing = sorted({a.name for a in outcome.alerts if a.state == "firing"})
    found.append(Criterion("alerts fired (clean traffic)", "none", ", ".join(firing) or "none", not firing))
    found += [Criterion(what, "measured", "not measured", False) for what in outcome.unmeasured]
    return found


def exit_code(found: Sequence[Criterion]) -> int:
    """0 when every criterion is met, 1 otherwise."""
    return 0 if all(c.ok for c in found) else 1
