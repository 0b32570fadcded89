"""The shipped alert rules evaluated by `promtool test rules` on scraped series, in virtual time.

The rules' windows and `for` durations are minutes to hours; a scorecard replays its traffic faster. So each scrape
becomes one step of virtual time (`STEP_MINUTES`), and the scrapes become a promtool unit test's input series.
promtool reports an alert it did not expect with its labels; the generated test expects none, so its report lists
every alert that fires at every step. Each alert is evaluated twice in one rules file: as shipped (firing, after
`for`) and as a copy without `for` named `<alert>_condition` (its condition holds). Annotations are dropped: they
do not change when an alert fires. The largest value of every `*:ratio` recording rule (signal over threshold) is
read with promql tests that expect nothing, so promtool prints what it got.

promtool's engine refuses a query that loads more than 10,000 samples (hard-coded), and the drift rules read every
bin of every feature. So the `*_bin_rows_total` series are split into chunks of (model, feature) groups; each chunk
is evaluated with only the rules that read those series (and what those rules read), and the other series those
rules need; the rest of the rules run once on everything else. The firings are the union. A rule that still hit the
cap makes the evaluation fail: it is never silently missing.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
STEP_MINUTES = 1
JOB = "classifier-service"
INSTANCE = "scorecard:3000"
CONDITION = "_condition"  # suffix of an alert's copy without `for`
MAX_SAMPLES = 10_000  # promtool's engine, per query
# Measured with promtool 2.42: the feature-drift rules load at most about 4 samples per bin series at once (each
# `increase` keeps one sample per series, plus the count and the division); twice that for a margin.
SAMPLES_PER_SERIES = 8
SERIES_PER_CHUNK = MAX_SAMPLES // SAMPLES_PER_SERIES
MARGIN_WINDOW_STEPS = 60  # a promql test of the ratios' largest values every hour of virtual time
CHUNKED = re.compile(r"^classifier_\w+_bin_rows_total$")
_NAME = re.compile(r"\b(classifier[_:][A-Za-z0-9_:]+)")

Series = tuple[str, frozenset[tuple[str, str]]]  # (sample name, labels)


class Scrapes:
    """Every scrape of a run, compactly: one value per series and scrape (NaN where a series was absent), and the
    wall-clock time of each scrape (for timestamp gauges)."""

    def __init__(self) -> None:
        self.keys: list[Series] = []
        self.index: dict[Series, int] = {}
        self.rows: list[np.ndarray] = []
        self.taken_at: list[float] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, samples: Mapping[Series, float], taken_at: float) -> None:
        for key in samples:
            if key not in self.index:
                self.index[key] = len(self.keys)
                self.keys.append(key)
        row = np.full(len(self.keys), np.nan)
        for key, value in samples.items():
            row[self.index[key]] = value
        self.rows.append(row)
        self.taken_at.append(taken_at)

    def value(self, step: int, key: Series) -> float:
        column = self.index.get(key)
        row = self.rows[step]
        return math.nan if column is None or column >= len(row) else float(row[column])

    def total(self, step: int, name: str, **labels: str) -> float:
        """The sum of `name`'s samples at `step` whose labels include `labels` (0 when there are none)."""
        wanted = set(labels.items())
        row = self.rows[step]
        found = (
            row[i] for i, (sample, key) in enumerate(self.keys) if i < len(row) and sample == name and wanted <= key
        )
        return float(sum(v for v in found if not math.isnan(v)))

    def matrix(self, start: int, stop: int) -> np.ndarray:
        """Scrapes start..stop-1 by every series (NaN: absent)."""
        out = np.full((stop - start, len(self.keys)), np.nan)
        for i, row in enumerate(self.rows[start:stop]):
            out[i, : len(row)] = row
        return out


@dataclass(frozen=True)
class Firing:
    """An alert that fired (or whose condition held) at a step, with its labels but `alertname` and `severity`."""

    step: int
    alert: str
    labels: frozenset[tuple[str, str]]

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


@dataclass(frozen=True)
class Peak:
    """The largest value of a `*:ratio` rule for one model over a run (above 1: its alert's condition holds)."""

    rule: str
    model: str
    value: float
    labels: frozenset[tuple[str, str]]  # which feature, label, level ...
    step: int  # the end of the hour it was found in


@dataclass
class Evaluation:
    """What the shipped alerts did over a run of scrapes (steps relative to the run's first scrape)."""

    firing: list[Firing] = field(default_factory=list)  # the rules as shipped
    held: list[Firing] = field(default_factory=list)  # the condition held (the rule without `for`)
    peaks: list[Peak] = field(default_factory=list)  # when asked for
    promtool_seconds: float = 0.0


# --- the rules ----------------------------------------------------------------------------------------------------


def _load(name: str) -> list[dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load((RULES / name).read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def recording_rules() -> list[dict[str, Any]]:
    return _load("recording.yml")


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for rule in _load("alerts.yml"):
        rule.pop("annotations", None)
        rules.append(rule)
    return rules


def alert_names() -> list[str]:
    return [str(rule["alert"]) for rule in alert_rules()]


def reads(rule: Mapping[str, Any]) -> set[str]:
    """The `classifier_*` metrics and `classifier:*` recorded series a rule's expression names."""
    return set(_NAME.findall(str(rule["expr"])))


def rule_metrics() -> set[str]:
    """The raw `classifier_*` metrics the rules read (a histogram's samples share its stem)."""
    names = set().union(*(reads(rule) for rule in [*recording_rules(), *alert_rules()]))
    return {name for name in names if ":" not in name}


def severities() -> dict[str, str]:
    return {str(rule["alert"]): str(rule.get("labels", {}).get("severity", "")) for rule in alert_rules()}


def ratio_alert(ratio: str) -> str:
    """The alert that reads a `*:ratio` rule (for the report); the rule itself when none does."""
    readers = [str(a["alert"]) for a in alert_rules() if ratio in reads(a)]
    return readers[0] if readers else ratio


def stem(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


@dataclass(frozen=True)
class Job:
    """One promtool run: the rules (recording rules in order, then the alerts to test) and the series it reads."""

    rules: list[dict[str, Any]]
    alerts: list[str]  # alerts whose firings this job reports
    ratios: list[str]  # `*:ratio` rules whose peaks this job reports
    series: list[int]  # columns of the scrapes


def jobs(keys: Sequence[Series]) -> list[Job]:
    """The promtool runs that together evaluate every rule on `keys` within the samples cap: one per chunk of
    `*_bin_rows_total` series with the rules that read them, and one with every other rule on every other series."""
    recording, alerts = recording_rules(), alert_rules()
    chunked = {name for name, _ in keys if CHUNKED.match(name)}
    tainted = set(chunked)
    for rule in recording:
        if reads(rule) & tainted:
            tainted.add(str(rule["record"]))
    ratios = [str(r["record"]) for r in recording if str(r["record"]).endswith(":ratio")]
    untainted = [a for a in alerts if not reads(a) & tainted]
    out = [_job(recording, untainted, [r for r in ratios if r not in tainted], keys, lambda _key: True)]
    for metric in sorted(chunked):
        readers = [a for a in alerts if metric in _closure(recording, a)]
        metric_ratios = [r for r in ratios if metric in _closure(recording, {"expr": r})]
        for chunk in chunks(keys, metric):
            job = _job(
                recording, readers, metric_ratios, keys, partial(_belongs, groups={_group(keys[i]) for i in chunk})
            )
            out.append(Job(job.rules, job.alerts, job.ratios, sorted([*chunk, *job.series])))
    return out


def _job(
    recording: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    ratios: list[str],
    keys: Sequence[Series],
    keep: Callable[[Series], bool],
) -> Job:
    """A promtool run of `alerts` and `ratios` with the recording rules they read, directly or not, and the series
    those read but the chunked ones (`keep` filters them)."""
    names = set().union(*(_closure(recording, a) for a in alerts), _closure(recording, {"expr": " ".join(ratios)}))
    needed = [r for r in recording if str(r["record"]) in names]
    series = [i for i, key in enumerate(keys) if not CHUNKED.match(key[0]) and stem(key[0]) in names and keep(key)]
    return Job([*needed, *alerts], [str(a["alert"]) for a in alerts], ratios, series)


def _closure(recording: list[dict[str, Any]], rule: Mapping[str, Any]) -> set[str]:
    """Every name `rule` reads, directly or through the recording rules it reads."""
    by_record = {str(r["record"]): r for r in recording}
    names: set[str] = set()
    todo = list(reads(rule))
    while todo:
        name = todo.pop()
        if name in names:
            continue
        names.add(name)
        if name in by_record:
            todo += reads(by_record[name])
    return names


def _group(key: Series) -> frozenset[tuple[str, str]]:
    """A chunked series' group: its labels but the bin (a model version's feature)."""
    return frozenset((k, v) for k, v in key[1] if k != "bin")


def _belongs(key: Series, *, groups: set[frozenset[tuple[str, str]]]) -> bool:
    """Whether a series the chunk's rules read belongs with the chunk: a series labelled like its groups (the
    reference shares of a feature) only for those groups; any other series (rows, per model) always."""
    names = {k for group in groups for k, _ in group}
    labels = dict(key[1])
    if not names <= labels.keys():
        return True
    return frozenset((k, labels[k]) for k in names) in groups


def chunks(keys: Sequence[Series], metric: str, limit: int = SERIES_PER_CHUNK) -> list[list[int]]:
    """The columns of `metric`'s series packed into chunks of at most `limit` series, a group never split (a group
    larger than `limit` is a chunk of its own, and the cap check of the run says so)."""
    groups: dict[frozenset[tuple[str, str]], list[int]] = {}
    for i, key in enumerate(keys):
        if key[0] == metric:
            groups.setdefault(_group(key), []).append(i)
    out: list[list[int]] = []
    for columns in sorted(groups.values(), key=len, reverse=True):
        target = next((chunk for chunk in out if len(chunk) + len(columns) <= limit), None)
        if target is None:
            out.append(list(columns))
        else:
            target += columns
    return out


# --- promtool -----------------------------------------------------------------------------------------------------


def evaluate(scrapes: Scrapes, start: int = 0, stop: int | None = None, peaks: bool = False,
             workdir: Path | None = None) -> Evaluation:  # fmt: skip
    """Every alert that fires, and every alert whose condition holds, at each step of scrapes start..stop-1 (step i
    = scrape start + i); with `peaks`, the largest value of every `*:ratio` rule per model."""
    import time

    stop = len(scrapes) if stop is None else stop
    values = scrapes.matrix(start, stop)
    present = [i for i in range(len(scrapes.keys)) if not np.isnan(values[:, i]).all()]
    keys = [scrapes.keys[i] for i in present]
    evaluation = Evaluation()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        for n, job in enumerate(jobs(keys)):
            series = input_series([keys[i] for i in job.series], values[:, [present[i] for i in job.series]],
                                  scrapes.taken_at[start:stop])  # fmt: skip
            report = _run(Path(folder), f"job{n}", job, series, stop - start, peaks)
            for firing in parse_failures(report):
                if firing.alert.endswith(CONDITION):
                    evaluation.held.append(Firing(firing.step, firing.alert.removesuffix(CONDITION), firing.labels))
                else:
                    evaluation.firing.append(firing)
            evaluation.peaks += parse_peaks(report) if peaks else []
    evaluation.peaks = largest(evaluation.peaks)
    evaluation.promtool_seconds = time.monotonic() - began
    return evaluation


def input_series(keys: Sequence[Series], values: np.ndarray, taken_at: Sequence[float]) -> list[dict[str, str]]:
    """promtool's `input_series`: one entry per series, a value per step (`_` where absent), runs of one value in
    promtool's `a+0xn` notation. Timestamp gauges (`*_timestamp_seconds`) hold wall-clock times; they are moved to
    virtual time keeping their age at the scrape, so `time() - ...` rules see the ages the service had."""
    entries = []
    for column, (name, labels) in enumerate(keys):
        column_values = values[:, column].copy()
        if name.endswith("_timestamp_seconds"):
            virtual = np.arange(len(column_values)) * STEP_MINUTES * 60.0
            column_values = column_values - np.asarray(taken_at) + virtual
        selector = ", ".join(f'{k}="{_escape(v)}"' for k, v in sorted({*labels, ("job", JOB), ("instance", INSTANCE)}))
        entries.append({"series": f"{name}{{{selector}}}", "values": _notation(column_values)})
    return entries


def _notation(values: np.ndarray) -> str:
    parts, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and (values[j + 1] == values[i] or (np.isnan(values[j + 1]) and np.isnan(values[i]))):
            j += 1
        if np.isnan(values[i]):
            parts.append("_" if j == i else f"_x{j - i + 1}")
        else:
            parts.append(repr(float(values[i])) if j == i else f"{float(values[i])!r}+0x{j - i}")
        i = j + 1
    return " ".join(parts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _run(home: Path, name: str, job: Job, series: list[dict[str, str]], steps: int, peaks: bool) -> str:
    conditions = [{**rule, "alert": f"{rule['alert']}{CONDITION}"} for rule in job.rules if "alert" in rule]
    for rule in conditions:
        rule.pop("for", None)
    rules_file = home / f"{name}-rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "scorecard", "rules": [*job.rules, *conditions]}]},
                                         sort_keys=False))  # fmt: skip
    tests: dict[str, Any] = {
        "interval": f"{STEP_MINUTES}m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": f"{step * STEP_MINUTES}m", "alertname": alert, "exp_alerts": []}
            for step in range(steps)
            for alert in [*job.alerts, *(a + CONDITION for a in job.alerts)]
        ],
    }
    if peaks and job.ratios:
        tests["promql_expr_test"] = [
            {
                "expr": f"topk by (model) (1, max_over_time({ratio}[{MARGIN_WINDOW_STEPS * STEP_MINUTES}m]))",
                "eval_time": f"{step * STEP_MINUTES}m",
                "exp_samples": [],
            }
            for ratio in job.ratios
            for step in sorted({*range(MARGIN_WINDOW_STEPS, steps, MARGIN_WINDOW_STEPS), steps - 1})
        ]
    test_file = home / f"{name}-test.yml"
    test_file.write_text(
        json.dumps({"rule_files": [str(rules_file)], "evaluation_interval": f"{STEP_MINUTES}m", "tests": [tests]})
    )  # fmt: skip  (JSON is YAML, and much faster to write)
    result = subprocess.run(["nice", "promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    report = result.stdout + result.stderr  # the failures go to stderr
    check_report(result.returncode, report)
    return report


def check_report(returncode: int, report: str) -> None:
    """promtool failed for another reason than the unexpected alerts and samples the test asks it to list: a
    rule over the samples cap, a bad rule, a bad series."""
    if "too many samples" in report:
        raise RuntimeError(f"a rule loaded more than promtool's {MAX_SAMPLES:,} samples:\n{_around(report)}")
    if returncode not in (0, 1) or (returncode == 1 and "alertname:" not in report and "expr:" not in report):
        raise RuntimeError(f"promtool failed ({returncode}):\n{report[-3000:]}")


def _around(report: str) -> str:
    at = report.find("too many samples")
    return report[max(0, at - 1500) : at + 200]


_FAILURE = re.compile(r"^\s*alertname: (\w+), time: ([0-9hms.]+),")
_LABELS = re.compile(r"^\s*Labels:\{(.*)\}\s*$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_EXPR = re.compile(r'^\s*expr: "(.*)", time: ([0-9hms.]+),\s*$')
_RATIO = re.compile(r"max_over_time\(([\w:]+)\[")
_GOT = re.compile(r'\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\} ([^,\s]+)')


def _labels(text: str) -> dict[str, str]:
    labels = {k: v.encode().decode("unicode_escape") for k, v in _LABEL.findall(text)}
    labels.pop("alertname", None)
    labels.pop("severity", None)
    return labels


def parse_failures(report: str) -> list[Firing]:
    """The unexpected alerts of promtool's report: each `alertname: A, time: T,` block's `Labels:{...}` lines."""
    found: list[Firing] = []
    alert, step = "", 0
    for line in report.splitlines():
        if match := _FAILURE.match(line):
            alert, step = match.group(1), int(_minutes(match.group(2)) // STEP_MINUTES)
        elif _EXPR.match(line):
            alert = ""
        elif (match := _LABELS.match(line)) and alert:
            found.append(Firing(step, alert, frozenset(_labels(match.group(1)).items())))
    return found


def largest(peaks: Iterable[Peak]) -> list[Peak]:
    """The largest peak per rule and model (chunks each report theirs)."""
    best: dict[tuple[str, str], Peak] = {}
    for peak in peaks:
        current = best.get((peak.rule, peak.model))
        if current is None or peak.value > current.value:
            best[(peak.rule, peak.model)] = peak
    return sorted(best.values(), key=lambda p: (p.model, p.rule))


def parse_peaks(report: str) -> list[Peak]:
    """The largest ratio per rule and model: the `got:` lines of the promql tests that expected nothing."""
    found: list[Peak] = []
    ratio, step = "", 0
    for line in report.splitlines():
        if match := _EXPR.match(line):
            named = _RATIO.search(match.group(1))
            ratio, step = (named.group(1) if named else ""), int(_minutes(match.group(2)) // STEP_MINUTES)
        elif line.strip().startswith("got:") and ratio:
            for labels_text, value_text in _GOT.findall(line):
                labels = _labels(labels_text)
                value = float(value_text)
                model = labels.pop("model", "")
                labels.pop("version", None)
                if not math.isnan(value):
                    found.append(Peak(ratio, model, value, frozenset(labels.items()), step))
    return largest(found)


def _minutes(duration: str) -> float:
    """A Go duration as promtool prints it (`0s`, `7m`, `1h40m`) in minutes."""
    units = {"h": 60.0, "m": 1.0, "s": 1 / 60}
    return sum(float(amount) * units[unit] for amount, unit in re.findall(r"([0-9.]+)([hms])", duration))
